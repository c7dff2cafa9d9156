import Testing
@testable import Router

@Suite("JIDs: the shape of a domainpart (found by fuzzing)")
struct JIDDomainShapeTests {
    @Test("brackets and colons outside an IPv6 literal, and malformed literals, are refused", arguments: [
        "a@[a..", "_a0a@[../c", "a@b]c", "a@exa:mple.org", "a@[]", "a@[::1", "a@[g::1]",
    ])
    func refused(_ input: String) {
        #expect(throws: JIDError.self) { try JID(input) }
    }

    @Test("IPv6 literals and ordinary names are accepted and print back as they parse", arguments: [
        "a@[::1]/r", "a@[2001:DB8::1]", "user@example.org.", "a@[::ffff:192.0.2.1]",
    ])
    func accepted(_ input: String) throws {
        let jid = try JID(input)
        #expect(try JID(jid.description).description == jid.description)
    }
}
