import Router
#if canImport(Glibc)
import Glibc
#endif

/// What one route of the router is told and shown: its component address, its target account,
/// the resources the bench plays and the senders it sends as.
struct RoutePlan: Sendable {
    var component: String
    var target: String
    var secret: String
    var resources: Int
    var senders: Int

    func senderJID(_ index: Int) -> String { "user\(index)@example.org/bench" }
    func resourceName(_ index: Int) -> String { "r\(index + 1)" }
}

/// The server's side of XEP-0114 for one route connection, played by the bench: the stream
/// header with an id, the handshake check, and the target's answers to the router's presence.
enum ServerSide {
    /// Reads the router's stream header, answers it, checks the handshake (XEP-0114 §3) and
    /// acknowledges it. Returns the component address the router asked for.
    static func acceptStream(on connection: StreamConnection, secret: String, timeout: Double) throws -> String {
        var component: String?
        try connection.readUntil(timeout: timeout) {
            let input = connection.input
            while true {
                let start = StanzaScanner.skipSpace(input.base, input.readIndex, input.writeIndex)
                guard start < input.writeIndex,
                      let (tag, _) = try StanzaScanner.startTag(input.base, at: start, end: input.writeIndex)
                else { return false }
                let name = input.text(tag.name)
                input.readIndex = tag.contentStart
                if name == "stream:stream" {
                    guard !tag.to.isMissing else { throw BenchError("the router's stream header has no 'to'") }
                    component = input.text(tag.to)
                    return true
                }
                guard name.hasPrefix("?") else { throw BenchError("expected a stream header, got <\(name)>") }
            }
        }
        guard let component else { throw BenchError("no stream header") }

        let streamID = "bench-\(UInt64.random(in: 1...UInt64.max))"
        connection.output.append(Array((
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                + "xmlns:stream='http://etherx.jabber.org/streams' id='\(streamID)' from='\(component)'>"
        ).utf8))
        try connection.flush()

        let handshake = try nextElement(on: connection, timeout: timeout)
        guard handshake.name == "handshake" else { throw BenchError("expected <handshake>, got <\(handshake.name)>") }
        guard handshake.text == componentHandshakeDigest(streamID: streamID, secret: secret) else {
            connection.output.append(Array(
                "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>".utf8))
            _ = try? connection.flush()
            throw BenchError("the router's handshake digest is wrong")
        }
        connection.output.append(Array("<handshake/>".utf8))
        try connection.flush()
        return component
    }

    /// Answers the router's subscription as the target would, waits for its probe, then
    /// announces every resource with available presence.
    static func announceResources(on connection: StreamConnection, plan: RoutePlan, timeout: Double) throws {
        let subscribe = try nextElement(on: connection, timeout: timeout) { $0.name == "presence" }
        guard subscribe.type == "subscribe", subscribe.to == plan.target, subscribe.from == plan.component else {
            throw BenchError("expected a subscription to \(plan.target), got \(subscribe)")
        }
        connection.output.append(Array(
            "<presence type='subscribed' from='\(plan.target)' to='\(plan.component)'/>".utf8))
        try connection.flush()

        let probe = try nextElement(on: connection, timeout: timeout) { $0.name == "presence" }
        guard probe.type == "probe", probe.to == plan.target else {
            throw BenchError("expected a presence probe to \(plan.target), got \(probe)")
        }
        for index in 0..<plan.resources {
            connection.output.append(Array(
                "<presence from='\(plan.target)/\(plan.resourceName(index))' to='\(plan.component)'/>".utf8))
        }
        try connection.flush()
    }

    /// The next top-level element that `accept` takes, as text fields (for the slow start-up).
    static func nextElement(
        on connection: StreamConnection, timeout: Double, _ accept: (Element) -> Bool = { _ in true }
    ) throws -> Element {
        var found: Element?
        try connection.readUntil(timeout: timeout) {
            let input = connection.input
            while let stanza = try StanzaScanner.next(input.base, from: input.readIndex, end: input.writeIndex) {
                input.readIndex = stanza.end
                let element = Element(stanza, in: input)
                if element.name == "stream:error" { throw BenchError("the router sent a stream error: \(element)") }
                if accept(element) {
                    found = element
                    return true
                }
            }
            return false
        }
        guard let found else { throw BenchError("no element") }
        return found
    }

    /// A scanned element copied out as strings.
    struct Element: CustomStringConvertible {
        var name: String
        var type: String?
        var from: String?
        var to: String?
        var text: String

        init(_ stanza: ScannedStanza, in buffer: ByteBuffer) {
            func field(_ range: ByteRange) -> String? { range.isMissing ? nil : buffer.text(range) }
            name = buffer.text(stanza.name)
            type = field(stanza.type)
            from = field(stanza.from)
            to = field(stanza.to)
            text = buffer.text(ByteRange(start: stanza.contentStart, end: stanza.contentEnd))
        }

        var description: String {
            "<\(name) type=\(type ?? "-") from=\(from ?? "-") to=\(to ?? "-")>\(text.prefix(200))"
        }
    }
}
