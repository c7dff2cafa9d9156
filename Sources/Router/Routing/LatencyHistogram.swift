/// Reply latencies counted in fixed buckets (1-2-5 steps from 100 µs to 60 s), enough for
/// percentiles within a bucket's width and for a Prometheus histogram. Constant memory.
public struct LatencyHistogram: Sendable, Equatable {
    /// Upper bounds of the buckets, in seconds; a last, unbounded bucket follows.
    public static let bounds: [Double] = [
        0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
        1, 2, 5, 10, 20, 30, 60,
    ]

    /// Count per bucket; `counts[bounds.count]` is the unbounded one.
    public private(set) var counts = [Int](repeating: 0, count: LatencyHistogram.bounds.count + 1)
    public private(set) var total = 0
    public private(set) var sum: Double = 0

    public init() {}

    public mutating func record(_ latency: Duration) {
        let seconds = latency.seconds
        var bucket = 0
        while bucket < Self.bounds.count, seconds > Self.bounds[bucket] { bucket += 1 }
        counts[bucket] += 1
        total += 1
        sum += seconds
    }

    /// The latency below which `fraction` of the samples fall, interpolated inside its bucket;
    /// nil without samples.
    public func quantile(_ fraction: Double) -> Double? {
        guard total > 0 else { return nil }
        let rank = fraction * Double(total)
        var seen = 0
        for (bucket, count) in counts.enumerated() where count > 0 {
            if Double(seen + count) >= rank {
                let lower = bucket == 0 ? 0 : Self.bounds[bucket - 1]
                let upper = bucket < Self.bounds.count ? Self.bounds[bucket] : lower * 2
                let within = (rank - Double(seen)) / Double(count)
                return lower + (upper - lower) * min(1, max(0, within))
            }
            seen += count
        }
        return Self.bounds.last
    }
}
