import Router
import Testing

/// The UTF-8 bytes of `string`, for comparisons that must not treat canonically equivalent strings
/// as equal (Swift's `==` on `String` does).
private func bytes(_ string: String?) -> [UInt8]? {
    string.map { Array($0.utf8) }
}

@Suite("JIDs: parsing and preparation")
struct JIDTests {
    @Test("a full JID splits into localpart, domainpart and resourcepart")
    func fullJID() throws {
        let jid = try JID("user@example.org/phone")
        #expect(jid.localpart == "user")
        #expect(jid.domainpart == "example.org")
        #expect(jid.resourcepart == "phone")
        #expect(jid.description == "user@example.org/phone")
    }

    @Test("localpart and domainpart fold case; the resourcepart keeps it")
    func caseFolding() throws {
        let jid = try JID("User.Name@EXAMPLE.Org/Phone ONE")
        #expect(jid.localpart == "user.name")
        #expect(jid.domainpart == "example.org")
        #expect(jid.resourcepart == "Phone ONE")
        #expect(jid.description == "user.name@example.org/Phone ONE")
    }

    @Test("non-ASCII parts are prepared with stringprep")
    func nonASCIIPreparation() throws {
        let jid = try JID("J\u{FC}rgen@EXAMPLE.org/H\u{F4}tel")
        #expect(bytes(jid.localpart) == bytes("j\u{FC}rgen"))
        #expect(jid.domainpart == "example.org")
        #expect(bytes(jid.resourcepart) == bytes("H\u{F4}tel"))
    }

    @Test("non-ASCII capitals fold in the localpart and the domainpart")
    func nonASCIICaseFolding() throws {
        let jid = try JID("J\u{DC}RGEN@B\u{DC}CHER.Example/\u{DC}")
        #expect(bytes(jid.localpart) == bytes("j\u{FC}rgen"))
        #expect(bytes(jid.domainpart) == bytes("b\u{FC}cher.example"))
        #expect(bytes(jid.resourcepart) == bytes("\u{DC}"))
    }

    @Test("preparation maps sharp s to ss in the localpart (stringprep table B.2)")
    func sharpS() throws {
        #expect(try JID("Stra\u{DF}e@example.org").localpart == "strasse")
    }

    @Test("decomposed characters are composed (NFKC) in every part")
    func normalization() throws {
        let jid = try JID("jo\u{308}rg@e\u{301}xample.org/Ho\u{302}tel")
        #expect(bytes(jid.localpart) == bytes("j\u{F6}rg"))
        #expect(bytes(jid.domainpart) == bytes("\u{E9}xample.org"))
        #expect(bytes(jid.resourcepart) == bytes("H\u{F4}tel"))
    }

    @Test("a resourcepart may contain '/' and '@'")
    func resourceWithSlashAndAt() throws {
        let jid = try JID("a@b/c/d@e")
        #expect(jid.localpart == "a")
        #expect(jid.domainpart == "b")
        #expect(jid.resourcepart == "c/d@e")
    }

    @Test("a domain-only JID with a resource containing '@' has no localpart")
    func domainWithResourceContainingAt() throws {
        let jid = try JID("example.org/user@host")
        #expect(jid.localpart == nil)
        #expect(jid.domainpart == "example.org")
        #expect(jid.resourcepart == "user@host")
    }

    @Test("a resourcepart may hold spaces and non-ASCII characters")
    func resourceWithSpaces() throws {
        let jid = try JID("user@example.org/my phone \u{2713} caf\u{E9}")
        #expect(bytes(jid.resourcepart) == bytes("my phone \u{2713} caf\u{E9}"))
    }

    @Test("a bare JID has no resourcepart, and a domain alone has no localpart")
    func bareAndDomainOnly() throws {
        let bare = try JID("user@example.org")
        #expect(bare.resourcepart == nil)
        #expect(bare.isBare)
        let domain = try JID("proxy.example.org")
        #expect(domain.localpart == nil)
        #expect(domain.resourcepart == nil)
        #expect(domain.domainpart == "proxy.example.org")
        #expect(try JID("user@example.org/r").bare == bare)
    }

    @Test("JIDs that prepare to the same form are equal and hash alike")
    func equalityOfPreparedForms() throws {
        let one = try JID("J\u{FC}rgen@EXAMPLE.org/Desk")
        let two = try JID("j\u{FC}rgen@example.ORG/Desk")
        #expect(one == two)
        #expect(Set([one, two]).count == 1)
        #expect(try JID("user@example.org/Desk") != JID("user@example.org/desk"))
        #expect(try JID("user@example.org") != JID("user@example.org/desk"))
    }

