/// Something a route's connection must do after the core handled an event.
public enum RouteAction: Sendable, Equatable {
    /// Write a stanza to the server.
    case send(XMLElement)
    /// Send the presence subscription again after a delay (the last one bounced).
    case resubscribe(after: Duration)
}

/// Counters an operator reads to see what a route did.
public struct RouteStats: Sendable {
    public var forwarded = 0
    public var answered = 0
    public var timeouts = 0
    public var retries = 0
    /// Errors the router answered itself, by condition.
    public var routerErrors: [String: Int] = [:]
    /// Replies dropped: late, duplicate, forged or undecodable.
    public var droppedReplies = 0
    public var latency = LatencyHistogram()
}

/// What the router counted for one resource; kept while the resource is offline.
public struct ResourceStats: Sendable {
    public var served = 0
    /// Error replies the resource sent.
    public var errors = 0
    public var timeouts = 0
    public var ejections = 0
    public var latency = LatencyHistogram()
}

/// State and weight an operator set on a resource; applied again when it comes back online.
public struct ResourceOverride: Sendable, Equatable {
    public var state: ResourceState?
    public var weight: Int?
}

/// The routing decisions of one route, free of sockets and clocks: events go in, `RouteAction`s
/// come out. The route's connection feeds it from its serial context and applies the actions.
public struct RouteCore {
    public internal(set) var config: RouteConfig
    public internal(set) var strategy: any BalancingStrategy
    public internal(set) var encoder: any JATEncoder
    public internal(set) var pool: ResourcePool
    public internal(set) var pending = PendingRequests()
    public internal(set) var stats = RouteStats()
    public internal(set) var resourceStats: [String: ResourceStats] = [:]
    public internal(set) var overrides: [String: ResourceOverride] = [:]
    /// Ejections, failure streaks and pings, by resource name.
    var health: [String: ResourceHealth] = [:]
    var rateBuckets = RateBuckets()
    /// Resources that went offline, oldest first: what the router forgets first when it keeps
    /// counters for too many names (clients often come back under a new random resource).
    var departed: [String] = []
    static let offlineResourcesKept = 1000
    var pingCounter: UInt64 = 0
    var nextHealthCheck: Instant?
    /// Encoders replaced by a reload, still decoding the JATs of requests in flight until their
    /// last possible reply (the request timeout after the change).
    var retiredEncoders: [(encoder: any JATEncoder, until: Instant)] = []
    /// False once the route is being removed: new requests are refused, pending ones finish.
    public internal(set) var acceptingRequests = true
    /// Requests in flight when the connection was lost; answered once it is back.
    private var orphaned: [PendingRequest] = []
    var subscribeBounces = 0
    let component: String
    let target: String
    let log: Logger

    public init(config: RouteConfig, strategy: any BalancingStrategy, encoder: any JATEncoder, log: Logger) {
        self.config = config
        self.strategy = strategy
        self.encoder = encoder
        self.pool = ResourcePool(maxPendingPerResource: config.limits.maxPendingPerResource)
        self.component = config.component.description
        self.target = config.target.description
        self.log = log
    }

    // MARK: Connection events

    /// The handshake succeeded: ask for the target's presence, and answer the requests that were
    /// in flight when the previous connection was lost.
    public mutating func streamAuthenticated(into actions: inout [RouteAction]) {
        actions.append(.send(presence(type: "subscribe", to: target)))
        let lost = orphaned
        orphaned.removeAll()
        let error = StanzaError(.wait, .remoteServerTimeout,
                                text: "The router lost its server connection before the reply came.")
        for request in lost {
            count(error)
            actions.append(.send(errorReply(to: request, error)))
        }
        if !lost.isEmpty {
            log.warning("answered requests lost with the connection", [("requests", "\(lost.count)")])
        }
    }

    /// The connection is gone: the router knows no resource any more, and the requests in flight
    /// can only be answered once a new connection is up.
    public mutating func connectionLost() {
        for request in pending.removeAll() {
            finish(request, latency: nil)
            orphaned.append(request)
        }
        pool.removeAll()
        for name in health.keys { health[name]?.pingSent = nil }
    }

    /// Answers every request in flight, as the router stops.
    public mutating func shutdown(into actions: inout [RouteAction]) {
        let error = StanzaError(.cancel, .serviceUnavailable, text: "The router is shutting down.")
        for request in pending.removeAll() {
            finish(request, latency: nil)
            fail(request, error, into: &actions)
        }
        pool.removeAll()
    }

