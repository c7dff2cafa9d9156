import Router
import Testing

@Suite("XML stream parser: bytes as TCP delivers them")
struct XMLStreamParserTests {
    /// A stanza with a raw `>` in an attribute, entity and character references, and characters of
    /// two, three and four UTF-8 bytes, so that splits land inside each of them.
    static let stanza = """
        <iq type='get' id='a&amp;1' to='proxy.example.org' from='user@example.org/ph&#xF6;ne' cmp='1>0'>\
        <query xmlns='urn:example:q' q='h&#233;'>h&lt;&#233;llo ✓ 𝄞</query></iq>
        """

    static var wholeStream: [UInt8] { Array((serverStreamHeader + stanza).utf8) }

    /// Checks, without trusting the parser's own output, that `events` are the header and the stanza.
    static func expectHeaderAndStanza(_ events: [XMLStreamEvent]) throws {
        try #require(events.count == 2)
        guard case .streamOpened(let root) = events[0], case .element(let iq) = events[1] else {
            Issue.record("expected the stream header, then a stanza: \(events)")
            return
        }
        #expect(root.name == "stream")
        #expect(root[attribute: "id"] == "3BF96D32")
        #expect(iq.name == "iq")
        #expect(iq.namespace == "jabber:component:accept")
        #expect(iq[attribute: "id"] == "a&1")
        #expect(iq[attribute: "cmp"] == "1>0")
        #expect(Array((iq[attribute: "from"] ?? "").utf8) == Array("user@example.org/ph\u{F6}ne".utf8))
        let query = try #require(iq.child("query", namespace: "urn:example:q"))
        #expect(Array((query[attribute: "q"] ?? "").utf8) == Array("h\u{E9}".utf8))
        #expect(Array(query.text.utf8) == Array("h<\u{E9}llo \u{2713} \u{1D11E}".utf8))
    }

    @Test("a stream header and a stanza fed whole give the header, then the stanza")
    func wholeFeed() throws {
        try Self.expectHeaderAndStanza(try parse([Self.wholeStream]))
    }

    @Test("a stream split in two at any byte gives the same events as fed whole")
    func splitAtEveryOffset() throws {
        let bytes = Self.wholeStream
        let whole = try parse([bytes])
        for offset in 1..<bytes.count {
            let split = try parse([Array(bytes[..<offset]), Array(bytes[offset...])])
            #expect(split == whole, "split at byte \(offset)")
        }
    }

    @Test("a stream fed one byte at a time gives the same events as fed whole")
    func oneByteAtATime() throws {
        let bytes = Self.wholeStream
        let events = try parse(chunked(bytes, size: 1))
        try Self.expectHeaderAndStanza(events)
        #expect(events == (try parse([bytes])))
    }

    @Test("each event comes out with the feed that completes it, not later")
    func eventsAreNotHeldBack() throws {
        let parser = XMLStreamParser()
        let header = try parser.feed(Array(serverStreamHeader.utf8))
        #expect(header.count == 1)
        let stanza = try parser.feed(Array("<message to='a@b'><body>hi</body></message>".utf8))
        #expect(stanzas(in: stanza).map(\.name) == ["message"])
    }

    @Test("several stanzas in one read come out in order")
    func severalStanzasInOneRead() throws {
        let parser = XMLStreamParser()
        _ = try parser.feed(Array(serverStreamHeader.utf8))
        let read = "<iq id='1' type='get'/><message id='2'><body>two</body></message><presence id='3'/>"
            + "<iq id='4' type='result'><q xmlns='urn:x'/></iq>"
        let events = try parser.feed(Array(read.utf8))
        let found = stanzas(in: events)
        #expect(events.count == 4)
        #expect(found.map(\.name) == ["iq", "message", "presence", "iq"])
        #expect(found.map { $0[attribute: "id"] } == ["1", "2", "3", "4"])
        #expect(found[1].child("body")?.text == "two")
    }

    @Test("a read that ends inside the next stanza gives only the complete ones")
    func readEndingInsideAStanza() throws {
        let parser = XMLStreamParser()
        _ = try parser.feed(Array(serverStreamHeader.utf8))
        let first = try parser.feed(Array("<iq id='1' type='get'/><iq id='2' ty".utf8))
        #expect(stanzas(in: first).map { $0[attribute: "id"] } == ["1"])
        let second = try parser.feed(Array("pe='set'/>".utf8))
        #expect(stanzas(in: second).map { $0[attribute: "type"] } == ["set"])
    }

