@testable import Plugins
@testable import Router
import Testing

private let keyA = Array("0123456789abcdef0123456789abcdef".utf8)
private let keyB = Array("fedcba9876543210fedcba9876543210".utf8)
private let route = "proxy.example.org"

/// The encoders that ship with the router.
enum EncoderKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case base64url, hmac, table, sealed

    func make(key: [UInt8] = keyA, route: String = route) -> any JATEncoder {
        switch self {
        case .base64url: Base64URLEncoder()
        case .hmac: HMACEncoder(keys: [key], route: route)
        case .table: TableEncoder()
        case .sealed: SealedEncoder(keys: [key], route: route)
        }
    }

    /// The longest sender JID, in bytes, the encoder promises to take; nil for no limit.
    var maxSenderLength: Int? {
        switch self {
        case .base64url: 767
        case .hmac: HMACEncoder(keys: [keyA], route: route).maxSenderLength
        case .table: nil
        case .sealed: SealedEncoder(keys: [keyA], route: route).maxSenderLength
        }
    }

    var testDescription: String { rawValue }
}

/// Senders whose JIDs are easy to get wrong.
private let awkwardSenders = [
    "d\\20artagnan@example.org/x",
    "user@example.org/a/b@c/d",
    "user@example.org/@",
    "j\u{FC}rgen@m\u{FC}nchen.example/H\u{F4}tel \u{1F4F1}",
    "\u{7528}\u{6237}@example.org/\u{8BBE}\u{5907}",
    "user@example.org/ spaces around ",
    "a.b@example.org/res.with.dots",
    "user@example.org",
    "example.org",
    "component.example.org/some resource",
]

/// Each JAT that differs from `jat` in one character, the replacement taken from the base64url
/// alphabet (so that only what the encoder checks can refuse it).
private func oneCharacterChanges(of jat: String) -> [String] {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    let characters = Array(jat)
    return characters.indices.map { index in
        var changed = characters
        let position = alphabet.firstIndex(of: changed[index]) ?? 0
        changed[index] = alphabet[(position + 1) % alphabet.count]
        return String(changed)
    }
}

/// `jat` cut short by 1 to 64 characters at the end, by one at the front, and emptied.
private func truncations(of jat: String) -> [String] {
    let cutAtEnd = (1..<min(jat.count, 65)).map { String(jat.dropLast($0)) }
    return cutAtEnd + [String(jat.dropFirst()), ""]
}

@Suite("JAT encoders: what every encoder guarantees")
struct EncoderContractTests {
    @Test("every encoder round-trips escaped, non-ASCII, slashed and bare senders", arguments: EncoderKind.allCases)
    func roundTrip(kind: EncoderKind) throws {
        let encoder = kind.make()
        for text in awkwardSenders {
            let sender = try JID(text)
            let jat = try encoder.encode(sender)
            let decoded = try encoder.decode(jat)
            #expect(decoded == sender, "\(text)")
            #expect(decoded.description == sender.description, "\(text)")
        }
    }

    @Test("every JAT is left unchanged by Resourceprep", arguments: EncoderKind.allCases)
    func resourceprepStable(kind: EncoderKind) throws {
        let encoder = kind.make()
        var senders = try awkwardSenders.map { try JID($0) }
        if let limit = kind.maxSenderLength {
            senders.append(try jid(ofLength: limit - 2, fill: "\u{E9}"))
        }
        for sender in senders {
            let jat = try encoder.encode(sender)
            #expect(try JID("proxy.example.org/" + jat).resourcepart == jat, "\(sender)")
        }
    }

    @Test("the longest sender an encoder takes gives a JAT of at most 1023 bytes; one byte more is refused",
          arguments: [EncoderKind.hmac, .sealed])
    func longestSender(kind: EncoderKind) throws {
        let limit = try #require(kind.maxSenderLength)
        let encoder = kind.make()

        for fill: Character in ["r", "\u{E9}", "\u{1F4F1}"] {
            let longest = try jid(ofLength: limit, fill: fill)
            let jat = try encoder.encode(longest)
            #expect(jat.utf8.count <= JID.maxPartLength)
            #expect(try encoder.decode(jat) == longest)
            #expect(throws: JATError.self) { try encoder.encode(try jid(ofLength: limit + 1, fill: fill)) }
        }
    }

