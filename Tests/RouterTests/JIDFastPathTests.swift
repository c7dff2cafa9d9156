@testable import Router
import Testing

/// The ASCII fast path of `JID.init(_:)` must give exactly what preparing each part gives.
@Suite("JIDs: the ASCII fast path agrees with part-by-part preparation")
struct JIDFastPathTests {
    @Test("each byte mask holds exactly the bytes of the predicate it stands for")
    func masks() {
        for byte in UInt8(0)...UInt8(255) {
            let control = byte < 0x20 || byte == 0x7F
            #expect(JID.ASCIIClass.isIn(JID.ASCIIClass.control, byte) == control, "byte \(byte)")
            #expect(JID.ASCIIClass.isIn(JID.ASCIIClass.localpartSpecial, byte)
                    == (byte < 0x80 && (control || JID.isProhibitedInLocalpart(byte))), "byte \(byte)")
            #expect(JID.ASCIIClass.isIn(JID.ASCIIClass.domain, byte) == (byte < 0x80 && JID.isDomainByte(byte)),
                    "byte \(byte)")
        }
    }

    @Test("random addresses parse to the same JID, or fail with the same reason, both ways")
    func randomAddresses() {
        let pieces = ["a", "B", "z", "Q", "0", "9", ".", "-", "_", "@", "/", " ", ":", "[", "]", "&", "'", "\"",
                      "<", ",", "\u{1}", "\u{7F}", "\u{E9}", "\u{DC}", "\u{DF}", "\u{3000}", "\u{FF20}", "\u{FDFA}"]
        var generator = SplitMix64(seed: 6)
        var mismatches: [String] = []
        for _ in 0..<50_000 {
            let length = Int.random(in: 0...9, using: &generator)
            let input = (0..<length).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &generator)] }.joined()
            let fast = Result { try JID(input) }
            let reference = Result { try JID(preparingEachPart: input) }
            switch (fast, reference) {
            case (.success(let one), .success(let two)):
                if one != two || one.description != two.description || one.localpart != two.localpart
                    || one.domainpart != two.domainpart || one.resourcepart != two.resourcepart
                    || one.bare != two.bare || one.hashValue != two.hashValue {
                    mismatches.append(input)
                }
            case (.failure(let one), .failure(let two)):
                if (one as? JIDError) != (two as? JIDError) { mismatches.append(input) }
            default:
                mismatches.append(input)
            }
        }
        #expect(mismatches.isEmpty, "first: \(mismatches.prefix(5).map(\.debugDescription))")
    }

    @Test("a JID built from prepared parts equals the parsed one")
    func preparedParts() throws {
        let parsed = try JID("user@example.org/a/b@c")
        let built = JID(preparedLocalpart: "user", domainpart: "example.org", resourcepart: "a/b@c")
        #expect(parsed == built)
        #expect(parsed.hashValue == built.hashValue)
        #expect(built.bare == (try JID("user@example.org")))
        #expect(built.bare.with(resource: "x") == (try JID("user@example.org/x")))
    }
}
