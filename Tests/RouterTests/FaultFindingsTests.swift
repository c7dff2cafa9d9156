@testable import Plugins
@testable import Router
import Testing

// Bugs the fault tests (Tests/e2e/test_faults.py) and the fuzzers (Fuzz/) found, each with the
// smallest input that showed it.

/// A route core on a clock the test moves, fed stanzas written as XML.
private struct FindingsCore {
    var core: RouteCore
    var now = Instant(nanoseconds: 1_000_000_000_000)

    init(strategy: String, extra: String) throws {
        core = try makeRouteCore(yaml: routeYAML(strategy: strategy, extra: extra))
    }

    mutating func handle(_ xml: String) throws -> [XMLElement] {
        var actions: [RouteAction] = []
        for stanza in try componentStanzas(xml) { core.handle(stanza, now: now, into: &actions) }
        return stanzas(in: actions)
    }

    mutating func online(_ name: String) throws {
        _ = try handle("<presence from='service@example.org/\(name)' to='proxy.example.org'/>")
    }

    mutating func offline(_ name: String) throws -> [XMLElement] {
        try handle("<presence type='unavailable' from='service@example.org/\(name)' to='proxy.example.org'/>")
    }

    /// Sends a get; returns the resource it was forwarded to.
    mutating func request(_ id: String) throws -> String {
        let out = try handle("""
            <iq type='get' id='\(id)' from='user@example.org/phone' to='proxy.example.org'>\
            <query xmlns='urn:example:echo'/></iq>
            """)
        let forwarded = try #require(out.first)
        return try #require(forwarded[attribute: "to"]?.split(separator: "/").last.map(String.init))
    }

    mutating func answer(_ id: String, from resource: String) throws {
        let jat = Base64URL.encode(Array("user@example.org/phone".utf8))
        _ = try handle("<iq type='result' id='\(id)' from='service@example.org/\(resource)' "
                       + "to='proxy.example.org/\(jat)'/>")
    }

    mutating func expire(after duration: Duration) -> [XMLElement] {
        now = now + duration
        var actions: [RouteAction] = []
        core.expire(now: now, into: &actions)
        return stanzas(in: actions)
    }
}

@Suite("Found by the fault tests: retries and the strategy's cache of the pool")
struct RetryPoolCacheFindingsTests {
    /// `retry` asks the strategy to pick from a copy of the pool with the timed-out resource set
    /// draining. The copy's generation is the pool's plus one, so the strategy caches what it
    /// derived from the copy under a generation number the real pool reaches at its next change:
    /// from then on the strategy works from a stale list of positions.
    @Test("a resource that comes online after a retry on a try timeout gets requests")
    func resourceJoiningAfterRetryIsPicked() throws {
        var route = try FindingsCore(strategy: "round-robin", extra: "retry:\n  namespaces: [\"*\"]\n  try_timeout: 1s")
        for name in ["a", "b", "c"] { try route.online(name) }

        // 1. A request times out on its first try and is retried on another resource.
        let first = try route.request("slow")
        let retried = route.expire(after: .milliseconds(1100))
        #expect(retried.count == 1 && retried.first?[attribute: "to"] != "service@example.org/\(first)")
        // 2. A fourth resource comes online; every ready resource must now take its turn.
        try route.online("d")
        var picked: Set<String> = []
        for n in 0..<8 {
            let resource = try route.request("r\(n)")
            picked.insert(resource)
            try route.answer("r\(n)", from: resource)
        }
        #expect(picked == ["a", "b", "c", "d"], "round-robin over four ready resources picked only \(picked)")
    }

    @Test("a resource that leaves after a retry on a try timeout does not crash the next pick")
    func resourceLeavingAfterRetryDoesNotCrash() async {
        // The stale positions point past the end of the shrunken pool: an index out of range
        // traps, so the scenario runs in a child process.
        await #expect(processExitsWith: .success) {
            var route = try FindingsCore(strategy: "round-robin",
                                         extra: "retry:\n  namespaces: [\"*\"]\n  try_timeout: 1s")
            for name in ["a", "b", "c"] { try route.online(name) }
            // 1. The first request goes to a resource other than the last one, times out, is retried.
            var id = 0
            var first = try route.request("q\(id)")
            while first == "c" {
                try route.answer("q\(id)", from: first)
                id += 1
                first = try route.request("q\(id)")
            }
            _ = route.expire(after: .milliseconds(1100))
            // 2. Another resource leaves; the pool shrinks to two.
            let leaving = ["a", "b", "c"].first { $0 != first && route.core.pool[$0]?.pending == 0 } ?? "a"
            _ = try route.offline(leaving)
            // 3. The next picks must come from the two that are left.
            for n in 0..<4 {
                let resource = try route.request("after\(n)")
                guard route.core.pool[resource] != nil else { fatalError("picked \(resource), not in the pool") }
                try route.answer("after\(n)", from: resource)
            }
        }
    }
}

