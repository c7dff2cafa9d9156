import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Where a route's component connection stands.
public enum ConnectionState: String, Sendable {
    case idle
    case connecting
    case handshaking
    case authenticated
    case waiting
    case stopping
    case stopped
}

/// One route at run time: its component connection (XEP-0114), its parser and its `RouteCore`.
///
/// Everything mutable here is touched on the route's event loop only: socket events, timers and
/// calls from outside all run on its thread, so the per-stanza path takes no lock.
public final class ComponentRoute: @unchecked Sendable {
    // @unchecked Sendable: all stored mutable state is read and written on `loop`'s thread only.
    public let name: String
    let config: RouteConfig
    let loop: EventLoop
    var log: Logger
    var core: RouteCore
    var state = ConnectionState.idle
    /// When the current stream was authenticated; nil while not connected.
    var authenticatedAt: Instant?
    /// Connections lost after authentication.
    var reconnects = 0
    let startedAt = Instant.now()

    private let parser: XMLStreamParser
    private var socket: TCPSocket?
    /// Whether the loop watches the socket for reading (off while output is backed up) and
    /// writing (on while output waits, or the connection is being made).
    private var watchingReads = false
    private var watchingWrites = false
    private var connectTimer: EventLoop.TimerID?
    private var reconnectTimer: EventLoop.TimerID?
    private var keepaliveTimer: EventLoop.TimerID?
    private var deadlineTimer: EventLoop.TimerID?
    private var deadlineArmedAt: Instant?
    private var resubscribeTimer: EventLoop.TimerID?
    private var stopCompletions: [@Sendable () -> Void] = []

    private let readBuffer: UnsafeMutableRawBufferPointer
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var actions: [RouteAction] = []
    private var lastWrite = Instant.now()
    private var failedAttempts = 0
    private var refusedHandshake = false
    private var streamID = ""

    /// Output beyond which the route stops reading until the server has taken what it was sent.
    static let outputHighWater = 4 * 1024 * 1024
    static let connectTimeout = Duration.seconds(10)
    /// Element levels below a stanza's top level that the router keeps; payloads nest far less.
    static let maxPayloadDepth = 64

    public init(config: RouteConfig, strategy: any BalancingStrategy, encoder: any JATEncoder, log: Logger) {
        self.name = config.name
        self.config = config
        self.loop = EventLoop(name: "route \(config.name)")
        self.log = log.with("route", config.name)
        self.core = RouteCore(config: config, strategy: strategy, encoder: encoder, log: self.log)
        // A stanza over the configured size is dropped and answered; the stream is closed only
        // past four times that, where the server is surely broken.
        self.parser = XMLStreamParser(maxStanzaSize: 4 * config.maxStanzaSize, refuseAbove: config.maxStanzaSize,
                                      maxDepth: Self.maxPayloadDepth)
        self.readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    }

    deinit {
        readBuffer.deallocate()
    }

    /// Starts connecting; the route keeps reconnecting until `stop` is called.
    public func start() {
        loop.execute { self.connect() }
    }

    /// Answers every request in flight, closes the stream and the connection, then calls `completion`.
    public func stop(completion: @escaping @Sendable () -> Void) {
        loop.execute {
            switch self.state {
            case .stopped:
                completion()
            case .stopping:
                self.stopCompletions.append(completion)
            default:
                self.stopCompletions.append(completion)
                self.beginStop()
            }
        }
    }

    // MARK: Connecting

    private func connect() {
        guard state == .idle || state == .waiting else { return }
        state = .connecting
        log.info("connecting", [("server", "\(config.serverHost):\(config.serverPort)")])
        let socket: TCPSocket
        do {
            socket = try TCPSocket.connect(host: config.serverHost, port: config.serverPort)
        } catch {
            connectionFailed("\(error)")
            return
        }
        self.socket = socket
        loop.watch(socket.descriptor, reading: false, writing: true,
                   onReadable: { [unowned self] in self.socketReadable() },
                   onWritable: { [unowned self] in self.socketWritable() })
        watchingReads = false
        watchingWrites = true
        connectTimer = loop.schedule(after: Self.connectTimeout) { [unowned self] in
            self.connectionFailed("no connection within \(Self.connectTimeout.seconds)s")
        }
    }

