/// Counts of values under fixed upper bounds (Prometheus' cumulative
/// histogram, kept per bucket): small, mergeable, and good enough for the
/// dashboard's p50/p95 (linear inside the bucket that holds the rank).
struct Histogram: Equatable, Sendable {
    /// Request durations and time to first token, milliseconds.
    static let latencyBounds: [Double] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000]
    /// herd's own time per request, milliseconds (tens of microseconds up).
    /// Tokens of context a request used (prompt + output), up to the largest contexts models load with.
    static let contextBounds: [Double] = [256, 512, 1_024, 1_536, 2_048, 3_072, 4_096, 6_144, 8_192, 12_288, 16_384, 24_576, 32_768, 49_152, 65_536,
                                          98_304, 131_072, 262_144]
    static let overheadBounds: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1_000]

    let bounds: [Double]
    /// Per bucket (not cumulative); the last one counts values above every bound.
    private(set) var counts: [Int]
    private(set) var sum = 0.0
    private(set) var count = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = [Int](repeating: 0, count: bounds.count + 1)
    }

    mutating func record(_ value: Double) {
        guard value.isFinite else { return }
        let v = max(0, value)
        var i = 0
        while i < bounds.count, v > bounds[i] { i += 1 }
        counts[i] += 1
        sum += v
        count += 1
    }

    mutating func merge(_ other: Histogram) {
        guard other.bounds == bounds else { return }
        for i in counts.indices { counts[i] += other.counts[i] }
        sum += other.sum
        count += other.count
    }

    /// The value under which a share `q` (0…1) of the values fall, estimated;
    /// nil with no values. Above the last bound it answers the last bound.
    func quantile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, (q * Double(count)).rounded(.up))
        var seen = 0.0
        for i in counts.indices {
            let c = Double(counts[i])
            if seen + c >= rank, c > 0 {
                guard i < bounds.count else { return bounds.last }
                let lower = i == 0 ? 0 : bounds[i - 1]
                return lower + (bounds[i] - lower) * ((rank - seen) / c)
            }
            seen += c
        }
        return bounds.last
    }

    /// Cumulative counts per bound (then +Inf), as Prometheus wants them.
    var cumulative: [Int] {
        var total = 0
        return counts.map { total += $0; return total }
    }
}
