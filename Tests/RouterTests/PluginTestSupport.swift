@testable import Plugins
@testable import Router
import Testing

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so that every run of a test that
/// draws at random draws the same numbers.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A pool holding `members` in order, each ready, at priority 0, with the given weight.
func makePool(_ members: [(name: String, weight: Int)]) -> ResourcePool {
    var pool = ResourcePool()
    for member in members {
        pool.update(member.name, priority: 0, show: nil)
        pool.setWeight(member.weight, of: member.name)
    }
    return pool
}

/// A pool of equally weighted resources named `names`.
func makePool(_ names: [String]) -> ResourcePool {
    makePool(names.map { (name: $0, weight: 1) })
}

/// A request of kind get from `sender`.
func balancingRequest(from sender: String = "user@example.org/phone") throws -> BalancingRequest {
    BalancingRequest(sender: try JID(sender), kind: .get)
}

/// How many of `picks` picks went to each resource (`"<none>"` counts picks that found none).
func tally(
    _ strategy: any BalancingStrategy, _ pool: ResourcePool, picks: Int, sender: String = "user@example.org/phone"
) throws -> [String: Int] {
    let request = try balancingRequest(from: sender)
    var counts: [String: Int] = [:]
    for _ in 0..<picks {
        counts[strategy.pick(for: request, from: pool) ?? "<none>", default: 0] += 1
    }
    return counts
}

/// The strategies that ship with the router, each made with a seeded random source.
enum StrategyKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case random, roundRobin, leastPending, leastPendingTwoChoices, sticky

    func make(policy: PresencePolicy = PresencePolicy(), seed: UInt64 = 42) -> any BalancingStrategy {
        switch self {
        case .random: RandomStrategy(policy: policy, random: SplitMix64(seed: seed))
        case .roundRobin: RoundRobinStrategy(policy: policy)
        case .leastPending: LeastPendingStrategy(policy: policy, random: SplitMix64(seed: seed))
        case .leastPendingTwoChoices: LeastPendingStrategy(policy: policy, scanLimit: 2, random: SplitMix64(seed: seed))
        case .sticky: StickyBySenderStrategy(policy: policy, key: .full)
        }
    }

    var testDescription: String { rawValue }
}

/// Picks for `senders` distinct senders, one pick each: sender index → resource.
func stickyAssignment(
    _ strategy: StickyBySenderStrategy, _ pool: ResourcePool, senders: Int
) throws -> [String] {
    var assignment: [String] = []
    assignment.reserveCapacity(senders)
    for index in 0..<senders {
        let request = try balancingRequest(from: "user\(index)@example.org/device")
        assignment.append(strategy.pick(for: request, from: pool) ?? "<none>")
    }
    return assignment
}

/// A JID of exactly `bytes` UTF-8 bytes: `u@example.org/` and a resourcepart of `fill`
/// characters, padded with `x` when `fill` is wider than one byte.
func jid(ofLength bytes: Int, fill: Character = "r") throws -> JID {
    let prefix = "u@example.org/"
    let room = bytes - prefix.utf8.count
    let width = String(fill).utf8.count
    let resource = String(repeating: fill, count: room / width) + String(repeating: "x", count: room % width)
    let jid = try JID(prefix + resource)
    #expect(jid.description.utf8.count == bytes)
    return jid
}
