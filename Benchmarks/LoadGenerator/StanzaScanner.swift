#if canImport(Glibc)
import Glibc
#endif

/// One top-level element found by `StanzaScanner`, as offsets into the buffer it was found in.
struct ScannedStanza {
    var start = 0
    /// One past the element's last byte.
    var end = 0
    var name = ByteRange.missing
    /// One past the start tag's `>`; for a self-closing element, equal to `end`.
    var contentStart = 0
    /// Where the end tag begins; equal to `end` for a self-closing element.
    var contentEnd = 0
    var type = ByteRange.missing
    var id = ByteRange.missing
    var from = ByteRange.missing
    var to = ByteRange.missing
}

/// A byte-level scanner for the stanzas of the bench's own traffic, far cheaper than an XML parser.
///
/// Limitation: it is not an XML parser. It relies on what the router's serializer writes and
/// the bench itself sends: attribute values quoted and escaped (so `>` never occurs in them),
/// and no element nested inside another of the same name. It reads `type`, `id`, `from` and `to`
/// only and does not unescape them. Never use it on untrusted input.
enum StanzaScanner {
    /// Skips whitespace keepalives from `index`; returns the first other offset.
    @inline(__always)
    static func skipSpace(_ p: UnsafePointer<UInt8>, _ index: Int, _ end: Int) -> Int {
        var i = index
        while i < end, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
        return i
    }

    /// The start tag at `index` (which must hold `<`), or nil if it is not complete yet.
    /// Sets `contentStart`; for a self-closing tag also `end` and `contentEnd`.
    static func startTag(_ p: UnsafePointer<UInt8>, at index: Int, end: Int) throws -> (ScannedStanza, Bool)? {
        var stanza = ScannedStanza()
        stanza.start = index
        guard p[index] == UInt8(ascii: "<") else {
            throw BenchError("expected '<' in the router's output, found byte \(p[index])")
        }
        var i = index + 1
        // The XML declaration `<?xml … ?>` keeps its `?` in the name.
        if i < end, p[i] == UInt8(ascii: "?") { i += 1 }
        while i < end, !isNameEnd(p[i]) { i += 1 }
        guard i < end else { return nil }
        stanza.name = ByteRange(start: index + 1, end: i)
        while true {
            i = skipSpace(p, i, end)
            guard i < end else { return nil }
            switch p[i] {
            case UInt8(ascii: ">"):
                stanza.contentStart = i + 1
                return (stanza, false)
            case UInt8(ascii: "/"), UInt8(ascii: "?"):
                guard i + 1 < end else { return nil }
                guard p[i + 1] == UInt8(ascii: ">") else { throw BenchError("malformed tag end") }
                stanza.end = i + 2
                stanza.contentStart = i + 2
                stanza.contentEnd = i + 2
                return (stanza, true)
            default:
                let nameStart = i
                while i < end, p[i] != UInt8(ascii: "="), !isNameEnd(p[i]) { i += 1 }
                let nameEnd = i
                i = skipSpace(p, i, end)
                guard i + 1 < end else { return nil }
                guard p[i] == UInt8(ascii: "=") else { throw BenchError("malformed attribute") }
                i = skipSpace(p, i + 1, end)
                guard i < end else { return nil }
                let quote = p[i]
                guard quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
                    throw BenchError("unquoted attribute value")
                }
                guard let close = memchr(p + i + 1, Int32(quote), end - i - 1) else { return nil }
                let valueEnd = UnsafePointer<UInt8>(close.assumingMemoryBound(to: UInt8.self)) - p
                let value = ByteRange(start: i + 1, end: valueEnd)
                i = valueEnd + 1
                classify(p, nameStart: nameStart, nameEnd: nameEnd, value: value, into: &stanza)
            }
        }
    }

    /// The complete element starting at or after `index` (keepalive whitespace skipped), nil if
    /// the buffer does not hold all of it yet.
    static func next(_ p: UnsafePointer<UInt8>, from index: Int, end: Int) throws -> ScannedStanza? {
        let start = skipSpace(p, index, end)
        guard start < end else { return nil }
        guard let (tag, closed) = try startTag(p, at: start, end: end) else { return nil }
        if closed { return tag }
        var stanza = tag
        let nameLength = stanza.name.count
        var i = stanza.contentStart
        while true {
            guard let found = memchr(p + i, Int32(UInt8(ascii: "<")), end - i) else { return nil }
            let k = UnsafePointer<UInt8>(found.assumingMemoryBound(to: UInt8.self)) - p
            guard k + 3 + nameLength <= end else { return nil }
            if p[k + 1] == UInt8(ascii: "/"), p[k + 2 + nameLength] == UInt8(ascii: ">"),
               memcmp(p + k + 2, p + stanza.name.start, nameLength) == 0 {
                stanza.contentEnd = k
                stanza.end = k + 3 + nameLength
                return stanza
            }
            i = k + 1
        }
    }

    @inline(__always)
    private static func isNameEnd(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
            || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "?")
    }

    @inline(__always)
    private static func classify(
        _ p: UnsafePointer<UInt8>, nameStart: Int, nameEnd: Int, value: ByteRange, into stanza: inout ScannedStanza
    ) {
        switch nameEnd - nameStart {
        case 2:
            if p[nameStart] == UInt8(ascii: "i"), p[nameStart + 1] == UInt8(ascii: "d") { stanza.id = value }
            if p[nameStart] == UInt8(ascii: "t"), p[nameStart + 1] == UInt8(ascii: "o") { stanza.to = value }
        case 4:
            if memcmp(p + nameStart, "type", 4) == 0 { stanza.type = value }
            if memcmp(p + nameStart, "from", 4) == 0 { stanza.from = value }
        default:
            break
        }
    }

    /// Whether the bytes at `range` equal `expected`.
    @inline(__always)
    static func equals(_ p: UnsafePointer<UInt8>, _ range: ByteRange, _ expected: [UInt8]) -> Bool {
        guard range.count == expected.count else { return false }
        return expected.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress else { return true }
            return memcmp(p + range.start, base, range.count) == 0
        }
    }

    /// Whether the bytes at `range` start with `prefix`.
    @inline(__always)
    static func hasPrefix(_ p: UnsafePointer<UInt8>, _ range: ByteRange, _ prefix: [UInt8]) -> Bool {
        guard range.count >= prefix.count else { return false }
        return prefix.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress else { return true }
            return memcmp(p + range.start, base, prefix.count) == 0
        }
    }

    /// The decimal number at `range`, or -1 if it holds anything but digits.
    @inline(__always)
    static func decimal(_ p: UnsafePointer<UInt8>, _ range: ByteRange) -> Int {
        guard range.count > 0, range.count < 19 else { return -1 }
        var value = 0
        for i in range.start..<range.end {
            let digit = Int(p[i]) - 0x30
            guard digit >= 0, digit <= 9 else { return -1 }
            value = value * 10 + digit
        }
        return value
    }
}
