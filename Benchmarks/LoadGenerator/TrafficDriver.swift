import Router
#if canImport(Glibc)
import Glibc
#endif

/// How a driver sends requests.
enum TrafficMode {
    /// A fixed number of requests in flight: each reply lets the next request go. Stops issuing
    /// at the window's end or after `maxRequests`.
    case closedLoop(inFlight: Int, maxRequests: Int?)
    /// Requests at a fixed rate whatever the replies do (open loop), until the window's end.
    case fixedRate(perSecond: Double)
    /// `count` requests at once; the resources hold every forwarded request until all have
    /// arrived, `whenHeld` runs, then they answer them all.
    case hold(count: Int)
}

/// When a driver runs and when its figures count, on the monotonic clock.
struct MeasureWindow: Sendable {
    /// Requests are issued until this time.
    var issueEnd: UInt64
    /// Replies that arrive in `[start, end)` count towards throughput and latency.
    var start: UInt64
    var end: UInt64
    /// How long to wait for the last replies after `issueEnd`.
    var drainSeconds: Double = 30
}

/// What a driver saw.
struct TrafficResult: Sendable {
    var issued = 0
    var forwarded = 0
    var completed = 0
    var completedInWindow = 0
    /// Nanoseconds from writing a request to reading its reply, for replies in the window.
    var latencies: [UInt32] = []
    var perResource: [Int] = []
    var errorCount = 0
    var errorSamples: [String] = []
    /// How the JAT of each forwarded request was checked: `exact` (against the bench's own
    /// encoder), or `round-trip` only (the reply reached the right sender).
    var jatCheck = "none"

    mutating func merge(_ other: TrafficResult) {
        issued += other.issued
        forwarded += other.forwarded
        completed += other.completed
        completedInWindow += other.completedInWindow
        latencies += other.latencies
        errorCount += other.errorCount
        errorSamples += other.errorSamples.prefix(max(0, 5 - errorSamples.count))
        if perResource.count < other.perResource.count {
            perResource += Array(repeating: 0, count: other.perResource.count - perResource.count)
        }
        for (index, count) in other.perResource.enumerated() { perResource[index] += count }
        if jatCheck == "none" || other.jatCheck == "round-trip" { jatCheck = other.jatCheck }
    }
}

/// Plays the requesters and the resources of one route on its connection, and checks every
/// stanza the router sends: a forwarded request must carry the request's id and payload, come
/// from `component/JAT` and go to one of the announced resources; a reply must carry a request's
/// id, come from the address the sender used and go to that sender.
///
/// Requests get decimal ids (their sequence number); the sender of request `n` is `n % senders`.
/// Per-request state lives in two rings indexed by `n & mask`: the id in flight and its send time.
final class TrafficDriver: @unchecked Sendable {
    // @unchecked Sendable: a driver is used by one thread at a time; the main thread hands it to
    // its own thread for `run` and reads it again only after that thread has finished.
    let connection: StreamConnection
    let plan: RoutePlan
    private let ringMask: Int
    private let slots: UnsafeMutablePointer<Int>
    private let sentAt: UnsafeMutablePointer<UInt64>

    private let requestHead = Array("<iq type='get' id='".utf8)
    private let requestFrom = Array("' from='".utf8)
    private let requestTail: [UInt8]
    private let answerHead = Array("<iq type='result' id='".utf8)
    private let answerFrom = Array("' from='".utf8)
    private let answerTo = Array("' to='".utf8)
    private let answerTail = Array("'/>".utf8)
    private let payload = Array("<query xmlns='urn:example:bench'/>".utf8)
    private let componentBytes: [UInt8]
    private let jatPrefix: [UInt8]
    private let resourcePrefix: [UInt8]
    private let senderJIDs: [[UInt8]]
    /// `component/JAT` as the bench's own encoder makes it, per sender; empty when unknown.
    private let expectedForwardFrom: [[UInt8]]

    private var nextSeq = 0
    private var stampedUpTo = 0
    private var inFlight = 0
    private var result = TrafficResult()
    private var jatExact: Bool?
    /// Answers withheld in `.hold` mode.
    private let held = ByteBuffer(capacity: 1 << 16)
    private var heldCount = 0
    private var heldMode = false
    private var window = MeasureWindow(issueEnd: 0, start: 0, end: 0)

