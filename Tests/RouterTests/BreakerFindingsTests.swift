@testable import Plugins
@testable import Router
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Bugs the breaker found, each with the smallest input that showed it. The end-to-end half
// (the handshake timeout, the control and metrics listeners) is in Tests/e2e/test_breaker_findings.py.

/// A route core on a fixed clock, fed stanzas written as XML.
private struct BreakerCore {
    var core: RouteCore
    let now = Instant(nanoseconds: 1_000_000_000_000)

    init(strategy: String) throws {
        core = try makeRouteCore(yaml: routeYAML(strategy: strategy))
    }

    /// Hands `xml` (stanzas) to the core; returns the stanzas it sends.
    mutating func handle(_ xml: String) throws -> [XMLElement] {
        var actions: [RouteAction] = []
        for stanza in try componentStanzas(xml) { core.handle(stanza, now: now, into: &actions) }
        return stanzas(in: actions)
    }

    /// Makes resource `name` of the target available, with `<priority>` when `priority` is given.
    mutating func online(_ name: String, priority: String? = nil) throws {
        let child = priority.map { "<priority>\($0)</priority>" } ?? ""
        _ = try handle("<presence from='service@example.org/\(name)' to='proxy.example.org'>\(child)</presence>")
    }

    mutating func offline(_ name: String) throws {
        _ = try handle("<presence type='unavailable' from='service@example.org/\(name)' to='proxy.example.org'/>")
    }

    /// Sends a get; returns the resource it was forwarded to, or nil when it was not forwarded.
    mutating func request(_ id: String) throws -> String? {
        let out = try handle("""
            <iq type='get' id='\(id)' from='user@example.org/phone' to='proxy.example.org'>\
            <query xmlns='urn:example:echo'/></iq>
            """)
        guard out.count == 1, let to = out[0][attribute: "to"], to.hasPrefix("service@example.org/") else {
            return nil
        }
        return String(to.dropFirst("service@example.org/".count))
    }

    mutating func answer(_ id: String, from resource: String) throws {
        let jat = Base64URL.encode(Array("user@example.org/phone".utf8))
        _ = try handle("""
            <iq type='result' id='\(id)' from='service@example.org/\(resource)' to='proxy.example.org/\(jat)'/>
            """)
    }
}

@Suite("Found by the breaker: presence priorities beyond -128...127")
struct PriorityBoundsFindingsTests {
    /// With `weight_from_priority`, a resource's weight is its priority; two resources claiming
    /// `Int.max` overflowed the sum of weights and trapped the route at the next pick.
    @Test("two resources with priority Int.max take a request instead of crashing the route",
          arguments: BuiltInPlugins.strategyNames)
    func hugePriorityDoesNotTrap(_ strategy: String) async {
        await #expect(processExitsWith: .success) { [strategy] in
            var route = try BreakerCore(strategy: "{ name: \(strategy), weight_from_priority: true }")
            // 1. Two resources announce the largest priority an Int holds.
            try route.online("a", priority: "9223372036854775807")
            try route.online("b", priority: "9223372036854775807")
            // 2. A request is forwarded to one of them.
            guard let resource = try route.request("q1"), ["a", "b"].contains(resource) else { exit(2) }
            guard route.core.pool[resource]?.priority == 127 else { exit(3) }
        }
    }

    /// RFC 6121 §4.7.2.3: a priority is an integer from -128 to 127.
    @Test("a priority outside -128...127 counts as the bound it passes", arguments: [
        ("500", 127), ("9223372036854775807", 127), ("-500", -128), ("127", 127), ("-128", -128), ("5", 5),
    ])
    func priorityIsClamped(_ written: String, _ expected: Int) throws {
        var route = try BreakerCore(strategy: "{ name: random, weight_from_priority: true }")

        try route.online("a", priority: written)

        #expect(route.core.pool["a"]?.priority == expected)
    }
}

