import Foundation
import Plugins
#if canImport(Glibc)
import Glibc
#endif

/// The figures of one scenario.
struct ScenarioResult: Sendable {
    var scenario: Scenario
    /// Why the scenario did not run (the router refused its configuration).
    var skipped: String?
    /// Why it stopped before its figures were complete.
    var failure: String?
    var windowSeconds = 0.0
    var roundTrips = 0
    var routerCPUSeconds = 0.0
    var benchCPUSeconds = 0.0
    /// CPU seconds the rest of the machine used in the window: other people's work competing
    /// with the router and the bench for the same cores.
    var otherCPUSeconds: Double?
    /// The rate asked for, in `.fixedRate` scenarios.
    var offeredRate: Double?
    var latencies = Percentiles()
    var idleRSS = 0
    var loadRSS = 0
    /// RSS growth per request in flight, in `.hold` scenarios.
    var bytesPerPending: Double?
    var traffic = TrafficResult()

    var roundTripsPerSecond: Double { windowSeconds > 0 ? Double(roundTrips) / windowSeconds : 0 }
    var routerMicrosecondsPerRoundTrip: Double { roundTrips > 0 ? routerCPUSeconds * 1e6 / Double(roundTrips) : 0 }
    var benchMicrosecondsPerRoundTrip: Double { roundTrips > 0 ? benchCPUSeconds * 1e6 / Double(roundTrips) : 0 }
    var routerCores: Double { windowSeconds > 0 ? routerCPUSeconds / windowSeconds : 0 }
    var otherCores: Double? { otherCPUSeconds.map { windowSeconds > 0 ? max(0, $0) / windowSeconds : 0 } }
    var passedChecks: Bool { skipped == nil && failure == nil && traffic.errorCount == 0 }
}

/// p50, p99 and p99.9 of the hop latency, in microseconds.
struct Percentiles: Sendable {
    var p50 = 0.0
    var p99 = 0.0
    var p999 = 0.0
    var max = 0.0
    var samples = 0

    init() {}

    init(nanoseconds samples: [UInt32]) {
        guard !samples.isEmpty else { return }
        let sorted = samples.sorted()
        func at(_ fraction: Double) -> Double {
            Double(sorted[min(sorted.count - 1, Int(fraction * Double(sorted.count - 1)))]) / 1000
        }
        p50 = at(0.5)
        p99 = at(0.99)
        p999 = at(0.999)
        max = Double(sorted[sorted.count - 1]) / 1000
        self.samples = sorted.count
    }
}

/// Runs scenarios against a router binary, one router process per scenario.
struct ScenarioRunner {
    var routerBinary: String
    /// A command put in front of the router, such as `valgrind --tool=callgrind`.
    var wrapper: [String] = []
    var warmupSeconds = 1.0
    var durationSeconds = 3.0
    /// When set, each scenario stops after this many round trips instead of after a duration.
    var requestLimit: Int?
    var workRoot: String
    let secret = "s3cret"

    private var startupTimeout: Double { wrapper.isEmpty ? 20 : 180 }

    func run(_ scenario: Scenario, index: Int, baselineRate: Double?) -> ScenarioResult {
        var result = ScenarioResult(scenario: scenario)
        let work = "\(workRoot)/\(index)"
        do {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try writeKeyFile(at: "\(work)/jat.key")
            let listener = try ListeningSocket()
            let config = "\(work)/router.yaml"
            let yaml = scenario.yaml(port: listener.port, work: work, secret: secret,
                                     controlSocket: "\(work)/control.sock")
            try yaml.write(toFile: config, atomically: true, encoding: .utf8)
            if let refusal = routerRefusal(binary: routerBinary, config: config) {
                result.skipped = refusal.split(separator: "\n").first.map(String.init) ?? refusal
                return result
            }
            let encoder = benchEncoder(yaml: yaml, file: config)
            let router = try RouterProcess(binary: routerBinary, config: config, logPath: "\(work)/router.log",
                                           wrapper: wrapper)
            defer {
                let status = router.stop()
                if status != 0, result.failure == nil {
                    result.failure = "the router exited with status \(status); see \(router.logPath)"
                }
            }
            do {
                try measure(scenario, router: router, listener: listener, encoder: encoder,
                            baselineRate: baselineRate, into: &result)
            } catch {
                result.failure = "\(error)\n\(router.logTail())"
            }
        } catch {
            result.failure = "\(error)"
        }
        return result
    }

