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
    public let resource: String
    /// The translated sender the request went out from.
    public let jat: String
    public let kind: RequestKind
    public let started: Instant
    public let deadline: Instant
    fileprivate let serial: UInt64
}

/// The requests in flight on one route, with their deadlines.
///
/// Every request of a route has the same timeout, so deadlines arrive in insertion order: a FIFO
/// of deadlines replaces a heap. Entries of answered requests stay in the FIFO and are skipped
/// when they reach its head (their serial no longer matches).
public struct PendingRequests: Sendable {
    private var requests: [PendingKey: PendingRequest] = [:]
    private var deadlines: [(key: PendingKey, deadline: Instant, serial: UInt64)] = []
    private var head = 0
    private var nextSerial: UInt64 = 0

    public init() {}

    public var count: Int { requests.count }

    public func contains(_ key: PendingKey) -> Bool { requests[key] != nil }

    public subscript(key: PendingKey) -> PendingRequest? { requests[key] }

    /// All requests in flight, oldest first is not guaranteed.
    public var all: Dictionary<PendingKey, PendingRequest>.Values { requests.values }

    /// Records a forwarded request. The caller has checked that `key` is not in flight.
    public mutating func insert(
        _ key: PendingKey, addressed: String, resource: String, jat: String, kind: RequestKind, now: Instant,
        timeout: Duration
    ) {
        nextSerial += 1
        let deadline = now + timeout
        requests[key] = PendingRequest(
            key: key, addressed: addressed, resource: resource, jat: jat, kind: kind, started: now, deadline: deadline,
            serial: nextSerial
        )
        deadlines.append((key, deadline, nextSerial))
    }

    @discardableResult
    public mutating func remove(_ key: PendingKey) -> PendingRequest? {
        let removed = requests.removeValue(forKey: key)
        if requests.isEmpty { clearDeadlines() }
        return removed
    }

    /// Removes and returns the requests whose deadline is at or before `now`.
    public mutating func removeExpired(now: Instant) -> [PendingRequest] {
        var expired: [PendingRequest] = []
        while head < deadlines.count, deadlines[head].deadline <= now {
            let entry = deadlines[head]
            head += 1
            if let request = requests[entry.key], request.serial == entry.serial {
                requests[entry.key] = nil
                expired.append(request)
            }
        }
        compactDeadlines()
        return expired
    }

    /// Removes and returns the requests held by `resource`.
    public mutating func removeAll(heldBy resource: String) -> [PendingRequest] {
        let held = requests.values.filter { $0.resource == resource }
        for request in held { requests[request.key] = nil }
        if requests.isEmpty { clearDeadlines() }
        return held
    }

    /// Removes and returns every request in flight.
    public mutating func removeAll() -> [PendingRequest] {
        let all = Array(requests.values)
        requests.removeAll()
        clearDeadlines()
        return all
    }

    /// The earliest deadline of a request still in flight.
    public mutating func nextDeadline() -> Instant? {
        while head < deadlines.count {
            let entry = deadlines[head]
            if let request = requests[entry.key], request.serial == entry.serial { return entry.deadline }
            head += 1
        }
        compactDeadlines()
        return nil
    }

    private mutating func clearDeadlines() {
        deadlines.removeAll(keepingCapacity: true)
        head = 0
    }

    private mutating func compactDeadlines() {
        if head == deadlines.count {
            clearDeadlines()
        } else if head > 1024, head * 2 > deadlines.count {
            deadlines.removeFirst(head)
            head = 0
        }
    }
}
