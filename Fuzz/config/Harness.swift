// libFuzzer harness: the YAML configuration loader (`RouterConfig.parse` with the built-in
// plugins, which read their own options).
//
// Input: the text of a configuration file. Checked, besides "no crash": a configuration that
// loads has at least one route, and its limits are within their documented ranges.
//
// Keys may name files (`secret: { file: … }`); inputs that could name a real file (any `/` or
// `..` with `file`) are skipped, so that the fuzzer never reads a device such as /dev/zero.
// Environment variables FUZZ_SECRET and FUZZ_KEY are set for `{ env: … }`.
import Foundation
import Plugins

private let catalog = BuiltInPlugins()
private let environmentReady: Bool = {
    setenv("FUZZ_SECRET", "a component secret", 1)
    setenv("FUZZ_KEY", "a key of sixteen bytes or more", 1)
    return true
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = environmentReady
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if text.contains("file"), text.contains("/") || text.contains("..") { return -1 }
    guard let config = try? RouterConfig.parse(text, file: "/nonexistent/fuzz.yaml", catalog: catalog) else {
        return 0
    }
    if config.routes.isEmpty { fatalError("a configuration without routes loaded") }
    for route in config.routes {
        if route.limits.maxPending < 1 || route.requestTimeout < .milliseconds(10) || route.maxStanzaSize < 4096 {
            fatalError("a route loaded with a value out of range: \(route)")
        }
        if route.reconnectMax < route.reconnectInitial { fatalError("reconnect max < initial loaded") }
    }
    return 0
}
