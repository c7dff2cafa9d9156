import Router

/// `random`: picks a ready resource at random, in proportion to its weight.
public final class RandomStrategy<Source: RandomNumberGenerator>: BalancingStrategy {
    public let name = "random"
    private var random: Source

    public init(random: Source) {
        self.random = random
    }

    public func pick(for request: BalancingRequest, from pool: ResourcePool) -> String? {
        var total = 0
        for member in pool.members where member.isReady { total += member.weight }
        guard total > 0 else { return nil }
        var ticket = Int.random(in: 0..<total, using: &random)
        for member in pool.members where member.isReady {
            if ticket < member.weight { return member.name }
            ticket -= member.weight
        }
        return nil
    }
}

extension RandomStrategy where Source == SystemRandomNumberGenerator {
    public convenience init() {
        self.init(random: SystemRandomNumberGenerator())
    }
}
