/// Writes elements as UTF-8 XML, escaping text and attribute values and declaring any namespace
/// an element or attribute needs that is not already in scope where it is written.
///
/// Every stanza the router forwards goes through here, so an element is written in two passes
/// that cost little per byte: the first bounds its size, the second writes it through a pointer
/// into scratch memory of that size, and the result joins `out` in a single copy.
public enum XMLSerializer {
    /// Appends `element` to `out`, as a child of an element whose default namespace is
    /// `defaultNamespace` (for stanzas: the stream's, `jabber:component:accept`).
    public static func write(_ element: XMLElement, into out: inout [UInt8], defaultNamespace: String?) {
        let bound = maximumSize(of: element)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bound) { scratch in
            guard let start = scratch.baseAddress else { return }
            var writer = ByteWriter(start)
            var scope = NamespaceScope(defaultNamespace: defaultNamespace)
            write(element, to: &writer, scope: &scope)
            out.append(contentsOf: UnsafeBufferPointer(start: start, count: writer.cursor - start))
        }
    }

    /// `element` serialized alone, as text (for tests and logs).
    public static func string(_ element: XMLElement, defaultNamespace: String? = nil) -> String {
        var out: [UInt8] = []
        write(element, into: &out, defaultNamespace: defaultNamespace)
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes `& < > " '` (quotes only in attributes; whitespace other than space in attributes,
    /// so that attribute-value normalization gives back the same value), and drops characters
    /// that XML 1.0 forbids (controls other than tab, line feed and carriage return; U+FFFE and
    /// U+FFFF).
    public static func appendEscaped(_ text: String, inAttribute: Bool, into out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: escapedBound(text)) { scratch in
            guard let start = scratch.baseAddress else { return }
            var writer = ByteWriter(start)
            writer.writeEscaped(text, inAttribute: inAttribute)
            out.append(contentsOf: UnsafeBufferPointer(start: start, count: writer.cursor - start))
        }
    }

    // MARK: Writing

    // The loops go by index and read fields in place: iterating with `for … in` would copy each
    // attribute (four strings to retain and release) for every stanza written.
    private static func write(_ element: XMLElement, to writer: inout ByteWriter, scope: inout NamespaceScope) {
        let mark = scope.mark()
        defer { scope.restore(mark) }

        writer.write(UInt8(ascii: "<"))
        writer.writeQualifiedName(prefix: element.prefix, name: element.name)
        for index in element.declarations.indices {
            writer.writeDeclaration(element.declarations[index])
            scope.bind(element.declarations[index])
        }
        if scope.resolve(element.prefix) != element.namespace, element.prefix != "xml" {
            let missing = XMLNamespaceDeclaration(prefix: element.prefix, uri: element.namespace ?? "")
            writer.writeDeclaration(missing)
            scope.bind(missing)
        }
        for index in element.attributes.indices {
            if let prefix = element.attributes[index].prefix, prefix != "xml",
               scope.resolve(prefix) != element.attributes[index].namespace {
                let missing = XMLNamespaceDeclaration(prefix: prefix, uri: element.attributes[index].namespace ?? "")
                writer.writeDeclaration(missing)
                scope.bind(missing)
            }
            writer.write(UInt8(ascii: " "))
            writer.writeQualifiedName(prefix: element.attributes[index].prefix, name: element.attributes[index].name)
            writer.write("='")
            writer.writeEscaped(element.attributes[index].value, inAttribute: true)
            writer.write(UInt8(ascii: "'"))
        }
        if element.children.isEmpty {
            writer.write("/>")
            return
        }
        writer.write(UInt8(ascii: ">"))
        for index in element.children.indices {
            switch element.children[index] {
            case .element(let inner): write(inner, to: &writer, scope: &scope)
            case .text(let text): writer.writeEscaped(text, inAttribute: false)
            }
        }
        writer.write("</")
        writer.writeQualifiedName(prefix: element.prefix, name: element.name)
        writer.write(UInt8(ascii: ">"))
    }

    // MARK: Bounding the size

    /// Bytes that `write` may produce for `element`, at most: names as they are, escaped text at
    /// six bytes per byte (`"` becomes `&quot;`), and room for a namespace declaration the
    /// element or each attribute may need.
    static func maximumSize(of element: XMLElement) -> Int {
        let prefix = (element.prefix?.utf8.count ?? 0) + 1
        let namespace = element.namespace.map { escapedBound($0) } ?? 0
        var size = 2 * (prefix + element.name.utf8.count) + 8 + declarationBound(prefix, namespace)
        for index in element.declarations.indices {
            size += declarationBound((element.declarations[index].prefix?.utf8.count ?? 0) + 1,
                                     escapedBound(element.declarations[index].uri))
        }
        for index in element.attributes.indices {
            let attributePrefix = (element.attributes[index].prefix?.utf8.count ?? 0) + 1
            size += attributePrefix + element.attributes[index].name.utf8.count + 4
                + escapedBound(element.attributes[index].value)
            if element.attributes[index].prefix != nil {
                let namespaceSize = element.attributes[index].namespace.map { escapedBound($0) } ?? 0
                size += declarationBound(attributePrefix, namespaceSize)
            }
        }
        for index in element.children.indices {
            switch element.children[index] {
            case .element(let inner): size += maximumSize(of: inner)
            case .text(let text): size += escapedBound(text)
            }
        }
        return size
    }

    /// ` xmlns:prefix='uri'` with the prefix's length plus one and the URI's bound.
    private static func declarationBound(_ prefix: Int, _ uri: Int) -> Int { 9 + prefix + uri }

    private static func escapedBound(_ text: String) -> Int { 6 * text.utf8.count }
}

