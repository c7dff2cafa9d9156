/// Identifies a request in flight: who sent it and the id they gave it. The JAT carries the
/// sender, the reply carries the id, so a reply finds its request by this key.
public struct PendingKey: Hashable, Sendable {
    public let sender: JID
    public let id: String
}

/// An IQ request forwarded to a resource and not yet answered.
public struct PendingRequest: Sendable {
    public let key: PendingKey
    /// The address the sender wrote in `to`; the reply goes out from it.
    public let addressed: String
    /// The resourcepart of the target resource holding the request.
    public var resource: String
    /// The translated sender the request went out from.
    public let jat: String
    public let kind: RequestKind
    public let started: Instant
    /// When the current try ends: the request's deadline, or earlier when retries are allowed.
    public var deadline: Instant
    /// When the requester must have an answer, whatever retries happen.
    public let finalDeadline: Instant
    /// The forwarded stanza, kept only for a request that may be retried elsewhere; boxed, so that
    /// a request without one costs a pointer, not an element's worth of fields.
    public var retryCopy: XMLElement? {
        get { retryBox?.element }
        set { retryBox = newValue.map(RetryCopy.init) }
    }
    private var retryBox: RetryCopy?
    /// The resource that held the request before a retry moved it.
    public var triedResource: String?
    fileprivate var serial: UInt64 = 0

    public init(
        key: PendingKey, addressed: String, resource: String, jat: String, kind: RequestKind, started: Instant,
        deadline: Instant, finalDeadline: Instant, retryCopy: XMLElement? = nil
    ) {
        self.key = key
        self.addressed = addressed
        self.resource = resource
        self.jat = jat
        self.kind = kind
        self.started = started
        self.deadline = deadline
        self.finalDeadline = finalDeadline
        self.retryBox = retryCopy.map(RetryCopy.init)
    }
}

/// A forwarded stanza kept for a retry. Immutable once made.
final class RetryCopy: Sendable {
    let element: XMLElement

    init(_ element: XMLElement) { self.element = element }
}

/// The requests in flight on one route, with their deadlines.
///
/// Deadlines sit in a binary min-heap. Entries of requests that ended stay in the heap and are
/// skipped when they reach the top (their serial no longer matches); the heap is rebuilt from the
/// live requests when stale entries outnumber them.
public struct PendingRequests: Sendable {
    private var requests: [PendingKey: PendingRequest] = [:]
    private var heap = DeadlineHeap<(serial: UInt64, key: PendingKey)>()
    private var nextSerial: UInt64 = 0

    public init() {}

    public var count: Int { requests.count }

    public func contains(_ key: PendingKey) -> Bool { requests[key] != nil }

    public subscript(key: PendingKey) -> PendingRequest? { requests[key] }

    /// All requests in flight, in no particular order.
    public var all: Dictionary<PendingKey, PendingRequest>.Values { requests.values }

    /// Records a request (new, or moved to another resource for a retry).
    public mutating func insert(_ request: PendingRequest) {
        var request = request
        nextSerial += 1
        request.serial = nextSerial
        requests[request.key] = request
        heap.push(request.deadline, (nextSerial, request.key))
        if heap.count > 64, heap.count > requests.count * 3 { rebuildHeap() }
    }

    @discardableResult
    public mutating func remove(_ key: PendingKey) -> PendingRequest? {
        let removed = requests.removeValue(forKey: key)
        if requests.isEmpty { heap.removeAll() }
        return removed
    }

    /// Removes and returns the requests whose current try ends at or before `now`.
    public mutating func removeExpired(now: Instant) -> [PendingRequest] {
        var expired: [PendingRequest] = []
        while let top = heap.first, top.deadline <= now {
            heap.removeFirst()
            if let request = requests[top.payload.key], request.serial == top.payload.serial {
                requests[top.payload.key] = nil
                expired.append(request)
            }
        }
        return expired
    }

    /// Removes and returns the requests held by `resource`.
    public mutating func removeAll(heldBy resource: String) -> [PendingRequest] {
        let held = requests.values.filter { $0.resource == resource }
        for request in held { requests[request.key] = nil }
        if requests.isEmpty { heap.removeAll() }
        return held
    }

    /// Removes and returns every request in flight.
    public mutating func removeAll() -> [PendingRequest] {
        let all = Array(requests.values)
        requests.removeAll()
        heap.removeAll()
        return all
    }

    /// The earliest end of a try still in flight.
    public mutating func nextDeadline() -> Instant? {
        while let top = heap.first {
            if let request = requests[top.payload.key], request.serial == top.payload.serial { return top.deadline }
            heap.removeFirst()
        }
        return nil
    }

    private mutating func rebuildHeap() {
        heap = DeadlineHeap(requests.values.map { ($0.deadline, ($0.serial, $0.key)) })
    }
}
