@testable import Plugins
@testable import Router
import Testing

@Suite("Strategies: presence policy")
struct PresencePolicyTests {
    /// Resources with the given priority and show, all of weight 1.
    private func pool(_ members: [(name: String, priority: Int, show: PresenceShow?)]) -> ResourcePool {
        var pool = ResourcePool()
        for member in members { pool.update(member.name, priority: member.priority, show: member.show) }
        return pool
    }

    /// The resources `kind` picks over `picks` requests from different senders.
    private func picked(
        _ kind: StrategyKind, _ policy: PresencePolicy, _ pool: ResourcePool, picks: Int = 400
    ) throws -> Set<String> {
        let strategy = kind.make(policy: policy)
        var seen: Set<String> = []
        for index in 0..<picks {
            let request = try balancingRequest(from: "u\(index)@example.org/r")
            seen.insert(strategy.pick(for: request, from: pool) ?? "<none>")
        }
        return seen
    }

    @Test("min_priority leaves out resources below it", arguments: StrategyKind.allCases)
    func minPriority(kind: StrategyKind) throws {
        let pool = pool([("high", 5, nil), ("zero", 0, nil), ("negative", -1, nil)])

        #expect(try picked(kind, PresencePolicy(minPriority: 0), pool) == ["high", "zero"])
        #expect(try picked(kind, PresencePolicy(minPriority: 1), pool) == ["high"])
        #expect(try picked(kind, PresencePolicy(minPriority: 6), pool) == ["<none>"])
        #expect(try picked(kind, PresencePolicy(), pool) == ["high", "zero", "negative"])
    }

    @Test("away: exclude never uses away, xa or dnd resources, even when nothing else is online",
          arguments: StrategyKind.allCases)
    func awayExclude(kind: StrategyKind) throws {
        let policy = PresencePolicy(away: .exclude)
        var pool = pool([("away", 0, .away), ("xa", 0, .xa), ("dnd", 0, .dnd), ("chat", 0, .chat), ("plain", 0, nil)])

        #expect(try picked(kind, policy, pool) == ["chat", "plain"])
        pool.remove("chat")
        pool.remove("plain")
        #expect(try picked(kind, policy, pool) == ["<none>"])
    }

    @Test("away: avoid uses away resources only when no other is ready", arguments: StrategyKind.allCases)
    func awayAvoid(kind: StrategyKind) throws {
        let policy = PresencePolicy(away: .avoid)
        var pool = pool([("away", 0, .away), ("dnd", 0, .dnd), ("plain", 0, nil)])

        #expect(try picked(kind, policy, pool) == ["plain"])
        pool.setState(.draining, of: "plain")
        #expect(try picked(kind, policy, pool) == ["away", "dnd"])
        pool.setState(.ready, of: "plain")
        #expect(try picked(kind, policy, pool) == ["plain"])
        pool.remove("plain")
        #expect(try picked(kind, policy, pool) == ["away", "dnd"])
    }

    @Test("away: use treats away resources like the others", arguments: StrategyKind.allCases)
    func awayUse(kind: StrategyKind) throws {
        let pool = pool([("away", 0, .away), ("xa", 0, .xa), ("plain", 0, nil)])

        #expect(try picked(kind, PresencePolicy(away: .use), pool) == ["away", "xa", "plain"])
    }

    @Test("a resource that changes its show to away is avoided from the next pick on")
    func showChange() throws {
        var pool = pool([("a", 0, nil), ("b", 0, nil)])
        let strategy = RoundRobinStrategy(policy: PresencePolicy(away: .avoid))
        #expect(try tally(strategy, pool, picks: 10) == ["a": 5, "b": 5])

        pool.update("a", priority: 0, show: .xa)

        #expect(try tally(strategy, pool, picks: 10) == ["b": 10])
    }

    @Test("weight_from_priority: priorities 3 and 1 get 75% and 25% of 20,000 random picks, within 2 points")
    func weightFromPriority() throws {
        let pool = pool([("a", 3, nil), ("b", 1, nil), ("zero", 0, nil), ("negative", -5, nil)])
        let strategy = RandomStrategy(policy: PresencePolicy(weightFromPriority: true), random: SplitMix64(seed: 21))

        let counts = try tally(strategy, pool, picks: 20_000)

        #expect(counts["zero"] == nil && counts["negative"] == nil)
        #expect(abs(Double(counts["a", default: 0]) / 20_000 - 0.75) <= 0.02)
    }

    @Test("weight_from_priority gives round robin its weights: priorities 3 and 1 give a a b a")
    func weightFromPriorityRoundRobin() throws {
        let pool = pool([("a", 3, nil), ("b", 1, nil)])
        let strategy = RoundRobinStrategy(policy: PresencePolicy(weightFromPriority: true))
        let request = try balancingRequest()

        let sequence = (0..<4).map { _ in strategy.pick(for: request, from: pool) ?? "<none>" }

        #expect(sequence == ["a", "a", "b", "a"])
    }

    @Test("weight_from_priority with only non-positive priorities picks nothing", arguments: StrategyKind.allCases)
    func weightFromPriorityNothing(kind: StrategyKind) throws {
        let pool = pool([("zero", 0, nil), ("negative", -1, nil)])

        #expect(try picked(kind, PresencePolicy(weightFromPriority: true), pool) == ["<none>"])
    }

    @Test("eligible resources are rebuilt only when the pool's generation changes")
    func generationCaching() {
        var pool = pool([("a", 0, nil), ("b", 0, nil)])
        var eligible = EligibleResources(policy: PresencePolicy())

        var rebuilt: [Bool] = []
        rebuilt.append(eligible.refresh(from: pool))
        rebuilt.append(eligible.refresh(from: pool))
        pool.requestSent(to: "a")
        rebuilt.append(eligible.refresh(from: pool))
        pool.update("a", priority: 0, show: nil)
        rebuilt.append(eligible.refresh(from: pool))
        pool.update("a", priority: 1, show: nil)
        rebuilt.append(eligible.refresh(from: pool))
        pool.setWeight(4, of: "b")
        rebuilt.append(eligible.refresh(from: pool))

        #expect(rebuilt == [true, false, false, false, true, true])
        #expect(eligible.weights.sorted() == [1, 4] && eligible.totalWeight == 5 && !eligible.allWeightsEqual)
    }
}
