extension RouteCore {
    /// Presence from the target keeps the pool; presence from anyone else is refused.
    mutating func handlePresence(
        _ presence: XMLElement, from: JID, to: JID, now: Instant, into actions: inout [RouteAction]
    ) {
        let type = presence[attribute: "type"]
        guard from.bare == config.target else {
            refuseUserPresence(presence, type: type, into: &actions)
            return
        }
        switch type {
        case nil:
            guard let resource = from.resourcepart else { return }
            resourceAvailable(resource, presence: presence, now: now)
        case "unavailable":
            guard let resource = from.resourcepart else { return }
            resourceUnavailable(resource, now: now, into: &actions)
        case "subscribe":
            // The target's client asks for our presence in return; grant it.
            actions.append(.send(self.presence(type: "subscribed", to: from.bare.description)))
        case "subscribed":
            // Only now may the router probe: a probe before approval makes Prosody answer
            // `unsubscribed`, which cancels the pending subscription request for good.
            subscribeBounces = 0
            log.info("target approved the subscription", [("target", from.bare.description)])
            actions.append(.send(self.presence(type: "probe", to: from.bare.description)))
        case "unsubscribed":
            log.warning("target refused or cancelled the presence subscription", [("target", from.bare.description)])
            emptyPool(because: "subscription cancelled", now: now, into: &actions)
        case "error":
            let condition = presence.child("error")?.elements.first?.name ?? "undefined-condition"
            emptyPool(because: condition, now: now, into: &actions)
            subscribeBounces += 1
            let delay = resubscribeDelay(after: subscribeBounces)
            log.warning("presence error from the target; subscribing again later", [
                ("condition", condition), ("retry_in", "\(delay.seconds)s"),
            ])
            actions.append(.resubscribe(after: delay))
        default:
            break
        }
    }

    private mutating func resourceAvailable(_ resource: String, presence: XMLElement, now: Instant) {
        // RFC 6121 §4.7.2.3: an integer from -128 to 127; anything else counts as the bound it passes.
        let written = presence.child("priority").flatMap { Int($0.text.trimmingSpaces()) } ?? 0
        let priority = min(127, max(-128, written))
        let show = presence.child("show").flatMap { PresenceShow(rawValue: $0.text.trimmingSpaces()) }
        guard pool.update(resource, priority: priority, show: show) else { return }
        if let weight = overrides[resource]?.weight { pool.setWeight(weight, of: resource) }
        health[resource]?.down = false
        refreshState(of: resource)
        scheduleHealthCheck(now: now)
        log.info("resource available", [("resource", resource), ("resources", "\(pool.count)")])
    }

    private mutating func resourceUnavailable(_ resource: String, now: Instant, into actions: inout [RouteAction]) {
        guard pool.remove(resource) != nil else { return }
        health[resource]?.pingSent = nil
        log.info("resource unavailable", [("resource", resource), ("resources", "\(pool.count)")])
        failRequests(heldBy: resource, now: now, into: &actions)
        forgetOldOfflineResources(after: resource)
    }

    /// Keeps the counters of at most `offlineResourcesKept` offline resources; a resource with
    /// a state or weight set by hand is kept whatever the count.
    private mutating func forgetOldOfflineResources(after resource: String) {
        departed.append(resource)
        while resourceStats.count + health.count > 2 * (pool.count + Self.offlineResourcesKept), !departed.isEmpty {
            let name = departed.removeFirst()
            guard pool[name] == nil, overrides[name] == nil else { continue }
            resourceStats[name] = nil
            health[name] = nil
        }
        if departed.count > 4 * Self.offlineResourcesKept { departed.removeFirst(departed.count / 2) }
    }

    /// Forgets every resource, answering the requests they held.
    private mutating func emptyPool(because reason: String, now: Instant, into actions: inout [RouteAction]) {
        let names = pool.members.map(\.name)
        pool.removeAll()
        for name in names { failRequests(heldBy: name, now: now, into: &actions) }
        if !names.isEmpty {
            log.info("resource pool emptied", [("reason", reason), ("resources", "0")])
        }
    }

    /// Retries elsewhere, or answers, the requests a resource held when it went offline.
    private mutating func failRequests(heldBy resource: String, now: Instant, into actions: inout [RouteAction]) {
        let error = StanzaError(.wait, .recipientUnavailable, text: "The resource serving the request went offline.")
        for request in pending.removeAll(heldBy: resource) {
            finish(request, latency: nil)
            if retry(request, now: now, into: &actions) { continue }
            fail(request, error, into: &actions)
        }
    }

    /// Backoff for a bounced subscription: `initial · 2^(n-1)`, at most `max` (no jitter: one per route).
    private func resubscribeDelay(after bounces: Int) -> Duration {
        let initial = config.reconnectInitial.seconds
        let seconds = min(config.reconnectMax.seconds, initial * Double(1 << min(bounces - 1, 20)))
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// Users' presence to the component: refuse what asks for something (RFC 6120 §8.3), and let
    /// the rest (unavailable, errors, subscription answers) pass silently, as it needs no answer.
    private mutating func refuseUserPresence(_ presence: XMLElement, type: String?, into actions: inout [RouteAction]) {
        switch type {
        case nil, "subscribe", "probe":
            let error = StanzaError(.cancel, .featureNotImplemented, text: "This service takes IQ requests only.")
            count(error)
            actions.append(.send(errorReply(to: presence, error)))
        default:
            break
        }
    }
}