    /// Handles what is due at `now`: requests whose try has ended (retried elsewhere or answered
    /// with `remote-server-timeout`), ends of ejections, pings.
    public mutating func expire(now: Instant, into actions: inout [RouteAction]) {
        for request in pending.removeExpired(now: now) {
            finish(request, latency: nil)
            resourceStats[request.resource, default: ResourceStats()].timeouts += 1
            recordFailure(of: request.resource, now: now)
            log.debug("request timed out", [("resource", request.resource), ("stanza.id", request.key.id)])
            if retry(request, now: now, into: &actions) { continue }
            if request.deadline < request.finalDeadline {
                // A try ended but no other resource can take the request: it waits for its own
                // resource until its deadline.
                var waiting = request
                waiting.deadline = request.finalDeadline
                pending.insert(waiting)
                pool.requestSent(to: request.resource)
                encoder.requestStarted(jat: request.jat)
                continue
            }
            stats.timeouts += 1
            fail(request, StanzaError(.wait, .remoteServerTimeout, text: "The service did not answer in time."),
                 into: &actions)
        }
        if let check = nextHealthCheck, check <= now { checkHealth(now: now, into: &actions) }
    }

    /// When `expire(now:into:)` must next run.
    public mutating func nextDeadline() -> Instant? {
        switch (pending.nextDeadline(), nextHealthCheck) {
        case (let request?, let health?): return min(request, health)
        case (let request?, nil): return request
        case (nil, let health): return health
        }
    }

    /// Time to send the subscription again after a bounce.
    public mutating func resubscribe(into actions: inout [RouteAction]) {
        actions.append(.send(presence(type: "subscribe", to: target)))
    }

    // MARK: Stanzas

    /// Handles one stanza from the server.
    public mutating func handle(_ stanza: XMLElement, now: Instant, into actions: inout [RouteAction]) {
        guard stanza.namespace == componentNamespace else {
            log.debug("ignored element", [("element", stanza.name)])
            return
        }
        guard let fromText = stanza[attribute: "from"], let toText = stanza[attribute: "to"] else {
            log.debug("dropped stanza without from or to", [("stanza", stanza.name)])
            return
        }
        let from: JID
        let to: JID
        do {
            from = try JID(fromText)
            to = try JID(toText)
        } catch {
            log.debug("dropped stanza with an invalid address", [("error", "\(error)")])
            return
        }
        switch stanza.name {
        case "iq": handleIQ(stanza, from: from, to: to, toText: toText, now: now, into: &actions)
        case "presence": handlePresence(stanza, from: from, to: to, now: now, into: &actions)
        case "message": handleMessage(stanza, from: from, into: &actions)
        default: log.debug("ignored element", [("element", stanza.name)])
        }
    }

    private mutating func handleIQ(
        _ iq: XMLElement, from: JID, to: JID, toText: String, now: Instant, into actions: inout [RouteAction]
    ) {
        let type = iq[attribute: "type"]
        switch type {
        case "get", "set":
            let kind: RequestKind = type == "get" ? .get : .set
            if let error = refusal(of: iq, from: from, to: to, now: now) {
                count(error)
                actions.append(.send(errorReply(to: iq, error)))
                return
            }
            forward(iq, kind: kind, from: from, toText: toText, now: now, into: &actions)
        case "result", "error":
            if to.resourcepart == nil {
                pingAnswered(iq, from: from, to: to, now: now)
            } else {
                returnReply(iq, from: from, to: to, now: now, into: &actions)
            }
        default:
            let error = StanzaError(.modify, .badRequest, text: "An IQ's type is get, set, result or error.")
            count(error)
            actions.append(.send(errorReply(to: iq, error)))
        }
    }

