@testable import Plugins
@testable import Router
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A route's core fed with stanzas written as XML, on a clock the test moves.
private struct CoreHarness {
    var core: RouteCore
    var now = Instant(nanoseconds: 1_000_000_000_000)

    /// One route to service@example.org, with `strategy`, `encoder` and any `extra` route keys.
    static func yaml(
        encoder: String = "base64url", strategy: String = "round-robin", extra: String = ""
    ) -> String {
        routeYAML(strategy: strategy, encoder: encoder, extra: extra)
    }

    init(yaml: String = CoreHarness.yaml()) throws {
        core = try makeRouteCore(yaml: yaml)
    }

    /// Hands `xml` (one stanza) to the core; returns what it asks the connection to do.
    mutating func handle(_ xml: String) throws -> [RouteAction] {
        var actions: [RouteAction] = []
        core.handle(try coreStanza(xml), now: now, into: &actions)
        return actions
    }

    /// Hands `xml` to the core and returns the stanzas it sends; fails on any other action.
    mutating func sent(_ xml: String) throws -> [XMLElement] {
        try stanzasSent(handle(xml))
    }

    /// Makes the target's resources `names` available.
    mutating func online(_ names: String...) throws {
        for name in names {
            #expect(try handle("<presence from='service@example.org/\(name)' to='proxy.example.org'/>") == [])
        }
    }

    /// Sends an IQ get from `user` with `id`; returns the one stanza forwarded (or the error reply).
    mutating func request(
        _ id: String, from user: String = "user@example.org/phone", to address: String = "proxy.example.org"
    ) throws -> XMLElement {
        let sent = try sent("""
            <iq type='get' id='\(id)' from='\(user)' to='\(address)'><query xmlns='urn:example:echo'>\(id)</query></iq>
            """)
        try #require(sent.count == 1)
        return sent[0]
    }

    /// The resource's result for a forwarded request, sent from `resource` (default: the one it went to).
    mutating func reply(to forwarded: XMLElement, from resource: String? = nil, type: String = "result") throws
        -> [RouteAction]
    {
        let from = resource.map { "service@example.org/\($0)" } ?? (forwarded[attribute: "to"] ?? "")
        return try handle("""
            <iq type='\(type)' id='\(forwarded[attribute: "id"] ?? "")' from='\(from)' \
            to='\(forwarded[attribute: "from"] ?? "")'><answer xmlns='urn:example:echo'/></iq>
            """)
    }

    mutating func expire(after duration: Duration) -> [RouteAction] {
        now = now + duration
        var actions: [RouteAction] = []
        core.expire(now: now, into: &actions)
        return actions
    }
}

/// One stanza parsed from `xml` as it would arrive on a component stream.
private func coreStanza(_ xml: String) throws -> XMLElement {
    if let stanza = try componentStanzas(xml).first { return stanza }
    Issue.record("no stanza in \(xml)")
    return XMLElement(name: "none")
}

/// The stanzas among `actions`; records an issue for any other action.
private func stanzasSent(_ actions: [RouteAction]) -> [XMLElement] {
    actions.compactMap { action in
        guard case .send(let stanza) = action else {
            Issue.record("expected only stanzas, found \(action)")
            return nil
        }
        return stanza
    }
}

/// The condition and type of an error stanza, as `condition/type`.
private func errorOf(_ stanza: XMLElement) -> String? {
    guard stanza[attribute: "type"] == "error", let error = stanza.child("error") else { return nil }
    let condition = error.elements.first { $0.namespace == stanzaErrorNamespace }?.name ?? "?"
    return "\(condition)/\(error[attribute: "type"] ?? "?")"
}

/// The addresses and id of `stanza`, as `from -> to #id`.
private func route(of stanza: XMLElement) -> String {
    "\(stanza[attribute: "from"] ?? "-") -> \(stanza[attribute: "to"] ?? "-") #\(stanza[attribute: "id"] ?? "-")"
}

private let userJAT = Base64URL.encode(Array("user@example.org/phone".utf8))

