import CLibXML2

/// What the stream parser found in the bytes it was fed.
public enum XMLStreamEvent: Sendable, Equatable {
    /// The stream's root element opened; the element carries its attributes and no children.
    case streamOpened(XMLElement)
    /// A complete child of the stream root: a stanza, a handshake, a stream error.
    case element(XMLElement)
    /// The stream's root element closed.
    case streamClosed
    /// A stanza too large or too deeply nested to keep, read to its end and dropped: the element
    /// is its top level with its attributes, without children, so that it can be answered.
    case refused(XMLElement, StanzaRefusal)
}

/// Why a stanza was dropped while the stream goes on.
public enum StanzaRefusal: String, Sendable, Equatable {
    case tooLarge = "too large"
    case tooDeep = "nested too deeply"
}

/// Why the stream parser gave up; each maps to the stream error that RFC 6120 §4.9.3 prescribes.
public enum XMLStreamParserError: Error, Equatable, CustomStringConvertible {
    /// Not well-formed XML, or not UTF-8 (`not-well-formed`).
    case notWellFormed(String)
    /// A DTD, entity declaration, comment or processing instruction (`restricted-xml`).
    case restrictedXML(String)
    /// One stanza grew past the limit (`policy-violation`).
    case stanzaTooLarge(limit: Int)
    /// Well-formed XML that is no XMPP stream, such as text beside the stanzas (`bad-format`).
    case badFormat(String)

    public var description: String {
        switch self {
        case .notWellFormed(let detail): "not well-formed XML: \(detail)"
        case .restrictedXML(let what): "\(what) is not allowed in XMPP"
        case .stanzaTooLarge(let limit): "stanza larger than \(limit) bytes"
        case .badFormat(let detail): detail
        }
    }
}

/// Turns the bytes of one XMPP stream into events, using libxml2's SAX2 push parser
/// (`xmlCreatePushParserCtxt`, `xmlParseChunk`).
///
/// libxml2 sees the stream as one document that never ends; the stanzas are the children of its
/// root. Bytes may be split anywhere, including inside a stanza or a UTF-8 sequence. Call
/// `reset()` before each new stream.
public final class XMLStreamParser {
    /// The size beyond which the stream is closed with `policy-violation`.
    public let maxStanzaSize: Int
    /// The size beyond which a stanza is dropped (`.refused`) while the stream goes on; nil to
    /// close the stream at `maxStanzaSize` without this step.
    public let refuseAbove: Int?
    /// Element levels below a stanza's top level beyond which it is dropped (`.refused`).
    public let maxDepth: Int?

    private var context: xmlParserCtxtPtr?
    private var handler = xmlSAXHandler()
    /// Elements open below the stream root; the first is the stanza being built.
    fileprivate var open: [XMLElement] = []
    fileprivate var depth = 0
    fileprivate var events: [XMLStreamEvent] = []
    fileprivate var failure: XMLStreamParserError?
    /// Offset in the stream, as libxml2 counts consumed bytes, where the current stanza began.
    fileprivate var stanzaStart = 0
    /// Offset where the next stanza can begin: after the root's start tag, the last stanza or the
    /// last blank text, so that a stanza's start tag counts towards its size.
    fileprivate var boundary = 0
    private var bytesFed = 0
    /// The stanza in progress is being dropped: read to its end, nothing kept but its top level.
    fileprivate var discarding: StanzaRefusal?
    /// The size of the stanza that ended last, from its start tag to its end tag.
    fileprivate var lastStanzaSize = 0
    /// Names, prefixes and namespace URIs already turned into Swift strings, by libxml2 pointer.
    fileprivate let names = NameCache()

    /// libxml2's global state must be set up once before parsers are made on several threads
    /// (`xmlInitParser`); a Swift global is initialized exactly once, thread-safely.
    private static let libraryReady: Void = xmlInitParser()