    private func connectionEstablished() {
        loop.cancel(connectTimer)
        connectTimer = nil
        guard let socket else { return }
        if let error = socket.connectionError() {
            connectionFailed("\(error)")
            return
        }
        watchingReads = true
        watchingWrites = false
        loop.update(socket.descriptor, reading: true, writing: false)
        // A server that takes the connection but never completes the handshake is given up on.
        connectTimer = loop.schedule(after: Self.connectTimeout) { [unowned self] in
            self.connectTimer = nil
            self.connectionFailed("no handshake within \(Self.connectTimeout.seconds)s")
        }

        parser.reset()
        state = .handshaking
        let header = "<?xml version='1.0'?><stream:stream xmlns='\(componentNamespace)' "
            + "xmlns:stream='\(streamNamespace)' to='\(escapedAttribute(config.component.description))'>"
        output.append(contentsOf: header.utf8)
        flush()
    }

    /// The connection could not be made or was lost: clean up and try again later.
    private func connectionFailed(_ reason: String) {
        let wasAuthenticated = state == .authenticated
        teardownSocket()
        if state == .stopping {
            finishStop()
            return
        }
        authenticatedAt = nil
        if wasAuthenticated {
            reconnects += 1
            log.warning("connection lost", [("reason", reason), ("pending", "\(core.pending.count)")])
        } else if !refusedHandshake {
            log.warning("cannot connect", [("server", "\(config.serverHost):\(config.serverPort)"), ("reason", reason)])
        }
        core.connectionLost()
        scheduleReconnect()
    }

    /// Capped exponential backoff with jitter: `base = min(max, initial · 2^n)` after the n-th
    /// failure in a row, and a delay drawn uniformly from `[base/2, base]`. A refused handshake
    /// waits the maximum, as retrying sooner cannot help until an operator acts.
    private func scheduleReconnect() {
        let initial = config.reconnectInitial.seconds
        let maximum = config.reconnectMax.seconds
        let base = refusedHandshake ? maximum : min(maximum, initial * Double(1 << min(failedAttempts, 30)))
        let delay = base / 2 + Double.random(in: 0...(base / 2))
        failedAttempts += 1
        state = .waiting
        log.debug("reconnect scheduled", [("delay", "\(delay)s"), ("attempt", "\(failedAttempts)")])
        reconnectTimer = loop.schedule(after: .nanoseconds(Int64(delay * 1e9))) { [unowned self] in
            self.reconnectTimer = nil
            self.connect()
        }
    }

    private func teardownSocket() {
        for timer in [connectTimer, keepaliveTimer, deadlineTimer, resubscribeTimer] { loop.cancel(timer) }
        connectTimer = nil
        keepaliveTimer = nil
        deadlineTimer = nil
        deadlineArmedAt = nil
        resubscribeTimer = nil
        if let socket {
            loop.unwatch(socket.descriptor)
            socket.close()
        }
        socket = nil
        watchingReads = false
        watchingWrites = false
        output.removeAll(keepingCapacity: true)
        outputOffset = 0
    }

    // MARK: Reading

