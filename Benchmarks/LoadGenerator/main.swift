import Foundation
import Plugins
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: routerbench [options]

    Plays the XMPP server's side of XEP-0114 on 127.0.0.1 against `routerctl run`, drives
    requests through it and answers them as the target's resources, checking every stanza.
    One line per scenario on stdout; a markdown table in docs/benchmarks.md.

    options:
      --router PATH        the routerctl to test (default: routerctl next to this program)
      --duration SECONDS   measured time per scenario (default 3)
      --warmup SECONDS     unmeasured load before each measurement (default 1)
      --only TEXT          run the scenarios whose name contains TEXT (repeatable)
      --list               print the scenario names and exit
      --requests N         stop each scenario after N round trips (bounded runs under a profiler)
      --wrap "COMMAND"     run the router under COMMAND, e.g. "valgrind --tool=callgrind"
      --rate N             the baseline rate for the fixed-rate scenario when the baseline is not run
      --window N           requests in flight per route in the closed-loop scenarios (default 256)
      --repeat N           run each scenario N times and keep the run the rest of the machine
                           disturbed least (least "other cores"; default 1)
      --in-flight N        requests held at once in the in-flight scenario (default 100000)
      --strategies A,B     strategies to run (default: every built-in one)
      --encoders A,B       encoders to run (default: every built-in one)
      --docs PATH          where to write the table (default docs/benchmarks.md); --no-docs: nowhere
    """

struct Options {
    var router: String?
    var duration = 3.0
    var warmup = 1.0
    var only: [String] = []
    var list = false
    var requests: Int?
    var wrapper: [String] = []
    var rate: Double?
    var window = Scenario.defaultInFlight
    var repeats = 1
    var inFlight = 100_000
    var strategies = BuiltInPlugins.strategyNames
    var encoders = BuiltInPlugins.encoderNames
    var docs: String? = "docs/benchmarks.md"

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let value = rest.popFirst() else { throw BenchError("\(flag) needs a value\n\(usage)") }
            return value
        }
        func number(_ flag: String) throws -> Double {
            let text = try value(flag)
            guard let number = Double(text), number > 0 else {
                throw BenchError("\(flag): '\(text)' is not a positive number")
            }
            return number
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--router": options.router = try value(argument)
            case "--duration": options.duration = try number(argument)
            case "--warmup": options.warmup = try number(argument)
            case "--only": options.only.append(try value(argument))
            case "--list": options.list = true
            case "--requests": options.requests = Int(try number(argument))
            case "--wrap": options.wrapper = try value(argument).split(separator: " ").map(String.init)
            case "--rate": options.rate = try number(argument)
            case "--window": options.window = Int(try number(argument))
            case "--repeat": options.repeats = Int(try number(argument))
            case "--in-flight": options.inFlight = Int(try number(argument))
            case "--strategies": options.strategies = try value(argument).split(separator: ",").map(String.init)
            case "--encoders": options.encoders = try value(argument).split(separator: ",").map(String.init)
            case "--docs": options.docs = try value(argument)
            case "--no-docs": options.docs = nil
            case "-h", "--help":
                print(usage)
                exit(0)
            default: throw BenchError("unknown option \(argument)\n\(usage)")
            }
        }
        return options
    }
}

/// The folder this program was started from, to find `routerctl` built beside it.
func programFolder() -> String {
    let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        ?? CommandLine.arguments[0]
    return (link as NSString).deletingLastPathComponent
}

/// What the machine looked like when the figures were taken.
func machineContext(_ options: Options) -> String {
    let cpuinfo = ProcessFigures.readSmallFile("/proc/cpuinfo") ?? ""
    let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
        .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
    let load = ProcessFigures.readSmallFile("/proc/loadavg")?
        .split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    let formatter = ISO8601DateFormatter()
    var text = "Router alone (`routerbench`), \(formatter.string(from: Date())): "
        + "\(ProcessInfo.processInfo.activeProcessorCount)"
        + " × \(model), load average before the run \(load). "
    if let requests = options.requests {
        text += "Bounded run: \(requests) round trips per scenario"
    } else {
        text += "Each scenario: \(Report.fixed(options.warmup, 1)) s warm-up, "
            + "then \(Report.fixed(options.duration, 1)) s measured"
        if options.repeats > 1 {
            text += ", the least disturbed of \(options.repeats) runs (fewest other cores)"
        }
    }
    if !options.wrapper.isEmpty { text += ", router run under `\(options.wrapper.joined(separator: " "))`" }
    return text + "."
}

func main() -> Int32 {
    let options: Options
    do {
        options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        FileHandle.standardError.write(Data("routerbench: \(error)\n".utf8))
        return 2
    }
    var scenarios = Scenario.all(strategies: options.strategies, encoders: options.encoders,
                                 window: options.window, inFlightCount: options.inFlight)
    if !options.only.isEmpty {
        scenarios = scenarios.filter { scenario in options.only.contains { scenario.name.contains($0) } }
    }
    if options.list {
        for scenario in scenarios { print(scenario.name) }
        return 0
    }
    let router = options.router ?? "\(programFolder())/routerctl"
    guard FileManager.default.isExecutableFile(atPath: router) else {
        FileHandle.standardError.write(Data("routerbench: no routerctl at \(router); build it or pass --router\n".utf8))
        return 2
    }
    signal(SIGPIPE, SIG_IGN)
    let context = machineContext(options)
    let workRoot = NSTemporaryDirectory() + "routerbench-\(getpid())"
    var runner = ScenarioRunner(routerBinary: router, workRoot: workRoot)
    runner.wrapper = options.wrapper
    runner.warmupSeconds = options.warmup
    runner.durationSeconds = options.duration
    runner.requestLimit = options.requests
    print(context)

    var results: [ScenarioResult] = []
    var baselineRate = options.rate
    for (index, scenario) in scenarios.enumerated() {
        var result = runner.run(scenario, index: index, baselineRate: baselineRate)
        // On a shared machine, keep the attempt that other work disturbed least.
        for attempt in 1..<options.repeats where result.skipped == nil {
            let again = runner.run(scenario, index: index + attempt * scenarios.count, baselineRate: baselineRate)
            if !again.passedChecks { result = again; break }
            if (again.otherCores ?? 0) < (result.otherCores ?? 0) { result = again }
        }
        if scenario.name == Scenario.baselineName, options.rate == nil, result.passedChecks {
            baselineRate = result.roundTripsPerSecond
        }
        print(Report.line(result))
        if let failure = result.failure { print("  \(failure.replacingOccurrences(of: "\n", with: "\n  "))") }
        for sample in result.traffic.errorSamples { print("  error: \(sample)") }
        results.append(result)
    }
    print("")
    print(Report.tableHeader)
    for result in results { print(Report.tableRow(result)) }
    if options.wrapper.isEmpty, options.requests == nil {
        print("")
        for row in Report.targets(results) { print(row) }
    }

    if let docs = options.docs {
        do {
            let markdown = Report.markdown(results, context: context,
                                           withTargets: options.wrapper.isEmpty && options.requests == nil)
            try Report.replaceSection(named: "routerbench", in: docs, with: markdown)
            print("\nwrote \(docs)")
        } catch {
            FileHandle.standardError.write(Data("routerbench: cannot write \(docs): \(error)\n".utf8))
        }
    }
    let passed = results.allSatisfy { $0.skipped != nil || $0.passedChecks }
    if passed {
        try? FileManager.default.removeItem(atPath: workRoot)
    } else {
        print("kept the routers' configurations and logs in \(workRoot)")
    }
    return passed ? 0 : 1
}

exit(main())