    public init(maxStanzaSize: Int = 256 * 1024, refuseAbove: Int? = nil, maxDepth: Int? = nil) {
        self.refuseAbove = refuseAbove
        self.maxDepth = maxDepth
        Self.libraryReady
        self.maxStanzaSize = maxStanzaSize
        installHandlers()
        reset()
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
    }

    /// Forgets the current stream and starts afresh, as for a new connection.
    public func reset() {
        if let context { xmlFreeParserCtxt(context) }
        open.removeAll(keepingCapacity: true)
        events.removeAll(keepingCapacity: true)
        depth = 0
        discarding = nil
        failure = nil
        stanzaStart = 0
        boundary = 0
        bytesFed = 0
        let user = Unmanaged.passUnretained(self).toOpaque()
        context = xmlCreatePushParserCtxt(&handler, user, nil, 0, nil)
        names.reset(dictionary: context?.pointee.dict)
        if let context {
            // NOENT hands attribute values over with the predefined entities expanded; no other
            // entity can exist, as a DTD stops the parser before it declares any.
            // IGNORE_ENC and the fixed encoding keep an encoding declaration or a byte order mark from
            // making libxml2 decode anything but UTF-8, the only encoding XMPP allows (RFC 6120 §11.6).
            let options = XML_PARSE_NONET.rawValue | XML_PARSE_NOENT.rawValue | XML_PARSE_NOCDATA.rawValue
                | XML_PARSE_IGNORE_ENC.rawValue
            xmlCtxtUseOptions(context, Int32(options))
            xmlSwitchEncoding(context, XML_CHAR_ENCODING_UTF8)
        }
    }

    /// Parses `bytes` and returns the events they complete, in order.
    ///
    /// - Throws: `XMLStreamParserError` when the stream cannot go on; the parser must be reset.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws -> [XMLStreamEvent] {
        events.removeAll(keepingCapacity: true)
        if let failure { throw failure }
        guard let context else { throw XMLStreamParserError.notWellFormed("parser could not be created") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return [] }

