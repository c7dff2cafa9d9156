import Router

/// `least-pending`: the ready resource with the fewest requests in flight relative to its weight
/// (`pending / weight`, compared as `pending_a · weight_b < pending_b · weight_a`).
///
/// Pools up to `scan_limit` resources are scanned whole, ties broken at random; larger pools use
/// the power of two random choices: two resources drawn by weight, the less loaded one wins.
public final class LeastPendingStrategy<Source: RandomNumberGenerator>: BalancingStrategy {
    public let name = "least-pending"
    public let scanLimit: Int
    private var random: Source
    private var eligible: EligibleResources

    public init(policy: PresencePolicy = PresencePolicy(), scanLimit: Int = 16, random: Source) {
        self.random = random
        self.scanLimit = scanLimit
        self.eligible = EligibleResources(policy: policy)
    }

    public func pick(for request: BalancingRequest, from pool: ResourcePool) -> String? {
        eligible.refresh(from: pool)
        guard eligible.count > 0 else { return nil }
        let chosen = eligible.count <= scanLimit ? scan(pool) : twoChoices(pool)
        return pool.members[eligible.positions[chosen]].name
    }

    private func isLess(_ a: Int, than b: Int, in pool: ResourcePool) -> Bool {
        let pendingA = pool.members[eligible.positions[a]].pending
        let pendingB = pool.members[eligible.positions[b]].pending
        return pendingA * eligible.weights[b] < pendingB * eligible.weights[a]
    }

    /// The least loaded index; among equals, each is equally likely (reservoir sampling).
    private func scan(_ pool: ResourcePool) -> Int {
        var best = 0
        var ties = 1
        for index in 1..<eligible.count {
            if isLess(index, than: best, in: pool) {
                best = index
                ties = 1
            } else if !isLess(best, than: index, in: pool) {
                ties += 1
                if Int.random(in: 0..<ties, using: &random) == 0 { best = index }
            }
        }
        return best
    }

    private func twoChoices(_ pool: ResourcePool) -> Int {
        let first = eligible.index(forTicket: Int.random(in: 0..<eligible.totalWeight, using: &random))
        var second = eligible.index(forTicket: Int.random(in: 0..<eligible.totalWeight, using: &random))
        if second == first { second = (first + 1) % eligible.count }
        if isLess(second, than: first, in: pool) { return second }
        if isLess(first, than: second, in: pool) { return first }
        return Bool.random(using: &random) ? first : second
    }
}

extension LeastPendingStrategy where Source == FastRandom {
    public convenience init(policy: PresencePolicy = PresencePolicy(), scanLimit: Int = 16) {
        self.init(policy: policy, scanLimit: scanLimit, random: FastRandom())
    }
}
