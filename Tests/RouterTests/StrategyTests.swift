@testable import Plugins
@testable import Router
import Testing

@Suite("Strategies: what every strategy guarantees")
struct StrategyContractTests {
    @Test("no strategy picks a resource that is not ready or has weight 0", arguments: StrategyKind.allCases)
    func neverPicksUnready(kind: StrategyKind) throws {
        var pool = makePool(["ready", "draining", "ejected", "maint", "down", "idle", "ready2"])
        for state in ResourceState.allCases where state != .ready {
            pool.setState(state, of: state == .maintenance ? "maint" : state.rawValue)
        }
        pool.setWeight(0, of: "idle")
        let strategy = kind.make()

        var seen: Set<String> = []
        for index in 0..<2000 {
            let request = try balancingRequest(from: "user\(index)@example.org/r")
            seen.insert(strategy.pick(for: request, from: pool) ?? "<none>")
        }

        #expect(seen == ["ready", "ready2"])
    }

    @Test("no strategy picks a resource at the limit of requests in flight", arguments: StrategyKind.allCases)
    func neverPicksFull(kind: StrategyKind) throws {
        var pool = ResourcePool(maxPendingPerResource: 2)
        for name in ["a", "b"] { pool.update(name, priority: 0, show: nil) }
        let strategy = kind.make()
        pool.requestSent(to: "a")
        pool.requestSent(to: "a")
        #expect(try tally(strategy, pool, picks: 200) == ["b": 200])

        pool.requestEnded(at: "a", latency: nil)
        pool.requestSent(to: "b")
        pool.requestSent(to: "b")
        #expect(try tally(strategy, pool, picks: 200) == ["a": 200])
    }

    @Test("no strategy picks anything from a pool with no ready resource", arguments: StrategyKind.allCases)
    func nothingReady(kind: StrategyKind) throws {
        let strategy = kind.make()
        var pool = ResourcePool()
        #expect(strategy.pick(for: try balancingRequest(), from: pool) == nil)

        pool = makePool(["a", "b", "c"])
        pool.setState(.draining, of: "a")
        pool.setState(.ejected, of: "b")
        pool.setWeight(0, of: "c")
        #expect(try tally(strategy, pool, picks: 100) == ["<none>": 100])
    }

    @Test("a resource that left the pool is never picked again, and no hole is left", arguments: StrategyKind.allCases)
    func removedBetweenPicks(kind: StrategyKind) throws {
        // 1. Five resources, all used.
        var pool = makePool(["a", "b", "c", "d", "e"])
        let strategy = kind.make()
        var before: Set<String> = []
        for index in 0..<500 {
            before.insert(strategy.pick(for: try balancingRequest(from: "u\(index)@example.org/r"), from: pool) ?? "")
        }
        #expect(before == ["a", "b", "c", "d", "e"])

        // 2. `b` leaves (the last member moves into its place), then `a` leaves too.
        pool.remove("b")
        var after: Set<String> = []
        for index in 0..<500 {
            after.insert(strategy.pick(for: try balancingRequest(from: "u\(index)@example.org/r"), from: pool) ?? "")
        }
        #expect(after == ["a", "c", "d", "e"])
        pool.remove("a")
        after = []
        for index in 0..<500 {
            after.insert(strategy.pick(for: try balancingRequest(from: "u\(index)@example.org/r"), from: pool) ?? "")
        }
        #expect(after == ["c", "d", "e"])

        // 3. The last one left is picked every time; once it leaves, nothing is.
        pool.remove("c")
        pool.remove("d")
        #expect(try tally(strategy, pool, picks: 50) == ["e": 50])
        pool.remove("e")
        #expect(try tally(strategy, pool, picks: 50) == ["<none>": 50])
    }

    @Test("a resource made ready again is picked again", arguments: StrategyKind.allCases)
    func readyAgain(kind: StrategyKind) throws {
        var pool = makePool(["a", "b"])
        let strategy = kind.make()
        pool.setState(.draining, of: "a")
        #expect(try tally(strategy, pool, picks: 20) == ["b": 20])

        pool.setState(.ready, of: "a")
        pool.setState(.draining, of: "b")
        #expect(try tally(strategy, pool, picks: 20) == ["a": 20])
    }
}