    private func measure(
        _ scenario: Scenario, router: RouterProcess, listener: ListeningSocket, encoder: (any JATEncoder)?,
        baselineRate: Double?, into result: inout ScenarioResult
    ) throws {
        let pid = router.pid
        var drivers: [TrafficDriver] = []
        let plans = (0..<scenario.routes).map { scenario.plan(route: $0, secret: secret) }
        let maxInFlight: Int
        switch scenario.load {
        case .closedLoop(let inFlight): maxInFlight = inFlight
        case .fixedRate: maxInFlight = 1 << 16
        case .hold(let count): maxInFlight = count
        }
        for _ in 0..<scenario.routes {
            let connection = StreamConnection(descriptor: try listener.accept(timeout: startupTimeout))
            let component = try ServerSide.acceptStream(on: connection, secret: secret, timeout: startupTimeout)
            guard let plan = plans.first(where: { $0.component == component }) else {
                throw BenchError("the router connected for an unknown component \(component)")
            }
            try ServerSide.announceResources(on: connection, plan: plan, timeout: startupTimeout)
            drivers.append(TrafficDriver(connection: connection, plan: plan, maxInFlight: maxInFlight,
                                         encoder: encoder))
        }
        // One request per route: the router has taken every presence once it answers.
        for driver in drivers {
            let now = monotonicNanoseconds()
            let window = MeasureWindow(issueEnd: now, start: now, end: now, drainSeconds: startupTimeout)
            let ping = try driver.run(.closedLoop(inFlight: 1, maxRequests: 1), window: window)
            guard ping.errorCount == 0, ping.completed == 1 else {
                throw BenchError("the first request failed: \(ping.errorSamples.joined(separator: "; "))")
            }
        }
        sleep(seconds: 0.5)
        result.idleRSS = ProcessFigures.residentBytes(pid: pid) ?? 0

        switch scenario.load {
        case .closedLoop(let inFlight):
            try runTimed(drivers, mode: .closedLoop(inFlight: inFlight, maxRequests: requestLimit.map {
                max(1, $0 / drivers.count)
            }), pid: pid, into: &result)
        case .fixedRate(let fraction):
            guard let baselineRate, baselineRate > 0 else {
                result.skipped = "needs the throughput of \"\(Scenario.baselineName)\" (or --rate)"
                return
            }
            let rate = baselineRate * fraction
            result.offeredRate = rate
            try runTimed(drivers, mode: .fixedRate(perSecond: rate / Double(drivers.count)), pid: pid, into: &result)
        case .hold(let count):
            try runHold(drivers[0], count: count, pid: pid, into: &result)
        }
    }

    /// Runs every driver on its own thread; figures count in a window after the warm-up.
    private func runTimed(
        _ drivers: [TrafficDriver], mode: TrafficMode, pid: Int32, into result: inout ScenarioResult
    ) throws {
        let now = monotonicNanoseconds()
        var window = MeasureWindow(
            issueEnd: 0, start: now + UInt64(warmupSeconds * 1e9), end: 0,
            drainSeconds: wrapper.isEmpty ? 30 : 300)
        if requestLimit != nil {
            // A bounded run (under a profiler): everything counts, however long it takes.
            window.start = now
            window.end = now + 86_400_000_000_000
        } else {
            window.end = window.start + UInt64(durationSeconds * 1e9)
        }
        window.issueEnd = window.end

        let threads = drivers.map { DriverThread(driver: $0, mode: mode, window: window) }
        if requestLimit == nil { sleep(untilNanoseconds: window.start) }
        let cpuStart = ProcessFigures.cpuSeconds(pid: pid) ?? 0
        let benchStart = ownCPUSeconds()
        let machineStart = ProcessFigures.machineBusySeconds()
        var peakRSS = 0
        if requestLimit == nil {
            while monotonicNanoseconds() < window.end {
                peakRSS = max(peakRSS, ProcessFigures.residentBytes(pid: pid) ?? 0)
                sleep(untilNanoseconds: min(window.end, monotonicNanoseconds() + 100_000_000))
            }
        } else {
            for thread in threads { _ = try? thread.wait() }
        }
        let cpuEnd = ProcessFigures.cpuSeconds(pid: pid) ?? 0
        let benchEnd = ownCPUSeconds()
        let machineEnd = ProcessFigures.machineBusySeconds()
        let windowEnd = min(window.end, monotonicNanoseconds())
        peakRSS = max(peakRSS, ProcessFigures.residentBytes(pid: pid) ?? 0)

        var traffic = TrafficResult()
        for thread in threads { traffic.merge(try thread.wait()) }
        result.traffic = traffic
        result.windowSeconds = Double(windowEnd - window.start) / 1e9
        result.roundTrips = traffic.completedInWindow
        result.routerCPUSeconds = cpuEnd - cpuStart
        result.benchCPUSeconds = benchEnd - benchStart
        if let machineStart, let machineEnd {
            result.otherCPUSeconds = machineEnd - machineStart - result.routerCPUSeconds - result.benchCPUSeconds
        }
        result.latencies = Percentiles(nanoseconds: traffic.latencies)
        result.loadRSS = peakRSS
    }