    @Test("a JAT that differs in one character is refused", arguments: [EncoderKind.hmac, .table, .sealed])
    func tampered(kind: EncoderKind) throws {
        let encoder = kind.make()
        let jat = try encoder.encode(try JID("d\\20artagnan@example.org/x"))

        for changed in oneCharacterChanges(of: jat) {
            #expect(throws: JATError.self, "\(changed)") { try encoder.decode(changed) }
        }
    }

    @Test("a truncated JAT is refused", arguments: [EncoderKind.hmac, .table, .sealed])
    func truncated(kind: EncoderKind) throws {
        let encoder = kind.make()
        let jat = try encoder.encode(try JID("user@example.org/phone"))

        for cut in truncations(of: jat) {
            #expect(throws: JATError.self, "\(cut)") { try encoder.decode(cut) }
        }
    }

    @Test("a JAT made by another instance with another key is refused", arguments: [EncoderKind.hmac, .table, .sealed])
    func foreignKey(kind: EncoderKind) throws {
        let ours = kind.make(key: keyA)
        let theirs = kind.make(key: keyB)
        let sender = try JID("user@example.org/phone")
        _ = try ours.encode(sender)

        let foreign = try theirs.encode(sender)

        #expect(throws: JATError.self) { try ours.decode(foreign) }
    }

    @Test("a JAT made for another route is refused", arguments: [EncoderKind.hmac, .sealed])
    func foreignRoute(kind: EncoderKind) throws {
        let ours = kind.make(route: "proxy.example.org")
        let theirs = kind.make(route: "other.example.org")
        let sender = try JID("user@example.org/phone")

        let foreign = try theirs.encode(sender)

        #expect(try ours.encode(sender) != foreign)
        #expect(throws: JATError.self) { try ours.decode(foreign) }
    }

    @Test("text no encoder makes is refused", arguments: EncoderKind.allCases)
    func garbage(kind: EncoderKind) throws {
        let encoder = kind.make()
        for text in ["", "!", "not base64!", "A", "AB", "====", "a.b.c", "\u{E9}t\u{E9}", "..", "Zm9v.YmFy"] {
            #expect(throws: JATError.self, "\(text)") { try encoder.decode(text) }
        }
    }
}

@Suite("JAT encoders: base64url")
struct Base64URLEncoderTests {
    @Test("the JAT is the unpadded base64url of the prepared sender")
    func knownEncoding() throws {
        let encoder = Base64URLEncoder()

        #expect(try encoder.encode(try JID("User@Example.org/r")) == "dXNlckBleGFtcGxlLm9yZy9y")
        #expect(try encoder.decode("dXNlckBleGFtcGxlLm9yZy9y") == (try JID("user@example.org/r")))
    }

    @Test("text that is not the unique encoding of a prepared JID is refused")
    func refusesNonCanonical() throws {
        let encoder = Base64URLEncoder()
        let refused = [
            Base64URL.encode(Array("User@example.org/r".utf8)),  // not prepared: capital in the localpart
            Base64URL.encode(Array("a@@b".utf8)),  // not a JID
            Base64URL.encode([0xFF, 0xFE, 0x41]),  // not UTF-8
            "dXNlckBleGFtcGxlLm9yZy9y=",  // padded
            "dXNlckBleGFtcGxlLm9yZy9ych",  // non-zero padding bits ("user@example.org/rr" ends in "cg")
            "dXNlckBleGFtcGxlLm9yZy9y+",  // base64 alphabet, not base64url
        ]
        for text in refused {
            #expect(throws: JATError.self, "\(text)") { try encoder.decode(text) }
        }
    }

    /// Unpadded base64url of 767 bytes is 1023 characters (a padded-length check once refused 766 and 767).
    @Test("a sender of 767 bytes, the documented limit, is encoded in 1023 bytes; 768 is refused")
    func documentedLimit() throws {
        let encoder = Base64URLEncoder()
        for length in [766, 767] {
            let sender = try jid(ofLength: length)
            let jat = try encoder.encode(sender)
            #expect(jat.utf8.count == (4 * length + 2) / 3)
            #expect(try encoder.decode(jat) == sender)
        }
        #expect(throws: JATError.self) { try encoder.encode(try jid(ofLength: 768)) }
    }
}