    /// - Parameters:
    ///   - maxInFlight: the most requests that can be in flight at once; sizes the rings.
    ///   - encoder: the route's encoder as the bench can build it, to check JATs exactly.
    init(connection: StreamConnection, plan: RoutePlan, maxInFlight: Int, encoder: (any JATEncoder)?) {
        self.connection = connection
        self.plan = plan
        var size = 1024
        while size < 2 * maxInFlight { size *= 2 }
        ringMask = size - 1
        slots = .allocate(capacity: size)
        slots.initialize(repeating: -1, count: size)
        sentAt = .allocate(capacity: size)
        sentAt.initialize(repeating: 0, count: size)
        requestTail = Array("' to='\(plan.component)'><query xmlns='urn:example:bench'/></iq>".utf8)
        componentBytes = Array(plan.component.utf8)
        jatPrefix = Array((plan.component + "/").utf8)
        resourcePrefix = Array((plan.target + "/r").utf8)
        senderJIDs = (0..<plan.senders).map { Array(plan.senderJID($0).utf8) }
        expectedForwardFrom = (0..<plan.senders).map { index in
            guard let encoder, let jid = try? JID(plan.senderJID(index)), let jat = try? encoder.encode(jid) else {
                return []
            }
            return Array((plan.component + "/" + jat).utf8)
        }
        result.perResource = Array(repeating: 0, count: plan.resources)
    }

    deinit {
        slots.deallocate()
        sentAt.deallocate()
    }

    /// Runs `mode` within `window`; `whenHeld` runs once in `.hold` mode, when every request is held.
    func run(_ mode: TrafficMode, window: MeasureWindow, whenHeld: () -> Void = {}) throws -> TrafficResult {
        self.window = window
        result = TrafficResult()
        result.perResource = Array(repeating: 0, count: plan.resources)
        let started = monotonicNanoseconds()
        var released = false
        var issuing = true
        if case .hold = mode { heldMode = true }
        defer { heldMode = false }

        while true {
            let now = monotonicNanoseconds()
            if issuing {
                switch mode {
                case .closedLoop(let target, let maxRequests):
                    var allowed = target - inFlight
                    if let maxRequests { allowed = min(allowed, maxRequests - result.issued) }
                    for _ in 0..<max(0, allowed) { issueRequest() }
                    issuing = now < window.issueEnd && result.issued < (maxRequests ?? Int.max)
                case .fixedRate(let rate):
                    let due = Int(Double(now - started) * rate / 1e9)
                    while result.issued < due, inFlight <= ringMask / 2 { issueRequest() }
                    issuing = now < window.issueEnd
                case .hold(let count):
                    while result.issued < count { issueRequest() }
                    issuing = false
                }
            }
            if case .hold(let count) = mode, !released, heldCount == count {
                whenHeld()
                connection.output.append(held.base, count: held.writeIndex)
                held.clear()
                heldMode = false
                released = true
            }
            stampSendTimes()
            try connection.flush()

            if !issuing, inFlight == 0 { break }
            if !issuing, now > window.issueEnd + UInt64(window.drainSeconds * 1e9) {
                record("\(inFlight) requests got no reply within \(window.drainSeconds)s")
                result.errorCount += inFlight - 1
                break
            }
            var timeout: UInt64 = 10_000_000
            if case .fixedRate(let rate) = mode, issuing {
                let nextDue = started + UInt64(Double(result.issued + 1) * 1e9 / rate)
                timeout = nextDue > now ? min(timeout, nextDue - now) : 0
            }
            if timeout > 0 { connection.wait(nanoseconds: timeout) }
            if try connection.readAvailable() > 0 {
                try process(readAt: monotonicNanoseconds())
            }
            if connection.peerClosed { throw BenchError("the router closed the connection") }
        }
        result.jatCheck = jatExact.map { $0 ? "exact" : "round-trip" } ?? "none"
        return result
    }

    // MARK: Sending

    @inline(__always)
    private func issueRequest() {
        let seq = nextSeq
        let slot = seq & ringMask
        guard slots[slot] < 0 else { return }
        slots[slot] = seq
        nextSeq += 1
        inFlight += 1
        result.issued += 1
        let output = connection.output
        output.append(requestHead)
        output.appendDecimal(seq)
        output.append(requestFrom)
        output.append(senderJIDs[seq % plan.senders])
        output.append(requestTail)
    }

    /// Stamps the requests about to be written with the time of the write.
    @inline(__always)
    private func stampSendTimes() {
        guard stampedUpTo < nextSeq else { return }
        let now = monotonicNanoseconds()
        for seq in stampedUpTo..<nextSeq { sentAt[seq & ringMask] = now }
        stampedUpTo = nextSeq
    }

    // MARK: Receiving

    private func process(readAt now: UInt64) throws {
        let input = connection.input
        let p = UnsafePointer(input.base)
        var index = input.readIndex
        let end = input.writeIndex
        while let stanza = try StanzaScanner.next(p, from: index, end: end) {
            index = stanza.end
            handle(stanza, p, now: now)
        }
        input.readIndex = index
    }