@Suite("Strategies: random")
struct RandomStrategyTests {
    @Test("weights 3 and 1 get 75% and 25% of 20,000 picks, within 2 points")
    func weightedShares() throws {
        let pool = makePool([("a", 3), ("b", 1)])
        let strategy = RandomStrategy(random: SplitMix64(seed: 1))

        let counts = try tally(strategy, pool, picks: 20_000)

        let share = Double(counts["a", default: 0]) / 20_000
        #expect(abs(share - 0.75) <= 0.02)
        #expect(counts["a", default: 0] + counts["b", default: 0] == 20_000)
    }

    @Test("weights 1, 2, 3 and 4 get 10%, 20%, 30% and 40% of 40,000 picks, within 1.5 points")
    func fourWeights() throws {
        let pool = makePool([("a", 1), ("b", 2), ("c", 3), ("d", 4)])
        let strategy = RandomStrategy(random: SplitMix64(seed: 2))

        let counts = try tally(strategy, pool, picks: 40_000)

        for (name, expected) in [("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.4)] {
            #expect(abs(Double(counts[name, default: 0]) / 40_000 - expected) <= 0.015, "\(name)")
        }
    }

    @Test("equal weights spread 30,000 picks evenly over three resources, within 2 points")
    func equalWeights() throws {
        let pool = makePool(["a", "b", "c"])
        let strategy = RandomStrategy(random: SplitMix64(seed: 3))

        let counts = try tally(strategy, pool, picks: 30_000)

        for name in ["a", "b", "c"] {
            #expect(abs(Double(counts[name, default: 0]) / 30_000 - 1.0 / 3) <= 0.02, "\(name)")
        }
    }
}

@Suite("Strategies: smooth weighted round robin")
struct RoundRobinStrategyTests {
    private func picks(_ count: Int, _ strategy: RoundRobinStrategy, _ pool: ResourcePool) throws -> [String] {
        let request = try balancingRequest()
        return (0..<count).map { _ in strategy.pick(for: request, from: pool) ?? "<none>" }
    }

    /// Credits start at 0; each pick adds the weights, takes the highest (the first on a tie) and
    /// subtracts the total (4) from it:
    /// 1. a3 b1 → a (a-1)   2. a2 b2 → a (a-2)   3. a1 b3 → b (b-1)   4. a4 b0 → a (a0 b0),
    /// and the period starts again.
    @Test("weights 3 and 1 give a a b a, a a b a in the first eight picks")
    func threeToOneOrder() throws {
        let pool = makePool([("a", 3), ("b", 1)])
        let strategy = RoundRobinStrategy()

        #expect(try picks(8, strategy, pool) == ["a", "a", "b", "a", "a", "a", "b", "a"])
    }

    /// Three a's and one b per period of four cannot avoid a run of three a's where two periods
    /// meet; smoothness means every window of four picks holds exactly one b, never two b's close
    /// together nor four a's in a row.
    @Test("weights 3 and 1: every window of four consecutive picks holds three a and one b")
    func threeToOneWindows() throws {
        let pool = makePool([("a", 3), ("b", 1)])
        let strategy = RoundRobinStrategy()

        let sequence = try picks(400, strategy, pool)

        for start in 0...(sequence.count - 4) {
            let window = sequence[start..<(start + 4)]
            #expect(window.filter { $0 == "b" }.count == 1, "window at \(start): \(Array(window))")
        }
        #expect(sequence.filter { $0 == "a" }.count == 300)
    }

