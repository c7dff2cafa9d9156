import Router
import Testing

@Suite("XML serializer: what goes out means what came in")
struct XMLRoundTripTests {
    /// Serializes `stanza` as the router writes it on a component stream, then parses the result
    /// again inside a stream whose root declares nothing beyond the stream's own namespaces.
    static func roundTrip(_ stanza: XMLElement) throws -> (text: String, element: XMLElement) {
        let text = XMLSerializer.string(stanza, defaultNamespace: "jabber:component:accept")
        return (text, try onlyStanza(in: plainStreamHeader + text))
    }

    static let payloadStanza = """
        <iq type='set' id='r1' to='proxy.example.org' xml:lang='en'>\
        <query xmlns='http://jabber.org/protocol/disco#info' node='n'>\
        <x:data xmlns:x='jabber:x:data' x:type='form' type='plain'>\
        <x:field var='a' xml:lang='de'><x:value>1</x:value></x:field></x:data>\
        <a:outer xmlns:a='urn:example:one'><a:inner xmlns:a='urn:example:two' a:k='2'/><a:after/></a:outer>\
        <unqualified xmlns=''><deep/></unqualified>\
        <ext:item xmlns:ext='urn:example:ext' xmlns:o='urn:example:other' o:flag='true' ext:flag='on'/>\
        <back/></query></iq>
        """

    @Test("a payload with its own default namespace, prefixes and xml:lang means the same after a round trip")
    func payloadNamespacesRoundTrip() throws {
        let original = try onlyStanza(in: plainStreamHeader + Self.payloadStanza)

        let (text, again) = try Self.roundTrip(original)

        #expect(meaning(of: again) == meaning(of: original), "serialized as \(text)")
        #expect(prefixes(of: again) == prefixes(of: original), "serialized as \(text)")
    }

    @Test("after a round trip every element and attribute has the namespace the input gave it")
    func payloadNamespacesAreTheInputs() throws {
        let original = try onlyStanza(in: plainStreamHeader + Self.payloadStanza)

        let (text, iq) = try Self.roundTrip(original)

        let comment = Comment(rawValue: "serialized as \(text)")
        #expect(iq.namespace == "jabber:component:accept", comment)
        #expect(iq.attributes.first { $0.name == "lang" }?.namespace == xmlNamespace, comment)
        #expect(iq.attributes.first { $0.name == "lang" }?.value == "en", comment)
        let query = try #require(iq.child("query"), comment)
        #expect(query.namespace == "http://jabber.org/protocol/disco#info", comment)
        let form = try #require(query.child("data"), comment)
        #expect(form.namespace == "jabber:x:data", comment)
        #expect(form.attributes.first { $0.prefix != nil }?.namespace == "jabber:x:data", comment)
        #expect(form[attribute: "type"] == "plain", comment)
        let field = try #require(form.child("field"), comment)
        #expect(field.namespace == "jabber:x:data", comment)
        #expect(field.attributes.first { $0.name == "lang" }?.namespace == xmlNamespace, comment)
        #expect(field.attributes.first { $0.name == "lang" }?.value == "de", comment)
        #expect(field.child("value")?.namespace == "jabber:x:data", comment)
        let outer = try #require(query.child("outer"), comment)
        #expect(outer.namespace == "urn:example:one", comment)
        #expect(outer.child("inner")?.namespace == "urn:example:two", comment)
        #expect(outer.child("inner")?.attributes.first?.namespace == "urn:example:two", comment)
        #expect(outer.child("after")?.namespace == "urn:example:one", comment)
        let unqualified = try #require(query.child("unqualified"), comment)
        #expect(unqualified.namespace == nil, comment)
        #expect(unqualified.child("deep")?.namespace == nil, comment)
        let item = try #require(query.child("item"), comment)
        #expect(item.namespace == "urn:example:ext", comment)
        let flags = Dictionary(uniqueKeysWithValues: item.attributes.map { ($0.namespace ?? "", $0.value) })
        #expect(flags == ["urn:example:other": "true", "urn:example:ext": "on"], comment)
        #expect(query.child("back")?.namespace == "http://jabber.org/protocol/disco#info", comment)
    }

