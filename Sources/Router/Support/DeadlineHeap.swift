/// A binary min-heap of payloads ordered by deadline: the earliest comes first. Used for the
/// deadlines of requests in flight and for an event loop's timers.
struct DeadlineHeap<Payload> {
    private var entries: [(deadline: Instant, payload: Payload)] = []

    init() {}

    /// A heap of `entries` in any order.
    init(_ entries: [(deadline: Instant, payload: Payload)]) {
        self.entries = entries.sorted { $0.deadline < $1.deadline }
    }

    var count: Int { entries.count }
    var first: (deadline: Instant, payload: Payload)? { entries.first }

    mutating func push(_ deadline: Instant, _ payload: Payload) {
        entries.append((deadline, payload))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes the earliest entry.
    mutating func removeFirst() {
        let last = entries.removeLast()
        guard !entries.isEmpty else { return }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }

    mutating func removeAll() {
        entries.removeAll(keepingCapacity: true)
    }
}

extension DeadlineHeap: Sendable where Payload: Sendable {}