    /// 1. a5 b1 c1 → a   2. a3 b2 c2 → a   3. a1 b3 c3 → b   4. a6 b-3 c4 → a
    /// 5. a4 b-2 c5 → c  6. a9 b-1 c-1 → a  7. a7 b0 c0 → a (all credits back to 0).
    @Test("weights 5, 1 and 1 give a a b a c a a, the sequence of smooth weighted round robin")
    func fiveOneOne() throws {
        let pool = makePool([("a", 5), ("b", 1), ("c", 1)])
        let strategy = RoundRobinStrategy()

        let sequence = try picks(14, strategy, pool)

        let period = ["a", "a", "b", "a", "c", "a", "a"]
        #expect(sequence == period + period)
    }

    @Test("equal weights rotate through every resource in turn")
    func equalWeightsRotate() throws {
        let pool = makePool(["a", "b", "c"])
        let strategy = RoundRobinStrategy()

        let sequence = try picks(300, strategy, pool)

        for start in stride(from: 0, to: 300, by: 3) {
            #expect(Set(sequence[start..<(start + 3)]) == ["a", "b", "c"], "round at \(start)")
        }
        for start in 0..<(sequence.count - 1) {
            #expect(sequence[start] != sequence[start + 1])
        }
    }

    @Test("over 4,000 picks weights 3 and 1 get exactly 3,000 and 1,000")
    func exactShares() throws {
        let pool = makePool([("a", 3), ("b", 1)])
        let strategy = RoundRobinStrategy()

        let counts = try tally(strategy, pool, picks: 4000)

        #expect(counts == ["a": 3000, "b": 1000])
    }

    @Test("after a resource leaves, the rest rotate without a gap")
    func rotationAfterRemoval() throws {
        var pool = makePool(["a", "b", "c", "d"])
        let strategy = RoundRobinStrategy()
        _ = try picks(5, strategy, pool)

        pool.remove("b")
        let sequence = try picks(30, strategy, pool)

        for start in stride(from: 0, to: 30, by: 3) {
            #expect(Set(sequence[start..<(start + 3)]) == ["a", "c", "d"], "round at \(start)")
        }
    }
}

@Suite("Strategies: least pending")
struct LeastPendingStrategyTests {
    /// A pool whose members have the given pending counts, counted through the pool's own API.
    private func pool(_ members: [(name: String, weight: Int, pending: Int)]) -> ResourcePool {
        var pool = makePool(members.map { (name: $0.name, weight: $0.weight) })
        for member in members {
            for _ in 0..<member.pending { pool.requestSent(to: member.name) }
        }
        return pool
    }

    @Test("the idle resource takes every request while the others are busy")
    func prefersIdle() throws {
        let pool = pool([("a", 1, 3), ("b", 1, 0), ("c", 1, 1)])
        let strategy = LeastPendingStrategy(random: SplitMix64(seed: 4))

        #expect(try tally(strategy, pool, picks: 500) == ["b": 500])
    }

    @Test("load is compared relative to weight: 2 pending at weight 3 beats 1 pending at weight 1")
    func relativeToWeight() throws {
        let pool = pool([("a", 3, 2), ("b", 1, 1)])
        let strategy = LeastPendingStrategy(random: SplitMix64(seed: 5))

        #expect(try tally(strategy, pool, picks: 100) == ["a": 100])
    }

    @Test("ties are broken at random: three idle resources share 3,000 picks, each within 15%")
    func tiesVary() throws {
        let pool = pool([("a", 1, 0), ("b", 1, 0), ("c", 1, 0)])
        let strategy = LeastPendingStrategy(random: SplitMix64(seed: 6))

        let counts = try tally(strategy, pool, picks: 3000)

        for name in ["a", "b", "c"] {
            #expect(abs(counts[name, default: 0] - 1000) <= 150, "\(name): \(counts)")
        }
    }

    @Test("requests counted as they are sent keep the pending counts level")
    func staysLevel() throws {
        var pool = pool([("a", 1, 0), ("b", 1, 0), ("c", 1, 0), ("d", 1, 0)])
        let strategy = LeastPendingStrategy(random: SplitMix64(seed: 7))
        let request = try balancingRequest()

        for _ in 0..<101 {
            let chosen = try #require(strategy.pick(for: request, from: pool))
            pool.requestSent(to: chosen)
        }

        let pending = pool.members.map(\.pending)
        #expect(pending.reduce(0, +) == 101)
        #expect((pending.max() ?? 0) - (pending.min() ?? 0) <= 1)
    }