    private mutating func forward(
        _ iq: XMLElement, kind: RequestKind, from: JID, toText: String, now: Instant, into actions: inout [RouteAction]
    ) {
        let key = PendingKey(sender: from, id: iq[attribute: "id"] ?? "")
        if let error = admissionError(for: key, now: now) {
            count(error)
            actions.append(.send(errorReply(to: iq, error)))
            return
        }
        let jat: String
        do {
            jat = try encoder.encode(from)
        } catch {
            let refusal = StanzaError(.modify, .notAcceptable, text: "Your address cannot be translated: \(error).")
            count(refusal)
            actions.append(.send(errorReply(to: iq, refusal)))
            return
        }
        guard let resource = strategy.pick(for: BalancingRequest(sender: from, kind: kind), from: pool) else {
            let error = pool.hasFullReadyResource
                ? StanzaError(.wait, .resourceConstraint, text: "Every resource of the service is busy.")
                : StanzaError(.cancel, .serviceUnavailable, text: "No resource of the service is online and ready.")
            count(error)
            actions.append(.send(errorReply(to: iq, error)))
            return
        }

        var forwarded = iq
        forwarded[attribute: "from"] = component + "/" + jat
        forwarded[attribute: "to"] = target + "/" + resource
        let finalDeadline = now + config.requestTimeout
        let retryable = config.retry?.applies(to: iq, kind: kind) ?? false
        var deadline = finalDeadline
        if retryable, let tryTimeout = config.retry?.tryTimeout { deadline = min(finalDeadline, now + tryTimeout) }
        pending.insert(PendingRequest(
            key: key, addressed: toText, resource: resource, jat: jat, kind: kind, started: now, deadline: deadline,
            finalDeadline: finalDeadline, retryCopy: retryable ? forwarded : nil
        ))
        pool.requestSent(to: resource)
        encoder.requestStarted(jat: jat)
        stats.forwarded += 1
        actions.append(.send(forwarded))
        log.trace("forwarded request", [("resource", resource), ("stanza.id", key.id)])
    }

    /// Sends a request that lost its resource (it left, or the try timed out) to another one,
    /// once, within the request's own deadline. False when it may not or cannot be retried.
    mutating func retry(_ request: PendingRequest, now: Instant, into actions: inout [RouteAction]) -> Bool {
        guard var copy = request.retryCopy, request.triedResource == nil, now < request.finalDeadline,
              let retryPolicy = config.retry
        else { return false }
        let avoid = request.resource
        // The strategy chooses among the others, its presence policy applying as for any request:
        // the resource that failed is set aside for this one pick.
        let avoidedState = pool[avoid]?.state
        if avoidedState != nil { pool.setState(.draining, of: avoid) }
        let balancing = BalancingRequest(sender: request.key.sender, kind: request.kind)
        let picked = strategy.pick(for: balancing, from: pool)
        if let avoidedState { pool.setState(avoidedState, of: avoid) }
        guard let resource = picked, resource != avoid else { return false }

        copy[attribute: "to"] = target + "/" + resource
        var moved = request
        moved.resource = resource
        moved.triedResource = avoid
        moved.retryCopy = nil
        moved.deadline = retryPolicy.tryTimeout.map { min(request.finalDeadline, now + $0) } ?? request.finalDeadline
        pending.insert(moved)
        pool.requestSent(to: resource)
        encoder.requestStarted(jat: request.jat)
        stats.retries += 1
        actions.append(.send(copy))
        log.debug("request retried", [("from_resource", avoid), ("resource", resource), ("stanza.id", request.key.id)])
        return true
    }

    /// A result or error for a translated address: back to the requester, if it answers a request
    /// in flight and comes from the resource that holds it.
    private mutating func returnReply(
        _ reply: XMLElement, from: JID, to: JID, now: Instant, into actions: inout [RouteAction]
    ) {
        guard to.localpart == nil, let jat = to.resourcepart else {
            log.debug("dropped reply to an untranslated address", [("to", to.description)])
            return
        }
        guard from.bare == config.target, let resource = from.resourcepart else {
            stats.droppedReplies += 1
            log.warning("dropped reply from outside the target", [("from", from.description)])
            return
        }
        guard let sender = decode(jat, now: now) else {
            stats.droppedReplies += 1
            log.warning("dropped reply to an address the encoder did not make", [("resource", resource)])
            return
        }
        let key = PendingKey(sender: sender, id: reply[attribute: "id"] ?? "")
        guard let request = pending[key], request.resource == resource else {
            stats.droppedReplies += 1
            log.debug("dropped reply matching no request in flight", [("resource", resource), ("stanza.id", key.id)])
            return
        }

        pending.remove(key)
        let latency = now.since(request.started)
        finish(request, latency: latency)
        stats.answered += 1
        stats.latency.record(latency)
        // Updated in place: a copy out and back would copy the histogram's buckets every reply.
        resourceStats[resource, default: ResourceStats()].served += 1
        resourceStats[resource, default: ResourceStats()].latency.record(latency)
        if reply[attribute: "type"] == "error" { resourceStats[resource, default: ResourceStats()].errors += 1 }
        if isServerFailure(reply) {
            recordFailure(of: resource, now: now)
        } else {
            recordSuccess(of: resource, now: now)
        }
        var answer = reply
        answer[attribute: "from"] = request.addressed
        answer[attribute: "to"] = sender.description
        actions.append(.send(answer))
    }

