import Dispatch
import Foundation
import Plugins

/// Options every command takes, and its positional arguments.
struct Invocation {
    var arguments: [String] = []
    var json = false
    var socket: String?
    var config: String?
    var logLevel: LogLevel?
    var limit: Int?

    /// The control socket: `--socket`, else the one `--config` names, else the default.
    func socketPath() throws(CommandFailure) -> String {
        if let socket { return socket }
        if let config { return try controlSocket(declaredIn: config) }
        return RouterConfig.defaultControlSocket
    }
}

struct Command {
    var name: String
    var synopsis: String
    var summary: String
    var detail: String = ""
    /// Whether the command talks to a running router (and so takes --socket, --config, --json).
    var controls = true
    var run: (Invocation) throws(CommandFailure) -> Void
}

let commonOptions = """
    options:
      --socket PATH   the router's control socket (default: \(RouterConfig.defaultControlSocket))
      --config FILE   find the control socket in this configuration file
      --json          print JSON instead of a table
      --help          show help for the command
    """

let commands: [Command] = [
    Command(name: "run", synopsis: "run CONFIG [--log-level LEVEL]",
            summary: "run the router in the foreground",
            detail: "Logs go to standard error. SIGTERM or SIGINT answers the requests in flight, closes the "
                + "streams and exits 0; SIGHUP reloads the configuration.",
            controls: false, run: runRouter),
    Command(name: "check", synopsis: "check CONFIG", summary: "validate a configuration file without running it",
            detail: "Exits 0 when the file is valid; otherwise prints FILE:LINE:COLUMN: KEY: REASON and exits 3.",
            controls: false, run: check),
    Command(name: "status", synopsis: "status", summary: "every route: connection, resources, totals", run: status),
    Command(name: "resources", synopsis: "resources ROUTE", summary: "each resource of a route, with its counters",
            run: resources),
    Command(name: "pending", synopsis: "pending ROUTE [--limit N]", summary: "the oldest requests in flight",
            run: pending),
    Command(name: "drain", synopsis: "drain ROUTE RESOURCE",
            summary: "send no new requests to a resource; those in flight finish",
            run: { (invocation: Invocation) throws(CommandFailure) in
                try setState("drain", invocation)
            }),
    Command(name: "maint", synopsis: "maint ROUTE RESOURCE",
            summary: "take a resource out of the pool until `ready`",
            run: { (invocation: Invocation) throws(CommandFailure) in
                try setState("maint", invocation)
            }),
    Command(name: "ready", synopsis: "ready ROUTE RESOURCE", summary: "put a resource back into service",
            run: { (invocation: Invocation) throws(CommandFailure) in
                try setState("ready", invocation)
            }),
    Command(name: "weight", synopsis: "weight ROUTE RESOURCE N", summary: "set a resource's weight (0 takes none)",
            run: weight),
    Command(name: "strategy", synopsis: "strategy ROUTE NAME", summary: "switch a route's strategy live",
            detail: "Names: \(BuiltInPlugins.strategyNames.joined(separator: ", ")). The strategy starts with "
                + "default options; set options in the YAML and reload.",
            run: strategy),
    Command(name: "reload", synopsis: "reload",
            summary: "re-read the configuration and apply the difference (as SIGHUP)",
            detail: "Unchanged routes keep their connection and requests in flight; added routes connect; "
                + "removed routes finish their requests, then close. A file that does not load changes nothing.",
            run: reload),
    Command(name: "stop", synopsis: "stop", summary: "stop the router gracefully (as SIGTERM)", run: stop),
    Command(name: "metrics", synopsis: "metrics", summary: "counters in the Prometheus text format", run: metrics),
    Command(name: "version", synopsis: "version",
            summary: "the control protocol of this routerctl, and of the running router if there is one",
            run: version),
]

