import Dispatch

/// A copy of one resource's state, taken on its route's serial context.
public struct ResourceSnapshot: Sendable {
    public var name: String
    public var online: Bool
    public var state: ResourceState
    public var weight: Int
    public var priority: Int
    public var show: PresenceShow?
    public var pending: Int
    public var stats: ResourceStats
}

/// A request in flight, as `routerctl pending` shows it.
public struct PendingSnapshot: Sendable {
    public var sender: String
    public var resource: String
    public var id: String
    public var age: Duration
}

/// A copy of one route's state: what the control plane reports, never live shared state.
public struct RouteSnapshot: Sendable {
    public var name: String
    public var target: String
    public var connection: ConnectionState
    /// Time since the stream was authenticated; nil while not connected.
    public var connectedFor: Duration?
    public var reconnects: Int
    public var strategy: String
    public var encoder: String
    public var pending: Int
    public var stats: RouteStats
    public var resources: [ResourceSnapshot]

    public var resourcesReady: Int { resources.filter { $0.online && $0.state == .ready && $0.weight > 0 }.count }
    public var resourcesOnline: Int { resources.filter(\.online).count }
}

extension ComponentRoute {
    /// Runs `body` on the route's event loop and waits for it. Call from outside that context.
    public func onQueue<T>(_ body: @escaping (ComponentRoute) throws(ControlError) -> T) throws(ControlError) -> T {
        let result: Result<T, ControlError> = loop.sync {
            do throws(ControlError) {
                return .success(try body(self))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The route's state now.
    public func snapshot() -> RouteSnapshot {
        loop.sync { self.makeSnapshot() }
    }

    /// The oldest requests in flight, at most `limit`.
    public func oldestPending(limit: Int) -> [PendingSnapshot] {
        loop.sync {
            let now = Instant.now()
            return self.core.pending.all.sorted { $0.started < $1.started }.prefix(limit).map { request in
                PendingSnapshot(sender: request.key.sender.description, resource: request.resource,
                                id: request.key.id, age: now.since(request.started))
            }
        }
    }

    /// Applies a change to the routing core, then writes whatever it produced.
    public func mutateCore(_ body: @escaping (inout RouteCore) throws(ControlError) -> Void) throws(ControlError) {
        try onQueue { (route: ComponentRoute) throws(ControlError) in
            try body(&route.core)
            route.afterEvents()
        }
    }

    private func makeSnapshot() -> RouteSnapshot {
        var resources: [ResourceSnapshot] = core.pool.members.map { member in
            ResourceSnapshot(
                name: member.name, online: true, state: member.state, weight: member.weight,
                priority: member.priority, show: member.show, pending: member.pending,
                stats: core.resourceStats[member.name] ?? ResourceStats()
            )
        }
        let offline = Set(core.resourceStats.keys).union(core.overrides.keys).subtracting(resources.map(\.name))
        for name in offline {
            let override = core.overrides[name]
            resources.append(ResourceSnapshot(
                name: name, online: false, state: override?.state ?? .ready, weight: override?.weight ?? 1,
                priority: 0, show: nil, pending: 0, stats: core.resourceStats[name] ?? ResourceStats()
            ))
        }
        resources.sort { $0.name < $1.name }
        return RouteSnapshot(
            name: name, target: config.target.description, connection: state,
            connectedFor: authenticatedAt.map { Instant.now().since($0) }, reconnects: reconnects,
            strategy: core.strategy.name, encoder: core.encoder.name, pending: core.pending.count,
            stats: core.stats, resources: resources
        )
    }
}

extension ComponentRoute {
    /// The route's current configuration (a reload may have changed it since start).
    public func snapshotConfig() -> RouteConfig {
        loop.sync { self.core.config }
    }

    /// Refuses new requests, waits until those in flight have ended (answered or timed out),
    /// then stops as `stop` does.
    public func drainAndStop(completion: @escaping @Sendable () -> Void) {
        loop.execute {
            self.core.stopAccepting()
            self.log.info("route draining before removal", [("pending", "\(self.core.pending.count)")])
            self.stopWhenIdle(completion: completion)
        }
    }

    private func stopWhenIdle(completion: @escaping @Sendable () -> Void) {
        guard core.pending.count == 0 || state != .authenticated else {
            loop.schedule(after: .milliseconds(100)) { self.stopWhenIdle(completion: completion) }
            return
        }
        stop(completion: completion)
    }
}
