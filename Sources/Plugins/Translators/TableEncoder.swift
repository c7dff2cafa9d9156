import Router

/// `table`: an opaque random token per sender, kept in a bounded table.
///
/// A token reveals nothing about the sender (16 random bytes from OpenSSL). A sender keeps its
/// token while it is active; an entry idle for `idle_expiry` with no request in flight may be
/// dropped, and when the table is full the least recently used idle entry makes room. An entry
/// with requests in flight is never dropped; if every entry is busy, a new sender is refused.
/// Tokens do not survive a restart of the router.
public final class TableEncoder: JATEncoder {
    public let name = "table"
    public let capacity: Int
    public let idleExpiry: Duration

    private struct Entry {
        let sender: JID
        var lastUsed: Instant
        var inFlight: Int
    }

    private var entries: [String: Entry] = [:]
    private var tokens: [JID: String] = [:]
    private var insertionsSinceSweep = 0
    private let clock: () -> Instant

    public init(
        capacity: Int = 100_000, idleExpiry: Duration = .seconds(600), clock: @escaping () -> Instant = Instant.now
    ) {
        self.capacity = max(1, capacity)
        self.idleExpiry = idleExpiry
        self.clock = clock
    }

    public var count: Int { entries.count }

    public func encode(_ sender: JID) throws(JATError) -> String {
        let now = clock()
        if let token = tokens[sender] {
            entries[token]?.lastUsed = now
            return token
        }
        insertionsSinceSweep += 1
        if insertionsSinceSweep >= 1024 { sweep(now: now) }
        if entries.count >= capacity {
            sweep(now: now)
            if entries.count >= capacity, !evictLeastRecentlyUsed() {
                throw JATError("the translation table is full of senders with requests in flight")
            }
        }
        let token: String
        do {
            token = Base64URL.encode(try Crypto.randomBytes(16))
        } catch {
            throw JATError("no random bytes for a token")
        }
        entries[token] = Entry(sender: sender, lastUsed: now, inFlight: 0)
        tokens[sender] = token
        return token
    }

    public func decode(_ resourcepart: String) throws(JATError) -> JID {
        guard var entry = entries[resourcepart] else { throw JATError("unknown or expired token") }
        entry.lastUsed = clock()
        entries[resourcepart] = entry
        return entry.sender
    }

    public func requestStarted(jat: String) {
        entries[jat]?.inFlight += 1
    }

    public func requestEnded(jat: String) {
        guard let entry = entries[jat] else { return }
        entries[jat]?.inFlight = max(0, entry.inFlight - 1)
        entries[jat]?.lastUsed = clock()
    }

    /// Drops entries idle past the expiry with nothing in flight.
    private func sweep(now: Instant) {
        insertionsSinceSweep = 0
        let expired = entries.filter { $0.value.inFlight == 0 && now.since($0.value.lastUsed) >= idleExpiry }
        for (token, entry) in expired {
            entries[token] = nil
            tokens[entry.sender] = nil
        }
    }

    // Limitation: making room in a full table scans it (O(n)); it happens only at capacity.
    private func evictLeastRecentlyUsed() -> Bool {
        guard let oldest = entries.filter({ $0.value.inFlight == 0 }).min(by: { $0.value.lastUsed < $1.value.lastUsed })
        else { return false }
        entries[oldest.key] = nil
        tokens[oldest.value.sender] = nil
        return true
    }
}