@Suite("JAT encoders: hmac")
struct HMACEncoderTests {
    @Test("for every tag length the longest sender fills the JAT to at most 1023 bytes, and one byte more could not",
          arguments: [8, 9, 10, 11, 12, 16, 24, 31, 32])
    func limitPerTagLength(tagLength: Int) throws {
        let encoder = HMACEncoder(keys: [keyA], route: route, tagLength: tagLength)
        let limit = encoder.maxSenderLength
        let tagText = (4 * tagLength + 2) / 3

        let jat = try encoder.encode(try jid(ofLength: limit))

        #expect(jat.utf8.count <= JID.maxPartLength)
        #expect((4 * (limit + 1) + 2) / 3 + 1 + tagText > JID.maxPartLength, "the limit is not the tightest")
        #expect(throws: JATError.self) { try encoder.encode(try jid(ofLength: limit + 1)) }
    }

    @Test("after a key rotation, an encoder with keys [new, old] reads JATs signed with the old key")
    func keyRotation() throws {
        let old = HMACEncoder(keys: [keyA], route: route)
        let rotated = HMACEncoder(keys: [keyB, keyA], route: route)
        let sender = try JID("user@example.org/phone")

        let inFlight = try old.encode(sender)
        let fresh = try rotated.encode(sender)

        #expect(try rotated.decode(inFlight) == sender)
        #expect(try rotated.decode(fresh) == sender)
        #expect(fresh != inFlight)
        #expect(throws: JATError.self) { try old.decode(fresh) }
    }

    @Test("a tag moved from one sender's JAT to another's is refused")
    func swappedTag() throws {
        let encoder = HMACEncoder(keys: [keyA], route: route)
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        let mallory = try encoder.encode(try JID("mallory@example.org/phone"))

        let forged = String(mallory.split(separator: ".")[0]) + "." + String(alice.split(separator: ".")[1])

        #expect(throws: JATError.self) { try encoder.decode(forged) }
    }

    @Test("a JAT whose tag has another length is refused")
    func otherTagLength() throws {
        let long = HMACEncoder(keys: [keyA], route: route, tagLength: 16)
        let short = HMACEncoder(keys: [keyA], route: route, tagLength: 12)

        let jat = try long.encode(try JID("user@example.org/phone"))

        #expect(throws: JATError.self) { try short.decode(jat) }
    }

    @Test("the implementing client can read the sender from the JAT")
    func readable() throws {
        let jat = try HMACEncoder(keys: [keyA], route: route).encode(try JID("user@example.org/phone"))

        #expect(jat.hasPrefix(Base64URL.encode(Array("user@example.org/phone".utf8)) + "."))
    }
}

/// A clock a test moves by hand.
private final class ManualClock {
    var now = Instant(nanoseconds: 1_000_000_000)

    func advance(_ duration: Duration) { now = now + duration }
}

@Suite("JAT encoders: table")
struct TableEncoderTests {
    @Test("a sender keeps its token; different senders get different tokens that do not show who they are")
    func tokens() throws {
        let encoder = TableEncoder()
        let alice = try JID("alice@example.org/phone")
        let bob = try JID("bob@example.org/phone")
        let long = try JID(String(repeating: "l", count: 900) + "@example.org/" + String(repeating: "r", count: 900))

        let aliceToken = try encoder.encode(alice)
        let bobToken = try encoder.encode(bob)
        let longToken = try encoder.encode(long)

        #expect(try encoder.encode(alice) == aliceToken)
        #expect(aliceToken != bobToken)
        for (sender, token) in [(alice, aliceToken), (bob, bobToken), (long, longToken)] {
            #expect(token.utf8.count == 22)
            #expect(!token.contains(sender.localpart ?? "-"))
            #expect(!token.contains(Base64URL.encode(Array(sender.description.utf8)).prefix(8)))
            #expect(try encoder.decode(token) == sender)
        }
        #expect(encoder.count == 3)
    }

