import Router
import Testing

@Suite("XML stream parser: input XMPP forbids")
struct XMLRefusedInputTests {
    static let billionLaughs = """
        <?xml version='1.0'?><!DOCTYPE stream:stream [\
        <!ENTITY lol 'lol'>\
        <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
        <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>\
        <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>\
        <!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>\
        <!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>\
        <!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>\
        <!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>\
        <!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>\
        <!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>\
        ]><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' \
        id='1'><message><body>&lol9;</body></message>
        """

    @Test("an XML declaration before the stream header is accepted, as servers send one")
    func xmlDeclarationAccepted() throws {
        let events = try parse("<?xml version='1.0' encoding='UTF-8'?>" + plainStreamHeader + "<presence/>")
        #expect(events.count == 2)
    }

    @Test("a DTD with an internal subset before the root is restricted-xml")
    func doctypeWithInternalSubset() throws {
        let input = "<!DOCTYPE stream:stream [<!ENTITY name 'expanded'>]>" + plainStreamHeader
            + "<message><body>&name;</body></message>"
        let error = try #require(failure(feeding: input))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("any DTD before the root is restricted-xml, even one that declares no entity", arguments: [
        "<!DOCTYPE stream:stream>",
        "<!DOCTYPE stream:stream []>",
        "<!DOCTYPE stream:stream [<!ELEMENT message ANY>]>",
        "<!DOCTYPE stream:stream [<!ATTLIST message type CDATA 'injected'>]>",
    ])
    func anyDoctype(doctype: String) throws {
        let error = try #require(failure(feeding: doctype + plainStreamHeader + "<message/>"))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a DTD is restricted-xml also when it arrives one byte at a time")
    func doctypeByteByByte() throws {
        let input = "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY name 'expanded'>]>" + plainStreamHeader
        let error = try #require(failure(feeding: chunked(Array(input.utf8), size: 1)))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("an external DTD is restricted-xml and never fetched")
    func externalDoctype() throws {
        let input = "<!DOCTYPE stream:stream SYSTEM 'file:///etc/passwd'>" + plainStreamHeader
        let error = try #require(failure(feeding: input))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a billion-laughs DTD is refused without expanding anything")
    func billionLaughs() throws {
        let parser = XMLStreamParser()
        var events: [XMLStreamEvent] = []
        var caught: XMLStreamParserError?
        do {
            events = try parse([Array(Self.billionLaughs.utf8)], with: parser)
        } catch let error as XMLStreamParserError {
            caught = error
        }
        let error = try #require(caught, "accepted, with events \(events.count)")
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
        #expect(failure(feeding: [Array("<presence/>".utf8)], to: parser) != nil, "the parser went on after a DTD")
    }

    @Test("a DTD inside the stream, after the header, is refused")
    func doctypeInsideStream() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<!DOCTYPE x [<!ENTITY a 'b'>]><presence/>"))
        let condition = wireCondition(of: error)
        #expect(condition == "restricted-xml" || condition == "not-well-formed", "\(error)")
    }

    @Test("a reference to an undeclared entity is refused, never passed on as text")
    func undefinedEntity() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<message><body>a&undefined;b</body></message>"))
        // RFC 6120 §11.1 lists entity references as restricted XML; XML 1.0 calls an undeclared
        // one not well-formed. Either stream error is right.
        let condition = wireCondition(of: error)
        #expect(condition == "restricted-xml" || condition == "not-well-formed", "\(error)")
    }

    @Test("a reference to an undeclared entity in an attribute value is refused")
    func undefinedEntityInAttribute() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<message id='a&undefined;b'/>"))
        let condition = wireCondition(of: error)
        #expect(condition == "restricted-xml" || condition == "not-well-formed", "\(error)")
    }

    @Test("a comment between stanzas is restricted-xml")
    func commentBetweenStanzas() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<presence/><!-- hello --><presence/>"))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a comment inside a stanza is restricted-xml")
    func commentInsideStanza() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<message><body>a<!-- x -->b</body></message>"))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a comment before the stream header is restricted-xml")
    func commentBeforeRoot() throws {
        let error = try #require(failure(feeding: "<!-- hello -->" + plainStreamHeader))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a processing instruction inside the stream is restricted-xml")
    func processingInstructionInStream() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<presence/><?app do-something?>"))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a processing instruction inside a stanza is restricted-xml")
    func processingInstructionInStanza() throws {
        let error = try #require(failure(feeding: plainStreamHeader + "<message><?app x?></message>"))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("a processing instruction before the stream header is restricted-xml")
    func processingInstructionBeforeRoot() throws {
        let error = try #require(failure(feeding: "<?xml version='1.0'?><?app x?>" + plainStreamHeader))
        #expect(wireCondition(of: error) == "restricted-xml", "\(error)")
    }

    @Test("bytes that are not UTF-8 are not-well-formed")
    func invalidUTF8() throws {
        let cases: [(String, [UInt8])] = [
            ("a stray continuation byte", [0x80]),
            ("0xFF", [0xFF, 0xFE]),
            ("an overlong '/'", [0xC0, 0xAF]),
            ("a truncated three-byte sequence", [0xE2, 0x9C, 0x41]),
            ("an encoded surrogate", [0xED, 0xA0, 0x80]),
        ]
        for (name, bad) in cases {
            let bytes = Array((plainStreamHeader + "<message><body>a").utf8) + bad + Array("b</body></message>".utf8)
            let error = failure(feeding: [bytes])
            #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(name): \(String(describing: error))")
        }
    }

    @Test("bytes that are not UTF-8 in an attribute value are not-well-formed")
    func invalidUTF8InAttribute() throws {
        let bytes = Array((plainStreamHeader + "<message id='a").utf8) + [0xFF] + Array("'/>".utf8)
        let error = failure(feeding: [bytes])
        #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(String(describing: error))")
    }

    @Test("a declared encoding other than UTF-8 does not make non-UTF-8 bytes acceptable")
    func declaredLatin1() throws {
        let bytes = Array(("<?xml version='1.0' encoding='ISO-8859-1'?>" + plainStreamHeader + "<message><body>").utf8)
            + [0xFF, 0xE9] + Array("</body></message>".utf8)
        for chunkSize in [1, bytes.count] {
            let error = failure(feeding: chunked(bytes, size: chunkSize))
            // RFC 6120 §11.6 names unsupported-encoding for this; the parser has no such case.
            let context = Comment(rawValue: "chunks of \(chunkSize): \(String(describing: error))")
            #expect(error.map(wireCondition(of:)) == "not-well-formed", context)
        }
    }

    @Test("a UTF-16 stream is refused, byte order mark or not")
    func utf16() throws {
        let utf16 = Array(plainStreamHeader.utf16).flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        for bytes in [[0xFE, 0xFF] + utf16, utf16] {
            let error = failure(feeding: [bytes])
            #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(String(describing: error))")
        }
    }

    @Test("U+FEFF before the stream header is a character, not a byte order mark (RFC 6120 §11.6)")
    func utf8ByteOrderMark() throws {
        let error = failure(feeding: [[0xEF, 0xBB, 0xBF] + Array((plainStreamHeader + "<presence/>").utf8)])
        #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(String(describing: error))")
    }

    @Test("XML that breaks the namespace rules is not-well-formed", arguments: [
        "<message><undeclared:thing/></message>",
        "<message undeclared:a='1'/>",
        "<message><x xmlns:u=''/></message>",
        "<message xmlns:p='urn:a' xmlns:q='urn:a' p:a='1' q:a='2'/>",
        "<message><x xmlns:xml='urn:not-xml'/></message>",
    ])
    func namespaceErrors(stanza: String) throws {
        let error = failure(feeding: plainStreamHeader + stanza)
        #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(String(describing: error))")
    }

    @Test("text beside the stanzas is bad-format")
    func textOutsideStanzas() throws {
        let error = failure(feeding: plainStreamHeader + "<presence/>stray text<presence/>")
        #expect(error.map(wireCondition(of:)) == "bad-format", "\(String(describing: error))")
    }

    @Test("mismatched tags are not-well-formed")
    func mismatchedTags() throws {
        let error = failure(feeding: plainStreamHeader + "<message><body></message>")
        #expect(error.map(wireCondition(of:)) == "not-well-formed", "\(String(describing: error))")
    }

    @Test("once failed, the parser keeps failing until reset(), then reads a new stream")
    func failureIsStickyUntilReset() throws {
        let parser = XMLStreamParser()
        #expect(failure(feeding: [Array((plainStreamHeader + "<!-- x -->").utf8)], to: parser) != nil)
        #expect(failure(feeding: [Array("<presence/>".utf8)], to: parser) != nil)

        parser.reset()

        let events = try parse([Array((plainStreamHeader + "<presence id='after'/>").utf8)], with: parser)
        #expect(stanzas(in: events).map { $0[attribute: "id"] } == ["after"])
    }
}

