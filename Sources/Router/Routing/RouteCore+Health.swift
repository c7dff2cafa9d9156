/// What the router knows of a resource's health, by name; it outlives the resource going offline.
struct ResourceHealth {
    var consecutiveFailures = 0
    /// Ejections in a row; a long enough healthy spell starts the count over.
    var ejections = 0
    var ejectedUntil: Instant?
    var lastReturn: Instant?
    /// The id and time of the ping awaiting an answer.
    var pingSent: (id: String, at: Instant)?
    var lastPing: Instant?
    /// No answer to the last ping.
    var down = false
}

let pingNamespace = "urn:xmpp:ping"

extension RouteCore {
    /// A reply that shows the resource failing, not the request: a server-side condition.
    func isServerFailure(_ reply: XMLElement) -> Bool {
        guard reply[attribute: "type"] == "error", let error = reply.child("error") else { return false }
        let conditions: Set<String> = [
            "internal-server-error", "service-unavailable", "remote-server-timeout", "resource-constraint",
            "recipient-unavailable", "undefined-condition",
        ]
        return error.elements.contains { $0.namespace == stanzaErrorNamespace && conditions.contains($0.name) }
    }

    mutating func recordSuccess(of resource: String, now: Instant) {
        guard config.ejection != nil else { return }
        var state = health[resource, default: ResourceHealth()]
        state.consecutiveFailures = 0
        if let policy = config.ejection, let back = state.lastReturn, now.since(back) >= policy.maxCooldown {
            state.ejections = 0
            state.lastReturn = nil
        }
        health[resource] = state
    }

    /// Counts a failure; the one that completes a streak ejects the resource for its cool-down.
    mutating func recordFailure(of resource: String, now: Instant) {
        guard let policy = config.ejection else { return }
        var state = health[resource, default: ResourceHealth()]
        state.consecutiveFailures += 1
        guard state.consecutiveFailures >= policy.consecutiveFailures, state.ejectedUntil == nil else {
            health[resource] = state
            return
        }
        state.ejections += 1
        state.consecutiveFailures = 0
        let factor = Double(1 << min(state.ejections - 1, 20))
        let cooldown = min(policy.maxCooldown.seconds, policy.cooldown.seconds * factor)
        state.ejectedUntil = now + .nanoseconds(Int64(cooldown * 1e9))
        health[resource] = state
        resourceStats[resource, default: ResourceStats()].ejections += 1
        refreshState(of: resource)
        scheduleHealthCheck(now: now)
        log.warning("resource ejected after repeated failures", [
            ("resource", resource), ("failures", "\(policy.consecutiveFailures)"), ("cooldown", "\(cooldown)s"),
        ])
    }

    /// The state a resource has: the operator's if set, else ejected or down, else ready.
    mutating func refreshState(of resource: String) {
        guard let member = pool[resource] else { return }
        let state = health[resource]
        let effective = overrides[resource]?.state
            ?? (state?.ejectedUntil != nil ? .ejected : state?.down == true ? .down : .ready)
        if member.state != effective { pool.setState(effective, of: resource) }
    }

    /// A result or error addressed to the component itself: the answer to one of its pings.
    mutating func pingAnswered(_ reply: XMLElement, from: JID, to: JID, now: Instant) {
        guard from.bare == config.target, let resource = from.resourcepart,
              let sent = health[resource]?.pingSent, sent.id == reply[attribute: "id"]
        else {
            log.debug("dropped reply to the component's own address", [("from", from.description)])
            return
        }
        health[resource]?.pingSent = nil
        if health[resource]?.down == true {
            health[resource]?.down = false
            refreshState(of: resource)
            log.info("resource answers pings again", [("resource", resource)])
        }
    }

    /// Ends cool-downs that are over, marks resources that left a ping unanswered as down, and
    /// sends the pings that are due.
    mutating func checkHealth(now: Instant, into actions: inout [RouteAction]) {
        nextHealthCheck = nil
        for (name, state) in health {
            if let until = state.ejectedUntil, until <= now {
                health[name]?.ejectedUntil = nil
                health[name]?.lastReturn = now
                refreshState(of: name)
                log.info("resource back from ejection", [("resource", name)])
            }
        }
        if let ping = config.ping {
            for member in pool.members {
                var state = health[member.name, default: ResourceHealth()]
                if let sent = state.pingSent, now.since(sent.at) >= ping.timeout {
                    state.pingSent = nil
                    if !state.down {
                        state.down = true
                        log.warning("resource did not answer a ping; taken out", [("resource", member.name)])
                    }
                }
                if state.pingSent == nil, state.lastPing.map({ now.since($0) >= ping.interval }) ?? true {
                    pingCounter += 1
                    let id = "cpr-ping-\(pingCounter)"
                    state.pingSent = (id, now)
                    state.lastPing = now
                    actions.append(.send(pingRequest(id: id, to: member.name)))
                }
                health[member.name] = state
                refreshState(of: member.name)
            }
        }
        scheduleHealthCheck(now: now)
    }

    /// Health is checked once a second while pings are on and resources are online, or while a
    /// resource is ejected.
    mutating func scheduleHealthCheck(now: Instant) {
        let pinging = config.ping != nil && !pool.isEmpty
        let ejected = health.values.contains { $0.ejectedUntil != nil }
        guard pinging || ejected else { return }
        let next = now + .seconds(1)
        if nextHealthCheck.map({ next < $0 }) ?? true { nextHealthCheck = next }
    }

    private func pingRequest(id: String, to resource: String) -> XMLElement {
        var iq = XMLElement(name: "iq", namespace: componentNamespace)
        iq[attribute: "type"] = "get"
        iq[attribute: "id"] = id
        iq[attribute: "from"] = component
        iq[attribute: "to"] = target + "/" + resource
        iq.append(XMLElement(name: "ping", namespace: pingNamespace))
        return iq
    }
}