/// Writes bytes through a pointer into memory that `XMLSerializer.maximumSize(of:)` sized, so
/// that no write needs a bounds or capacity check.
private struct ByteWriter {
    var cursor: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) {
        cursor = start
    }

    @inline(__always)
    mutating func write(_ byte: UInt8) {
        cursor.pointee = byte
        cursor += 1
    }

    @inline(__always)
    mutating func write(_ literal: StaticString) {
        cursor.update(from: literal.utf8Start, count: literal.utf8CodeUnitCount)
        cursor += literal.utf8CodeUnitCount
    }

    /// A name or prefix, as it is: names need no escaping.
    @inline(__always)
    mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return }
            copy(base, count: bytes.count)
        }
    }

    mutating func writeQualifiedName(prefix: String?, name: String) {
        if let prefix {
            write(prefix)
            write(UInt8(ascii: ":"))
        }
        write(name)
    }

    mutating func writeDeclaration(_ declaration: XMLNamespaceDeclaration) {
        write(" xmlns")
        if let prefix = declaration.prefix {
            write(UInt8(ascii: ":"))
            write(prefix)
        }
        write("='")
        writeEscaped(declaration.uri, inAttribute: true)
        write(UInt8(ascii: "'"))
    }

    mutating func writeEscaped(_ text: String, inAttribute: Bool) {
        var text = text
        text.withUTF8 { writeEscaped($0, inAttribute: inAttribute) }
    }

    /// Copies runs of bytes that need nothing in one go; only the rare byte that needs escaping
    /// or dropping takes the slow branch.
    mutating func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, inAttribute: Bool) {
        guard let base = bytes.baseAddress else { return }
        let specials = inAttribute ? Self.attributeSpecials : Self.textSpecials
        let count = bytes.count
        var runStart = 0
        var index = 0
        while index < count {
            let byte = base[index]
            let special = byte < 0x40 ? specials >> UInt64(byte) & 1 == 1 : byte == 0xEF
            guard special else {
                index += 1
                continue
            }
            copy(base + runStart, count: index - runStart)
            index += 1
            switch byte {
            case UInt8(ascii: "&"): write("&amp;")
            case UInt8(ascii: "<"): write("&lt;")
            case UInt8(ascii: ">"): write("&gt;")
            case UInt8(ascii: "\""): write("&quot;")
            case UInt8(ascii: "'"): write("&apos;")
            case 0x09 where inAttribute: write("&#9;")
            case 0x0A where inAttribute: write("&#10;")
            case 0x0D: write("&#13;")
            case 0x09, 0x0A: write(byte)
            case 0xEF:
                // U+FFFE and U+FFFF are EF BF BE and EF BF BF; other characters from EF pass.
                if index + 1 < count, base[index] == 0xBF, base[index + 1] == 0xBE || base[index + 1] == 0xBF {
                    index += 2
                } else {
                    write(byte)
                }
            default: break  // another control character: dropped
            }
            runStart = index
        }
        copy(base + runStart, count: count - runStart)
    }

    @inline(__always)
    private mutating func copy(_ source: UnsafePointer<UInt8>, count: Int) {
        guard count > 0 else { return }
        cursor.update(from: source, count: count)
        cursor += count
    }

    /// Bytes below 0x40 that need escaping, as masks (bit n: byte n): the controls, `&`, `<`, `>`,
    /// and in attributes also `"` and `'`. From 0x40 up, only 0xEF (U+FFFE, U+FFFF) needs a look.
    private static let textSpecials: UInt64 = 0x5000_0040_FFFF_FFFF
    private static let attributeSpecials: UInt64 = 0x5000_00C4_FFFF_FFFF
}

/// In-scope namespace bindings while writing, as a stack that is cut back after each element.
///
/// The outer default namespace is kept apart, so that writing a stanza that declares nothing
/// allocates nothing here.
private struct NamespaceScope {
    private let outerDefault: String
    private var bindings: [(prefix: String?, uri: String)] = []

    init(defaultNamespace: String?) {
        outerDefault = defaultNamespace ?? ""
    }

    func mark() -> Int { bindings.count }

    mutating func restore(_ mark: Int) {
        if bindings.count > mark { bindings.removeSubrange(mark...) }
    }

    mutating func bind(_ declaration: XMLNamespaceDeclaration) {
        bindings.append((declaration.prefix, declaration.uri))
    }

    /// The URI bound to `prefix` (nil: the default namespace); nil for no namespace.
    func resolve(_ prefix: String?) -> String? {
        for binding in bindings.reversed() where binding.prefix == prefix {
            return binding.uri.isEmpty ? nil : binding.uri
        }
        guard prefix == nil, !outerDefault.isEmpty else { return nil }
        return outerDefault
    }
}