@Suite("XML stream parser: stanza size limit")
struct XMLStanzaSizeLimitTests {
    static let limit = 1024

    static func bigStanza(bytes: Int) -> String {
        let prefix = "<message to='a@b'><body>"
        let suffix = "</body></message>"
        return prefix + String(repeating: "x", count: bytes - prefix.utf8.count - suffix.utf8.count) + suffix
    }

    @Test("a 10 KB stanza fed in chunks is refused once it passes the limit", arguments: [1, 100, 512, 1500, 4096])
    func largeStanzaInChunks(chunkSize: Int) throws {
        let parser = XMLStreamParser(maxStanzaSize: Self.limit)
        _ = try parser.feed(Array(plainStreamHeader.utf8))
        var fed = 0
        var caught: XMLStreamParserError?
        for chunk in chunked(Array(Self.bigStanza(bytes: 10 * 1024).utf8), size: chunkSize) {
            do {
                _ = try parser.feed(chunk)
                fed += chunk.count
            } catch let error as XMLStreamParserError {
                caught = error
                break
            }
        }
        let error = try #require(caught, "a 10 KB stanza was accepted")
        #expect(error == .stanzaTooLarge(limit: Self.limit))
        #expect(wireCondition(of: error) == "policy-violation")
        #expect(fed <= Self.limit + chunkSize, "refused only after \(fed) bytes")
    }