    @Test("the longest JIDs, 1023-byte localpart and resourcepart, get a token")
    func longestJID() throws {
        let encoder = TableEncoder()
        let localpart = String(repeating: "l", count: 1023)
        let sender = try JID(localpart + "@example.org/" + String(repeating: "r", count: 1023))

        let token = try encoder.encode(sender)

        #expect(try encoder.decode(token) == sender)
        #expect(try JID("proxy.example.org/" + token).resourcepart == token)
    }

    @Test("at capacity, an entry with a request in flight survives and the least recently used idle one goes")
    func busyEntriesSurviveEviction() throws {
        // 1. A table of two: alice (busy, oldest) and bob (idle).
        let clock = ManualClock()
        let encoder = TableEncoder(capacity: 2, idleExpiry: .seconds(600), clock: { clock.now })
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        encoder.requestStarted(jat: alice)
        clock.advance(.seconds(1))
        let bob = try encoder.encode(try JID("bob@example.org/phone"))
        clock.advance(.seconds(1))

        // 2. carol needs room: bob is evicted, alice is kept.
        let carol = try encoder.encode(try JID("carol@example.org/phone"))

        #expect(try encoder.decode(alice) == (try JID("alice@example.org/phone")))
        #expect(try encoder.decode(carol) == (try JID("carol@example.org/phone")))
        #expect(throws: JATError.self) { try encoder.decode(bob) }
        #expect(encoder.count == 2)

        // 3. bob comes back: a new token, and carol (idle) makes room, not alice.
        clock.advance(.seconds(1))
        let bobAgain = try encoder.encode(try JID("bob@example.org/phone"))
        #expect(bobAgain != bob)
        #expect(throws: JATError.self) { try encoder.decode(carol) }
        #expect(try encoder.decode(alice) == (try JID("alice@example.org/phone")))
    }

    @Test("a table full of senders with requests in flight refuses a new sender, and takes it once one ends")
    func fullOfBusyEntries() throws {
        let encoder = TableEncoder(capacity: 2)
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        let bob = try encoder.encode(try JID("bob@example.org/phone"))
        encoder.requestStarted(jat: alice)
        encoder.requestStarted(jat: bob)

        #expect(throws: JATError.self) { try encoder.encode(try JID("carol@example.org/phone")) }
        #expect(try encoder.encode(try JID("alice@example.org/phone")) == alice)

        encoder.requestEnded(jat: bob)
        let carol = try encoder.encode(try JID("carol@example.org/phone"))
        #expect(try encoder.decode(carol) == (try JID("carol@example.org/phone")))
        #expect(try encoder.decode(alice) == (try JID("alice@example.org/phone")))
        #expect(throws: JATError.self) { try encoder.decode(bob) }
    }

    @Test("an entry busy twice stays until both requests have ended")
    func countsRequestsInFlight() throws {
        let encoder = TableEncoder(capacity: 1)
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        encoder.requestStarted(jat: alice)
        encoder.requestStarted(jat: alice)

        encoder.requestEnded(jat: alice)
        #expect(throws: JATError.self) { try encoder.encode(try JID("bob@example.org/phone")) }

        encoder.requestEnded(jat: alice)
        _ = try encoder.encode(try JID("bob@example.org/phone"))
        #expect(throws: JATError.self) { try encoder.decode(alice) }
    }

    @Test("entries idle past idle_expiry are dropped when room is made; busy and recent ones stay")
    func idleExpiry() throws {
        // 1. At t=0 alice and bob (bob busy); at t=5s carol.
        let clock = ManualClock()
        let encoder = TableEncoder(capacity: 3, idleExpiry: .seconds(10), clock: { clock.now })
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        let bob = try encoder.encode(try JID("bob@example.org/phone"))
        encoder.requestStarted(jat: bob)
        clock.advance(.seconds(5))
        let carol = try encoder.encode(try JID("carol@example.org/phone"))

        // 2. At t=11s dave needs room: alice has expired; bob is busy, carol idle for 6s only.
        clock.advance(.seconds(6))
        let dave = try encoder.encode(try JID("dave@example.org/phone"))

        #expect(throws: JATError.self) { try encoder.decode(alice) }
        for token in [bob, carol, dave] { _ = try encoder.decode(token) }
        #expect(encoder.count == 3)
    }

