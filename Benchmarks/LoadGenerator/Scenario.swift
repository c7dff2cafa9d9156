import Plugins

/// A strategy or encoder as a scenario names it, with the YAML lines of its options.
struct PluginChoice: Sendable {
    var name: String
    /// Option lines under the plugin's `name:`; `{work}` becomes the scenario's folder.
    var options: [String]

    /// Options some built-in plugins require. A plugin that needs options not listed here is
    /// refused by `routerctl check` and shows up as skipped, with the reason, in the table.
    static let requiredOptions: [String: [String]] = [
        "hmac": ["key: { file: \"{work}/jat.key\" }"],
        "sealed": ["key: { file: \"{work}/jat.key\" }"],
    ]

    init(_ name: String) {
        self.name = name
        options = Self.requiredOptions[name] ?? []
    }
}

/// How a scenario loads the router.
enum ScenarioLoad: Sendable {
    /// As fast as it goes: `inFlight` requests in flight per route.
    case closedLoop(inFlight: Int)
    /// A fixed rate, as a fraction of the baseline scenario's measured throughput.
    case fixedRate(fractionOfBaseline: Double)
    /// `count` requests held by the resources at once: the memory cost of requests in flight.
    case hold(count: Int)
}

/// One row of the benchmark table.
struct Scenario: Sendable {
    var name: String
    var routes = 1
    var resources = 2
    var senders = 100
    var strategy = PluginChoice("random")
    var encoder = PluginChoice("base64url")
    var load = ScenarioLoad.closedLoop(inFlight: Scenario.defaultInFlight)
    var requestTimeout = "30s"
    /// Extra YAML lines for each route (indented by the writer).
    var routeOptions: [String] = []

    static let defaultInFlight = 256

    /// The throughput that `.fixedRate` scenarios take a fraction of.
    static let baselineName = "1 route, 2 resources"

    /// Every scenario, in the order they run. Strategies and encoders come from the plugin
    /// registry, so a new built-in plugin gets its rows without touching this list. `window` is
    /// the number of requests in flight per route in the closed-loop scenarios.
    static func all(strategies: [String] = BuiltInPlugins.strategyNames,
                    encoders: [String] = BuiltInPlugins.encoderNames,
                    window: Int = defaultInFlight,
                    inFlightCount: Int = 100_000) -> [Scenario] {
        let closed = ScenarioLoad.closedLoop(inFlight: window)
        var list = [
            Scenario(name: baselineName, load: closed),
            Scenario(name: "1 route, 1,000 resources", resources: 1000, load: closed),
        ]
        for strategy in strategies {
            list.append(Scenario(name: "strategy \(strategy), 2 resources", strategy: PluginChoice(strategy),
                                 load: closed))
            list.append(Scenario(name: "strategy \(strategy), 1,000 resources", resources: 1000,
                                 strategy: PluginChoice(strategy), load: closed))
        }
        for encoder in encoders {
            list.append(Scenario(name: "encoder \(encoder)", encoder: PluginChoice(encoder), load: closed))
        }
        list.append(Scenario(
            name: "\(inFlightCount.formatted) requests in flight", resources: 2, senders: 1000,
            load: .hold(count: inFlightCount), requestTimeout: "10m",
            routeOptions: ["limits:", "  max_pending: \(inFlightCount * 2)"]))
        list.append(Scenario(name: "10 routes in one process", routes: 10,
                             load: .closedLoop(inFlight: max(1, window / 4))))
        list.append(Scenario(name: "fixed rate, half of the baseline", load: .fixedRate(fractionOfBaseline: 0.5)))
        return list
    }

    /// The router's YAML for this scenario, every route pointing at `port`.
    func yaml(port: UInt16, work: String, secret: String, controlSocket: String) -> String {
        var lines = [
            "# Written by routerbench for the scenario \"\(name)\".",
            "log_level: warning",
            "control:",
            "  socket: \"\(controlSocket)\"",
            "routes:",
        ]
        for route in 0..<routes {
            let plan = self.plan(route: route, secret: secret)
            lines += [
                "  - component: \(plan.component)",
                "    server:",
                "      host: 127.0.0.1",
                "      port: \(port)",
                "    secret: \"\(secret)\"",
                "    target: \(plan.target)",
                "    strategy:",
                "      name: \(strategy.name)",
            ]
            lines += strategy.options.map { "      " + $0.replacingOccurrences(of: "{work}", with: work) }
            lines += ["    encoder:", "      name: \(encoder.name)"]
            lines += encoder.options.map { "      " + $0.replacingOccurrences(of: "{work}", with: work) }
            lines += ["    request_timeout: \(requestTimeout)", "    keepalive: 60s"]
            lines += routeOptions.map { "    " + $0 }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// What route number `route` serves and whom it shows.
    func plan(route: Int, secret: String) -> RoutePlan {
        RoutePlan(
            component: routes == 1 ? "proxy.example.org" : "proxy\(route).example.org",
            target: "service@example.org", secret: secret, resources: resources, senders: senders)
    }
}

extension Int {
    /// With thousands separators: 100,000.
    var formatted: String {
        let digits = String(self)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return out
    }
}
