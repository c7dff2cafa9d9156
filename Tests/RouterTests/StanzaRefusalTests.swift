import Testing
@testable import Router

@Suite("Stanzas too large or too deep are dropped, and the stream goes on")
struct StanzaRefusalTests {
    let header = "<stream:stream xmlns='jabber:component:accept' "
        + "xmlns:stream='http://etherx.jabber.org/streams' id='s'>"

    private func events(_ parser: XMLStreamParser, _ text: String) throws -> [XMLStreamEvent] {
        var all: [XMLStreamEvent] = []
        // Fed in chunks of 100 bytes, as a socket would deliver it.
        let bytes = Array(text.utf8)
        var start = 0
        while start < bytes.count {
            all += try parser.feed(Array(bytes[start..<min(bytes.count, start + 100)]))
            start += 100
        }
        return all
    }

    @Test("a payload nested 20,000 deep is refused as too deep, and the next stanza arrives whole")
    func deepPayload() throws {
        let parser = XMLStreamParser(maxStanzaSize: 1_000_000, refuseAbove: 500_000, maxDepth: 64)
        let deep = "<iq type='get' id='deep' from='u@example.org/r' to='proxy.example.org'><q xmlns='urn:x'>"
            + String(repeating: "<a>", count: 20_000) + String(repeating: "</a>", count: 20_000) + "</q></iq>"
        let next = "<iq type='get' id='next' from='u@example.org/r' to='proxy.example.org'/>"
        let found = try events(parser, header + deep + next)

        // 1. The deep stanza comes out as refused, with its attributes and no children.
        guard case .refused(let root, let reason)? = found.dropFirst().first else {
            Issue.record("expected a refused stanza, got \(found)")
            return
        }
        #expect(reason == .tooDeep)
        #expect(root[attribute: "id"] == "deep" && root.children.isEmpty)
        // 2. The stream goes on: the next stanza is an ordinary element.
        #expect(found.last.map { if case .element(let e) = $0 { e[attribute: "id"] == "next" } else { false } } == true)
    }

    @Test("a stanza over refuseAbove is refused as too large; one over maxStanzaSize closes the stream")
    func sizes() throws {
        let parser = XMLStreamParser(maxStanzaSize: 8192, refuseAbove: 1024)
        let big = "<iq type='get' id='big' from='u@example.org/r' to='proxy.example.org'><q xmlns='urn:x'>"
            + String(repeating: "x", count: 4000) + "</q></iq>"
        let found = try events(parser, header + big + "<iq type='get' id='small' to='p' from='u@e/r'/>")
        #expect(found.contains { event in
            if case .refused(let root, .tooLarge) = event { root[attribute: "id"] == "big" } else { false }
        })
        #expect(found.contains { if case .element(let e) = $0 { e[attribute: "id"] == "small" } else { false } })

        let huge = "<iq type='get' id='huge'><q>" + String(repeating: "x", count: 20_000) + "</q></iq>"
        #expect(throws: XMLStreamParserError.stanzaTooLarge(limit: 8192)) { _ = try events(parser, huge) }
    }
}