let usage = """
    usage: routerctl COMMAND [ARGUMENTS] [OPTIONS]

    commands:
    \(commands.map { "  " + $0.synopsis.padding(toLength: 34, withPad: " ", startingAt: 0) + $0.summary }
        .joined(separator: "\n"))

    \(commonOptions)

    exit codes: 0 success, 1 the router refused or failed, 2 usage error, 3 invalid configuration,
                4 router not running
    """

@MainActor
func help(for command: Command) -> String {
    var text = "usage: routerctl \(command.synopsis)\n\n\(command.summary)."
    if !command.detail.isEmpty { text += "\n\(command.detail)" }
    guard command.controls else { return text + "\n\noptions:\n  --help          show this help" }
    return text + "\n\n" + commonOptions
}

/// Options that take a value, wherever they stand on the command line.
let optionsWithValues: Set<String> = ["--socket", "--config", "--limit", "--log-level"]

/// The command's name (the first word that is neither an option nor an option's value) and the
/// rest, so that `routerctl --socket S status` reads like `routerctl status --socket S`.
func splitCommand(_ arguments: [String]) -> (name: String?, rest: ArraySlice<String>) {
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if optionsWithValues.contains(argument) {
            index += 2
        } else if argument.hasPrefix("-"), argument.count > 1, !["-h", "--help"].contains(argument) {
            index += 1
        } else {
            var rest = arguments
            rest.remove(at: index)
            return (argument, rest[...])
        }
    }
    return (nil, arguments[...])
}

@MainActor
func parse(_ arguments: ArraySlice<String>, for command: Command) throws(CommandFailure) -> Invocation? {
    var invocation = Invocation()
    var rest = arguments
    func value(_ option: String) throws(CommandFailure) -> String {
        guard let next = rest.popFirst() else {
            throw CommandFailure(message: "\(option) needs a value\n\(help(for: command))", exitCode: .usage)
        }
        return next
    }
    while let argument = rest.popFirst() {
        switch argument {
        case "--help", "-h": return nil
        case "--json": invocation.json = true
        case "--socket": invocation.socket = try value(argument)
        case "--config": invocation.config = try value(argument)
        case "--limit":
            guard let limit = Int(try value(argument)), limit > 0 else {
                throw CommandFailure(message: "--limit takes a positive number", exitCode: .usage)
            }
            invocation.limit = limit
        case "--log-level":
            guard let level = LogLevel(name: try value(argument)) else {
                throw CommandFailure(message: "--log-level takes trace, debug, info, warning or error",
                                     exitCode: .usage)
            }
            invocation.logLevel = level
        case _ where argument.hasPrefix("-") && argument.count > 1 && Int(argument) == nil:
            throw CommandFailure(message: "unknown option \(argument)\n\(help(for: command))", exitCode: .usage)
        default:
            invocation.arguments.append(argument)
        }
    }
    return invocation
}

func expectArguments(_ invocation: Invocation, _ count: Int, _ synopsis: String) throws(CommandFailure) {
    guard invocation.arguments.count == count else {
        throw CommandFailure(message: "usage: routerctl \(synopsis)", exitCode: .usage)
    }
}

@MainActor
func main() -> Int32 {
    let (commandName, arguments) = splitCommand(Array(CommandLine.arguments.dropFirst()))
    guard let name = commandName, !["help", "--help", "-h"].contains(name) else {
        print(usage)
        return CommandLine.arguments.count > 1 ? ExitCode.success.rawValue : ExitCode.usage.rawValue
    }
    guard let command = commands.first(where: { $0.name == name }) else {
        printError("routerctl: unknown command '\(name)'; `routerctl help` lists the commands")
        return ExitCode.usage.rawValue
    }
    do throws(CommandFailure) {
        guard let invocation = try parse(arguments, for: command) else {
            print(help(for: command))
            return ExitCode.success.rawValue
        }
        try command.run(invocation)
        return ExitCode.success.rawValue
    } catch {
        printError("routerctl: \(error.message)")
        return error.exitCode.rawValue
    }
}

exit(main())
