import Router
import Testing

@Suite("Stream errors")
struct StreamErrorTests {
    static func receivedError(_ inner: String) throws -> XMLElement {
        try onlyStanza(in: plainStreamHeader + "<stream:error>\(inner)</stream:error>")
    }

    @Test("a received stream error gives its condition and text")
    func conditionAndText() throws {
        let element = try Self.receivedError("""
            <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced by new connection</text>
            """)

        let error = StreamError(element: element)

        #expect(error.condition == .conflict)
        #expect(error.conditionName == "conflict")
        #expect(error.text == "Replaced by new connection")
    }

    @Test("a received stream error without text has nil text", arguments: [
        ("host-unknown", StreamErrorCondition.hostUnknown),
        ("not-authorized", .notAuthorized),
        ("policy-violation", .policyViolation),
        ("see-other-host", .seeOtherHost),
    ])
    func conditionOnly(name: String, condition: StreamErrorCondition) throws {
        let element = try Self.receivedError("<\(name) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")

        let error = StreamError(element: element)

        #expect(error.condition == condition)
        #expect(error.text == nil)
    }

    @Test("the condition is found after the text and beside an application-specific condition")
    func conditionAmongOthers() throws {
        let element = try Self.receivedError("""
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Bad secret</text>\
            <app-failure xmlns='urn:example:app'/>\
            <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
            """)

        let error = StreamError(element: element)

        #expect(error.condition == .notAuthorized)
        #expect(error.text == "Bad secret")
    }

    @Test("a condition RFC 6120 does not define is kept by name")
    func unknownCondition() throws {
        let element = try Self.receivedError("<made-up xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")

        let error = StreamError(element: element)

        #expect(error.condition == nil)
        #expect(error.conditionName == "made-up")
    }

    @Test("a stream error with no condition reads as undefined-condition")
    func missingCondition() throws {
        let error = StreamError(element: try Self.receivedError(""))
        #expect(error.conditionName == "undefined-condition")
        #expect(error.condition == .undefinedCondition)
    }

    @Test("a stream error the router writes reads back as the same error")
    func writtenErrorReadsBack() throws {
        let sent = StreamError(.policyViolation, text: "stanza larger than 1024 bytes & <more>")
        let text = XMLSerializer.string(sent.element, defaultNamespace: "jabber:component:accept")

        let element = try onlyStanza(in: plainStreamHeader + text)

        #expect(element.name == "error")
        #expect(element.namespace == "http://etherx.jabber.org/streams")
        #expect(element.child("policy-violation", namespace: "urn:ietf:params:xml:ns:xmpp-streams") != nil)
        #expect(StreamError(element: element) == sent)
    }

    @Test("each parser failure maps to the stream error RFC 6120 prescribes")
    func parserFailureConditions() {
        #expect(StreamErrorCondition(.notWellFormed("x")).rawValue == "not-well-formed")
        #expect(StreamErrorCondition(.restrictedXML("a comment")).rawValue == "restricted-xml")
        #expect(StreamErrorCondition(.stanzaTooLarge(limit: 1)).rawValue == "policy-violation")
        #expect(StreamErrorCondition(.badFormat("x")).rawValue == "bad-format")
    }
}

@Suite("Stanza errors")
struct StanzaErrorTests {
    @Test("an error element carries type, condition and text in the stanzas namespace")
    func errorElement() throws {
        let error = StanzaError(.wait, .remoteServerTimeout, text: "no reply within 30 s")
        var iq = XMLElement(name: "iq", namespace: "jabber:component:accept")
        iq[attribute: "type"] = "error"
        iq.append(error.element(by: "proxy.example.org"))
        let text = XMLSerializer.string(iq, defaultNamespace: "jabber:component:accept")

        let parsed = try #require(try onlyStanza(in: plainStreamHeader + text).child("error"), "serialized as \(text)")

        #expect(parsed.namespace == "jabber:component:accept")
        #expect(parsed[attribute: "type"] == "wait")
        #expect(parsed[attribute: "by"] == "proxy.example.org")
        let ns = "urn:ietf:params:xml:ns:xmpp-stanzas"
        #expect(parsed.child("remote-server-timeout", namespace: ns) != nil, "serialized as \(text)")
        let textElement = try #require(parsed.child("text", namespace: ns), "serialized as \(text)")
        #expect(textElement.text == "no reply within 30 s")
        let lang = textElement.attributes.first { $0.name == "lang" }
        #expect(lang?.namespace == "http://www.w3.org/XML/1998/namespace")
        #expect(lang?.value == "en")
    }

    @Test("an error without text has only its condition")
    func errorWithoutText() {
        let element = StanzaError(.cancel, .serviceUnavailable).element()
        #expect(element.elements.map(\.name) == ["service-unavailable"])
        #expect(element[attribute: "type"] == "cancel")
        #expect(element[attribute: "by"] == nil)
    }
}