    @Test("a resource that answers frees its slot and is preferred again")
    func endedRequestsCount() throws {
        var pool = pool([("a", 1, 2), ("b", 1, 1)])
        let strategy = LeastPendingStrategy(random: SplitMix64(seed: 8))
        #expect(try tally(strategy, pool, picks: 10) == ["b": 10])

        pool.requestEnded(at: "a", latency: .milliseconds(3))
        pool.requestEnded(at: "a", latency: .milliseconds(5))

        #expect(try tally(strategy, pool, picks: 10) == ["a": 10])
    }

    @Test("beyond scan_limit, power-of-two choices never pick the busiest of 20 resources and use all others")
    func twoChoicesAvoidBusiest() throws {
        var members = (0..<20).map { (name: "r\($0)", weight: 1, pending: 0) }
        members[7].pending = 50
        let pool = pool(members)
        let strategy = LeastPendingStrategy(scanLimit: 16, random: SplitMix64(seed: 9))

        let counts = try tally(strategy, pool, picks: 5000)

        #expect(counts["r7"] == nil)
        #expect(counts.count == 19)
        for (name, count) in counts {
            #expect(abs(count - 5000 / 19) <= 80, "\(name): \(count)")
        }
    }

    @Test("power-of-two choices favour the least loaded: a lone idle resource wins whenever it is drawn")
    func twoChoicesFavourIdle() throws {
        var members = (0..<10).map { (name: "r\($0)", weight: 1, pending: 5) }
        members[3].pending = 0
        let pool = pool(members)
        let strategy = LeastPendingStrategy(scanLimit: 2, random: SplitMix64(seed: 10))

        let counts = try tally(strategy, pool, picks: 10_000)

        // r3 is one of two distinct draws with probability about 2/10.
        let share = Double(counts["r3", default: 0]) / 10_000
        #expect(share > 0.17 && share < 0.23, "r3 share \(share)")
    }

    @Test("power-of-two choices still spread a pool at rest, and a single resource still gets picked")
    func twoChoicesSpread() throws {
        let strategy = LeastPendingStrategy(scanLimit: 2, random: SplitMix64(seed: 11))
        let pool = pool([("a", 1, 0), ("b", 1, 0), ("c", 1, 0)])
        let counts = try tally(strategy, pool, picks: 3000)
        for name in ["a", "b", "c"] {
            #expect(abs(counts[name, default: 0] - 1000) <= 150, "\(name): \(counts)")
        }

        let single = LeastPendingStrategy(scanLimit: 0, random: SplitMix64(seed: 12))
        #expect(try tally(single, makePool(["only"]), picks: 10) == ["only": 10])
    }
}

@Suite("Strategies: sticky by sender")
struct StickyBySenderStrategyTests {
    private let names = (0..<10).map { "r\($0)" }

    @Test("the same sender keeps its resource, also after unrelated changes to the pool")
    func sameSenderSameResource() throws {
        var pool = makePool(names)
        let strategy = StickyBySenderStrategy(key: .full)
        let first = try stickyAssignment(strategy, pool, senders: 1000)

        #expect(try stickyAssignment(strategy, pool, senders: 1000) == first)
        pool.update("r3", priority: 5, show: .chat)
        pool.requestSent(to: "r4")
        #expect(try stickyAssignment(strategy, pool, senders: 1000) == first)
        #expect(try stickyAssignment(StickyBySenderStrategy(key: .full), pool, senders: 1000) == first)
    }

    @Test("10,000 senders spread over ten resources, each within 15% of its tenth")
    func evenSpread() throws {
        let assignment = try stickyAssignment(StickyBySenderStrategy(), makePool(names), senders: 10_000)

        for name in names {
            #expect(abs(assignment.filter { $0 == name }.count - 1000) <= 150, "\(name)")
        }
    }