    @Test("a prefix declared only on the stream root is declared on the stanza that uses it")
    func prefixFromStreamRoot() throws {
        let header = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
            + "xmlns:app='urn:example:app' xmlns:mark='urn:example:mark' id='1'>"
        let stanza = "<message to='a@b' mark:seen='yes'><app:thing app:level='3'>x</app:thing>"
            + "<plain mark:k='v'/></message>"
        let original = try onlyStanza(in: header + stanza)
        #expect(original.child("thing")?.namespace == "urn:example:app")

        let (text, again) = try Self.roundTrip(original)

        #expect(text.contains("xmlns:app='urn:example:app'"), "serialized as \(text)")
        #expect(text.contains("xmlns:mark='urn:example:mark'"), "serialized as \(text)")
        let thing = try #require(again.child("thing"), "serialized as \(text)")
        #expect(thing.namespace == "urn:example:app")
        #expect(thing.prefix == "app")
        #expect(thing.attributes.first?.namespace == "urn:example:app")
        #expect(thing.attributes.first?.value == "3")
        #expect(again.attributes.first { $0.name == "seen" }?.namespace == "urn:example:mark")
        #expect(again.child("plain")?.attributes.first?.namespace == "urn:example:mark")
        #expect(meaning(of: again) == meaning(of: original))
    }

    @Test("a payload taken out of its stanza is written with the declarations it inherited")
    func payloadOutOfItsStanza() throws {
        let stanza = "<iq type='get' id='1'><a:q xmlns:a='urn:example:a' xmlns:b='urn:example:b'>"
            + "<a:item b:flag='1'/></a:q></iq>"
        let original = try onlyStanza(in: plainStreamHeader + stanza)
        let item = try #require(original.child("q")?.child("item"))

        let (text, again) = try Self.roundTrip(item)

        #expect(again.namespace == "urn:example:a", "serialized as \(text)")
        #expect(again.attributes.first?.namespace == "urn:example:b", "serialized as \(text)")
        #expect(meaning(of: again) == meaning(of: item))
    }

    @Test("the stream prefix used inside a stanza is declared on output")
    func streamPrefixInsideStanza() throws {
        let original = try onlyStanza(in: plainStreamHeader + "<message><stream:features/></message>")

        let (text, again) = try Self.roundTrip(original)

        #expect(again.child("features")?.namespace == "http://etherx.jabber.org/streams", "serialized as \(text)")
    }

    @Test("a stanza in the stream's default namespace is written without a namespace declaration")
    func defaultNamespaceNotRepeated() throws {
        let stanza = "<iq id='1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
        let original = try onlyStanza(in: plainStreamHeader + stanza)
        let text = XMLSerializer.string(original, defaultNamespace: "jabber:component:accept")
        #expect(text == stanza)
    }

    @Test("an element built in no namespace is written with xmlns='' inside a stanza")
    func noNamespaceElementBuilt() throws {
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message.append(XMLElement(name: "plain"))

        let (text, again) = try Self.roundTrip(message)

        #expect(again.child("plain") != nil, "serialized as \(text)")
        #expect(again.child("plain")?.namespace == nil, "serialized as \(text)")
    }
}

@Suite("XML serializer: escaping")
struct XMLEscapingTests {
    static let awkward = "a&b<c>d\"e'f &amp; &lt;x&gt; ]]>"

    /// The text between `opening` and the next `closing` in `text`.
    static func region(of text: String, after opening: String, before closing: Character) -> Substring? {
        guard let start = text.range(of: opening)?.upperBound else { return nil }
        let rest = text[start...]
        guard let end = rest.firstIndex(of: closing) else { return nil }
        return rest[..<end]
    }