    @inline(__always)
    private func handle(_ stanza: ScannedStanza, _ p: UnsafePointer<UInt8>, now: UInt64) {
        guard stanza.name.count == 2, p[stanza.name.start] == UInt8(ascii: "i"), !stanza.type.isMissing,
              stanza.type.count > 0
        else {
            record("unexpected stanza: \(text(p, ByteRange(start: stanza.start, end: stanza.end)))")
            return
        }
        switch p[stanza.type.start] {
        case UInt8(ascii: "g"):
            forwarded(stanza, p)
        case UInt8(ascii: "r"):
            replied(stanza, p, now: now)
        default:
            let seq = StanzaScanner.decimal(p, stanza.id)
            if seq >= 0, slots[seq & ringMask] == seq { finish(seq) }
            record("error reply: \(text(p, ByteRange(start: stanza.start, end: stanza.end)))")
        }
    }

    /// A request forwarded to one of our resources: check it, then answer as that resource.
    @inline(__always)
    private func forwarded(_ stanza: ScannedStanza, _ p: UnsafePointer<UInt8>) {
        let seq = StanzaScanner.decimal(p, stanza.id)
        guard seq >= 0, slots[seq & ringMask] == seq else {
            record("forwarded request with an id not in flight: \(text(p, stanza.id))")
            return
        }
        let sender = seq % plan.senders
        guard StanzaScanner.hasPrefix(p, stanza.to, resourcePrefix) else {
            record("forwarded request to a stranger: \(text(p, stanza.to))")
            return
        }
        let resource = StanzaScanner.decimal(
            p, ByteRange(start: stanza.to.start + resourcePrefix.count, end: stanza.to.end)) - 1
        guard resource >= 0, resource < plan.resources else {
            record("forwarded request to an unknown resource: \(text(p, stanza.to))")
            return
        }
        guard checkForwardFrom(p, stanza.from, sender: sender) else {
            record("forwarded request with a wrong from: \(text(p, stanza.from))")
            return
        }
        guard stanza.contentEnd - stanza.contentStart == payload.count,
              StanzaScanner.equals(p, ByteRange(start: stanza.contentStart, end: stanza.contentEnd), payload)
        else {
            record("forwarded request with a changed payload")
            return
        }
        result.forwarded += 1
        result.perResource[resource] += 1

        let out = heldMode ? held : connection.output
        out.append(answerHead)
        out.append(stanza.id, of: p)
        out.append(answerFrom)
        out.append(stanza.to, of: p)
        out.append(answerTo)
        out.append(stanza.from, of: p)
        out.append(answerTail)
        if heldMode { heldCount += 1 }
    }

    @inline(__always)
    private func checkForwardFrom(_ p: UnsafePointer<UInt8>, _ from: ByteRange, sender: Int) -> Bool {
        let expected = expectedForwardFrom[sender]
        switch jatExact {
        case true?:
            return StanzaScanner.equals(p, from, expected)
        case false?:
            return from.count > jatPrefix.count && StanzaScanner.hasPrefix(p, from, jatPrefix)
        case nil:
            // The first request decides: an encoder the bench reproduces is checked exactly.
            jatExact = !expected.isEmpty && StanzaScanner.equals(p, from, expected)
            return checkForwardFrom(p, from, sender: sender)
        }
    }

    /// The router's reply to one of our requests: check it and count it.
    @inline(__always)
    private func replied(_ stanza: ScannedStanza, _ p: UnsafePointer<UInt8>, now: UInt64) {
        let seq = StanzaScanner.decimal(p, stanza.id)
        guard seq >= 0, slots[seq & ringMask] == seq else {
            record("reply with an id not in flight: \(text(p, stanza.id))")
            return
        }
        guard StanzaScanner.equals(p, stanza.to, senderJIDs[seq % plan.senders]) else {
            record("reply to the wrong sender: \(text(p, stanza.to)) for id \(seq)")
            finish(seq)
            return
        }
        guard StanzaScanner.equals(p, stanza.from, componentBytes) else {
            record("reply from the wrong address: \(text(p, stanza.from))")
            finish(seq)
            return
        }
        let sent = sentAt[seq & ringMask]
        finish(seq)
        result.completed += 1
        if now >= window.start, now < window.end {
            result.completedInWindow += 1
            result.latencies.append(UInt32(clamping: now &- sent))
        }
    }

    @inline(__always)
    private func finish(_ seq: Int) {
        slots[seq & ringMask] = -1
        inFlight -= 1
    }

    private func record(_ message: String) {
        result.errorCount += 1
        if result.errorSamples.count < 5 { result.errorSamples.append(message) }
    }

    private func text(_ p: UnsafePointer<UInt8>, _ range: ByteRange) -> String {
        guard !range.isMissing else { return "(missing)" }
        return String(decoding: UnsafeBufferPointer(start: p + range.start, count: min(range.count, 300)),
                      as: UTF8.self)
    }
}