@Suite("Found by fuzzing: JID preparation")
struct JIDFuzzFindingsTests {
    /// libidn takes a C string: a part with U+0000 after a non-ASCII character is cut at the NUL
    /// (the ASCII fast path refuses a NUL only if it comes before any non-ASCII byte).
    /// (Given as UTF-8 bytes, so that the test's name prints without a NUL in it.)
    @Test("U+0000 in any part is refused, wherever it stands", arguments: [
        Array("a@b/\u{E9}\u{0}x".utf8),
        Array("\u{E9}\u{0}admin@example.org".utf8),
        Array("user@\u{E9}xample.org\u{0}.evil".utf8),
    ])
    func nulIsRefused(_ bytes: [UInt8]) {
        let input = String(decoding: bytes, as: UTF8.self)
        #expect(throws: JIDError.self, "accepted as '\((try? JID(input))?.description ?? "")'") { try JID(input) }
    }

    /// The trailing dot of a domainpart is dropped once, before preparation: `b..` becomes `b.`,
    /// which parses again as `b`; a character Nameprep maps to nothing can also leave a trailing
    /// dot behind. A JAT decoder refuses a JID that does not print back as it came, so a reply to
    /// such a sender is dropped.
    /// (`[` at the start of a domainpart exempts it from the empty-label rule, so `a@[a..` kept
    /// the bug after the first fix.)
    @Test("preparing a prepared JID changes nothing", arguments: [
        "a@b..", "a@b../c", "a@0borg.\u{200B}", "user.org.../r", "a@[a..", "[x]../r",
    ])
    func preparationIsStable(_ input: String) throws {
        guard let jid = try? JID(input) else { return }   // refusing the address is a fix too
        let again = try JID(jid.description)
        #expect(again.description == jid.description, "'\(input)' prepared as '\(jid)', then as '\(again)'")
    }

    /// RFC 7622 §3.2: a domainpart that starts with `[` is an IP literal, `[` IPv6address `]`.
    @Test("a domainpart that opens a bracket is an IPv6 literal, or is refused", arguments: [
        "a@[", "a@[.a", "a@[x]", "a@[::1", "a@[a..",
    ])
    func bracketIsAnIPv6Literal(_ input: String) {
        #expect(throws: JIDError.self, "accepted as '\((try? JID(input))?.description ?? "")'") { try JID(input) }
    }

    @Test("an IPv6 literal is accepted", arguments: ["a@[::1]", "[2001:db8::1]/r"])
    func ipv6LiteralIsAccepted(_ input: String) throws {
        _ = try JID(input)
    }

    @Test("a base64url JAT for a sender whose domain ends in two dots decodes to the sender")
    func jatRoundTripWithTrailingDots() throws {
        guard let sender = try? JID("a@b../c") else { return }
        let encoder = Base64URLEncoder()
        let jat = try encoder.encode(sender)
        #expect(try encoder.decode(jat) == sender)
    }
}

@Suite("Found while fuzzing the configuration loader: YAML aliases and nesting")
struct YAMLFindingsTests {
    /// libyaml's loader lets an alias refer to the node that anchors it; `YAMLDocument.convert`
    /// then recurses until the stack overflows, long before its node budget (100 000) stops it.
    /// `routerctl check`, `run` and a reload (in the running router) all parse the file this way.
    @Test("a recursive alias is refused, not followed until the stack overflows")
    func recursiveAlias() async {
        await #expect(processExitsWith: .success) {
            do {
                _ = try RouterConfig.parse("routes: &a [*a]\n", file: "alias.yaml", catalog: BuiltInPlugins())
                fatalError("a recursive alias was accepted")
            } catch {
                // Refused with a ConfigError: what the router must do.
            }
        }
    }

    @Test("a deeply nested document is refused or read, without a stack overflow")
    func deepNesting() async {
        await #expect(processExitsWith: .success) {
            let text = "routes: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
            _ = try? RouterConfig.parse(text, file: "deep.yaml", catalog: BuiltInPlugins())
        }
    }
}
