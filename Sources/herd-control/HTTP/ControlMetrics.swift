import HerdRouting
import HerdWire

/// Counters behind `GET /metrics` (Prometheus text format 0.0.4).
/// Loop-thread only.
final class ControlMetrics {
    private struct Key: Hashable {
        let node: String
        let model: String
        let outcome: String
    }

    private var requests: [Key: Int] = [:]
    private var completionTokens: [String: Int] = [:]
    private var retries = 0
    /// Request durations in milliseconds, bucketed.
    private static let bounds: [Double] = [5, 25, 100, 250, 1_000, 2_500, 10_000, 30_000, 120_000]
    private var buckets = [Int](repeating: 0, count: ControlMetrics.bounds.count)
    private var durationSum = 0.0
    private var durationCount = 0

    /// Most label combinations kept per metric; past it, new ones count as `other`.
    static let maxSeries = 1_024

    /// Counts a finished request. Labels name only what the fleet has (nodes,
    /// the models they serve, as routing chose them): a model a client asked
    /// for and no node has is labelled `other`, and so is anything past
    /// `maxSeries` combinations, so clients cannot grow the label set. A
    /// request no node took has node `none`.
    func record(_ finished: FinishedRequest) {
        let result = finished.result
        var model = finished.decision?.model ?? (result.local && !result.node.isEmpty ? result.model : "other")
        var key = Key(node: result.node.isEmpty ? "none" : result.node, model: model, outcome: result.outcome.rawValue)
        if requests[key] == nil, requests.count >= Self.maxSeries {
            key = Key(node: "other", model: "other", outcome: result.outcome.rawValue)
        }
        requests[key, default: 0] += 1
        if completionTokens[model] == nil, completionTokens.count >= Self.maxSeries { model = "other" }
        if result.completionTokens > 0 || completionTokens[model] != nil { completionTokens[model, default: 0] += result.completionTokens }
        retries += result.retries
        for (i, bound) in ControlMetrics.bounds.enumerated() where result.durationMilliseconds <= bound { buckets[i] += 1 }
        durationSum += result.durationMilliseconds
        durationCount += 1
    }

    func text(nodes: [(String, String)], inFlight: Int, queueLength: Int, proxies: Int, numCtx: [String: Int] = [:], prewarms: UInt64 = 0,
              scorings: UInt64 = 0, tickets: TicketCounts = TicketCounts(), traces: (rows: Int, failures: Int, dropped: Int)? = nil) -> String {
        var out = ""
        out += "# HELP herd_route_tickets_total Routes decided ahead for proxies (route tickets), by what became of them: granted, spent (a request used it), returned unspent, revoked.\n"
        out += "# TYPE herd_route_tickets_total counter\n"
        for (event, n) in [("granted", tickets.granted), ("spent", tickets.spent), ("returned", tickets.returned), ("revoked", tickets.revoked)] {
            out += "herd_route_tickets_total{event=\"\(event)\"} \(n)\n"
        }
        if let traces {
            out += "# HELP herd_trace_rows_total Statements written to <data-dir>/herd.db: one per traced request, plus the hourly retention prune.\n"
            out += "# TYPE herd_trace_rows_total counter\nherd_trace_rows_total \(traces.rows)\n"
            out += "# HELP herd_trace_write_failures_total Trace write batches that failed (a full disk, an I/O error); their rows are lost.\n"
            out += "# TYPE herd_trace_write_failures_total counter\nherd_trace_write_failures_total \(traces.failures)\n"
            out += "# HELP herd_trace_rows_dropped_total Trace rows dropped because the writer fell behind.\n"
            out += "# TYPE herd_trace_rows_dropped_total counter\nherd_trace_rows_dropped_total \(traces.dropped)\n"
        }
        out += "# HELP herd_prewarms_total Models loaded ahead of demand on a runner-up node (a queue elsewhere was longer than the load).\n"
        out += "# TYPE herd_prewarms_total counter\nherd_prewarms_total \(prewarms)\n"
        out += "# HELP herd_scorings_total Times the scorer ranked the fleet for a request (on arrival, retry, or re-scored while queued).\n"
        out += "# TYPE herd_scorings_total counter\nherd_scorings_total \(scorings)\n"
        out += "# HELP herd_num_ctx_total Requests whose num_ctx the loaded context already covered, by what herd did (--num-ctx-policy).\n"
        out += "# TYPE herd_num_ctx_total counter\n"
        for action in ["stripped", "kept", "warned"] { out += "herd_num_ctx_total{action=\"\(action)\"} \(numCtx[action] ?? 0)\n" }
        out += "# HELP herd_requests_total Requests that reached an outcome.\n# TYPE herd_requests_total counter\n"
        for (key, count) in requests.sorted(by: { ($0.key.node, $0.key.model, $0.key.outcome) < ($1.key.node, $1.key.model, $1.key.outcome) }) {
            out += "herd_requests_total{node=\"\(escape(key.node))\",model=\"\(escape(key.model))\",outcome=\"\(key.outcome)\"} \(count)\n"
        }
        out += "# HELP herd_completion_tokens_total Tokens generated, by model.\n# TYPE herd_completion_tokens_total counter\n"
        for (model, count) in completionTokens.sorted(by: { $0.key < $1.key }) {
            out += "herd_completion_tokens_total{model=\"\(escape(model))\"} \(count)\n"
        }
        out += "# HELP herd_retries_total Requests sent again to another node.\n# TYPE herd_retries_total counter\nherd_retries_total \(retries)\n"
        // Base units (Prometheus conventions): seconds.
        out += "# HELP herd_request_duration_seconds Time from the proxy's route request to the end of the response.\n"
        out += "# TYPE herd_request_duration_seconds histogram\n"
        for (i, bound) in ControlMetrics.bounds.enumerated() {
            out += "herd_request_duration_seconds_bucket{le=\"\(bound / 1000)\"} \(buckets[i])\n"
        }
        out += "herd_request_duration_seconds_bucket{le=\"+Inf\"} \(durationCount)\n"
        out += "herd_request_duration_seconds_sum \(durationSum / 1000)\nherd_request_duration_seconds_count \(durationCount)\n"
        out += "# HELP herd_in_flight Requests routed and not finished.\n# TYPE herd_in_flight gauge\nherd_in_flight \(inFlight)\n"
        out += "# HELP herd_queue_length Requests waiting for a free node.\n# TYPE herd_queue_length gauge\nherd_queue_length \(queueLength)\n"
        out += "# HELP herd_proxies Connected herd-proxy processes.\n# TYPE herd_proxies gauge\nherd_proxies \(proxies)\n"
        out += "# HELP herd_nodes Nodes by status.\n# TYPE herd_nodes gauge\n"
        for status in ["online", "degraded", "offline"] {
            out += "herd_nodes{status=\"\(status)\"} \(nodes.filter { $0.1 == status }.count)\n"
        }
        return out
    }

    private func escape(_ value: String) -> String {
        value.replacingOccurrences("\\", "\\\\").replacingOccurrences("\"", "\\\"").replacingOccurrences("\n", "\\n")
    }
}

extension String {
    /// Every occurrence of `target` replaced (no Foundation).
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard contains(target) else { return self }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
