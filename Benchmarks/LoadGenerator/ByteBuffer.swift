#if canImport(Glibc)
import Glibc
#endif

/// A growable run of bytes with a read cursor, for socket input and output.
///
/// Bytes live in `[readIndex, writeIndex)`. Appends copy with `memcpy`; space is made by moving
/// the live bytes to the front before growing. One owner at a time (a driver and its thread).
final class ByteBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    var readIndex = 0
    private(set) var writeIndex = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    var readableCount: Int { writeIndex - readIndex }
    var isEmpty: Bool { readIndex == writeIndex }

    func clear() {
        readIndex = 0
        writeIndex = 0
    }

    /// Makes room for `count` more bytes after `writeIndex`.
    @inline(__always)
    func reserve(_ count: Int) {
        if writeIndex + count <= capacity { return }
        makeRoom(count)
    }

    private func makeRoom(_ count: Int) {
        let live = readableCount
        if readIndex > 0 {
            if live > 0 { memmove(base, base + readIndex, live) }
            readIndex = 0
            writeIndex = live
        }
        if live + count > capacity {
            var newCapacity = capacity * 2
            while newCapacity < live + count { newCapacity *= 2 }
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
            if live > 0 { memcpy(bigger, base, live) }
            base.deallocate()
            base = bigger
            capacity = newCapacity
        }
    }

    /// Space after `writeIndex` to read into; call `commit(_:)` with what was written there.
    func writableSpace(atLeast count: Int) -> UnsafeMutableRawBufferPointer {
        reserve(count)
        return UnsafeMutableRawBufferPointer(start: base + writeIndex, count: capacity - writeIndex)
    }

    func commit(_ count: Int) { writeIndex += count }

    @inline(__always)
    func append(_ bytes: UnsafePointer<UInt8>, count: Int) {
        reserve(count)
        memcpy(base + writeIndex, bytes, count)
        writeIndex += count
    }

    @inline(__always)
    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer in
            if let start = buffer.baseAddress { append(start, count: buffer.count) }
        }
    }

    @inline(__always)
    func append(_ range: ByteRange, of source: UnsafePointer<UInt8>) {
        append(source + range.start, count: range.count)
    }

    /// Appends a non-negative integer in decimal.
    func appendDecimal(_ value: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { scratch in
            repeat {
                scratch[19 - count] = UInt8(truncatingIfNeeded: 0x30 + rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            if let start = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self) {
                append(start + 20 - count, count: count)
            }
        }
    }

    /// The live bytes, as text (for messages about what went wrong).
    func text(_ range: ByteRange) -> String {
        String(decoding: UnsafeBufferPointer(start: base + range.start, count: range.count), as: UTF8.self)
    }
}

/// A range of byte offsets into a `ByteBuffer`'s storage.
struct ByteRange {
    var start: Int
    var end: Int

    static let missing = ByteRange(start: 0, end: -1)

    var count: Int { end - start }
    var isMissing: Bool { end < start }
}