    @Test("idle entries expire in a periodic sweep, without the table being full")
    func periodicSweep() throws {
        let clock = ManualClock()
        let encoder = TableEncoder(capacity: 100_000, idleExpiry: .seconds(10), clock: { clock.now })
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        clock.advance(.seconds(11))

        for index in 0..<1024 { _ = try encoder.encode(try JID("user\(index)@example.org/r")) }

        #expect(throws: JATError.self) { try encoder.decode(alice) }
        #expect(encoder.count == 1024)
    }

    @Test("a request that ends counts as use: the entry's idle time starts again")
    func endRefreshesIdleTime() throws {
        // 1. alice starts a request at t=0; bob comes at t=1 and stays idle.
        let clock = ManualClock()
        let encoder = TableEncoder(capacity: 2, idleExpiry: .seconds(10), clock: { clock.now })
        let alice = try encoder.encode(try JID("alice@example.org/phone"))
        encoder.requestStarted(jat: alice)
        clock.advance(.seconds(1))
        let bob = try encoder.encode(try JID("bob@example.org/phone"))

        // 2. alice's request ends at t=30.
        clock.advance(.seconds(29))
        encoder.requestEnded(jat: alice)

        // 3. At t=35 carol needs room: bob has been idle 34s, alice only 5s.
        clock.advance(.seconds(5))
        let carol = try encoder.encode(try JID("carol@example.org/phone"))

        #expect(try encoder.decode(alice) == (try JID("alice@example.org/phone")))
        #expect(try encoder.decode(carol) == (try JID("carol@example.org/phone")))
        #expect(throws: JATError.self) { try encoder.decode(bob) }
    }
}

@Suite("JAT encoders: sealed")
struct SealedEncoderTests {
    @Test("the same sender always gets the same JAT, also from a new instance (a restart loses nothing)")
    func deterministic() throws {
        let sender = try JID("user@example.org/phone")
        let first = SealedEncoder(keys: [keyA], route: route)
        let restarted = SealedEncoder(keys: [keyA], route: route)

        let jat = try first.encode(sender)

        #expect(try first.encode(sender) == jat)
        #expect(try restarted.encode(sender) == jat)
        #expect(try restarted.decode(jat) == sender)
    }

    @Test("different senders get different JATs that do not show who they are")
    func opaque() throws {
        let encoder = SealedEncoder(keys: [keyA], route: route)
        let phone = try JID("user@example.org/phone")
        let laptop = try JID("user@example.org/laptop")

        let phoneJAT = try encoder.encode(phone)
        let laptopJAT = try encoder.encode(laptop)

        #expect(phoneJAT != laptopJAT)
        for (sender, jat) in [(phone, phoneJAT), (laptop, laptopJAT)] {
            #expect(!jat.contains("user"))
            #expect(!jat.contains(Base64URL.encode(Array(sender.description.utf8)).prefix(8)))
        }
    }

    @Test("different routes give different JATs for the same sender, each refused by the other route")
    func perRoute() throws {
        let sender = try JID("user@example.org/phone")
        let proxy = SealedEncoder(keys: [keyA], route: "proxy.example.org")
        let other = SealedEncoder(keys: [keyA], route: "other.example.org")

        let proxyJAT = try proxy.encode(sender)
        let otherJAT = try other.encode(sender)

        #expect(proxyJAT != otherJAT)
        #expect(throws: JATError.self) { try proxy.decode(otherJAT) }
        #expect(throws: JATError.self) { try other.decode(proxyJAT) }
    }

    @Test("after a key rotation, an encoder with keys [new, old] reads JATs sealed with the old key")
    func keyRotation() throws {
        let sender = try JID("user@example.org/phone")
        let old = SealedEncoder(keys: [keyA], route: route)
        let rotated = SealedEncoder(keys: [keyB, keyA], route: route)

        let inFlight = try old.encode(sender)

        #expect(try rotated.decode(inFlight) == sender)
        #expect(try rotated.encode(sender) != inFlight)
        #expect(throws: JATError.self) { try old.decode(try rotated.encode(sender)) }
    }
}
