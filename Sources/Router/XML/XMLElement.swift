/// The namespace bound to the `xml` prefix by the XML Namespaces recommendation; never declared.
public let xmlNamespace = "http://www.w3.org/XML/1998/namespace"

/// An attribute as it was written: local name, prefix (nil for an unprefixed one), namespace URI
/// (nil for an unprefixed one) and the unescaped value.
public struct XMLAttribute: Sendable, Equatable {
    public var name: String
    public var prefix: String?
    public var namespace: String?
    public var value: String

    public init(name: String, prefix: String? = nil, namespace: String? = nil, value: String) {
        self.name = name
        self.prefix = prefix
        self.namespace = namespace
        self.value = value
    }
}

/// A namespace declaration on an element: `xmlns='uri'` when `prefix` is nil, else `xmlns:prefix='uri'`.
public struct XMLNamespaceDeclaration: Sendable, Equatable {
    public var prefix: String?
    public var uri: String

    public init(prefix: String?, uri: String) {
        self.prefix = prefix
        self.uri = uri
    }
}

/// A child of an element: an element or a run of character data.
public enum XMLNode: Sendable, Equatable {
    case element(XMLElement)
    case text(String)
}

/// An XML element that keeps its prefix and namespace declarations as they came, so that writing it
/// out again gives XML that means the same (RFC 6120 §11 requires payloads to pass unchanged).
public struct XMLElement: Sendable, Equatable {
    public var name: String
    public var prefix: String?
    /// The namespace URI of the element; nil only for elements in no namespace.
    public var namespace: String?
    public var declarations: [XMLNamespaceDeclaration]
    public var attributes: [XMLAttribute]
    public var children: [XMLNode]

    public init(
        name: String,
        namespace: String? = nil,
        prefix: String? = nil,
        declarations: [XMLNamespaceDeclaration] = [],
        attributes: [XMLAttribute] = [],
        children: [XMLNode] = []
    ) {
        self.name = name
        self.namespace = namespace
        self.prefix = prefix
        self.declarations = declarations
        self.attributes = attributes
        self.children = children
    }

    /// The value of the unprefixed attribute `name`.
    public subscript(attribute name: String) -> String? {
        get {
            for attribute in attributes where attribute.name == name && attribute.prefix == nil {
                return attribute.value
            }
            return nil
        }
        set {
            if let index = attributes.firstIndex(where: { $0.name == name && $0.prefix == nil }) {
                if let newValue {
                    attributes[index].value = newValue
                } else {
                    attributes.remove(at: index)
                }
            } else if let newValue {
                attributes.append(XMLAttribute(name: name, value: newValue))
            }
        }
    }

    /// The child elements, in order.
    public var elements: [XMLElement] {
        children.compactMap { node in
            if case .element(let element) = node { return element }
            return nil
        }
    }

    /// The first child element with this name, and namespace when given.
    public func child(_ name: String, namespace: String? = nil) -> XMLElement? {
        for case .element(let element) in children where element.name == name {
            if namespace == nil || element.namespace == namespace { return element }
        }
        return nil
    }

    /// The concatenated character data directly inside this element.
    public var text: String {
        var out = ""
        for case .text(let run) in children { out += run }
        return out
    }

    public mutating func append(_ element: XMLElement) {
        children.append(.element(element))
    }

    public mutating func append(text: String) {
        if case .text(let run)? = children.last {
            children[children.count - 1] = .text(run + text)
        } else {
            children.append(.text(text))
        }
    }
}
