/// The namespace of stream error conditions (RFC 6120 §4.9.3).
public let streamErrorNamespace = "urn:ietf:params:xml:ns:xmpp-streams"
/// The namespace of the stream root and of `<stream:error/>` (RFC 6120 §4.8.1).
public let streamNamespace = "http://etherx.jabber.org/streams"
/// The default namespace of a component stream (XEP-0114 §3).
public let componentNamespace = "jabber:component:accept"

/// Stream error conditions; raw values are the element names on the wire (RFC 6120 §4.9.3).
public enum StreamErrorCondition: String, Sendable, CaseIterable {
    case badFormat = "bad-format"
    case badNamespacePrefix = "bad-namespace-prefix"
    case conflict
    case connectionTimeout = "connection-timeout"
    case hostGone = "host-gone"
    case hostUnknown = "host-unknown"
    case improperAddressing = "improper-addressing"
    case internalServerError = "internal-server-error"
    case invalidFrom = "invalid-from"
    case invalidNamespace = "invalid-namespace"
    case invalidXML = "invalid-xml"
    case notAuthorized = "not-authorized"
    case notWellFormed = "not-well-formed"
    case policyViolation = "policy-violation"
    case remoteConnectionFailed = "remote-connection-failed"
    case reset
    case resourceConstraint = "resource-constraint"
    case restrictedXML = "restricted-xml"
    case seeOtherHost = "see-other-host"
    case systemShutdown = "system-shutdown"
    case undefinedCondition = "undefined-condition"
    case unsupportedEncoding = "unsupported-encoding"
    case unsupportedFeature = "unsupported-feature"
    case unsupportedStanzaType = "unsupported-stanza-type"
    case unsupportedVersion = "unsupported-version"

    /// The condition for a parse failure (RFC 6120 §4.9.3).
    public init(_ failure: XMLStreamParserError) {
        switch failure {
        case .notWellFormed: self = .notWellFormed
        case .restrictedXML: self = .restrictedXML
        case .stanzaTooLarge: self = .policyViolation
        case .badFormat: self = .badFormat
        }
    }
}

/// A stream error as received from the server or sent by the router.
public struct StreamError: Error, Sendable, Equatable, CustomStringConvertible {
    public var condition: StreamErrorCondition?
    /// The condition's element name, kept even when it is not one RFC 6120 defines.
    public var conditionName: String
    public var text: String?

    public init(_ condition: StreamErrorCondition, text: String? = nil) {
        self.condition = condition
        self.conditionName = condition.rawValue
        self.text = text
    }

    /// Reads a received `<stream:error/>`.
    public init(element: XMLElement) {
        let conditionElement = element.elements.first { $0.namespace == streamErrorNamespace && $0.name != "text" }
        conditionName = conditionElement?.name ?? "undefined-condition"
        condition = StreamErrorCondition(rawValue: conditionName)
        let text = element.child("text", namespace: streamErrorNamespace)?.text
        self.text = (text?.isEmpty ?? true) ? nil : text
    }

    public var description: String {
        if let text { return "\(conditionName) (\(text))" }
        return conditionName
    }

    /// The `<stream:error/>` element to send.
    public var element: XMLElement {
        var error = XMLElement(name: "error", namespace: streamNamespace, prefix: "stream")
        error.append(XMLElement(name: conditionName, namespace: streamErrorNamespace))
        if let text {
            var textElement = XMLElement(name: "text", namespace: streamErrorNamespace)
            textElement.append(text: text)
            error.append(textElement)
        }
        return error
    }
}
