#if canImport(Glibc)
import Glibc
#endif

/// Unix-domain stream sockets for the control plane (`socket(2)` with `AF_UNIX`).
public enum UnixSocket {
    /// Creates, binds and listens on `path`, readable and writable by the owner only. A stale
    /// socket file left by a dead router is replaced; a live one is an error.
    public static func listen(path: String) throws(SocketError) -> Int32 {
        if isLive(path) { throw SocketError("bind(\(path)): another router is listening", code: EADDRINUSE) }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        // The socket file is created with the umask's permissions: make it owner-only from the start.
        let previous = umask(0o177)
        defer { umask(previous) }
        let bound = withAddress(path) { address, length in bind(fd, address, length) }
        guard bound == 0 else {
            let error = SocketError("bind(\(path))")
            close(fd)
            throw error
        }
        chmod(path, 0o600)
        guard Glibc.listen(fd, 16) == 0 else {
            let error = SocketError("listen(\(path))")
            close(fd)
            throw error
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    /// Connects to `path` (blocking).
    public static func connect(path: String) throws(SocketError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        let connected = withAddress(path) { address, length in Glibc.connect(fd, address, length) }
        guard connected == 0 else {
            let error = SocketError("connect(\(path))")
            close(fd)
            throw error
        }
        return fd
    }

    /// The user id of the process at the other end (`SO_PEERCRED`).
    public static func peerUserID(_ fd: Int32) -> uid_t? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        return credentials.uid
    }

    private static func isLive(_ path: String) -> Bool {
        guard let fd = try? connect(path: path) else { return false }
        close(fd)
        return true
    }

    private static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}

/// The layout of Linux's `struct ucred`, which Glibc only declares under `_GNU_SOURCE`.
private struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}
