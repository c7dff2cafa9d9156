import Dispatch
import Foundation
import Plugins

func loadConfig(_ path: String) throws(CommandFailure) -> RouterConfig {
    do {
        return try RouterConfig.load(path: path, catalog: BuiltInPlugins())
    } catch {
        throw CommandFailure(message: "\(error)", exitCode: .invalidConfig)
    }
}

/// The control socket a configuration file names, read without validating the rest (a client
/// need not have the router's secrets in its environment).
func controlSocket(declaredIn path: String) throws(CommandFailure) -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw CommandFailure(message: "cannot read \(path)", exitCode: .invalidConfig)
    }
    guard case .mapping(let pairs)? = (try? YAMLDocument.parse(text))??.value else {
        return RouterConfig.defaultControlSocket
    }
    for (key, value) in pairs where key.scalar == "control" {
        guard case .mapping(let control) = value.value else { break }
        for (name, socket) in control where name.scalar == "socket" {
            if let path = socket.scalar { return path }
        }
    }
    return RouterConfig.defaultControlSocket
}

func check(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 1, "check CONFIG")
    let path = invocation.arguments[0]
    let config = try loadConfig(path)
    print("\(path): OK, \(config.routes.count) route(s)")
    for route in config.routes {
        print("  \(route.name) -> \(route.target) (strategy \(route.strategy.name), encoder \(route.encoder.name))")
    }
}

func runRouter(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 1, "run CONFIG [--log-level LEVEL]")
    let config = try loadConfig(invocation.arguments[0])
    let log = Logger(level: invocation.logLevel ?? config.logLevel)
    let runtime: RouterRuntime
    do {
        runtime = try RouterRuntime(config: config, catalog: BuiltInPlugins(), log: log)
    } catch {
        throw CommandFailure(message: "\(error)", exitCode: .invalidConfig)
    }
    runtime.onStopped = { exit(0) }

    // A peer that closes its socket must not kill the process; write(2) reports EPIPE instead.
    signal(SIGPIPE, SIG_IGN)
    var sources: [DispatchSourceSignal] = []
    for number in [SIGTERM, SIGINT, SIGHUP] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
        source.setEventHandler {
            if number == SIGHUP {
                runtime.reloadFromSignal()
                return
            }
            log.info("stopping", [("signal", number == SIGTERM ? "SIGTERM" : "SIGINT")])
            runtime.stop { exit(0) }
        }
        source.resume()
        sources.append(source)
    }
    do {
        try runtime.start()
    } catch {
        throw CommandFailure(message: "cannot open the control socket: \(error)", exitCode: .failure)
    }
    withExtendedLifetime(sources) { dispatchMain() }
}
