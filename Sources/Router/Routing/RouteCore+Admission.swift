/// Token buckets per sender; bounded by dropping buckets that have refilled completely.
struct RateBuckets {
    private var buckets: [String: (tokens: Double, updated: Instant)] = [:]
    static let sweepAt = 100_000

    /// Takes a token for `sender`; false when its bucket is empty.
    mutating func take(for sender: String, limit: RateLimit, now: Instant) -> Bool {
        if buckets.count >= Self.sweepAt { sweep(limit: limit, now: now) }
        var bucket = buckets[sender] ?? (limit.burst, now)
        bucket.tokens = min(limit.burst, bucket.tokens + now.since(bucket.updated).seconds * limit.rate)
        bucket.updated = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets[sender] = bucket
        return allowed
    }

    private mutating func sweep(limit: RateLimit, now: Instant) {
        buckets = buckets.filter { $0.value.tokens + now.since($0.value.updated).seconds * limit.rate < limit.burst }
    }
}

extension RouteCore {
    /// Why a request cannot be forwarded at all, before any resource is considered.
    func refusal(of iq: XMLElement, from: JID, to: JID, now: Instant) -> StanzaError? {
        if iq[attribute: "id"] == nil {
            return StanzaError(.modify, .badRequest, text: "An IQ request needs an id.")
        }
        if to.localpart == nil, to.resourcepart != nil {
            // Limitation: requests from the service to a requester (through a JAT) are not proxied.
            return StanzaError(.cancel, .serviceUnavailable, text: "Translated addresses take no requests.")
        }
        if from.bare == config.target {
            return StanzaError(.cancel, .serviceUnavailable, text: "The service cannot call itself through the router.")
        }
        if !acceptingRequests {
            return StanzaError(.cancel, .serviceUnavailable, text: "This route is being removed.")
        }
        if !config.access.isOpen, !config.access.permits(from) {
            return StanzaError(.auth, .forbidden, text: "You may not use this service.")
        }
        return nil
    }

    /// Limits that apply to a request that may otherwise be forwarded: its id is not in flight
    /// already, the sender is within its rate, the route within its limit.
    mutating func admissionError(for key: PendingKey, now: Instant) -> StanzaError? {
        if pending.contains(key) {
            return StanzaError(.modify, .badRequest, text: "A request with this id is already in flight.")
        }
        if let limit = config.rateLimit, !rateBuckets.take(for: key.sender.bare.description, limit: limit, now: now) {
            return StanzaError(.wait, .policyViolation, text: "Too many requests; slow down.")
        }
        if pending.count >= config.limits.maxPending {
            return StanzaError(.wait, .resourceConstraint, text: "Too many requests in flight; try again later.")
        }
        return nil
    }
}
