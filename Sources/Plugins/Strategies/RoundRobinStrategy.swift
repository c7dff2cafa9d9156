import Router

/// `round-robin`: smooth weighted round robin. Each pick adds every resource's weight to its
/// credit, takes the resource with the most credit and subtracts the total weight from it; over
/// any `total` picks each resource gets its weight's share, interleaved (weights 3 and 1 give
/// a a b a, not a a a b). Equal weights reduce to a plain rotation, O(1) per pick.
public final class RoundRobinStrategy: BalancingStrategy {
    public let name = "round-robin"
    private var eligible: EligibleResources
    /// Credit per resource name, kept across pool changes so that a change causes no burst.
    private var credit: [String: Int] = [:]
    private var cursor = 0

    public init(policy: PresencePolicy = PresencePolicy()) {
        self.eligible = EligibleResources(policy: policy)
    }

    public func pick(for request: BalancingRequest, from pool: ResourcePool) -> String? {
        if eligible.refresh(from: pool) {
            let present = Set(eligible.positions.map { pool.members[$0].name })
            credit = credit.filter { present.contains($0.key) }
        }
        guard eligible.count > 0 else { return nil }
        if eligible.allWeightsEqual {
            cursor = (cursor + 1) % eligible.count
            return pool.members[eligible.positions[cursor]].name
        }
        // Limitation: with unequal weights a pick walks every eligible resource (O(n)).
        var best = -1
        var bestCredit = Int.min
        for index in 0..<eligible.count {
            let name = pool.members[eligible.positions[index]].name
            let updated = credit[name, default: 0] + eligible.weights[index]
            credit[name] = updated
            if updated > bestCredit {
                bestCredit = updated
                best = index
            }
        }
        let chosen = pool.members[eligible.positions[best]].name
        credit[chosen, default: 0] -= eligible.totalWeight
        return chosen
    }
}
