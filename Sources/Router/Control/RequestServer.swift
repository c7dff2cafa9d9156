import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A small server for the control plane: accepts connections on a listening socket, reads each
/// request up to a delimiter, and writes back what `respond` returns. Used for the control socket
/// (one JSON object per line) and the HTTP metrics listener (one request per connection).
///
/// Everything runs on `queue`; requests are small and rare. A client that does not read its
/// answers is dropped when a write stalls for two seconds; one that has not completed a request
/// within ten seconds (of connecting or of its last answer) is dropped too, however slowly it
/// trickles bytes; at most 32 are served at once, and a client beyond them gets `busy` and is
/// closed, so idle connections cannot use up the process's descriptors.
public final class RequestServer: @unchecked Sendable {
    // @unchecked Sendable: `clients` and the sources are touched on `queue` only.
    public struct Options: Sendable {
        var delimiter: [UInt8]
        var maxRequest: Int
        /// What a client beyond the limit of connections reads before it is closed.
        var busy: [UInt8]
        /// Keep the connection for further requests after a response.
        var keepOpen: Bool
    }

    private let listener: Int32
    private let queue: DispatchQueue
    private let options: Options
    private let admit: (Int32) -> [UInt8]?
    private let respond: ([UInt8]) -> [UInt8]
    private var acceptSource: DispatchSourceRead?
    private var acceptPaused = false
    private var clients: [Int32: (source: DispatchSourceRead, buffer: [UInt8], lastActive: Instant)] = [:]
    private var idleSweep: DispatchSourceTimer?
    static let maxClients = 32
    static let idleTimeout = Duration.seconds(10)

    /// - Parameters:
    ///   - admit: returns a response to send before closing, to refuse a client; nil admits it.
    public init(
        listening listener: Int32, queue: DispatchQueue, options: Options,
        admit: @escaping (Int32) -> [UInt8]? = { _ in nil }, respond: @escaping ([UInt8]) -> [UInt8]
    ) {
        self.listener = listener
        self.queue = queue
        self.options = options
        self.admit = admit
        self.respond = respond
    }

    public static func lines(maxRequest: Int = 64 * 1024) -> Options {
        Options(delimiter: [0x0A], maxRequest: maxRequest, busy: ControlProtocol.encode(ControlProtocol.failure(
            "the router is busy: \(maxClients) control connections are open; try again")), keepOpen: true)
    }

    public static func http() -> Options {
        Options(delimiter: Array("\r\n\r\n".utf8), maxRequest: 16 * 1024,
                busy: Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8),
                keepOpen: false)
    }

    public func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: listener, queue: queue)
        source.setEventHandler { [weak self] in self?.acceptAll() }
        source.setCancelHandler { [listener] in close(listener) }
        acceptSource = source
        source.resume()
        let sweep = DispatchSource.makeTimerSource(queue: queue)
        sweep.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1))
        sweep.setEventHandler { [weak self] in self?.dropIdleClients() }
        sweep.resume()
        idleSweep = sweep
    }

    private func dropIdleClients() {
        let now = Instant.now()
        for (fd, client) in clients where now.since(client.lastActive) >= Self.idleTimeout { drop(fd) }
    }

    /// Stops accepting for a second after `accept` fails for lack of descriptors (the pending
    /// connection would otherwise wake the accept source again at once, forever).
    private func pauseAccepting() {
        guard !acceptPaused, let acceptSource else { return }
        acceptPaused = true
        acceptSource.suspend()
        queue.asyncAfter(deadline: .now() + .seconds(1)) { [weak self] in
            guard let self, self.acceptPaused, let source = self.acceptSource else { return }
            self.acceptPaused = false
            source.resume()
        }
    }

    /// Stops accepting and closes every connection; call on `queue`.
    public func stop() {
        idleSweep?.cancel()
        idleSweep = nil
        if acceptPaused {
            acceptPaused = false
            acceptSource?.resume()
        }
        acceptSource?.cancel()
        acceptSource = nil
        for fd in clients.keys { drop(fd) }
    }

    private func acceptAll() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { pauseAccepting() }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard clients.count < Self.maxClients else {
                writeAll(fd, options.busy)
                close(fd)
                continue
            }
            if let refusal = admit(fd) {
                writeAll(fd, refusal)
                close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [weak self] in self?.readable(fd) }
            source.setCancelHandler { close(fd) }
            clients[fd] = (source, [], Instant.now())
            source.resume()
        }
    }

    private func readable(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &chunk, chunk.count)
        if count < 0, errno == EAGAIN || errno == EINTR { return }
        guard count > 0, var client = clients[fd] else {
            drop(fd)
            return
        }
        client.buffer.append(contentsOf: chunk[0..<count])
        clients[fd] = client
        while let end = firstDelimiter(in: clients[fd]?.buffer ?? []) {
            guard let buffer = clients[fd]?.buffer else { return }
            let request = Array(buffer[..<end])
            clients[fd]?.buffer = Array(buffer[(end + options.delimiter.count)...])
            let response = respond(request)
            clients[fd]?.lastActive = Instant.now()
            // The socket is non-blocking for reads; writes wait, bounded by SO_SNDTIMEO.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            let delivered = writeAll(fd, response)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if !delivered || !options.keepOpen {
                drop(fd)
                return
            }
        }
        if (clients[fd]?.buffer.count ?? 0) > options.maxRequest { drop(fd) }
    }

    private func firstDelimiter(in buffer: [UInt8]) -> Int? {
        let delimiter = options.delimiter
        guard buffer.count >= delimiter.count else { return nil }
        for start in 0...(buffer.count - delimiter.count) where buffer[start] == delimiter[0] {
            if Array(buffer[start..<(start + delimiter.count)]) == delimiter { return start }
        }
        return nil
    }

    private func drop(_ fd: Int32) {
        guard let client = clients.removeValue(forKey: fd) else { return }
        client.source.cancel()
    }

    /// Writes every byte, or gives up (false) when the client stops reading (SO_SNDTIMEO).
    @discardableResult
    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
