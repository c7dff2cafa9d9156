import Router
import Testing

@Suite("XEP-0114 handshake digest")
struct HandshakeTests {
    // Expected values computed outside this code: printf '%s' "$id$secret" | sha1sum
    static let secret = "s3cr&t\"<p\u{E4}ssw\u{F6}rd\u{2713}"

    @Test("the digest is the lowercase hex SHA-1 of the stream id and the raw UTF-8 secret")
    func knownDigest() {
        let digest = componentHandshakeDigest(streamID: "3BF96D32", secret: Self.secret)
        #expect(digest == "974a00900ec6983632e3b128f1994e80e0adc4cc")
    }

    @Test("a long decimal stream id is hashed as text")
    func decimalStreamID() {
        let digest = componentHandshakeDigest(streamID: "12345678901234567890", secret: Self.secret)
        #expect(digest == "b532efd28c961c379d51618c832cfe9668faa37a")
    }

    @Test("a UUID stream id and a plain secret give the known digest")
    func uuidStreamID() {
        let digest = componentHandshakeDigest(streamID: "4bf7a3d8-1c2e-4f0b-9a6d-5e8f7c3b2a10", secret: "secret")
        #expect(digest == "0d1d88a47ebfe49133b34018a75909a44e5c40d6")
    }

    @Test("the secret is not XML-escaped before hashing")
    func secretNotEscaped() {
        // SHA-1 of "3BF96D32s3cr&amp;t&quot;&lt;pässwörd✓", the escaped form, which must not come out.
        let digest = componentHandshakeDigest(streamID: "3BF96D32", secret: Self.secret)
        #expect(digest != "f90db4fbf547485237e80c912d3db11068b630a3")
    }

    @Test("an empty id and secret give the SHA-1 of nothing")
    func emptyInput() {
        #expect(componentHandshakeDigest(streamID: "", secret: "") == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }

    @Test("the digest written in a handshake element reads back unchanged")
    func digestInHandshakeElement() throws {
        var handshake = XMLElement(name: "handshake", namespace: "jabber:component:accept")
        handshake.append(text: componentHandshakeDigest(streamID: "3BF96D32", secret: Self.secret))
        let text = XMLSerializer.string(handshake, defaultNamespace: "jabber:component:accept")
        #expect(text == "<handshake>974a00900ec6983632e3b128f1994e80e0adc4cc</handshake>")
    }
}
