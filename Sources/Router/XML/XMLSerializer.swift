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
    /// that XML 1.0 forbids.
    public static func appendEscaped(_ text: String, inAttribute: Bool, into out: inout [UInt8]) {
        // The two bytes before `byte`, to spot U+FFFE and U+FFFF (EF BF BE, EF BF BF).
        var previous: (UInt8, UInt8) = (0, 0)
        for byte in text.utf8 {
            defer { previous = (previous.1, byte) }
            switch byte {
            case UInt8(ascii: "&"): out.append(contentsOf: "&amp;".utf8)
            case UInt8(ascii: "<"): out.append(contentsOf: "&lt;".utf8)
            case UInt8(ascii: ">"): out.append(contentsOf: "&gt;".utf8)
            case UInt8(ascii: "\"") where inAttribute: out.append(contentsOf: "&quot;".utf8)
            case UInt8(ascii: "'") where inAttribute: out.append(contentsOf: "&apos;".utf8)
            case 0x09 where inAttribute: out.append(contentsOf: "&#9;".utf8)
            case 0x0A where inAttribute: out.append(contentsOf: "&#10;".utf8)
            case 0x0D: out.append(contentsOf: "&#13;".utf8)
            case 0x09, 0x0A: out.append(byte)
            case 0x00..<0x20: continue
            case 0xBE...0xBF where previous == (0xEF, 0xBF): out.removeLast(2)
            default: out.append(byte)
            }
        }
    }
}

/// In-scope namespace bindings while writing, as a stack that is cut back after each element.
private struct NamespaceScope {
    private var bindings: [(prefix: String?, uri: String)]

    init(defaultNamespace: String?) {
        bindings = [(nil, defaultNamespace ?? "")]
    }

    func mark() -> Int { bindings.count }

    mutating func restore(_ mark: Int) { bindings.removeSubrange(mark...) }

    mutating func bind(_ declaration: XMLNamespaceDeclaration) {
        bindings.append((declaration.prefix, declaration.uri))
    }

    /// The URI bound to `prefix` (nil: the default namespace); nil for no namespace.
    func resolve(_ prefix: String?) -> String? {
        for binding in bindings.reversed() where binding.prefix == prefix {
            return binding.uri.isEmpty ? nil : binding.uri
        }
        return nil
    }
}
