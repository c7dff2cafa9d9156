/// The namespace of stanza error conditions (RFC 6120 §8.3.3).
public let stanzaErrorNamespace = "urn:ietf:params:xml:ns:xmpp-stanzas"

/// Stanza error conditions; raw values are the element names on the wire (RFC 6120 §8.3.3).
public enum StanzaErrorCondition: String, Sendable, CaseIterable {
    case badRequest = "bad-request"
    case conflict
    case featureNotImplemented = "feature-not-implemented"
    case forbidden
    case internalServerError = "internal-server-error"
    case itemNotFound = "item-not-found"
    case jidMalformed = "jid-malformed"
    case notAcceptable = "not-acceptable"
    case notAllowed = "not-allowed"
    case notAuthorized = "not-authorized"
    case policyViolation = "policy-violation"
    case recipientUnavailable = "recipient-unavailable"
    case remoteServerNotFound = "remote-server-not-found"
    case remoteServerTimeout = "remote-server-timeout"
    case resourceConstraint = "resource-constraint"
    case serviceUnavailable = "service-unavailable"
    case undefinedCondition = "undefined-condition"
    case unexpectedRequest = "unexpected-request"
}

/// The error type, which tells the sender whether and how to retry (RFC 6120 §8.3.2).
public enum StanzaErrorType: String, Sendable {
    case auth, cancel, `continue`, modify, wait
}

/// An error the router answers a stanza with.
public struct StanzaError: Sendable, Equatable, CustomStringConvertible {
    public var type: StanzaErrorType
    public var condition: StanzaErrorCondition
    /// Human-readable text for the requester, sent in `<text xml:lang='en'>`.
    public var text: String?

    public init(_ type: StanzaErrorType, _ condition: StanzaErrorCondition, text: String? = nil) {
        self.type = type
        self.condition = condition
        self.text = text
    }

    public var description: String { condition.rawValue }

    /// The `<error/>` element for this error, in the stream's default namespace.
    public func element(by router: String? = nil) -> XMLElement {
        var error = XMLElement(name: "error", namespace: componentNamespace)
        error[attribute: "type"] = type.rawValue
        if let router { error[attribute: "by"] = router }
        error.append(XMLElement(name: condition.rawValue, namespace: stanzaErrorNamespace))
        if let text {
            var textElement = XMLElement(name: "text", namespace: stanzaErrorNamespace)
            let language = XMLAttribute(name: "lang", prefix: "xml", namespace: xmlNamespace, value: "en")
            textElement.attributes.append(language)
            textElement.append(text: text)
            error.append(textElement)
        }
        return error
    }
}
