import Router

/// `random`: picks a ready resource at random, in proportion to its weight. A binary search over
/// cumulative weights keeps a pick O(log n) in the pool's size.
public final class RandomStrategy<Source: RandomNumberGenerator>: BalancingStrategy {
    public let name = "random"
    private var random: Source
    private var eligible: EligibleResources

    public init(policy: PresencePolicy = PresencePolicy(), random: Source) {
        self.random = random
        self.eligible = EligibleResources(policy: policy)
    }

    public func pick(for request: BalancingRequest, from pool: ResourcePool) -> String? {
        eligible.refresh(from: pool)
        guard eligible.totalWeight > 0 else { return nil }
        let ticket = Int.random(in: 0..<eligible.totalWeight, using: &random)
        return pool.members[eligible.positions[eligible.index(forTicket: ticket)]].name
    }
}

extension RandomStrategy where Source == FastRandom {
    public convenience init(policy: PresencePolicy = PresencePolicy()) {
        self.init(policy: policy, random: FastRandom())
    }
}