    @Test("a 10 KB stanza fed in one read is refused")
    func largeStanzaInOneRead() throws {
        let parser = XMLStreamParser(maxStanzaSize: Self.limit)
        _ = try parser.feed(Array(plainStreamHeader.utf8))
        let error = failure(feeding: [Array(Self.bigStanza(bytes: 10 * 1024).utf8)], to: parser)
        #expect(error == .stanzaTooLarge(limit: Self.limit))
    }

    @Test("a stanza of exactly the limit passes and one byte more is refused, whole or in chunks",
          arguments: [1, 100, 2048])
    func exactLimit(chunkSize: Int) throws {
        for (size, accepted) in [(Self.limit, true), (Self.limit + 1, false)] {
            for separator in ["", " \n "] {
                let parser = XMLStreamParser(maxStanzaSize: Self.limit)
                _ = try parser.feed(Array((plainStreamHeader + "<presence/>" + separator).utf8))
                let stanza = Array(Self.bigStanza(bytes: size).utf8)
                let error = failure(feeding: chunked(stanza, size: chunkSize), to: parser)
                let context = Comment(rawValue: "\(size) bytes after \(String(reflecting: separator))")
                #expect(error == (accepted ? nil : .stanzaTooLarge(limit: Self.limit)), context)
            }
        }
    }

    @Test("a start tag that never ends is refused once it passes the limit", arguments: [1, 64, 1000])
    func endlessStartTag(chunkSize: Int) throws {
        let parser = XMLStreamParser(maxStanzaSize: Self.limit)
        _ = try parser.feed(Array(plainStreamHeader.utf8))
        _ = try parser.feed(Array("<message to='".utf8))
        var fed = 0
        var caught: XMLStreamParserError?
        while fed < 100 * 1024, caught == nil {
            do {
                _ = try parser.feed([UInt8](repeating: UInt8(ascii: "a"), count: chunkSize))
                fed += chunkSize
            } catch let error as XMLStreamParserError {
                caught = error
            }
        }
        #expect(caught == .stanzaTooLarge(limit: Self.limit), "after \(fed) bytes")
        #expect(fed <= Self.limit + chunkSize)
    }

    @Test("an element name that never ends is refused once it passes the limit")
    func endlessElementName() throws {
        let parser = XMLStreamParser(maxStanzaSize: Self.limit)
        _ = try parser.feed(Array((plainStreamHeader + "<m").utf8))
        var caught: XMLStreamParserError?
        for _ in 0..<200 where caught == nil {
            caught = failure(feeding: [[UInt8](repeating: UInt8(ascii: "a"), count: 100)], to: parser)
        }
        #expect(caught == .stanzaTooLarge(limit: Self.limit))
    }

    @Test("a stanza just under the limit passes, in any chunking")
    func stanzaUnderLimit() throws {
        let stanza = Array(Self.bigStanza(bytes: 1000).utf8)
        for chunkSize in [1, 7, 100, 999, 1000] {
            let parser = XMLStreamParser(maxStanzaSize: Self.limit)
            _ = try parser.feed(Array(plainStreamHeader.utf8))
            let events = try parse(chunked(stanza, size: chunkSize), with: parser)
            #expect(stanzas(in: events).count == 1, "chunks of \(chunkSize)")
        }
    }

    @Test("many small stanzas whose total passes the limit are all accepted")
    func manySmallStanzas() throws {
        let one = "<iq type='get' id='0123456789' to='proxy.example.org'><ping xmlns='urn:xmpp:ping'/></iq> "
        let stream = Array((plainStreamHeader + String(repeating: one, count: 200)).utf8)
        for chunkSize in [1, 33, 700, 1023, 4096, stream.count] {
            let parser = XMLStreamParser(maxStanzaSize: Self.limit)
            let events = try parse(chunked(stream, size: chunkSize), with: parser)
            #expect(stanzas(in: events).count == 200, "chunks of \(chunkSize)")
        }
    }

    @Test("a small stanza after keepalives and a long wait for the next read is accepted")
    func partialStanzaUnderLimitAcrossManyReads() throws {
        let parser = XMLStreamParser(maxStanzaSize: Self.limit)
        _ = try parser.feed(Array(plainStreamHeader.utf8))
        for _ in 0..<2000 {
            _ = try parser.feed(Array(" ".utf8))
        }
        let events = try parse(chunked(Array("<presence/>".utf8), size: 1), with: parser)
        #expect(stanzas(in: events).count == 1)
    }

    @Test("the default limit is 256 KiB")
    func defaultLimit() {
        #expect(XMLStreamParser().maxStanzaSize == 256 * 1024)
    }
}