@Suite("Route core: proxying requests and replies")
struct RouteCoreProxyTests {
    @Test("a request goes to a resource from component/JAT, and the reply returns from the address the user used")
    func roundTrip() throws {
        // 1. The target's resources a and b come online.
        var harness = try CoreHarness()
        try harness.online("a", "b")
        #expect(harness.core.pool.count == 2)

        // 2. A user asks; the stanza goes to one resource, id and payload untouched.
        let request = try coreStanza("""
            <iq type='get' id='q1' from='user@example.org/phone' to='proxy.example.org'>\
            <query xmlns='urn:example:echo' xmlns:x='urn:example:x' x:flag='1' xml:lang='fr'>\
            <x:item>caf\u{E9} &amp; &lt;tea&gt;</x:item></query></iq>
            """)
        var actions: [RouteAction] = []
        harness.core.handle(request, now: harness.now, into: &actions)
        let forwarded = try #require(stanzasSent(actions).first)
        #expect(actions.count == 1)
        #expect(forwarded[attribute: "from"] == "proxy.example.org/\(userJAT)")
        let resource = try #require(forwarded[attribute: "to"]?.split(separator: "/").last.map(String.init))
        #expect(["a", "b"].contains(resource))
        #expect(forwarded[attribute: "to"] == "service@example.org/\(resource)")
        #expect(forwarded[attribute: "id"] == "q1")
        #expect(forwarded[attribute: "type"] == "get")
        #expect(forwarded.children == request.children)
        #expect(harness.core.pending.count == 1)
        #expect(harness.core.pool[resource]?.pending == 1)

        // 3. The resource answers; the answer goes to the user from proxy.example.org.
        let reply = try coreStanza("""
            <iq type='result' id='q1' from='service@example.org/\(resource)' to='proxy.example.org/\(userJAT)'>\
            <query xmlns='urn:example:echo'><item>ok</item></query></iq>
            """)
        actions = []
        harness.core.handle(reply, now: harness.now + .milliseconds(3), into: &actions)
        let answer = try #require(stanzasSent(actions).first)
        #expect(actions.count == 1)
        #expect(route(of: answer) == "proxy.example.org -> user@example.org/phone #q1")
        #expect(answer[attribute: "type"] == "result")
        #expect(answer.children == reply.children)

        // 4. Nothing is left in flight; the counters show one round trip.
        #expect(harness.core.pending.count == 0)
        #expect(harness.core.pool[resource]?.pending == 0)
        #expect(harness.core.pool[resource]?.served == 1)
        #expect(harness.core.pool[resource]?.latency == .milliseconds(3))
        #expect(harness.core.stats.forwarded == 1 && harness.core.stats.answered == 1)
    }

    @Test("the reply comes from the exact address the user wrote, whatever JID of the domain it was")
    func replyFromAddressed() throws {
        var harness = try CoreHarness()
        try harness.online("a")

        for address in ["echo@proxy.example.org", "PROXY.example.org", "Echo@proxy.example.org"] {
            let forwarded = try harness.request("q-\(address)", to: address)
            let answer = try #require(stanzasSent(try harness.reply(to: forwarded)).first)
            #expect(answer[attribute: "from"] == address)
            #expect(answer[attribute: "to"] == "user@example.org/phone")
        }
    }

    @Test("an error reply from the resource goes back as it is, and is not answered")
    func errorReplyPasses() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        let forwarded = try harness.request("q1")

        let answer = try #require(stanzasSent(try harness.reply(to: forwarded, type: "error")).first)