    @Test("whitespace keepalives between stanzas produce no events and no text")
    func whitespaceKeepalives() throws {
        let parser = XMLStreamParser()
        _ = try parser.feed(Array(serverStreamHeader.utf8))
        for keepalive in [" ", "\n", "\t", "\r\n", "  \n\t "] {
            #expect(try parser.feed(Array(keepalive.utf8)).isEmpty, "keepalive \(String(reflecting: keepalive))")
        }
        let events = try parser.feed(Array(" <iq id='1' type='get'/> \n".utf8))
        #expect(events.count == 1)
        let iq = try #require(stanzas(in: events).first)
        #expect(iq.children.isEmpty)
        #expect(try parser.feed(Array(" ".utf8)).isEmpty)
    }

    @Test("non-ASCII text split inside a multi-byte character arrives whole")
    func multiByteCharacterSplit() throws {
        let text = "h\u{E9}llo \u{2713} \u{1D11E}"
        let stanza = Array("<message><body>\(text)</body></message>".utf8)
        let start = stanza.firstIndex(of: 0xC3) ?? 0
        for offset in (start + 1)..<(stanza.count - 10) {
            let parser = XMLStreamParser()
            _ = try parser.feed(Array(plainStreamHeader.utf8))
            let events = try parse([Array(stanza[..<offset]), Array(stanza[offset...])], with: parser)
            let body = stanzas(in: events).first?.child("body")
            #expect(body.map { Array($0.text.utf8) } == Array(text.utf8), "split at byte \(offset)")
        }
    }

    @Test("the stream header event carries the root's name, namespace and id")
    func streamHeader() throws {
        let events = try parse(serverStreamHeader)
        try #require(events.count == 1)
        guard case .streamOpened(let root) = events[0] else {
            Issue.record("expected .streamOpened, got \(events[0])")
            return
        }
        #expect(root.name == "stream")
        #expect(root.prefix == "stream")
        #expect(root.namespace == "http://etherx.jabber.org/streams")
        #expect(root[attribute: "id"] == "3BF96D32")
        #expect(root[attribute: "from"] == "proxy.example.org")
        #expect(root.children.isEmpty)
    }

    @Test("a stream id that is a long decimal number or a UUID is kept as text")
    func opaqueStreamIDs() throws {
        for id in ["12345678901234567890", "4bf7a3d8-1c2e-4f0b-9a6d-5e8f7c3b2a10"] {
            let header = "<stream:stream xmlns='jabber:component:accept' "
                + "xmlns:stream='http://etherx.jabber.org/streams' id='\(id)'>"
            guard case .streamOpened(let root)? = try parse(header).first else {
                Issue.record("no stream header for id \(id)")
                continue
            }
            #expect(root[attribute: "id"] == id)
        }
    }

    @Test("the end of the stream gives .streamClosed after the last stanza")
    func streamClosed() throws {
        let parser = XMLStreamParser()
        _ = try parser.feed(Array(serverStreamHeader.utf8))
        let events = try parser.feed(Array("<iq id='1' type='get'/></stream:stream>".utf8))
        #expect(events.count == 2)
        #expect(stanzas(in: events).count == 1)
        #expect(events.last == .streamClosed)
    }

    @Test("after reset() the parser reads a new stream from its header")
    func resetStartsANewStream() throws {
        let parser = XMLStreamParser()
        _ = try parser.feed(Array(serverStreamHeader.utf8))
        _ = try parser.feed(Array("<iq id='half".utf8))

        parser.reset()

        let events = try parse([Array(plainStreamHeader.utf8), Array("<iq id='2' type='get'/>".utf8)], with: parser)
        #expect(events.count == 2)
        #expect(stanzas(in: events).map { $0[attribute: "id"] } == ["2"])
    }

    @Test("after a closed stream and reset() the parser reads a second stream")
    func resetAfterClose() throws {
        let parser = XMLStreamParser()
        _ = try parse([Array((plainStreamHeader + "</stream:stream>").utf8)], with: parser)
        parser.reset()
        let events = try parser.feed(Array((serverStreamHeader + "<presence/>").utf8))
        #expect(stanzas(in: events).map(\.name) == ["presence"])
    }
}