    /// True when every `&` in `text` starts one of the references the serializer may write.
    static func ampersandsAreReferences(_ text: Substring) -> Bool {
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            let tail = rest[amp...]
            guard ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"].contains(where: { tail.hasPrefix($0) }) else {
                return false
            }
            rest = rest[rest.index(after: amp)...]
        }
        return true
    }

    @Test("attribute values and text with & < > \" ' round-trip exactly")
    func awkwardCharactersRoundTrip() throws {
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message[attribute: "id"] = Self.awkward
        var body = XMLElement(name: "body", namespace: "jabber:component:accept")
        body.append(text: Self.awkward)
        message.append(body)

        let text = XMLSerializer.string(message, defaultNamespace: "jabber:component:accept")
        let again = try onlyStanza(in: plainStreamHeader + text)

        #expect(again[attribute: "id"] == Self.awkward, "serialized as \(text)")
        #expect(again.child("body")?.text == Self.awkward, "serialized as \(text)")
    }

    @Test("serialized values hold no raw < and no & that starts no reference")
    func noRawMarkupInValues() throws {
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message[attribute: "id"] = Self.awkward
        var body = XMLElement(name: "body", namespace: "jabber:component:accept")
        body.append(text: Self.awkward)
        message.append(body)

        let text = XMLSerializer.string(message, defaultNamespace: "jabber:component:accept")

        let value = try #require(Self.region(of: text, after: "id='", before: "'"), "serialized as \(text)")
        #expect(!value.contains("<") && !value.contains(">") && !value.contains("\""), "value \(value)")
        #expect(Self.ampersandsAreReferences(value), "value \(value)")
        let content = try #require(Self.region(of: text, after: "<body>", before: "<"), "serialized as \(text)")
        #expect(content.utf8.count > Self.awkward.utf8.count, "text \(content)")
        #expect(!content.contains(">"), "text \(content)")
        #expect(Self.ampersandsAreReferences(content), "text \(content)")
        #expect(text.hasSuffix("</body></message>"), "serialized as \(text)")
    }

    @Test("entity and character references on the wire arrive as the characters they stand for")
    func referencesDecodeOnInput() throws {
        let stanza = "<message id='a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x3C;'>"
            + "<body>a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x3C;</body></message>"
        let message = try onlyStanza(in: plainStreamHeader + stanza)
        #expect(message[attribute: "id"] == "a&b<c>d\"e'f&g<")
        #expect(message.child("body")?.text == "a&b<c>d\"e'f&g<")
    }

    @Test("what was read with references is written back so that it reads the same")
    func referencesRoundTrip() throws {
        let stanza = "<message id='a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x3C;'>"
            + "<body>a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x3C;</body></message>"
        let original = try onlyStanza(in: plainStreamHeader + stanza)
        let text = XMLSerializer.string(original, defaultNamespace: "jabber:component:accept")
        let again = try onlyStanza(in: plainStreamHeader + text)
        #expect(again == original, "serialized as \(text)")
    }

    @Test("a CDATA section arrives as text and goes out escaped")
    func cdataSection() throws {
        let original = try onlyStanza(in: plainStreamHeader + "<message><body><![CDATA[a<b&c]]>d</body></message>")
        #expect(original.child("body")?.text == "a<b&cd")
        let text = XMLSerializer.string(original, defaultNamespace: "jabber:component:accept")
        #expect(text == "<message><body>a&lt;b&amp;cd</body></message>")
    }

    @Test("tabs, newlines and carriage returns in attribute values and text survive a round trip")
    func whitespaceInValues() throws {
        let value = "tab\there\nline\r\nend\r"
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message[attribute: "id"] = value
        var body = XMLElement(name: "body", namespace: "jabber:component:accept")
        body.append(text: value)
        message.append(body)

        let text = XMLSerializer.string(message, defaultNamespace: "jabber:component:accept")
        let again = try onlyStanza(in: plainStreamHeader + text)

        #expect(again[attribute: "id"].map { Array($0.utf8) } == Array(value.utf8), "serialized as \(text)")
        #expect(again.child("body").map { Array($0.text.utf8) } == Array(value.utf8), "serialized as \(text)")
    }

    @Test("characters XML 1.0 forbids are never written, so the output still parses")
    func forbiddenCharactersDropped() throws {
        let value = "a\u{0}b\u{1}c\u{1B}d\u{FFFE}e\u{FFFF}f"
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message[attribute: "id"] = value
        var body = XMLElement(name: "body", namespace: "jabber:component:accept")
        body.append(text: value)
        message.append(body)

        let text = XMLSerializer.string(message, defaultNamespace: "jabber:component:accept")
        let again = try onlyStanza(in: plainStreamHeader + text)

        #expect(again[attribute: "id"] == "abcdef", "serialized as \(String(reflecting: text))")
        #expect(again.child("body")?.text == "abcdef", "serialized as \(String(reflecting: text))")
    }

    @Test("non-ASCII text and values are written as UTF-8 and read back byte for byte")
    func nonASCIIRoundTrip() throws {
        let value = "h\u{E9}llo \u{2713} \u{1D11E} \u{65}\u{301}"
        var message = XMLElement(name: "message", namespace: "jabber:component:accept")
        message[attribute: "id"] = value
        message.append(text: value)

        let text = XMLSerializer.string(message, defaultNamespace: "jabber:component:accept")
        let again = try onlyStanza(in: plainStreamHeader + text)

        #expect(again[attribute: "id"].map { Array($0.utf8) } == Array(value.utf8))
        #expect(Array(again.text.utf8) == Array(value.utf8))
    }
}
