// libFuzzer harness: every JAT decoder (base64url, hmac, table, sealed), fed resourceparts that a
// resource's reply could be addressed to, and every encoder, fed the JIDs the input parses to.
//
// Input: text, used both as a resourcepart to decode and, when it parses, as a sender JID.
// Checked, besides "no crash":
// 1. A decoder accepts only what its encoder makes: a JAT that decodes encodes back to itself.
// 2. Whatever a sender's JAT is, it survives Resourceprep unchanged (the server prepares the
//    address before the reply comes back) and decodes back to the same sender.
// 3. The table decoder accepts only tokens it handed out.
import Plugins

private let route = "proxy.example.org"
private let key = Array("fuzzing key, sixteen bytes or more".utf8)
private let oldKey = Array("an older key that still verifies".utf8)

// One encoder of each kind, as a route keeps them for its lifetime.
nonisolated(unsafe) private let base64 = Base64URLEncoder()
nonisolated(unsafe) private let hmac = HMACEncoder(keys: [key, oldKey], route: route)
nonisolated(unsafe) private let sealed = SealedEncoder(keys: [key, oldKey], route: route)
nonisolated(unsafe) private let table = TableEncoder(capacity: 64, idleExpiry: .seconds(600))
nonisolated(unsafe) private var tableTokens: Set<String> = []

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJAT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)

    let encoders: [any JATEncoder] = [base64, hmac, sealed]
    for encoder in encoders {
        guard let sender = try? encoder.decode(text) else { continue }
        // With two keys, a JAT signed by the older key decodes but encodes under the newer one.
        if encoder !== base64, let fresh = try? encoder.encode(sender), fresh != text,
           (try? encoder.decode(fresh)) == sender {
            continue
        }
        guard let again = try? encoder.encode(sender), again == text else {
            fatalError("\(encoder.name) decoded '\(text)' (\(Array(text.utf8))) to \(sender), which encodes otherwise")
        }
    }
    if let sender = try? table.decode(text), !tableTokens.contains(text) {
        fatalError("table decoded '\(text)', a token it never made, to \(sender)")
    }
    if let bytes = Base64URL.decode(text), Base64URL.encode(bytes) != text {
        fatalError("Base64URL.decode accepted a non-canonical '\(text)'")
    }

    guard let sender = try? JID(text), sender.resourcepart != nil else { return 0 }
    for encoder in encoders + [table] {
        guard let jat = try? encoder.encode(sender) else { continue }
        if encoder === table { tableTokens.insert(jat) }
        guard let address = try? JID("\(route)/\(jat)"), address.resourcepart == jat else {
            fatalError("\(encoder.name) made the JAT '\(jat)', which Resourceprep changes or refuses")
        }
        guard let decoded = try? encoder.decode(jat) else {
            fatalError("\(encoder.name) cannot decode its own JAT '\(jat)' for \(sender) (input \(Array(text.utf8)))")
        }
        if decoded != sender || decoded.description != sender.description {
            fatalError("\(encoder.name) round trip changed \(sender) into \(decoded)")
        }
        encoder.requestStarted(jat: jat)
        encoder.requestEnded(jat: jat)
    }
    return 0
}