    @Test("a trailing dot on the domainpart is dropped")
    func trailingDot() throws {
        #expect(try JID("user@example.org.") == JID("user@example.org"))
    }

    @Test("the prepared form printed and parsed again gives the same JID")
    func descriptionRoundTrip() throws {
        let jid = try JID("J\u{FC}rgen@EXAMPLE.org/a/b@c d")
        #expect(try JID(jid.description) == jid)
    }
}

@Suite("JIDs: refused input")
struct JIDRefusedTests {
    @Test("an empty part is refused", arguments: ["", "@b", "a@", "b/", "a@b/", "@", "/r", "@b/r", "a@/r"])
    func emptyParts(input: String) {
        #expect(throws: JIDError.self) { try JID(input) }
    }

    @Test("characters Nodeprep prohibits are refused in a localpart", arguments: [
        "a b@example.org", "a\"b@example.org", "a&b@example.org", "a'b@example.org", "a:b@example.org",
        "a<b@example.org", "a>b@example.org", "a@b@example.org", "a\u{3000}b@example.org",
    ])
    func prohibitedInLocalpart(input: String) {
        #expect(throws: JIDError.self) { try JID(input) }
    }

    @Test("control characters are refused in every part", arguments: [
        "a\u{1}@example.org", "a@exam\u{7}ple.org", "a@example.org/r\u{0}", "a@example.org/r\u{7F}",
        "a@example.org/r\n", "a\u{85}b@example.org", "a@example.org/r\u{85}",
    ])
    func controlCharacters(input: String) {
        #expect(throws: JIDError.self) { try JID(input) }
    }

    @Test("characters a domain name cannot hold are refused in a domainpart (RFC 6122 §2.2)", arguments: [
        "a@exa mple.org", "a@exa<mple.org", "a@exa,mple.org", "a@exa\"mple.org", "a@ex\u{E4} mple.org",
        "a@ex\u{3000}ample.org",
    ])
    func prohibitedInDomainpart(input: String) {
        #expect(throws: JIDError.self) { try JID(input) }
    }

    @Test("an IP literal is a domainpart")
    func ipLiteral() throws {
        #expect(try JID("a@[::1]/r").domainpart == "[::1]")
        #expect(try JID("a@192.0.2.1").domainpart == "192.0.2.1")
    }

    @Test("a localpart, domainpart or resourcepart of 1023 bytes is accepted")
    func partsAtTheLimit() throws {
        let long = String(repeating: "a", count: 1023)
        #expect(try JID("\(long)@example.org").localpart == long)
        #expect(try JID("user@\(long)").domainpart == long)
        #expect(try JID("user@example.org/\(long)").resourcepart == long)
    }

    @Test("a localpart, domainpart or resourcepart of 1024 bytes is refused")
    func partsOverTheLimit() {
        let long = String(repeating: "a", count: 1024)
        #expect(throws: JIDError.self) { try JID("\(long)@example.org") }
        #expect(throws: JIDError.self) { try JID("user@\(long)") }
        #expect(throws: JIDError.self) { try JID("user@example.org/\(long)") }
    }

    @Test("the limit counts UTF-8 bytes, not characters")
    func limitInBytes() throws {
        let fits = String(repeating: "\u{FC}", count: 511) + "a"
        #expect(try JID("\(fits)@example.org").localpart?.utf8.count == 1023)
        #expect(try JID("user@example.org/\(fits)").resourcepart?.utf8.count == 1023)
        let over = String(repeating: "\u{FC}", count: 512)
        #expect(throws: JIDError.self) { try JID("\(over)@example.org") }
        #expect(throws: JIDError.self) { try JID("user@example.org/\(over)") }
        #expect(throws: JIDError.self) { try JID("user@\(over)") }
    }

    @Test("the limit applies after preparation, which may lengthen a part")
    func limitAfterPreparation() throws {
        // U+FDFA is 3 bytes and becomes 33 bytes under NFKC: 31 copies are 1023 bytes, 32 are 1056.
        let fits = String(repeating: "\u{FDFA}", count: 31)
        #expect(try JID("user@example.org/\(fits)").resourcepart?.utf8.count == 1023)
        let over = String(repeating: "\u{FDFA}", count: 32)
        #expect(throws: JIDError.self) { try JID("user@example.org/\(over)") }
    }

    @Test("a JIDError names the input and says what is wrong")
    func errorDescription() throws {
        let error = try #require(throws: JIDError.self) { try JID("a b@example.org") }
        #expect(error.input == "a b@example.org")
        #expect(error.description.contains("a b@example.org"))
        #expect(error.description.contains("localpart"))
    }
}

