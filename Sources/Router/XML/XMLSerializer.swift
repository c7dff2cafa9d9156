/// Writes elements as UTF-8 XML, escaping text and attribute values and declaring any namespace
/// an element or attribute needs that is not already in scope where it is written.
public enum XMLSerializer {
    /// Appends `element` to `out`, as a child of an element whose default namespace is
    /// `defaultNamespace` (for stanzas: the stream's, `jabber:component:accept`).
    public static func write(_ element: XMLElement, into out: inout [UInt8], defaultNamespace: String?) {
        var scope = NamespaceScope(defaultNamespace: defaultNamespace)
        write(element, into: &out, scope: &scope)
    }

    /// `element` serialized alone, as text (for tests and logs).
    public static func string(_ element: XMLElement, defaultNamespace: String? = nil) -> String {
        var out: [UInt8] = []
        write(element, into: &out, defaultNamespace: defaultNamespace)
        return String(decoding: out, as: UTF8.self)
    }

    private static func write(_ element: XMLElement, into out: inout [UInt8], scope: inout NamespaceScope) {
        let mark = scope.mark()
        defer { scope.restore(mark) }

        out.append(UInt8(ascii: "<"))
        appendQualifiedName(prefix: element.prefix, name: element.name, into: &out)
        for declaration in element.declarations {
            appendDeclaration(declaration, into: &out)
            scope.bind(declaration)
        }
        if scope.resolve(element.prefix) != element.namespace, element.prefix != "xml" {
            let missing = XMLNamespaceDeclaration(prefix: element.prefix, uri: element.namespace ?? "")
            appendDeclaration(missing, into: &out)
            scope.bind(missing)
        }
        for attribute in element.attributes {
            if let prefix = attribute.prefix, prefix != "xml", scope.resolve(prefix) != attribute.namespace {
                let missing = XMLNamespaceDeclaration(prefix: prefix, uri: attribute.namespace ?? "")
                appendDeclaration(missing, into: &out)
                scope.bind(missing)
            }
            out.append(UInt8(ascii: " "))
            appendQualifiedName(prefix: attribute.prefix, name: attribute.name, into: &out)
            out.append(UInt8(ascii: "="))
            out.append(UInt8(ascii: "'"))
            appendEscaped(attribute.value, inAttribute: true, into: &out)
            out.append(UInt8(ascii: "'"))
        }
        if element.children.isEmpty {
            out.append(UInt8(ascii: "/"))
            out.append(UInt8(ascii: ">"))
            return
        }
        out.append(UInt8(ascii: ">"))
        for child in element.children {
            switch child {
            case .element(let inner): write(inner, into: &out, scope: &scope)
            case .text(let text): appendEscaped(text, inAttribute: false, into: &out)
            }
        }
        out.append(UInt8(ascii: "<"))
        out.append(UInt8(ascii: "/"))
        appendQualifiedName(prefix: element.prefix, name: element.name, into: &out)
        out.append(UInt8(ascii: ">"))
    }

    private static func appendQualifiedName(prefix: String?, name: String, into out: inout [UInt8]) {
        if let prefix {
            out.append(contentsOf: prefix.utf8)
            out.append(UInt8(ascii: ":"))
        }
        out.append(contentsOf: name.utf8)
    }

    private static func appendDeclaration(_ declaration: XMLNamespaceDeclaration, into out: inout [UInt8]) {
        out.append(contentsOf: " xmlns".utf8)
        if let prefix = declaration.prefix {
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: prefix.utf8)
        }
        out.append(contentsOf: "='".utf8)
        appendEscaped(declaration.uri, inAttribute: true, into: &out)
        out.append(UInt8(ascii: "'"))
    }

    /// Escapes `& < > " '` (quotes only in attributes; whitespace other than space in attributes,
    /// so that attribute-value normalization gives back the same value), and drops characters
    /// that XML 1.0 forbids (controls other than tab, line feed and carriage return; U+FFFE and
    /// U+FFFF).
    public static func appendEscaped(_ text: String, inAttribute: Bool, into out: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendEscaped($0, inAttribute: inAttribute, into: &out) }
    }

    /// Copies runs of bytes that need nothing in one go; only the rare byte that needs escaping
    /// or dropping takes the slow branch.
    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, inAttribute: Bool, into out: inout [UInt8]) {
        let count = bytes.count
        var runStart = 0
        var index = 0
        while index < count {
            let byte = bytes[index]
            guard needsEscaping(byte, inAttribute: inAttribute) else {
                index += 1
                continue
            }
            if runStart < index { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
            index += 1
            switch byte {
            case UInt8(ascii: "&"): out.append(contentsOf: "&amp;".utf8)
            case UInt8(ascii: "<"): out.append(contentsOf: "&lt;".utf8)
            case UInt8(ascii: ">"): out.append(contentsOf: "&gt;".utf8)
            case UInt8(ascii: "\""): out.append(contentsOf: "&quot;".utf8)
            case UInt8(ascii: "'"): out.append(contentsOf: "&apos;".utf8)
            case 0x09 where inAttribute: out.append(contentsOf: "&#9;".utf8)
            case 0x0A where inAttribute: out.append(contentsOf: "&#10;".utf8)
            case 0x0D: out.append(contentsOf: "&#13;".utf8)
            case 0x09, 0x0A: out.append(byte)
            case 0xEF:
                // U+FFFE and U+FFFF are EF BF BE and EF BF BF; other characters from EF pass.
                if index + 1 < count, bytes[index] == 0xBF, bytes[index + 1] == 0xBE || bytes[index + 1] == 0xBF {
                    index += 2
                } else {
                    out.append(byte)
                }
            default: break  // another control character: dropped
            }
            runStart = index
        }
        if runStart < count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<count])) }
    }

    @inline(__always)
    private static func needsEscaping(_ byte: UInt8, inAttribute: Bool) -> Bool {
        switch byte {
        case 0x00..<0x20, UInt8(ascii: "&"), UInt8(ascii: "<"), UInt8(ascii: ">"), 0xEF: true
        case UInt8(ascii: "\""), UInt8(ascii: "'"): inAttribute
        default: false
        }
    }
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