        bytesFed += bytes.count
        let status = xmlParseChunk(context, base.assumingMemoryBound(to: CChar.self), Int32(bytes.count), 0)
        if let failure { throw failure }
        // libxml2 reports namespace errors (an undeclared prefix) apart from well-formedness.
        if status != 0 || context.pointee.wellFormed == 0 || context.pointee.nsWellFormed == 0 {
            let failure = XMLStreamParserError.notWellFormed(lastErrorMessage(context))
            self.failure = failure
            throw failure
        }
        let size = currentStanzaSize(context)
        if size > maxStanzaSize {
            let failure = XMLStreamParserError.stanzaTooLarge(limit: maxStanzaSize)
            self.failure = failure
            throw failure
        }
        if let refuseAbove, size > refuseAbove, depth >= 2 { beginDiscarding(.tooLarge) }
        return events
    }

    /// Convenience for tests and small inputs.
    public func feed(_ bytes: [UInt8]) throws -> [XMLStreamEvent] {
        try bytes.withUnsafeBytes { try feed($0) }
    }

    /// Bytes that belong to the stanza in progress: from its start tag when one is open, else the
    /// bytes libxml2 holds unparsed (a start tag that has not ended yet).
    private func currentStanzaSize(_ context: xmlParserCtxtPtr) -> Int {
        if depth >= 2 { return bytesFed - stanzaStart }
        guard let input = context.pointee.input, let cur = input.pointee.cur, let end = input.pointee.end else {
            return 0
        }
        return end - cur
    }

    private func lastErrorMessage(_ context: xmlParserCtxtPtr) -> String {
        guard let error = xmlCtxtGetLastError(context), let message = error.pointee.message else {
            return "parse error"
        }
        var text = String(cString: message)
        while text.last == "\n" { text.removeLast() }
        return "\(text) (line \(error.pointee.line))"
    }

    fileprivate func stop(_ failure: XMLStreamParserError) {
        if self.failure == nil { self.failure = failure }
        if let context { xmlStopParser(context) }
    }

    fileprivate func markStanzaStart() {
        stanzaStart = boundary
    }

    fileprivate func markBoundary() {
        guard let context else { return }
        boundary = Int(xmlByteConsumed(context))
    }

    /// Whether the stanza that just ended is within the limit; stops the parser when it is not.
    /// A stanza may come whole in one chunk, which the check after each chunk does not see.
    fileprivate func acceptsFinishedStanza() -> Bool {
        guard let context else { return false }
        let size = Int(xmlByteConsumed(context)) - stanzaStart
        if size > maxStanzaSize {
            stop(.stanzaTooLarge(limit: maxStanzaSize))
            return false
        }
        lastStanzaSize = size
        markBoundary()
        return true
    }

    /// Drops what was built of the stanza in progress but its top level; the rest of it is read
    /// and forgotten, and its end gives `.refused`.
    fileprivate func beginDiscarding(_ reason: StanzaRefusal) {
        guard discarding == nil, !open.isEmpty else { return }
        discarding = reason
        open.removeSubrange(1...)
        open[0].children.removeAll()
    }

    private func installHandlers() {
        handler.initialized = UInt32(XML_SAX2_MAGIC)
        handler.startElementNs = {
            user, localname, prefix, uri, namespaceCount, namespaces, attributeCount, _, attributes in
            guard let parser = XMLStreamParser.from(user), let localname else { return }
            if parser.discarding != nil {
                parser.depth += 1
                return
            }
            if let maxDepth = parser.maxDepth, parser.depth - 1 >= maxDepth + 1 {
                parser.beginDiscarding(.tooDeep)
                parser.depth += 1
                return
            }
            var element = XMLElement(
                name: parser.names.string(localname), namespace: parser.names.optional(uri),
                prefix: parser.names.optional(prefix))
            if namespaceCount > 0, let namespaces {
                element.declarations.reserveCapacity(Int(namespaceCount))
                for index in 0..<Int(namespaceCount) {
                    element.declarations.append(XMLNamespaceDeclaration(
                        prefix: parser.names.optional(namespaces[2 * index]),
                        uri: parser.names.optional(namespaces[2 * index + 1]) ?? ""
                    ))
                }
            }
            if attributeCount > 0, let attributes {
                element.attributes.reserveCapacity(Int(attributeCount))
                for index in 0..<Int(attributeCount) {
                    let base = 5 * index
                    guard let name = attributes[base], let start = attributes[base + 3], let end = attributes[base + 4]
                    else { continue }
                    let value = String(decoding: UnsafeBufferPointer(start: start, count: end - start), as: UTF8.self)
                    element.attributes.append(XMLAttribute(
                        name: parser.names.string(name),
                        prefix: parser.names.optional(attributes[base + 1]),
                        namespace: parser.names.optional(attributes[base + 2]),
                        value: value
                    ))
                }
            }
            parser.depth += 1
            if parser.depth == 1 {
                parser.markBoundary()
                parser.events.append(.streamOpened(element))
            } else {
                if parser.depth == 2 { parser.markStanzaStart() }
                parser.open.append(element)
            }
        }
        handler.endElementNs = { user, _, _, _ in
            guard let parser = XMLStreamParser.from(user) else { return }
            parser.depth -= 1
            if parser.depth == 0 {
                parser.events.append(.streamClosed)
                return
            }
            if let reason = parser.discarding {
                guard parser.depth == 1, let root = parser.open.popLast() else { return }
                parser.discarding = nil
                guard parser.acceptsFinishedStanza() else { return }
                parser.events.append(.refused(root, reason))
                return
            }
            guard let finished = parser.open.popLast() else { return }
            if parser.open.isEmpty {
                guard parser.acceptsFinishedStanza() else { return }
                if let refuseAbove = parser.refuseAbove, parser.lastStanzaSize > refuseAbove {
                    var root = finished
                    root.children.removeAll()
                    parser.events.append(.refused(root, .tooLarge))
                    return
                }
                parser.events.append(.element(finished))
            } else {
                parser.open[parser.open.count - 1].children.append(.element(finished))
            }
        }
        let characters: charactersSAXFunc = { user, bytes, length in
            guard let parser = XMLStreamParser.from(user), let bytes, length > 0 else { return }
            let buffer = UnsafeBufferPointer(start: bytes, count: Int(length))
            if parser.open.isEmpty {
                let blank = buffer.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
                if blank {
                    parser.markBoundary()
                } else {
                    parser.stop(.badFormat("text outside of any stanza"))
                }
                return
            }
            if parser.discarding != nil { return }
            parser.open[parser.open.count - 1].append(text: String(decoding: buffer, as: UTF8.self))
        }
        handler.characters = characters
        handler.ignorableWhitespace = characters
        handler.internalSubset = { user, _, _, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("a document type declaration"))
        }
        handler.externalSubset = { user, _, _, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("a document type declaration"))
        }
        handler.entityDecl = { user, _, _, _, _, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("an entity declaration"))
        }
        handler.getEntity = { _, _ in nil }
        handler.reference = { user, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("an entity reference"))
        }
        handler.comment = { user, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("a comment"))
        }
        handler.processingInstruction = { user, _, _ in
            XMLStreamParser.from(user)?.stop(.restrictedXML("a processing instruction"))
        }
        // Errors are read from the context after each chunk; libxml2 must not print them.
        handler.serror = { _, _ in }
    }

    fileprivate static func from(_ user: UnsafeMutableRawPointer?) -> XMLStreamParser? {
        guard let user else { return nil }
        return Unmanaged<XMLStreamParser>.fromOpaque(user).takeUnretainedValue()
    }
}

