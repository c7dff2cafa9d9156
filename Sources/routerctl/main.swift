import Dispatch
import Plugins
#if canImport(Glibc)
import Glibc
#endif

/// What the user sees when a command fails: one line and an exit code, no stack trace.
struct CommandFailure: Error {
    var message: String
    var exitCode: Int32
}

let usage = """
    usage: routerctl <command> [options]

    commands:
      run CONFIG [--log-level LEVEL]   run the router in the foreground with the YAML file CONFIG
      check CONFIG                     validate CONFIG without running it
      help                             show this text

    exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration
    """

func loadConfig(_ path: String) throws(CommandFailure) -> RouterConfig {
    do {
        return try RouterConfig.load(path: path, catalog: BuiltInPlugins())
    } catch {
        throw CommandFailure(message: "\(error)", exitCode: 3)
    }
}

func check(_ arguments: [String]) throws(CommandFailure) {
    guard arguments.count == 1, let path = arguments.first else {
        throw CommandFailure(message: "usage: routerctl check CONFIG", exitCode: 2)
    }
    let config = try loadConfig(path)
    let routes = config.routes.map { "\($0.name) -> \($0.target) (\($0.strategy.name), \($0.encoder.name))" }
    print("\(path): OK, \(config.routes.count) route(s)")
    for route in routes { print("  \(route)") }
}

func run(_ arguments: [String]) throws(CommandFailure) -> Never {
    var path: String?
    var level: LogLevel?
    var rest = arguments[...]
    while let argument = rest.popFirst() {
        switch argument {
        case "--log-level":
            guard let name = rest.popFirst(), let parsed = LogLevel(name: name) else {
                throw CommandFailure(message: "--log-level takes trace, debug, info, warning or error", exitCode: 2)
            }
            level = parsed
        case _ where argument.hasPrefix("-"):
            throw CommandFailure(message: "unknown option \(argument)\n\(usage)", exitCode: 2)
        default:
            guard path == nil else { throw CommandFailure(message: "usage: routerctl run CONFIG", exitCode: 2) }
            path = argument
        }
    }
    guard let path else { throw CommandFailure(message: "usage: routerctl run CONFIG", exitCode: 2) }
    let config = try loadConfig(path)
    let log = Logger(level: level ?? config.logLevel)
    let runtime: RouterRuntime
    do {
        runtime = try RouterRuntime(config: config, catalog: BuiltInPlugins(), log: log)
    } catch {
        throw CommandFailure(message: "\(error)", exitCode: 3)
    }

    // A peer that closes its socket must not kill the process; write(2) reports EPIPE instead.
    signal(SIGPIPE, SIG_IGN)
    var sources: [DispatchSourceSignal] = []
    for number in [SIGTERM, SIGINT] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
        source.setEventHandler {
            log.info("stopping", [("signal", number == SIGTERM ? "SIGTERM" : "SIGINT")])
            for source in sources { source.cancel() }
            runtime.stop { exit(0) }
        }
        source.resume()
        sources.append(source)
    }
    runtime.start()
    dispatchMain()
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

func main() -> Int32 {
    let arguments = Array(CommandLine.arguments.dropFirst())
    guard let command = arguments.first else {
        print(usage)
        return 2
    }
    do throws(CommandFailure) {
        switch command {
        case "run": try run(Array(arguments.dropFirst()))
        case "check": try check(Array(arguments.dropFirst()))
        case "help", "--help", "-h": print(usage)
        default: throw CommandFailure(message: "unknown command '\(command)'\n\(usage)", exitCode: 2)
        }
        return 0
    } catch {
        printError("routerctl: \(error.message)")
        return error.exitCode
    }
}

exit(main())