@Suite("Found by the breaker: counters of offline resources")
struct OfflineCountersFindingsTests {
    /// Clients that come back under a new random resource each time left a counter behind for
    /// every name ever seen: the route's memory grew without bound.
    @Test("5000 resources that each served once and left keep a bounded number of counters")
    func offlineCountersAreBounded() throws {
        var route = try BreakerCore(strategy: "round-robin")

        // 1. The first resource serves once, is set draining by hand, and leaves.
        try route.online("kept")
        #expect(try route.request("q-kept") == "kept")
        try route.answer("q-kept", from: "kept")
        try route.core.setState(.draining, of: "kept")
        try route.offline("kept")
        // 2. 5000 more come online one at a time, each serves one request, and leaves.
        for n in 0..<5000 {
            try route.online("r\(n)")
            let resource = try route.request("q\(n)")
            try #require(resource == "r\(n)", "request \(n) went to \(resource ?? "nobody")")
            try route.answer("q\(n)", from: "r\(n)")
            try route.offline("r\(n)")
        }

        // 3. Counters stay bounded (the router keeps those of about 1000 offline resources, with
        //    their health entries); the resource with a state set by hand is kept.
        let kept = 2_000 + route.core.pool.count
        #expect(route.core.resourceStats.count <= kept, "\(route.core.resourceStats.count) counters kept")
        #expect(route.core.health.count <= kept, "\(route.core.health.count) health entries kept")
        #expect(route.core.overrides["kept"]?.state == .draining)
        #expect(route.core.resourceStats["kept"]?.served == 1)
        #expect(route.core.resourceStats["r4999"]?.served == 1)
    }
}


/// The place of an error, as `file:line key`.
private func place(_ error: ConfigError?) -> String? {
    error.map { "\($0.file):\($0.line) \($0.key)" }
}

@Suite("Found by the breaker: configuration the router accepted and should have refused")
struct ConfigBreakerFindingsTests {
    /// `sockaddr_un.sun_path` holds 108 bytes with the NUL; a longer path failed only at bind.
    @Test("a control socket path longer than 107 bytes is refused at its key; 107 bytes is accepted")
    func longControlSocketPath() throws {
        let longest = "/tmp/" + String(repeating: "s", count: 102)
        let tooLong = longest + "s"

        let error = failure("control:\n  socket: \(tooLong)\n" + validYAML)
        #expect(place(error) == "/etc/router/router.yaml:2 control.socket")
        #expect(error?.message.contains("107") == true)
        #expect(try parseConfig("control:\n  socket: \(longest)\n" + validYAML).controlSocket == longest)
    }

    /// An unquoted `null` or `~` is YAML's null; it was taken as the four-letter secret "null".
    @Test("a null secret is refused at its key", arguments: ["null", "~", "Null", "NULL"])
    func nullSecret(_ written: String) {
        let error = failure(yaml(replacing: 7, with: "    secret: \(written)"))

        #expect(place(error) == "/etc/router/router.yaml:7 routes[0].secret")
    }

    @Test("a quoted \"null\" is a secret like any other")
    func quotedNullSecret() throws {
        let double = try parseConfig(yaml(replacing: 7, with: "    secret: \"null\""))
        let single = try parseConfig(yaml(replacing: 7, with: "    secret: '~'"))

        #expect(double.routes.first?.secret.value == "null")
        #expect(single.routes.first?.secret.value == "~")
    }

    /// `Double("0x1p3")` is 8: hexadecimal floats and exponents passed for durations.
    @Test("a duration that is not a decimal number is refused at its key", arguments: ["0x1p3", "1e1s", "0x10ms"])
    func nonDecimalDuration(_ written: String) {
        let error = failure(yaml(replacing: 11, with: "    request_timeout: \(written)"))

        #expect(place(error) == "/etc/router/router.yaml:11 routes[0].request_timeout")
    }

    @Test("decimal durations are still read", arguments: [("8", 8_000), ("1.5s", 1_500), ("250ms", 250)])
    func decimalDuration(_ written: String, _ milliseconds: Int) throws {
        let config = try parseConfig(yaml(replacing: 11, with: "    request_timeout: \(written)"))

        #expect(config.routes.first?.requestTimeout == .milliseconds(milliseconds))
    }

    /// An empty allow list refused every sender: a route that answers nobody.
    @Test("an empty allow list is refused at its key")
    func emptyAllowList() {
        let error = failure(validYAML + "\n    access: {allow: []}")

        #expect(place(error) == "/etc/router/router.yaml:12 routes[0].access.allow")
    }

    /// Reading a directory failed as "it is not UTF-8 text".
    @Test("loading a directory says it is a directory")
    func directoryPath() throws {
        let folder = "/tmp/router-breaker-tests-\(getpid())"
        mkdir(folder, 0o700)
        defer { rmdir(folder) }

        do throws(ConfigError) {
            _ = try RouterConfig.load(path: folder, catalog: BuiltInPlugins())
            Issue.record("a directory loaded as a configuration")
        } catch {
            #expect(error.file == folder)
            #expect(error.message.contains("directory"), "\(error)")
        }
    }
}
