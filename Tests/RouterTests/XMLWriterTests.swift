@testable import Router
import Testing

/// The serializer escapes with byte masks and writes through a pointer into memory it sized
/// itself; these tests hold it to a plain reference and to its size bound.
@Suite("XML writer: escaping matches a plain reference, output fits its bound")
struct XMLWriterTests {
    /// The escaping rules spelled out one byte at a time.
    private func reference(_ text: String, inAttribute: Bool) -> [UInt8] {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "&"): out += Array("&amp;".utf8)
            case UInt8(ascii: "<"): out += Array("&lt;".utf8)
            case UInt8(ascii: ">"): out += Array("&gt;".utf8)
            case UInt8(ascii: "\"") where inAttribute: out += Array("&quot;".utf8)
            case UInt8(ascii: "'") where inAttribute: out += Array("&apos;".utf8)
            case 0x09 where inAttribute: out += Array("&#9;".utf8)
            case 0x0A where inAttribute: out += Array("&#10;".utf8)
            case 0x0D: out += Array("&#13;".utf8)
            case 0x09, 0x0A: out.append(byte)
            case 0x00..<0x20: break
            case 0xEF where index + 1 < bytes.count && bytes[index] == 0xBF
                && (bytes[index + 1] == 0xBE || bytes[index + 1] == 0xBF):
                index += 2
            default: out.append(byte)
            }
        }
        return out
    }

    @Test("random text escapes as the reference does, in attributes and in text")
    func randomText() {
        let pieces = ["a", "Z", " ", "&", "<", ">", "\"", "'", "\t", "\n", "\r", "\u{0}", "\u{1F}", "\u{7F}", "é",
                      "\u{FFFD}", "\u{FFFE}", "\u{FFFF}", "\u{FEFF}", "\u{EFFF}", "😀", ";", "#"]
        var generator = SplitMix64(seed: 114)
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...12, using: &generator)
            let text = (0..<length).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &generator)] }.joined()
            for inAttribute in [true, false] {
                var out: [UInt8] = [0x2A]
                XMLSerializer.appendEscaped(text, inAttribute: inAttribute, into: &out)
                #expect(out == [0x2A] + reference(text, inAttribute: inAttribute), "\(text.debugDescription)")
            }
        }
    }

    @Test("text that escapes to six bytes a byte still fits the size bound")
    func worstCaseExpansion() {
        let quotes = String(repeating: "\"", count: 5000)
        var stanza = XMLElement(name: "iq", namespace: "jabber:component:accept", prefix: "p")
        stanza[attribute: "id"] = quotes
        stanza.attributes.append(XMLAttribute(name: "a", prefix: "x", namespace: quotes, value: quotes))
        stanza.append(text: String(repeating: ">\r", count: 5000))
        var child = XMLElement(name: "q", namespace: quotes)
        child.append(text: quotes)
        stanza.append(child)
        let text = XMLSerializer.string(stanza, defaultNamespace: "jabber:component:accept")
        let size = text.utf8.count
        #expect(size <= XMLSerializer.maximumSize(of: stanza))
        let declared = text.hasPrefix("<p:iq xmlns:p='jabber:component:accept' id='&quot;&quot;")
            && text.contains(" xmlns:x='&quot;&quot;") && text.hasSuffix("\"</q></p:iq>")
        #expect(declared)
    }
}
