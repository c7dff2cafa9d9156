#if canImport(Glibc)
import Glibc
#endif

/// The bench's end of one component connection: a non-blocking socket with buffered input and
/// output (`read(2)`, `write(2)`, `ppoll(2)`).
final class StreamConnection {
    let descriptor: Int32
    let input = ByteBuffer(capacity: 1 << 20)
    let output = ByteBuffer(capacity: 1 << 20)
    private(set) var peerClosed = false

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Reads what the socket holds now, up to `limit` bytes; returns the count (0: nothing yet).
    func readAvailable(limit: Int = 1 << 20) throws(SystemError) -> Int {
        var total = 0
        while total < limit {
            let space = input.writableSpace(atLeast: 64 * 1024)
            let count = read(descriptor, space.baseAddress, space.count)
            if count > 0 {
                input.commit(count)
                total += count
                if count < space.count { break }
            } else if count == 0 {
                peerClosed = true
                break
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else if errno != EINTR {
                throw SystemError("read")
            }
        }
        return total
    }

    /// Writes as much buffered output as the socket takes; true when all of it went out.
    @discardableResult
    func flush() throws(SystemError) -> Bool {
        while !output.isEmpty {
            let count = write(descriptor, output.base + output.readIndex, output.readableCount)
            if count > 0 {
                output.readIndex += count
            } else if count < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                return false
            } else if count < 0, errno == EINTR {
                continue
            } else {
                throw SystemError("write")
            }
        }
        output.clear()
        return true
    }

    /// Waits until the socket is readable (or writable, while output is pending), at most
    /// `timeout` nanoseconds (`select(2)`: unlike `poll(2)`, its timeout is finer than a
    /// millisecond, which the fixed-rate mode needs). Returns whether it became readable.
    @discardableResult
    func wait(nanoseconds timeout: UInt64) -> Bool {
        var readable = fd_set()
        var writable = fd_set()
        Self.add(descriptor, to: &readable)
        if !output.isEmpty { Self.add(descriptor, to: &writable) }
        var limit = timeval(tv_sec: Int(timeout / 1_000_000_000), tv_usec: Int(timeout % 1_000_000_000 / 1000))
        let ready = select(descriptor + 1, &readable, &writable, nil, &limit)
        return ready > 0
    }

    /// `FD_SET`, which Swift cannot import: sets bit `descriptor` of the set.
    private static func add(_ descriptor: Int32, to set: inout fd_set) {
        withUnsafeMutableBytes(of: &set) { bytes in
            let words = bytes.bindMemory(to: Int.self)
            let bits = Int.bitWidth
            words[Int(descriptor) / bits] |= 1 << (Int(descriptor) % bits)
        }
    }

    /// Reads until `done` says the input holds what it waits for, or `timeout` seconds pass.
    func readUntil(timeout: Double, _ done: () throws -> Bool) throws {
        let deadline = monotonicNanoseconds() + UInt64(timeout * 1e9)
        while try !done() {
            try flush()
            let now = monotonicNanoseconds()
            guard now < deadline, !peerClosed else {
                throw BenchError(peerClosed ? "the router closed the connection" : "timed out waiting for the router")
            }
            wait(nanoseconds: min(deadline - now, 100_000_000))
            _ = try readAvailable()
        }
    }
}

/// Something that stops a scenario, said plainly.
struct BenchError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