/// Swift strings for the names libxml2 hands to the SAX callbacks, looked up by pointer.
///
/// libxml2 interns element and attribute names, prefixes and namespace URIs in its parser's
/// dictionary (`xmlDictLookup`), so a name comes back at the same address for as long as the
/// parser lives: most stanzas then cost no allocation and no UTF-8 check for their names. Only
/// pointers the dictionary owns (`xmlDictOwns`) are cached, as only those are known never to
/// change or be freed before the parser is (`reset()` empties the cache with it).
final class NameCache {
    /// A power of two; `string(_:)` takes the top 6 bits of a hash for the slot.
    private static let size = 64
    private let pointers: UnsafeMutablePointer<UnsafeRawPointer?>
    private let strings: UnsafeMutablePointer<String>
    private var dictionary: xmlDictPtr?

    init() {
        pointers = .allocate(capacity: Self.size)
        pointers.initialize(repeating: nil, count: Self.size)
        strings = .allocate(capacity: Self.size)
        strings.initialize(repeating: "", count: Self.size)
    }

    deinit {
        pointers.deallocate()
        strings.deinitialize(count: Self.size)
        strings.deallocate()
    }

    /// Forgets every name; from now on, names are those of `dictionary`.
    func reset(dictionary: xmlDictPtr?) {
        self.dictionary = dictionary
        pointers.update(repeating: nil, count: Self.size)
    }

    func string(_ pointer: UnsafePointer<xmlChar>) -> String {
        let raw = UnsafeRawPointer(pointer)
        // Dictionary strings sit a few bytes apart: mix every bit of the address into the slot.
        let slot = Int(truncatingIfNeeded: (UInt64(UInt(bitPattern: raw)) &* 0x9E37_79B9_7F4A_7C15) >> 58)
        if pointers[slot] == raw { return strings[slot] }
        let string = String(cString: pointer)
        if let dictionary, xmlDictOwns(dictionary, pointer) == 1 {
            pointers[slot] = raw
            strings[slot] = string
        }
        return string
    }

    func optional(_ pointer: UnsafePointer<xmlChar>?) -> String? {
        guard let pointer else { return nil }
        return string(pointer)
    }
}