        #expect(route(of: answer) == "proxy.example.org -> user@example.org/phone #q1")
        #expect(answer[attribute: "type"] == "error")
        #expect(harness.core.pending.count == 0)
    }

    @Test("round robin over two resources sends alternate requests to each")
    func spreadsOverResources() throws {
        var harness = try CoreHarness()
        try harness.online("a", "b")

        var resources: [String] = []
        for index in 0..<6 {
            resources.append(try harness.request("q\(index)")[attribute: "to"] ?? "")
        }

        #expect(resources.filter { $0 == "service@example.org/a" }.count == 3)
        #expect(resources.filter { $0 == "service@example.org/b" }.count == 3)
        #expect(zip(resources, resources.dropFirst()).allSatisfy { $0 != $1 })
    }

    @Test("presence priority and show are kept in the pool")
    func presenceDetails() throws {
        var harness = try CoreHarness()

        #expect(try harness.handle("""
            <presence from='service@example.org/a' to='proxy.example.org'>\
            <show>away</show><priority>5</priority></presence>
            """) == [])

        #expect(harness.core.pool["a"]?.priority == 5)
        #expect(harness.core.pool["a"]?.show == .away)
    }

    @Test("a sender too long for the encoder gets not-acceptable, and nothing is forwarded")
    func untranslatableSender() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        let sender = "user@example.org/" + String(repeating: "r", count: 800)

        let reply = try harness.request("q1", from: sender)

        #expect(errorOf(reply) == "not-acceptable/modify")
        #expect(route(of: reply) == "proxy.example.org -> \(sender) #q1")
        #expect(harness.core.pending.count == 0)
    }
}

@Suite("Route core: the router's own answers")
struct RouteCoreErrorTests {
    @Test("with no resource online a request gets service-unavailable, from the address it went to")
    func noResource() throws {
        var harness = try CoreHarness()

        let reply = try harness.request("q1", to: "echo@proxy.example.org")

        #expect(errorOf(reply) == "service-unavailable/cancel")
        #expect(route(of: reply) == "echo@proxy.example.org -> user@example.org/phone #q1")
        #expect(harness.core.pending.count == 0)
    }

    @Test("with every resource draining a request gets service-unavailable")
    func noReadyResource() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        harness.core.pool.setState(.draining, of: "a")

        #expect(errorOf(try harness.request("q1")) == "service-unavailable/cancel")
    }

    @Test("a request unanswered after the timeout gets remote-server-timeout, once; a late reply is dropped")
    func timeout() throws {
        // 1. One request in flight; its deadline is 5s away.
        var harness = try CoreHarness()
        try harness.online("a")
        let forwarded = try harness.request("q1")
        #expect(harness.core.nextDeadline() == harness.now + .seconds(5))

        // 2. Just before the deadline nothing happens; at the deadline the user gets the error.
        #expect(harness.expire(after: .milliseconds(4999)) == [])
        let errors = stanzasSent(harness.expire(after: .milliseconds(1)))
        #expect(errors.count == 1)
        #expect(errors.first.flatMap(errorOf) == "remote-server-timeout/wait")
        #expect(errors.first.map(route) == "proxy.example.org -> user@example.org/phone #q1")
        #expect(harness.core.stats.timeouts == 1)
        #expect(harness.core.pool["a"]?.pending == 0)

        // 3. Nothing more expires, and the resource's late reply is dropped.
        #expect(harness.expire(after: .seconds(60)) == [])
        #expect(try harness.reply(to: forwarded) == [])
        #expect(harness.core.nextDeadline() == nil)
    }

    @Test("requests expire in the order they were made, each at its own deadline")
    func timeoutsInOrder() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        _ = try harness.request("q1")
        harness.now = harness.now + .seconds(2)
        let second = try harness.request("q2")
        harness.now = harness.now + .seconds(1)
        _ = try harness.request("q3")

        #expect(stanzasSent(harness.expire(after: .seconds(2))).map { $0[attribute: "id"] } == ["q1"])
        #expect(try stanzasSent(harness.reply(to: second)).count == 1)
        #expect(stanzasSent(harness.expire(after: .seconds(2))) == [])
        #expect(stanzasSent(harness.expire(after: .seconds(1))).map { $0[attribute: "id"] } == ["q3"])
    }

    @Test("a resource going offline answers its own requests with recipient-unavailable, not the others'")
    func resourceUnavailable() throws {
        // 1. q1 goes to one resource, q2 to the other.
        var harness = try CoreHarness()
        try harness.online("a", "b")
        let first = try harness.request("q1")
        let second = try harness.request("q2")
        let gone = try #require(first[attribute: "to"])
        #expect(gone != second[attribute: "to"])

        // 2. The first resource leaves: q1 gets the error at once.
        let errors = try harness.sent("<presence type='unavailable' from='\(gone)' to='proxy.example.org'/>")
        #expect(errors.count == 1)
        #expect(errors.first.flatMap(errorOf) == "recipient-unavailable/wait")
        #expect(errors.first.map(route) == "proxy.example.org -> user@example.org/phone #q1")

        // 3. q2 is still answered normally; a reply from the gone resource is dropped.
        #expect(try harness.reply(to: first) == [])
        #expect(try stanzasSent(harness.reply(to: second)).count == 1)
        #expect(harness.expire(after: .seconds(10)) == [])
    }

    @Test("a message from a user gets feature-not-implemented; a message error gets nothing")
    func messageFromUser() throws {
        var harness = try CoreHarness()

        let replies = try harness.sent("""
            <message id='m1' type='chat' from='user@example.org/phone' to='proxy.example.org'><body>hi</body></message>
            """)

        #expect(replies.count == 1)
        #expect(replies.first?.name == "message")
        #expect(replies.first.flatMap(errorOf) == "feature-not-implemented/cancel")
        #expect(replies.first.map(route) == "proxy.example.org -> user@example.org/phone #m1")
        #expect(try harness.handle("""
            <message id='m2' type='error' from='user@example.org/phone' to='proxy.example.org'/>
            """) == [])
    }

    @Test("available presence from a user gets feature-not-implemented")
    func presenceFromUser() throws {
        var harness = try CoreHarness()

        let replies = try harness.sent("<presence from='user@example.org/phone' to='proxy.example.org'/>")

        #expect(replies.first.flatMap(errorOf) == "feature-not-implemented/cancel")
        #expect(harness.core.pool.isEmpty)
    }

    @Test("results and errors are never answered with an error, whoever sends them and wherever they go")
    func repliesNeverAnswered() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        let stanzas = [
            "<iq type='result' id='r1' from='user@example.org/phone' to='proxy.example.org'/>",
            "<iq type='error' id='r2' from='user@example.org/phone' to='proxy.example.org'/>",
            "<iq type='result' id='r3' from='user@example.org/phone' to='proxy.example.org/\(userJAT)'/>",
            "<iq type='error' id='r4' from='user@example.org/phone' to='proxy.example.org/garbage!'/>",
            "<iq type='result' id='r5' from='service@example.org/a' to='proxy.example.org/not-a-jat!'/>",
            "<iq type='error' id='r6' from='service@example.org/a' to='proxy.example.org'/>",
            "<iq type='result' id='r7' from='service@example.org/a' to='echo@proxy.example.org'/>",
            "<message type='error' from='user@example.org/phone' to='proxy.example.org'/>",
            "<presence type='error' from='user@example.org/phone' to='proxy.example.org'/>",
            "<presence type='unavailable' from='user@example.org/phone' to='proxy.example.org'/>",
            "<presence type='unsubscribed' from='user@example.org/phone' to='proxy.example.org'/>",
        ]
        for stanza in stanzas {
            #expect(try harness.handle(stanza) == [], "\(stanza)")
        }
    }

    @Test("requests that cannot be forwarded get errors: no id, a translated address, the target itself, a busy id")
    func refusedRequests() throws {
        var harness = try CoreHarness()
        try harness.online("a")

        let noID = try harness.sent("<iq type='get' from='user@example.org/phone' to='proxy.example.org'/>")
        #expect(noID.first.flatMap(errorOf) == "bad-request/modify")

        let translated = try harness.request("q1", to: "proxy.example.org/\(userJAT)")
        #expect(errorOf(translated) == "service-unavailable/cancel")

        let fromTarget = try harness.request("q2", from: "service@example.org/a")
        #expect(errorOf(fromTarget) == "service-unavailable/cancel")

        let first = try harness.request("q3")
        #expect(errorOf(first) == nil)
        #expect(errorOf(try harness.request("q3")) == "bad-request/modify")
        #expect(try stanzasSent(harness.reply(to: first)).first.map(route)
            == "proxy.example.org -> user@example.org/phone #q3")
        #expect(harness.core.stats.forwarded == 1)
    }

    @Test("shutdown answers every request in flight with service-unavailable")
    func shutdown() throws {
        var harness = try CoreHarness()
        try harness.online("a", "b")
        _ = try harness.request("q1")
        _ = try harness.request("q2", from: "other@example.org/laptop")

        var actions: [RouteAction] = []
        harness.core.shutdown(into: &actions)

        let errors = stanzasSent(actions)
        #expect(errors.count == 2)
        #expect(errors.allSatisfy { errorOf($0) == "service-unavailable/cancel" })
        #expect(Set(errors.map(route)) == [
            "proxy.example.org -> user@example.org/phone #q1", "proxy.example.org -> other@example.org/laptop #q2",
        ])
        #expect(harness.core.pending.count == 0)
    }
}

@Suite("Route core: replies that must not get through")
struct RouteCoreDroppedReplyTests {
    @Test("a reply to the JAT from another account is dropped; the real reply still gets through")
    func replyFromOutsider() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        let forwarded = try harness.request("q1")

        let forged = try harness.handle("""
            <iq type='result' id='q1' from='mallory@example.org/a' to='proxy.example.org/\(userJAT)'/>
            """)
        let bare = try harness.handle("""
            <iq type='result' id='q1' from='service@example.org' to='proxy.example.org/\(userJAT)'/>
            """)

        #expect(forged == [] && bare == [])
        #expect(harness.core.stats.droppedReplies == 2)
        #expect(try stanzasSent(harness.reply(to: forwarded)).count == 1)
    }

    @Test("a reply from a resource other than the one holding the request is dropped")
    func replyFromOtherResource() throws {
        var harness = try CoreHarness()
        try harness.online("a", "b")
        let forwarded = try harness.request("q1")
        let other = forwarded[attribute: "to"] == "service@example.org/a" ? "b" : "a"

        #expect(try harness.reply(to: forwarded, from: other) == [])
        #expect(harness.core.pending.count == 1)
        #expect(try stanzasSent(harness.reply(to: forwarded)).count == 1)
    }

    @Test("a reply with an id no request has is dropped")
    func madeUpID() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        _ = try harness.request("q1")

        let actions = try harness.handle("""
            <iq type='result' id='invented' from='service@example.org/a' to='proxy.example.org/\(userJAT)'/>
            """)

        #expect(actions == [])
        #expect(harness.core.pending.count == 1)
    }

    @Test("a second reply to the same request is dropped")
    func duplicateReply() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        let forwarded = try harness.request("q1")

        #expect(try stanzasSent(harness.reply(to: forwarded)).count == 1)
        #expect(try harness.reply(to: forwarded) == [])
        #expect(try harness.reply(to: forwarded, type: "error") == [])
        #expect(harness.core.stats.answered == 1)
    }

    @Test("a reply to another user's JAT with this user's id is dropped")
    func otherUsersJAT() throws {
        var harness = try CoreHarness()
        try harness.online("a")
        _ = try harness.request("q1")
        let otherJAT = Base64URL.encode(Array("other@example.org/x".utf8))

        let actions = try harness.handle("""
            <iq type='result' id='q1' from='service@example.org/a' to='proxy.example.org/\(otherJAT)'/>
            """)

        #expect(actions == [])
    }

    @Test("with hmac, a JAT the target forges for another sender is not delivered")
    func forgedHMAC() throws {
        setenv("ROUTE_CORE_TEST_HMAC_KEY", "0123456789abcdef0123456789abcdef", 1)
        var harness = try CoreHarness(
            yaml: CoreHarness.yaml(encoder: "{ name: hmac, key: { env: ROUTE_CORE_TEST_HMAC_KEY } }"))
        try harness.online("a")
        let forwarded = try harness.request("q1")
        let jat = try #require(forwarded[attribute: "from"]?.split(separator: "/").last.map(String.init))
        let tag = try #require(jat.split(separator: ".").last)

        let forgedJAT = Base64URL.encode(Array("victim@example.org/x".utf8)) + "." + tag
        let forged = try harness.handle("""
            <iq type='result' id='q1' from='service@example.org/a' to='proxy.example.org/\(forgedJAT)'/>
            """)

        #expect(forged == [])
        #expect(try stanzasSent(harness.reply(to: forwarded)).first.map(route)
            == "proxy.example.org -> user@example.org/phone #q1")
    }

    @Test("with a table encoder of one entry, the entry stays while its request is in flight and is freed after")
    func encoderHooks() throws {
        // 1. user's request holds the only entry.
        var harness = try CoreHarness(yaml: CoreHarness.yaml(encoder: "{ name: table, max_entries: 1 }"))
        try harness.online("a")
        let forwarded = try harness.request("q1")

        // 2. Another sender cannot get a JAT meanwhile.
        #expect(errorOf(try harness.request("q2", from: "other@example.org/x")) == "not-acceptable/modify")

        // 3. Once the reply is back, the entry is free for the other sender.
        #expect(try stanzasSent(harness.reply(to: forwarded)).count == 1)
        #expect(errorOf(try harness.request("q3", from: "other@example.org/x")) == nil)
    }
}

@Suite("Route core: connection and presence life cycle")
struct RouteCoreLifecycleTests {
    @Test("after authentication the router subscribes to the target, and does not probe before approval")
    func subscribeFirst() throws {
        var harness = try CoreHarness()

        var actions: [RouteAction] = []
        harness.core.streamAuthenticated(into: &actions)

        let sent = stanzasSent(actions)
        #expect(sent.count == 1)
        #expect(sent.first?.name == "presence" && sent.first?[attribute: "type"] == "subscribe")
        #expect(sent.first.map(route) == "proxy.example.org -> service@example.org #-")
    }

    @Test("a lost connection answers its requests once the next one is up: a subscribe, then one error each")
    func connectionLost() throws {
        // 1. Two requests in flight.
        var harness = try CoreHarness()
        try harness.online("a", "b")
        let first = try harness.request("q1")
        _ = try harness.request("q2", from: "other@example.org/laptop", to: "echo@proxy.example.org")

        // 2. The connection drops: nothing can be sent, the pool is forgotten.
        harness.core.connectionLost()
        #expect(harness.core.pool.isEmpty)
        #expect(harness.core.pending.count == 0)

        // 3. The next connection authenticates: subscribe, then the two errors.
        var actions: [RouteAction] = []
        harness.core.streamAuthenticated(into: &actions)
        let sent = stanzasSent(actions)
        #expect(sent.count == 3)
        #expect(sent.first?[attribute: "type"] == "subscribe")
        let errors = sent.dropFirst()
        #expect(errors.allSatisfy { errorOf($0) == "remote-server-timeout/wait" })
        #expect(Set(errors.map(route)) == [
            "proxy.example.org -> user@example.org/phone #q1", "echo@proxy.example.org -> other@example.org/laptop #q2",
        ])

        // 4. A later authentication sends no error again; a late reply is dropped.
        actions = []
        harness.core.streamAuthenticated(into: &actions)
        #expect(stanzasSent(actions).count == 1)
        try harness.online("a", "b")
        #expect(try harness.reply(to: first) == [])
    }

    @Test("subscribe from the target is answered subscribed; subscribed is answered with a probe")
    func subscriptionHandshake() throws {
        var harness = try CoreHarness()

        let subscribed = try harness.sent(
            "<presence type='subscribe' from='service@example.org' to='proxy.example.org'/>")
        #expect(subscribed.count == 1)
        #expect(subscribed.first?[attribute: "type"] == "subscribed")
        #expect(subscribed.first.map(route) == "proxy.example.org -> service@example.org #-")

        let probe = try harness.sent("<presence type='subscribed' from='service@example.org' to='proxy.example.org'/>")
        #expect(probe.count == 1)
        #expect(probe.first?[attribute: "type"] == "probe")
        #expect(probe.first.map(route) == "proxy.example.org -> service@example.org #-")
    }

    @Test("a presence error from the target empties the pool, fails its requests and resubscribes with backoff")
    func presenceError() throws {
        // 1. Two resources, one request in flight.
        var harness = try CoreHarness()
        try harness.online("a", "b")
        _ = try harness.request("q1")
        let bounce = """
            <presence type='error' from='service@example.org' to='proxy.example.org'>\
            <error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>\
            </presence>
            """

        // 2. The subscription bounces: the request fails, the pool empties, a resubscribe after 500ms.
        let actions = try harness.handle(bounce)
        #expect(harness.core.pool.isEmpty)
        #expect(actions.count == 2)
        #expect(actions.last == .resubscribe(after: .milliseconds(500)))
        if case .send(let error)? = actions.first {
            #expect(errorOf(error) == "recipient-unavailable/wait")
        } else {
            Issue.record("expected an error reply first, found \(actions)")
        }
        #expect(errorOf(try harness.request("q2")) == "service-unavailable/cancel")

        // 3. Each further bounce doubles the delay; approval resets it.
        #expect(try harness.handle(bounce) == [.resubscribe(after: .seconds(1))])
        #expect(try harness.handle(bounce) == [.resubscribe(after: .seconds(2))])
        _ = try harness.handle("<presence type='subscribed' from='service@example.org' to='proxy.example.org'/>")
        #expect(try harness.handle(bounce) == [.resubscribe(after: .milliseconds(500))])
    }

    @Test("the resubscribe delay stops growing at reconnect.max")
    func resubscribeCap() throws {
        var harness = try CoreHarness()
        let bounce = "<presence type='error' from='service@example.org' to='proxy.example.org'/>"

        var delays: [RouteAction] = []
        for _ in 0..<12 { delays += try harness.handle(bounce) }

        #expect(delays.last == .resubscribe(after: .seconds(30)))
        #expect(delays.dropFirst(7).allSatisfy { $0 == .resubscribe(after: .seconds(30)) })
    }
}

@Suite("Route core: retries of get requests")
struct RouteCoreRetryTests {
    private static let retry = "retry: { namespaces: [\"urn:example:echo\"], try_timeout: 1s }"

    @Test("a get whose resource leaves goes to the other resource, and its reply gets through")
    func retriedWhenResourceLeaves() throws {
        // 1. q1 goes to one of two resources.
        var harness = try CoreHarness(yaml: CoreHarness.yaml(extra: Self.retry))
        try harness.online("a", "b")
        let first = try harness.request("q1")
        let gone = try #require(first[attribute: "to"])

        // 2. That resource leaves: the request is sent to the other, unchanged but for `to`.
        let moved = try harness.sent("<presence type='unavailable' from='\(gone)' to='proxy.example.org'/>")
        #expect(moved.count == 1)
        let retried = try #require(moved.first)
        #expect(errorOf(retried) == nil)
        #expect(retried[attribute: "to"] != gone)
        #expect(retried[attribute: "from"] == first[attribute: "from"])
        #expect(retried.children == first.children)

        // 3. The other resource answers; the user gets it.
        #expect(try stanzasSent(harness.reply(to: retried)).first.map(route)
            == "proxy.example.org -> user@example.org/phone #q1")
    }

    @Test("a set is never retried: its resource leaving answers recipient-unavailable")
    func setNotRetried() throws {
        var harness = try CoreHarness(yaml: CoreHarness.yaml(extra: Self.retry))
        try harness.online("a", "b")
        let sent = try harness.sent("""
            <iq type='set' id='s1' from='user@example.org/phone' to='proxy.example.org'>\
            <query xmlns='urn:example:echo'/></iq>
            """)
        let gone = try #require(sent.first?[attribute: "to"])

        let errors = try harness.sent("<presence type='unavailable' from='\(gone)' to='proxy.example.org'/>")

        #expect(errors.first.flatMap(errorOf) == "recipient-unavailable/wait")
    }

    /// When the strategy picks the resource whose try just ended, `RouteCore.retry` falls back to
    /// the first ready member other than that one, without the strategy's presence policy.
    @Test("a retry never goes to a resource the strategy's presence policy excludes")
    func retryHonoursPolicy() throws {
        // 1. a is available, b is away and excluded by the policy; q1 goes to a.
        var harness = try CoreHarness(yaml: CoreHarness.yaml(
            strategy: "{ name: round-robin, away: exclude }", extra: Self.retry))
        try harness.online("a")
        _ = try harness.handle("""
            <presence from='service@example.org/b' to='proxy.example.org'><show>away</show></presence>
            """)
        let first = try harness.request("q1")
        #expect(first[attribute: "to"] == "service@example.org/a")

        // 2. q1's try ends with a still online: the strategy picks a again, and b is excluded, so
        //    q1 must not go to b.
        let actions = stanzasSent(harness.expire(after: .seconds(1)))
        #expect(actions.allSatisfy { $0[attribute: "to"] != "service@example.org/b" }, "\(actions.map(route))")
    }

    /// With one resource there is nowhere to retry, yet the request is failed at the end of its
    /// try (1s) instead of waiting for its request timeout (5s); a reply at 2s is then lost.
    @Test("with nowhere to retry, a request still waits for its request timeout")
    func tryTimeoutWithOneResource() throws {
        // 1. One resource; q1 goes to it.
        var harness = try CoreHarness(yaml: CoreHarness.yaml(extra: Self.retry))
        try harness.online("a")
        let forwarded = try harness.request("q1")

        // 2. The try ends at 1s: nothing to retry on, and 4s of the request's timeout remain.
        #expect(harness.expire(after: .seconds(1)) == [])

        // 3. The resource answers at 2s; the user gets the answer.
        harness.now = harness.now + .seconds(1)
        #expect(try stanzasSent(harness.reply(to: forwarded)).first.map(route)
            == "proxy.example.org -> user@example.org/phone #q1")
    }
}
