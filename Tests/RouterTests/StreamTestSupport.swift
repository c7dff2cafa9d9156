import Router
import Testing

/// The stream header a server sends on a component stream, with a prefix of its own declared on the root.
let serverStreamHeader = """
    <?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' from='proxy.example.org' id='3BF96D32'>
    """

/// A stream header that declares nothing but the two namespaces every component stream has.
let plainStreamHeader = """
    <stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>
    """

/// Feeds `chunks` in turn to `parser` and returns every event they produced, in order.
func parse(_ chunks: [[UInt8]], with parser: XMLStreamParser = XMLStreamParser()) throws -> [XMLStreamEvent] {
    var events: [XMLStreamEvent] = []
    for chunk in chunks {
        events += try parser.feed(chunk)
    }
    return events
}

/// Feeds `text` whole to a new parser.
func parse(_ text: String) throws -> [XMLStreamEvent] {
    try parse([Array(text.utf8)])
}

/// Splits `bytes` into pieces of at most `size` bytes.
func chunked(_ bytes: [UInt8], size: Int) -> [[UInt8]] {
    stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
}

/// The stanzas among `events`.
func stanzas(in events: [XMLStreamEvent]) -> [XMLElement] {
    events.compactMap { event in
        if case .element(let element) = event { return element }
        return nil
    }
}

/// The one stanza that `text`, a complete stream header followed by one stanza, holds.
func onlyStanza(in text: String) throws -> XMLElement {
    let found = stanzas(in: try parse(text))
    try #require(found.count == 1, "expected one stanza, got \(found.count)")
    return found[0]
}

/// The stream error condition a parser failure stands for, as written on the wire (RFC 6120 §4.9.3);
/// spelled out here so that the tests do not rely on the mapping under test.
func wireCondition(of error: XMLStreamParserError) -> String {
    switch error {
    case .notWellFormed: "not-well-formed"
    case .restrictedXML: "restricted-xml"
    case .stanzaTooLarge: "policy-violation"
    case .badFormat: "bad-format"
    }
}

/// The failure that feeding `chunks` ends with, or nil when all of them parse.
func failure(feeding chunks: [[UInt8]], to parser: XMLStreamParser = XMLStreamParser()) -> XMLStreamParserError? {
    do {
        _ = try parse(chunks, with: parser)
        return nil
    } catch let error as XMLStreamParserError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

func failure(feeding text: String) -> XMLStreamParserError? {
    failure(feeding: [Array(text.utf8)])
}

/// What an element means whatever prefixes and declarations were chosen to write it: expanded names,
/// attributes as a sorted set of `{namespace}name='value'`, children in order with text kept exactly.
func meaning(of element: XMLElement) -> String {
    func expanded(_ namespace: String?, _ name: String) -> String { "{\(namespace ?? "")}\(name)" }

    let attributes = element.attributes
        .map { "\(expanded($0.namespace, $0.name))=\(String(reflecting: $0.value))" }
        .sorted()
    var out = expanded(element.namespace, element.name) + "[" + attributes.joined(separator: " ") + "]("
    for child in element.children {
        switch child {
        case .element(let inner): out += meaning(of: inner)
        case .text(let text): out += String(reflecting: text)
        }
    }
    return out + ")"
}

/// The prefixes as written, element and attributes, depth first; "-" for none.
func prefixes(of element: XMLElement) -> [String] {
    var out = [element.prefix ?? "-"] + element.attributes.map { ($0.prefix ?? "-") + ":" + $0.name }
    for inner in element.elements {
        out += prefixes(of: inner)
    }
    return out
}