    private func socketReadable() {
        guard let socket else { return }
        // Read a bounded number of times per wake-up, so that timers and writes get their turn.
        for _ in 0..<16 {
            let outcome: ReadOutcome
            do {
                outcome = try socket.read(into: readBuffer)
            } catch {
                connectionFailed("\(error)")
                return
            }
            switch outcome {
            case .wouldBlock:
                afterEvents()
                return
            case .closed:
                connectionFailed("the server closed the connection")
                return
            case .bytes(let count):
                if !consume(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count])) { return }
                if self.socket == nil { return }
                if output.count - outputOffset > Self.outputHighWater {
                    pauseReading()
                    break
                }
            }
        }
        afterEvents()
    }

    /// Feeds bytes to the parser and handles the events; false once the connection is gone.
    private func consume(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let events: [XMLStreamEvent]
        do {
            events = try parser.feed(bytes)
        } catch {
            log.error("stream from the server is invalid; closing it", [("reason", "\(error)")])
            let condition = (error as? XMLStreamParserError).map(StreamErrorCondition.init) ?? .notWellFormed
            send(streamError: StreamError(condition))
            connectionFailed("invalid stream")
            return false
        }
        let now = Instant.now()
        for event in events {
            switch event {
            case .streamOpened(let root):
                streamOpened(root)
            case .element(let element):
                if state == .authenticated, element.namespace == componentNamespace {
                    core.handle(element, now: now, into: &actions)
                } else {
                    streamElement(element)
                }
            case .streamClosed:
                connectionFailed("the server closed the stream")
                return false
            case .refused(let root, let reason):
                log.warning("dropped a stanza from the server", [("stanza", root.name), ("reason", reason.rawValue)])
                if state == .authenticated { core.refused(root, because: reason, now: now, into: &actions) }
            }
            if socket == nil { return false }
        }
        return true
    }

    private func streamOpened(_ root: XMLElement) {
        guard root.name == "stream", root.namespace == streamNamespace else {
            send(streamError: StreamError(.invalidNamespace))
            connectionFailed("the server's stream root is not a stream")
            return
        }
        streamID = root[attribute: "id"] ?? ""
        guard !streamID.isEmpty else {
            connectionFailed("the server's stream header has no id")
            return
        }
        var handshake = XMLElement(name: "handshake", namespace: componentNamespace)
        handshake.append(text: componentHandshakeDigest(streamID: streamID, secret: config.secret.value))
        actions.append(.send(handshake))
    }

    /// Elements that are not stanzas of an authenticated stream: the handshake reply, stream errors.
    private func streamElement(_ element: XMLElement) {
        if element.name == "error", element.namespace == streamNamespace {
            streamErrorReceived(StreamError(element: element))
            return
        }
        guard state == .handshaking else {
            log.debug("ignored element", [("element", element.name)])
            return
        }
        guard element.name == "handshake", element.namespace == componentNamespace else {
            log.debug("ignored element before the handshake", [("element", element.name)])
            return
        }
        state = .authenticated
        loop.cancel(connectTimer)
        connectTimer = nil
        authenticatedAt = Instant.now()
        failedAttempts = 0
        refusedHandshake = false
        log.info("component authenticated", [("target", config.target.description)])
        startKeepalive()
        core.streamAuthenticated(into: &actions)
    }

    private func streamErrorReceived(_ error: StreamError) {
        let fields = [("condition", error.conditionName)] + (error.text.map { [("text", $0)] } ?? [])
        switch (state, error.condition) {
        case (.handshaking, .notAuthorized?):
            refusedHandshake = true
            log.error("server refused the handshake: wrong component secret?", fields)
        case (.handshaking, .hostUnknown?):
            refusedHandshake = true
            log.error("server does not know this component address: check its component configuration", fields)
        case (.handshaking, .conflict?):
            refusedHandshake = true
            log.error("server refused the handshake: another process serves this component", fields)
        default:
            log.warning("server sent a stream error", fields)
        }
        connectionFailed("stream error \(error.conditionName)")
    }

    // MARK: Writing

    /// Applies the core's actions and writes what they produced, then re-arms the deadline timer.
    func afterEvents() {
        applyActions()
        flush()
        armDeadlineTimer()
    }

    private func applyActions() {
        guard !actions.isEmpty else { return }
        for action in actions {
            switch action {
            case .send(let element):
                XMLSerializer.write(element, into: &output, defaultNamespace: componentNamespace)
            case .resubscribe(let delay):
                loop.cancel(resubscribeTimer)
                resubscribeTimer = loop.schedule(after: delay) { [unowned self] in
                    self.resubscribeTimer = nil
                    guard self.state == .authenticated else { return }
                    self.core.resubscribe(into: &self.actions)
                    self.afterEvents()
                }
            }
        }
        actions.removeAll(keepingCapacity: true)
    }

    private func send(streamError: StreamError) {
        XMLSerializer.write(streamError.element, into: &output, defaultNamespace: componentNamespace)
        output.append(contentsOf: "</stream:stream>".utf8)
        flush()
    }

    /// Writes as much pending output as the socket takes; waits for writability for the rest.
    private func flush() {
        guard let socket, outputOffset < output.count else { return }
        let written: Int
        do {
            written = try output.withUnsafeBytes { bytes throws(SocketError) in
                try socket.write(UnsafeRawBufferPointer(rebasing: bytes[outputOffset...]))
            }
        } catch {
            connectionFailed("\(error)")
            return
        }
        outputOffset += written
        lastWrite = Instant.now()
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
            pauseWriting()
            if !watchingReads, state != .connecting { resumeReading() }
            if state == .stopping { closeAfterStop() }
        } else {
            resumeWriting()
        }
    }

    private func socketWritable() {
        if state == .connecting {
            connectionEstablished()
        } else {
            flush()
        }
    }

    private func pauseWriting() {
        guard watchingWrites, let socket else { return }
        watchingWrites = false
        loop.update(socket.descriptor, reading: watchingReads, writing: false)
    }

    private func resumeWriting() {
        guard !watchingWrites, let socket else { return }
        watchingWrites = true
        loop.update(socket.descriptor, reading: watchingReads, writing: true)
    }

    private func pauseReading() {
        guard watchingReads, let socket else { return }
        watchingReads = false
        loop.update(socket.descriptor, reading: false, writing: watchingWrites)
        log.debug("reading paused: the server is slow to take output", [("buffered", "\(output.count - outputOffset)")])
    }

    private func resumeReading() {
        guard !watchingReads, let socket else { return }
        watchingReads = true
        loop.update(socket.descriptor, reading: true, writing: watchingWrites)
    }

    // MARK: Timers

    /// Whitespace on a connection that wrote nothing for a keepalive interval (RFC 6120 §4.6.1).
    private func startKeepalive() {
        loop.cancel(keepaliveTimer)
        let interval = config.keepalive
        keepaliveTimer = loop.schedule(after: interval) { [unowned self] in
            self.keepaliveTimer = nil
            guard self.state == .authenticated else { return }
            if Instant.now().since(self.lastWrite) >= interval {
                self.output.append(UInt8(ascii: " "))
                self.flush()
            }
            self.startKeepalive()
        }
    }

    /// Keeps one timer at (or before) the earliest request deadline; firing early only re-arms it.
    private func armDeadlineTimer() {
        guard let next = core.nextDeadline() else { return }
        if let armed = deadlineArmedAt, armed <= next { return }
        loop.cancel(deadlineTimer)
        deadlineArmedAt = next
        deadlineTimer = loop.schedule(after: next.since(Instant.now())) { [unowned self] in
            self.deadlineTimer = nil
            self.deadlineArmedAt = nil
            self.core.expire(now: Instant.now(), into: &self.actions)
            self.afterEvents()
        }
    }

    // MARK: Stopping

    private func beginStop() {
        let previous = state
        state = .stopping
        loop.cancel(reconnectTimer)
        reconnectTimer = nil
        guard previous == .authenticated || previous == .handshaking, socket != nil else {
            teardownSocket()
            finishStop()
            return
        }
        if previous == .authenticated {
            core.shutdown(into: &actions)
            applyActions()
        }
        output.append(contentsOf: "</stream:stream>".utf8)
        flush()
        // Give a slow server a moment to take the last bytes; then close regardless.
        loop.cancel(connectTimer)
        connectTimer = loop.schedule(after: .seconds(2)) { [unowned self] in self.closeAfterStop() }
    }

    private func closeAfterStop() {
        guard state == .stopping else { return }
        socket?.shutdownOutput()
        teardownSocket()
        finishStop()
    }

    private func finishStop() {
        state = .stopped
        log.info("route stopped")
        let completions = stopCompletions
        stopCompletions.removeAll()
        for completion in completions { completion() }
    }
}

/// Escapes text for a single-quoted attribute written by hand (the stream header).
func escapedAttribute(_ text: String) -> String {
    var out: [UInt8] = []
    XMLSerializer.appendEscaped(text, inAttribute: true, into: &out)
    return String(decoding: out, as: UTF8.self)
}
