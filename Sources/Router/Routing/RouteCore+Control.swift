/// Why an operator's command on a route could not be carried out.
public struct ControlError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// A machine-readable kind, sent as `code` (`invalid-config` for a reload that did not load).
    public var code: String?

    public init(_ message: String, code: String? = nil) {
        self.message = message
        self.code = code
    }

    public var description: String { message }
}

/// Operator commands on a route, applied between stanzas on the route's serial context.
extension RouteCore {
    /// Sets a resource's state by hand. The setting outlives the resource going offline and
    /// coming back; `ready` clears it.
    public mutating func setState(_ state: ResourceState, of resource: String) throws(ControlError) {
        try requireKnown(resource)
        var override = overrides[resource] ?? ResourceOverride()
        override.state = state == .ready ? nil : state
        overrides[resource] = override.state == nil && override.weight == nil ? nil : override
        refreshState(of: resource)
        log.info("resource state set", [("resource", resource), ("state", state.rawValue)])
    }

    /// Sets a resource's weight by hand; it outlives the resource reconnecting.
    public mutating func setWeight(_ weight: Int, of resource: String) throws(ControlError) {
        try requireKnown(resource)
        guard weight >= 0 else { throw ControlError("a weight is 0 or more") }
        overrides[resource, default: ResourceOverride()].weight = weight
        pool.setWeight(weight, of: resource)
        log.info("resource weight set", [("resource", resource), ("weight", "\(weight)")])
    }

    /// Replaces the strategy; the next request uses the new one.
    public mutating func replaceStrategy(_ strategy: any BalancingStrategy) {
        self.strategy = strategy
        log.info("strategy changed", [("strategy", strategy.name)])
    }

    /// Applies a reloaded configuration that keeps the same connection. A replaced encoder keeps
    /// decoding the JATs in flight until the longest of them could still be answered.
    public mutating func reconfigure(
        _ config: RouteConfig, strategy: (any BalancingStrategy)?, encoder: (any JATEncoder)?, now: Instant
    ) {
        if let encoder {
            let until = now + max(self.config.requestTimeout, config.requestTimeout)
            retiredEncoders.append((self.encoder, until))
            self.encoder = encoder
        }
        if let strategy { self.strategy = strategy }
        self.config = config
        pool.maxPendingPerResource = config.limits.maxPendingPerResource
    }

    /// Refuses new requests from now on; the ones in flight finish or time out.
    public mutating func stopAccepting() {
        acceptingRequests = false
    }

    private func requireKnown(_ resource: String) throws(ControlError) {
        guard pool[resource] != nil || overrides[resource] != nil || resourceStats[resource] != nil else {
            throw ControlError("no resource '\(resource)' on route \(config.name)")
        }
    }
}
