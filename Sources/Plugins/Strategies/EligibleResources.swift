import Router

/// How presence decides which resources a strategy may use; the same options for every strategy.
///
/// ```yaml
/// strategy:
///   name: round-robin
///   min_priority: 0          # resources below this priority are not used
///   away: avoid              # away/xa/dnd resources: use | avoid (only when nothing else) | exclude
///   weight_from_priority: false   # true: a resource's weight is its priority (<= 0: not used)
/// ```
public struct PresencePolicy: Sendable, Equatable {
    public enum Away: String, Sendable, CaseIterable {
        case use, avoid, exclude
    }

    public var minPriority: Int?
    public var away: Away = .use
    public var weightFromPriority = false

    public init(minPriority: Int? = nil, away: Away = .use, weightFromPriority: Bool = false) {
        self.minPriority = minPriority
        self.away = away
        self.weightFromPriority = weightFromPriority
    }

    /// Reads the shared options from a strategy's option mapping.
    public static func read(from options: inout ConfigMapping) throws(ConfigError) -> PresencePolicy {
        var policy = PresencePolicy()
        policy.minPriority = try options.optional("min_priority")?.integer(in: -128...127)
        if let value = options.optional("away") {
            let text = try value.string()
            guard let away = Away(rawValue: text) else {
                throw value.error("expected use, avoid or exclude, found '\(text)'")
            }
            policy.away = away
        }
        policy.weightFromPriority = try options.optional("weight_from_priority")?.bool() ?? false
        return policy
    }

    func weight(of member: PooledResource) -> Int {
        guard member.isReady else { return 0 }
        if let minPriority, member.priority < minPriority { return 0 }
        if weightFromPriority { return member.priority > 0 ? member.priority * member.weight : 0 }
        return member.weight
    }

    static func isAway(_ member: PooledResource) -> Bool {
        switch member.show {
        case .away?, .xa?, .dnd?: true
        case .chat?, nil: false
        }
    }
}

/// The resources a strategy may pick and their effective weights, derived from the pool and a
/// `PresencePolicy`, and rebuilt only when the pool's generation changes.
public struct EligibleResources {
    /// Positions in `pool.members` of the eligible resources.
    public private(set) var positions: [Int] = []
    public private(set) var weights: [Int] = []
    /// `cumulative[i]` is the sum of `weights[0...i]`.
    public private(set) var cumulative: [Int] = []
    public private(set) var allWeightsEqual = true
    public let policy: PresencePolicy
    private var generation: UInt64?

    public init(policy: PresencePolicy) {
        self.policy = policy
    }

    public var count: Int { positions.count }
    public var totalWeight: Int { cumulative.last ?? 0 }

    /// Brings the set up to date with `pool`; returns true when it was rebuilt.
    @discardableResult
    public mutating func refresh(from pool: ResourcePool) -> Bool {
        guard generation != pool.generation else { return false }
        generation = pool.generation
        positions.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)
        cumulative.removeAll(keepingCapacity: true)

        var candidates: [(position: Int, weight: Int, away: Bool)] = []
        for (position, member) in pool.members.enumerated() {
            let weight = policy.weight(of: member)
            let away = PresencePolicy.isAway(member)
            if weight > 0, !(away && policy.away == .exclude) {
                candidates.append((position, weight, away))
            }
        }
        if policy.away == .avoid, candidates.contains(where: { !$0.away }) {
            candidates.removeAll { $0.away }
        }

        var total = 0
        for candidate in candidates {
            positions.append(candidate.position)
            weights.append(candidate.weight)
            total += candidate.weight
            cumulative.append(total)
        }
        allWeightsEqual = weights.allSatisfy { $0 == weights.first }
        return true
    }

    /// The index (into `positions`) that a ticket in `0..<totalWeight` falls on: binary search.
    public func index(forTicket ticket: Int) -> Int {
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > ticket { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
