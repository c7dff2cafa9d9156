import Router
#if canImport(Glibc)
import Glibc
#endif

/// `sticky-by-sender`: the same sender keeps the same resource while that resource is online.
///
/// Rendezvous (highest random weight) hashing: each resource scores `hash(sender, resource)`,
/// the highest wins; with unequal weights the score is `-weight / ln(u)`, `u` the hash in (0, 1).
/// When a resource leaves, only its senders move; when it comes back, they return; a joining
/// resource takes only the senders it now wins. Picks are cached per sender until the pool
/// changes, so a steady pool costs one dictionary lookup per request.
public final class StickyBySenderStrategy: BalancingStrategy {
    public enum Key: String, Sendable, CaseIterable {
        /// The sender's bare JID: all of a user's devices land on one resource.
        case bare
        /// The sender's full JID.
        case full
    }

    public let name = "sticky-by-sender"
    public let key: Key
    private var eligible: EligibleResources
    private var resourceHashes: [UInt64] = []
    private var cache: [String: Int] = [:]
    private static let cacheLimit = 65_536

    public init(policy: PresencePolicy = PresencePolicy(), key: Key = .bare) {
        self.key = key
        self.eligible = EligibleResources(policy: policy)
    }

    public func pick(for request: BalancingRequest, from pool: ResourcePool) -> String? {
        if eligible.refresh(from: pool) {
            resourceHashes = eligible.positions.map { StableHash.of(pool.members[$0].name) }
            cache.removeAll(keepingCapacity: true)
        }
        guard eligible.count > 0 else { return nil }
        let senderKey = key == .bare ? request.sender.bare.description : request.sender.description
        if let cached = cache[senderKey] { return pool.members[eligible.positions[cached]].name }

        let senderHash = StableHash.of(senderKey)
        var best = 0
        if eligible.allWeightsEqual {
            var bestScore: UInt64 = 0
            for index in 0..<eligible.count {
                let score = StableHash.mix(senderHash ^ resourceHashes[index])
                if index == 0 || score > bestScore {
                    bestScore = score
                    best = index
                }
            }
        } else {
            var bestScore = -Double.infinity
            for index in 0..<eligible.count {
                let unit = (Double(StableHash.mix(senderHash ^ resourceHashes[index]) >> 11) + 0.5) / 9007199254740992.0
                let score = -Double(eligible.weights[index]) / log(unit)
                if score > bestScore {
                    bestScore = score
                    best = index
                }
            }
        }
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[senderKey] = best
        return pool.members[eligible.positions[best]].name
    }
}

/// A hash that is the same in every process (Swift's `Hasher` is seeded per process), so that
/// senders keep their resource across router restarts: FNV-1a over the bytes, then SplitMix64's
/// finalizer to spread the bits.
enum StableHash {
    static func of(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return mix(hash)
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
