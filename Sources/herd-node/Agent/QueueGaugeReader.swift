import HerdBounds
import HerdWire

/// Reads a backend's own queue gauges from its Prometheus `/metrics` text:
/// how many requests it serves now and how many it holds waiting for a slot.
/// The router learns a backend's real parallelism from these where they
/// exist (a wait it sees there needs no inference from timings). The text
/// is outside input: lines are bounded, values that are not finite counts
/// in 0…`QueueGauges.maxCount` are ignored, label sets (vLLM's per model)
/// are summed with saturation.
enum QueueGaugeReader {
    /// The gauge names of each server, (running, waiting).
    static let families: [(source: String, running: String, waiting: String)] = [
        ("llamacpp", "llamacpp:requests_processing", "llamacpp:requests_deferred"),
        ("vllm", "vllm:num_requests_running", "vllm:num_requests_waiting"),
        ("sglang", "sglang:num_running_reqs", "sglang:num_queue_reqs"),
        ("tgi", "tgi_batch_current_size", "tgi_queue_size"),
    ]
    /// A longer line is skipped (a metric line is short; a label set of megabytes is not one).
    static let maxLine = 4096

    /// The first family whose two gauges both appear, else nil.
    static func parse(_ text: [UInt8]) -> Heartbeat.QueueGauges? {
        var sums = [(running: Int?, waiting: Int?)](repeating: (nil, nil), count: families.count)
        var start = 0
        while start < text.count {
            var end = start
            while end < text.count, text[end] != UInt8(ascii: "\n") { end += 1 }
            defer { start = end + 1 }
            guard end - start <= maxLine, end > start, text[start] != UInt8(ascii: "#") else { continue }
            guard let (name, value) = sample(text[start..<end]) else { continue }
            for (i, family) in families.enumerated() {
                if name.elementsEqual(family.running.utf8) {
                    sums[i].running = (sums[i].running ?? 0).addingClamped(value)
                } else if name.elementsEqual(family.waiting.utf8) {
                    sums[i].waiting = (sums[i].waiting ?? 0).addingClamped(value)
                }
            }
        }
        for (i, family) in families.enumerated() {
            if let running = sums[i].running, let waiting = sums[i].waiting {
                return Heartbeat.QueueGauges(running: running, waiting: waiting, source: family.source)
            }
        }
        return nil
    }

    /// One sample line, `name{labels} value [timestamp]`: its name and its
    /// value as a count (nil: not a sample, or not a count in range).
    static func sample(_ line: ArraySlice<UInt8>) -> (name: ArraySlice<UInt8>, value: Int)? {
        var i = line.startIndex
        while i < line.endIndex, line[i] != UInt8(ascii: "{"), line[i] != UInt8(ascii: " "), line[i] != UInt8(ascii: "\t") { i += 1 }
        let name = line[line.startIndex..<i]
        guard !name.isEmpty, i < line.endIndex else { return nil }
        if line[i] == UInt8(ascii: "{") {
            // Label values may hold '}' inside quotes.
            var quoted = false, escaped = false
            i += 1
            while i < line.endIndex {
                let c = line[i]
                if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { quoted.toggle() } else if c == UInt8(ascii: "}"), !quoted { break }
                i += 1
            }
            guard i < line.endIndex else { return nil }
            i += 1
        }
        while i < line.endIndex, line[i] == UInt8(ascii: " ") || line[i] == UInt8(ascii: "\t") { i += 1 }
        var end = i
        while end < line.endIndex, line[end] != UInt8(ascii: " "), line[end] != UInt8(ascii: "\t"), line[end] != UInt8(ascii: "\r") { end += 1 }
        // A decimal number (Prometheus's NaN and ±Inf are no count; Swift would read "0x10" as hex).
        let number = line[i..<end].allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }
        guard end > i, end - i <= 64, number, let value = Double(String(decoding: line[i..<end], as: UTF8.self)),
              value.isFinite, value >= 0, value <= Double(Heartbeat.QueueGauges.maxCount) else { return nil }
        return (name, Int(saturatingRounded: value))
    }
}

private extension Int {
    func addingClamped(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? Heartbeat.QueueGauges.maxCount : Swift.min(sum, Heartbeat.QueueGauges.maxCount)
    }
}
