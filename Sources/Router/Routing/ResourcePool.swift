import Synchronization

/// The source of pool generation numbers: unique in the process.
enum PoolGenerations {
    private static let counter = Atomic<UInt64>(0)

    static func next() -> UInt64 {
        counter.add(1, ordering: .relaxed).newValue
    }
}

/// Presence `<show/>` values (RFC 6121 §4.7.2.1); nil in a resource means plain available.
public enum PresenceShow: String, Sendable {
    case away, chat, dnd, xa
}

/// Whether a resource takes new requests.
public enum ResourceState: String, Sendable, CaseIterable {
    /// Takes new requests.
    case ready
    /// Set by an operator: no new requests; those in flight finish.
    case draining
    /// Set by an operator: out of the pool until set ready again; those in flight finish.
    case maintenance = "maint"
    /// Taken out by the router after repeated failures, for a cool-down.
    case ejected
    /// Taken out by the router: it did not answer a ping.
    case down
}

/// One online resource of the target, as the pool knows it.
public struct PooledResource: Sendable {
    /// The resourcepart, prepared.
    public let name: String
    public var priority: Int
    public var show: PresenceShow?
    public var weight: Int
    public var state: ResourceState
    /// Requests sent to this resource and not yet answered.
    public var pending: Int
    /// Requests this resource answered.
    public var served: Int
    /// Recent reply latency: an exponentially weighted moving average, `avg += (sample - avg) / 8`;
    /// nil until the first reply.
    public var latency: Duration?
    /// At the route's limit of requests in flight per resource.
    public var isFull = false

    public var isReady: Bool { state == .ready && weight > 0 && !isFull }
}

/// The online resources of a route's target: a set keyed by resourcepart, stored contiguously so
/// that strategies can index it. Removal swaps the last member into the hole, so no position is
/// ever empty and a strategy can never pick a resource that left.
public struct ResourcePool: Sendable {
    public private(set) var members: [PooledResource] = []
    private var positions: [String: Int] = [:]
    /// Changes whenever membership, presence, weight or state changes (not for pending counts),
    /// so that a strategy can cache what it derives from the pool until the next change. Numbers
    /// come from one counter for all pools, so no two states of any pools (copies included)
    /// share one.
    public private(set) var generation: UInt64 = PoolGenerations.next()
    /// Requests in flight a resource may hold; nil for no limit.
    public var maxPendingPerResource: Int?

    public init(maxPendingPerResource: Int? = nil) {
        self.maxPendingPerResource = maxPendingPerResource
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var readyCount: Int { members.reduce(0) { $0 + ($1.isReady ? 1 : 0) } }

    public subscript(name: String) -> PooledResource? {
        positions[name].map { members[$0] }
    }

    /// Adds a resource or updates its presence. Returns true when it was not in the pool.
    @discardableResult
    public mutating func update(_ name: String, priority: Int, show: PresenceShow?) -> Bool {
        if let index = positions[name] {
            if members[index].priority != priority || members[index].show != show {
                members[index].priority = priority
                members[index].show = show
                generation = PoolGenerations.next()
            }
            return false
        }
        positions[name] = members.count
        members.append(PooledResource(
            name: name, priority: priority, show: show, weight: 1, state: .ready, pending: 0, served: 0, latency: nil
        ))
        generation = PoolGenerations.next()
        return true
    }

    /// Removes a resource; returns what the pool knew of it.
    @discardableResult
    public mutating func remove(_ name: String) -> PooledResource? {
        guard let index = positions.removeValue(forKey: name) else { return nil }
        let removed = members[index]
        generation = PoolGenerations.next()
        let last = members.removeLast()
        if index < members.count {
            members[index] = last
            positions[last.name] = index
        }
        return removed
    }

    public mutating func removeAll() {
        members.removeAll()
        positions.removeAll()
        generation = PoolGenerations.next()
    }

    /// Sets a resource's weight; false if it is not in the pool.
    @discardableResult
    public mutating func setWeight(_ weight: Int, of name: String) -> Bool {
        guard let index = positions[name] else { return false }
        members[index].weight = max(0, weight)
        generation = PoolGenerations.next()
        return true
    }

    /// Sets a resource's state; false if it is not in the pool.
    @discardableResult
    public mutating func setState(_ state: ResourceState, of name: String) -> Bool {
        guard let index = positions[name] else { return false }
        members[index].state = state
        generation = PoolGenerations.next()
        return true
    }

    /// Counts a request sent to `name`.
    mutating func requestSent(to name: String) {
        guard let index = positions[name] else { return }
        members[index].pending += 1
        updateFullness(at: index)
    }

    /// Marks a resource full or not when it crosses the limit; a change is a new generation, so
    /// strategies stop (or start again) picking it.
    private mutating func updateFullness(at index: Int) {
        let full = maxPendingPerResource.map { members[index].pending >= $0 } ?? false
        if members[index].isFull != full {
            members[index].isFull = full
            generation = PoolGenerations.next()
        }
    }

    /// Whether some resource would take requests but for the limit per resource.
    public var hasFullReadyResource: Bool {
        members.contains { $0.isFull && $0.state == .ready && $0.weight > 0 }
    }

    /// Counts the end of a request held by `name`; `latency` is given when the resource replied.
    mutating func requestEnded(at name: String, latency: Duration?) {
        guard let index = positions[name] else { return }
        members[index].pending = max(0, members[index].pending - 1)
        updateFullness(at: index)
        guard let latency else { return }
        members[index].served += 1
        if let average = members[index].latency {
            members[index].latency = average + (latency - average) / 8
        } else {
            members[index].latency = latency
        }
    }
}