    /// Sends `count` requests, lets the resources hold them all, reads the RSS, then answers.
    private func runHold(_ driver: TrafficDriver, count: Int, pid: Int32, into result: inout ScenarioResult) throws {
        let now = monotonicNanoseconds()
        let window = MeasureWindow(issueEnd: now, start: now, end: now + 86_400_000_000_000,
                                   drainSeconds: wrapper.isEmpty ? 120 : 1200)
        let cpuStart = ProcessFigures.cpuSeconds(pid: pid) ?? 0
        var heldRSS = 0
        let traffic = try driver.run(.hold(count: count), window: window) {
            // Every request is in flight and the router is idle: its memory holds them all.
            sleep(seconds: 0.5)
            heldRSS = ProcessFigures.residentBytes(pid: pid) ?? 0
        }
        let elapsed = Double(monotonicNanoseconds() - now) / 1e9
        result.traffic = traffic
        result.windowSeconds = elapsed
        result.roundTrips = traffic.completed
        result.routerCPUSeconds = (ProcessFigures.cpuSeconds(pid: pid) ?? 0) - cpuStart
        result.loadRSS = heldRSS
        result.bytesPerPending = Double(heldRSS - result.idleRSS) / Double(count)
    }

    /// The route's encoder as the router builds it from the same YAML, to check JATs exactly;
    /// nil when the bench cannot build it.
    private func benchEncoder(yaml: String, file: String) -> (any JATEncoder)? {
        let catalog = BuiltInPlugins()
        guard let config = try? RouterConfig.parse(yaml, file: file, catalog: catalog),
              let route = config.routes.first
        else { return nil }
        return try? catalog.makeEncoder(route.encoder, for: route)
    }

    /// A random key for the encoders that need one, readable by its owner only.
    private func writeKeyFile(at path: String) throws {
        let key = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        _ = FileManager.default.createFile(atPath: path, contents: Data(key.utf8),
                                           attributes: [.posixPermissions: 0o600])
    }
}

/// A driver running on a thread of its own.
final class DriverThread: @unchecked Sendable {
    // @unchecked Sendable: `outcome` is written by the thread before it signals `finished`, and
    // read only after `wait()` has seen that signal.
    private let finished = DispatchSemaphore(value: 0)
    private var outcome: Result<TrafficResult, Error>?
    private var waited = false

    init(driver: TrafficDriver, mode: TrafficMode, window: MeasureWindow) {
        let thread = Thread { [self] in
            outcome = Result { try driver.run(mode, window: window) }
            finished.signal()
        }
        thread.name = "driver \(driver.plan.component)"
        thread.start()
    }

    /// Waits for the thread to finish and returns what its driver saw.
    @discardableResult
    func wait() throws -> TrafficResult {
        if !waited {
            finished.wait()
            waited = true
        }
        guard let outcome else { throw BenchError("driver thread gave no result") }
        return try outcome.get()
    }
}
