// libFuzzer harness: the XML stream parser, fed the same bytes whole and split at places the input
// chooses, and the serializer, which must write back what each stanza means.
//
// Input: the first byte seeds the split points; the rest is the stream from the server.
// Checked, besides "no crash":
// 1. Fed in chunks, the bytes give the same events as fed whole (TCP may split them anywhere),
//    when both ways accept them. libxml2's push parser looks ahead for the end of a start tag only
//    as far as it has bytes, so it reports some errors in an unfinished tag sooner or later
//    depending on where the chunks end; that changes when a broken stream is refused, not what
//    is accepted, so a failure on one side only is not checked.
// 2. Each stanza, written by XMLSerializer and parsed again, means the same XML: names,
//    namespaces, attributes and text, whatever the prefixes.
import Plugins

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStreamParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let seed = data[0]
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))

    let whole = parse([bytes])
    let split = parse(chunks(of: bytes, seed: seed))
    if whole.failed == nil, split.failed == nil, whole.events != split.events {
        fatalError("split feeding changed the events:\nwhole: \(whole.events)\nsplit: \(split.events)")
    }
    for event in whole.events {
        guard case .element(let stanza) = event else { continue }
        checkRoundTrip(stanza)
    }
    return 0
}

private struct Outcome {
    var events: [XMLStreamEvent] = []
    var failed: XMLStreamParserError?
}

/// One parser reused across inputs, as a connection reuses it across streams (`reset()`).
nonisolated(unsafe) private let parser = XMLStreamParser(maxStanzaSize: 1 << 20)

private func parse(_ chunks: [[UInt8]]) -> Outcome {
    parser.reset()
    var outcome = Outcome()
    for chunk in chunks {
        do {
            outcome.events += try parser.feed(chunk)
        } catch let error as XMLStreamParserError {
            outcome.failed = error
            return outcome
        } catch {
            fatalError("feed threw something other than XMLStreamParserError: \(error)")
        }
    }
    return outcome
}

/// Chunks of 1 to 16 bytes, lengths drawn from a small LCG seeded by the input.
private func chunks(of bytes: [UInt8], seed: UInt8) -> [[UInt8]] {
    var state = UInt32(seed) &* 2_654_435_761 &+ 1
    var out: [[UInt8]] = []
    var index = 0
    while index < bytes.count {
        state = state &* 1_103_515_245 &+ 12_345
        let length = min(bytes.count - index, Int((state >> 16) % 16) + 1)
        out.append(Array(bytes[index..<index + length]))
        index += length
    }
    return out
}

private let header = Array(("<stream:stream xmlns='\(componentNamespace)' xmlns:stream='\(streamNamespace)'"
    + " id='fuzz'>").utf8)

private func checkRoundTrip(_ stanza: XMLElement) {
    var out = header
    XMLSerializer.write(stanza, into: &out, defaultNamespace: componentNamespace)
    let again = XMLStreamParser(maxStanzaSize: 1 << 22)
    let events: [XMLStreamEvent]
    do {
        events = try again.feed(out)
    } catch {
        fatalError("the serializer wrote what the parser refuses (\(error)):\n"
                   + String(decoding: out, as: UTF8.self))
    }
    guard events.count == 2, case .element(let reparsed) = events[1] else {
        fatalError("the serialized stanza did not parse back to one stanza: \(events)")
    }
    if Meaning(stanza) != Meaning(reparsed) {
        fatalError("the serialized stanza means something else:\nbefore: \(stanza)\nafter:  \(reparsed)\n"
                   + String(decoding: out, as: UTF8.self))
    }
}

/// What an element means in XML Namespaces terms: prefixes and declarations left out, adjacent
/// text runs joined.
private struct Meaning: Equatable {
    var name: String
    var namespace: String?
    var attributes: [String]
    var children: [Child]

    indirect enum Child: Equatable {
        case element(Meaning)
        case text(String)
    }

    init(_ element: XMLElement) {
        name = element.name
        namespace = element.namespace
        attributes = element.attributes.map { "{\($0.namespace ?? "")}\($0.name)=\($0.value)" }.sorted()
        children = []
        for child in element.children {
            switch child {
            case .element(let inner):
                children.append(.element(Meaning(inner)))
            case .text(let text):
                if case .text(let previous)? = children.last {
                    children[children.count - 1] = .text(previous + text)
                } else if !text.isEmpty {
                    children.append(.text(text))
                }
            }
        }
    }
}