    /// A stanza the parser dropped as too large or too deep: a request gets `policy-violation`,
    /// a reply ends its request with an error, anything else is only logged.
    public mutating func refused(_ root: XMLElement, because reason: StanzaRefusal, now: Instant,
                                 into actions: inout [RouteAction]) {
        guard root.namespace == componentNamespace, let fromText = root[attribute: "from"],
              let toText = root[attribute: "to"], let from = try? JID(fromText), let to = try? JID(toText)
        else { return }
        switch (root.name, root[attribute: "type"]) {
        case ("iq", "get"), ("iq", "set"):
            guard root[attribute: "id"] != nil else { return }
            let error = StanzaError(.modify, .policyViolation, text: "The request is \(reason.rawValue) to relay.")
            count(error)
            actions.append(.send(errorReply(to: root, error)))
        case ("iq", "result"), ("iq", "error"):
            guard from.bare == config.target, let resource = from.resourcepart, to.localpart == nil,
                  let jat = to.resourcepart, let sender = decode(jat, now: now) else { return }
            let key = PendingKey(sender: sender, id: root[attribute: "id"] ?? "")
            guard let request = pending[key], request.resource == resource else { return }
            pending.remove(key)
            finish(request, latency: nil)
            let text = "The service's answer is \(reason.rawValue) to relay."
            let error = StanzaError(.cancel, .policyViolation, text: text)
            fail(request, error, into: &actions)
        default:
            break
        }
    }

    private mutating func handleMessage(_ message: XMLElement, from: JID, into actions: inout [RouteAction]) {
        guard message[attribute: "type"] != "error", from.bare != config.target else { return }
        let error = StanzaError(.cancel, .featureNotImplemented, text: "This service takes IQ requests only.")
        count(error)
        actions.append(.send(errorReply(to: message, error)))
    }

    /// The sender behind a JAT, by the current encoder or one a reload replaced recently.
    mutating func decode(_ jat: String, now: Instant) -> JID? {
        if let sender = try? encoder.decode(jat) { return sender }
        guard !retiredEncoders.isEmpty else { return nil }
        retiredEncoders.removeAll { $0.until < now }
        for retired in retiredEncoders {
            if let sender = try? retired.encoder.decode(jat) { return sender }
        }
        return nil
    }

    /// Accounts for the end of a request in the pool and in the encoder.
    mutating func finish(_ request: PendingRequest, latency: Duration?) {
        pool.requestEnded(at: request.resource, latency: latency)
        encoder.requestEnded(jat: request.jat)
    }

    // MARK: Errors

    mutating func count(_ error: StanzaError) {
        stats.routerErrors[error.condition.rawValue, default: 0] += 1
    }

    /// Answers a request in flight with an error of the router's own.
    mutating func fail(_ request: PendingRequest, _ error: StanzaError, into actions: inout [RouteAction]) {
        count(error)
        actions.append(.send(errorReply(to: request, error)))
    }

    /// An error reply to `stanza`: same name and id, addresses swapped (RFC 6120 §8.3.1).
    func errorReply(to stanza: XMLElement, _ error: StanzaError) -> XMLElement {
        var reply = XMLElement(name: stanza.name, namespace: componentNamespace)
        if let id = stanza[attribute: "id"] { reply[attribute: "id"] = id }
        reply[attribute: "type"] = "error"
        if let to = stanza[attribute: "to"] { reply[attribute: "from"] = to }
        if let from = stanza[attribute: "from"] { reply[attribute: "to"] = from }
        reply.append(error.element())
        return reply
    }

    /// An error reply to a request in flight, from the address its sender used.
    func errorReply(to request: PendingRequest, _ error: StanzaError) -> XMLElement {
        var reply = XMLElement(name: "iq", namespace: componentNamespace)
        reply[attribute: "id"] = request.key.id
        reply[attribute: "type"] = "error"
        reply[attribute: "from"] = request.addressed
        reply[attribute: "to"] = request.key.sender.description
        reply.append(error.element())
        return reply
    }

    func presence(type: String?, to: String) -> XMLElement {
        var presence = XMLElement(name: "presence", namespace: componentNamespace)
        presence[attribute: "from"] = component
        presence[attribute: "to"] = to
        if let type { presence[attribute: "type"] = type }
        return presence
    }
}