    @Test("when one of ten resources leaves, only its senders (about a tenth) move; when it returns, they return")
    func leaveAndReturn() throws {
        // 1. Ten resources, 10,000 senders.
        var pool = makePool(names)
        let strategy = StickyBySenderStrategy()
        let before = try stickyAssignment(strategy, pool, senders: 10_000)

        // 2. r4 leaves: exactly the senders that were on r4 move, to the others.
        pool.remove("r4")
        let during = try stickyAssignment(strategy, pool, senders: 10_000)
        let moved = (0..<10_000).filter { before[$0] != during[$0] }
        #expect(moved.allSatisfy { before[$0] == "r4" })
        #expect(moved.count == before.filter { $0 == "r4" }.count)
        #expect(abs(moved.count - 1000) <= 150, "moved \(moved.count)")
        #expect(!during.contains("r4"))

        // 3. r4 comes back: every sender is where it was at first.
        pool.update("r4", priority: 0, show: nil)
        #expect(try stickyAssignment(strategy, pool, senders: 10_000) == before)
    }

    @Test("when an eleventh resource joins, senders move only to it, about an eleventh of them")
    func joinTakesOnlyItsShare() throws {
        var pool = makePool(names)
        let strategy = StickyBySenderStrategy()
        let before = try stickyAssignment(strategy, pool, senders: 10_000)

        pool.update("r10", priority: 0, show: nil)
        let after = try stickyAssignment(strategy, pool, senders: 10_000)

        let moved = (0..<10_000).filter { before[$0] != after[$0] }
        #expect(moved.allSatisfy { after[$0] == "r10" })
        #expect(abs(moved.count - 10_000 / 11) <= 150, "moved \(moved.count)")
    }

    @Test("a drained resource's senders move while it drains and come back when it is ready")
    func drainAndRestore() throws {
        var pool = makePool(names)
        let strategy = StickyBySenderStrategy()
        let before = try stickyAssignment(strategy, pool, senders: 2000)

        pool.setState(.draining, of: "r2")
        let during = try stickyAssignment(strategy, pool, senders: 2000)
        #expect(!during.contains("r2"))
        #expect((0..<2000).allSatisfy { before[$0] == "r2" || before[$0] == during[$0] })

        pool.setState(.ready, of: "r2")
        #expect(try stickyAssignment(strategy, pool, senders: 2000) == before)
    }

    @Test("weights 3 and 1 take 75% and 25% of 10,000 senders, within 2.5 points")
    func weightedShares() throws {
        let pool = makePool([("a", 3), ("b", 1)])
        let assignment = try stickyAssignment(StickyBySenderStrategy(), pool, senders: 10_000)

        let share = Double(assignment.filter { $0 == "a" }.count) / 10_000
        #expect(abs(share - 0.75) <= 0.025, "share \(share)")
    }

    @Test("key bare puts every device of a user on one resource; key full spreads them")
    func bareVersusFull() throws {
        let pool = makePool(names)
        let bare = StickyBySenderStrategy(key: .bare)
        let full = StickyBySenderStrategy(key: .full)

        var onBare: Set<String> = []
        var onFull: Set<String> = []
        for device in 0..<100 {
            let request = try balancingRequest(from: "alice@example.org/device\(device)")
            onBare.insert(bare.pick(for: request, from: pool) ?? "<none>")
            onFull.insert(full.pick(for: request, from: pool) ?? "<none>")
        }

        #expect(onBare.count == 1)
        #expect(onFull.count >= 8)
        #expect(bare.key == .bare && full.key == .full)
    }

    @Test("senders keep their resource in a new strategy instance (the hash is stable across processes)")
    func stableAcrossInstances() throws {
        let pool = makePool(names)
        let first = try stickyAssignment(StickyBySenderStrategy(), pool, senders: 500)

        let reordered = makePool(names.reversed())
        #expect(try stickyAssignment(StickyBySenderStrategy(), reordered, senders: 500) == first)
    }
}
