#if canImport(Glibc)
import Glibc
#endif

/// A failed socket call, with the C function and errno.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var code: Int32

    public init(_ call: String, code: Int32 = errno) {
        self.call = call
        self.code = code
    }

    public var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// The result of reading from a non-blocking socket.
public enum ReadOutcome {
    case bytes(Int)
    case wouldBlock
    case closed
}

/// A non-blocking TCP socket. Owns its file descriptor and closes it once.
public final class TCPSocket {
    public let descriptor: Int32
    private var isClosed = false

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { close() }

    /// Starts connecting to `host:port` (`getaddrinfo(3)`, `socket(2)`, `connect(2)`); the socket
    /// becomes writable when the connection is made or fails (read it with `connectionError()`).
    public static func connect(host: String, port: UInt16) throws(SocketError) -> TCPSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw SocketError("getaddrinfo(\(host))", code: status == EAI_SYSTEM ? errno : ENOENT)
        }
        defer { freeaddrinfo(list) }

        var lastError = SocketError("connect", code: ECONNREFUSED)
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue)
                            | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else {
                lastError = SocketError("socket")
                continue
            }
            let socket = TCPSocket(descriptor: fd)
            socket.setOption(Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            socket.setOption(SOL_SOCKET, SO_KEEPALIVE, 1)
            socket.setOption(Int32(IPPROTO_TCP), TCP_KEEPIDLE, 60)
            socket.setOption(Int32(IPPROTO_TCP), TCP_KEEPINTVL, 10)
            socket.setOption(Int32(IPPROTO_TCP), TCP_KEEPCNT, 6)
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 || errno == EINPROGRESS {
                return socket
            }
            lastError = SocketError("connect")
        }
        throw lastError
    }

    /// A listening TCP socket on `host:port` (`bind(2)`, `listen(2)`), non-blocking.
    public static func listen(host: String, port: UInt16) throws(SocketError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let info = list else {
            throw SocketError("getaddrinfo(\(host))", code: status == EAI_SYSTEM ? errno : ENOENT)
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue)
                        | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
        guard fd >= 0 else { throw SocketError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let error = SocketError("bind(\(host):\(port))")
            Glibc.close(fd)
            throw error
        }
        guard Glibc.listen(fd, 64) == 0 else {
            let error = SocketError("listen(\(host):\(port))")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    private func setOption(_ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        _ = setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The outcome of a non-blocking connect, once the socket is writable (`SO_ERROR`).
    public func connectionError() -> SocketError? {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else {
            return SocketError("getsockopt")
        }
        return code == 0 ? nil : SocketError("connect", code: code)
    }

    /// `read(2)` into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> ReadOutcome {
        while true {
            let count = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            if count > 0 { return .bytes(count) }
            if count == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: throw SocketError("read")
            }
        }
    }

    /// `write(2)` from `bytes`; returns how many were taken (0 when the socket would block).
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Int {
        while true {
            let count = Glibc.write(descriptor, bytes.baseAddress, bytes.count)
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return 0
            default: throw SocketError("write")
            }
        }
    }

    /// `shutdown(2)` of the sending side: the peer reads end-of-file after what was sent.
    public func shutdownOutput() {
        _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(descriptor)
    }
}
