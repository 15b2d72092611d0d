import HerdBounds
import HerdRouting
import HerdWire

/// What `/metrics` reads besides its own counters: the fleet and herd's
/// state at the moment of the scrape.
struct MetricsState {
    var nodes: [FleetNode] = []
    var inFlight = 0
    var queueLength = 0
    var proxies = 0
    var numCtx: [String: Int] = [:]
    var prewarms: UInt64 = 0
    var scorings: UInt64 = 0
    var tickets = TicketCounts()
    var ticketsOut = 0
    var traces: (rows: Int, failures: Int, dropped: Int)?
    var learned: [(node: String, model: String, limit: Int)] = []
    var health: [(id: String, severity: String, firing: Bool)] = []
    /// Each proxy's response cache (proxies with `--cache-mb` only).
    var cache: [(proxy: String, stats: CacheStats)] = []
    /// Each live client key's totals since control started (names are the operator's: bounded by `KeyBook.maxKeys`).
    var keys: [(name: String, totals: KeyBook.Totals)] = []
}

/// `GET /metrics` in the Prometheus text format (0.0.4), by the
/// conventions: base units (seconds, bytes), `_total` counters, bounded
/// labels (node ids and model names come from the fleet; anything a client
/// could vary is `other` past `maxSeries` combinations). Loop-thread only.
final class ControlMetrics {
    private struct Key: Hashable {
        let api: String
        let node: String
        let model: String
        let outcome: String
    }

    private var requests: [Key: Int] = [:]
    private var promptTokens: [String: Int] = [:]
    private var completionTokens: [String: Int] = [:]
    private var retries = 0
    private var fallbacks = 0
    private var duration = Histogram(bounds: Histogram.latencyBounds)
    private var ttft = Histogram(bounds: Histogram.latencyBounds)
    private var queueWait = Histogram(bounds: Histogram.latencyBounds)
    private var overhead = Histogram(bounds: Histogram.overheadBounds)

    /// By kind of work (6 kinds × the outcomes: bounded by the enums).
    private var workRequests: [String: Int] = [:]
    private var workUnits: [WorkKind: Double] = [:]

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
        let api = finished.request?.api.rawValue ?? "unknown"
        var key = Key(api: api, node: result.node.isEmpty ? "none" : result.node, model: model, outcome: result.outcome.rawValue)
        if requests[key] == nil, requests.count >= Self.maxSeries {
            key = Key(api: api, node: "other", model: "other", outcome: result.outcome.rawValue)
        }
        requests[key, default: 0] += 1
        let work = finished.request.map { WorkKind(path: $0.path) } ?? .chat
        workRequests[work.rawValue + "\u{0}" + result.outcome.rawValue, default: 0] += 1
        if result.outcome == .ok, let units = finished.request?.workUnits, units > 0, work != .chat { workUnits[work, default: 0] += units }
        if completionTokens[model] == nil, completionTokens.count >= Self.maxSeries { model = "other" }
        if result.completionTokens > 0 || completionTokens[model] != nil { completionTokens[model, default: 0] = completionTokens[model, default: 0].addingSaturated(result.completionTokens) }
        if result.promptTokens > 0 || promptTokens[model] != nil { promptTokens[model, default: 0] = promptTokens[model, default: 0].addingSaturated(result.promptTokens) }
        retries = retries.addingSaturated(result.retries)
        if finished.servedByFallback { fallbacks += 1 }
        if result.outcome != .rejected { duration.record(result.durationMilliseconds) }
        if result.ttftMilliseconds > 0, result.outcome == .ok || result.outcome == .clientGone { ttft.record(result.ttftMilliseconds) }
        if finished.decision != nil, result.outcome != .rejected { queueWait.record(finished.queuedMilliseconds) }
        if let own = finished.overheadMilliseconds { overhead.record(own) }
    }

    func text(_ state: MetricsState) -> String {
        var out = ""
        out.reserveCapacity(16_384)
        func header(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)] = [], _ value: String) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " \(value)\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            header(name, "histogram", help)
            for (bound, count) in zip(h.bounds, h.cumulative) { sample(name + "_bucket", [("le", seconds(bound))], "\(count)") }
            sample(name + "_bucket", [("le", "+Inf")], "\(h.count)")
            sample(name + "_sum", [], seconds(h.sum))
            sample(name + "_count", [], "\(h.count)")
        }

        // Requests.
        header("herd_requests_total", "counter", "Requests that reached an outcome, by client API, node, model (as served) and outcome.")
        for (key, count) in requests.sorted(by: { ($0.key.api, $0.key.node, $0.key.model, $0.key.outcome) < ($1.key.api, $1.key.node, $1.key.model, $1.key.outcome) }) {
            sample("herd_requests_total", [("api", key.api), ("node", key.node), ("model", key.model), ("outcome", key.outcome)], "\(count)")
        }
        header("herd_work_requests_total", "counter",
               "Requests that reached an outcome, by kind of work (chat, embed, rerank, stt, tts, image) and outcome.")
        for (key, count) in workRequests.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
            sample("herd_work_requests_total", [("work", String(parts[0])), ("outcome", String(parts.count > 1 ? parts[1] : ""))], "\(count)")
        }
        header("herd_work_units_total", "counter",
               "Work served, in each kind's unit: stt audio seconds (WAV uploads), tts characters, image megapixel images, embed inputs, rerank documents.")
        for (work, units) in workUnits.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            sample("herd_work_units_total", [("work", work.rawValue), ("unit", work.unit)], String(units))
        }
        header("herd_prompt_tokens_total", "counter", "Prompt tokens read, by model.")
        for (model, count) in promptTokens.sorted(by: { $0.key < $1.key }) { sample("herd_prompt_tokens_total", [("model", model)], "\(count)") }
        header("herd_completion_tokens_total", "counter", "Tokens generated, by model.")
        for (model, count) in completionTokens.sorted(by: { $0.key < $1.key }) { sample("herd_completion_tokens_total", [("model", model)], "\(count)") }
        header("herd_retries_total", "counter", "Times a request was sent again to another node.")
        sample("herd_retries_total", [], "\(retries)")
        header("herd_fallbacks_total", "counter", "Requests served by a fallback model instead of the one asked for.")
        sample("herd_fallbacks_total", [], "\(fallbacks)")
        if !state.cache.isEmpty {
            // Per proxy (each keeps its own cache; a proxy's restart resets its series).
            let series: [(String, String, String, KeyPath<CacheStats, UInt64>)] = [
                ("herd_cache_hits_total", "counter", "Requests answered from a proxy's response cache.", \.hits),
                ("herd_cache_misses_total", "counter", "Cacheable requests the cache did not hold (sent to a node; their answer kept).", \.misses),
                ("herd_cache_stores_total", "counter", "Answers kept in a proxy's response cache.", \.stores),
                ("herd_cache_evictions_total", "counter", "Answers dropped to make room (least recently used first).", \.evictions),
                ("herd_cache_bytes", "gauge", "Bytes a proxy's response cache holds.", \.bytes),
                ("herd_cache_entries", "gauge", "Answers a proxy's response cache holds.", \.entries),
            ]
            for (name, type, help, field) in series {
                header(name, type, help)
                for (proxy, stats) in state.cache { sample(name, [("proxy", proxy)], "\(stats[keyPath: field])") }
            }
        }
        if !state.keys.isEmpty {
            header("herd_key_requests_total", "counter", "Requests made with each client key (since herd-control started), refused ones included.")
            for (name, t) in state.keys { sample("herd_key_requests_total", [("key", name)], "\(t.requests)") }
            header("herd_key_errors_total", "counter", "Requests of each client key that did not end ok.")
            for (name, t) in state.keys { sample("herd_key_errors_total", [("key", name)], "\(t.errors)") }
            header("herd_key_tokens_total", "counter", "Tokens used by each client key: prompt and completion.")
            for (name, t) in state.keys {
                sample("herd_key_tokens_total", [("key", name), ("type", "prompt")], "\(t.promptTokens)")
                sample("herd_key_tokens_total", [("key", name), ("type", "completion")], "\(t.completionTokens)")
            }
            header("herd_key_refused_total", "counter", "Requests refused (429) because their key was over a limit: rpm, tpm or budget.")
            for (name, t) in state.keys {
                for limit in ["rpm", "tpm", "budget"] { sample("herd_key_refused_total", [("key", name), ("limit", limit)], "\(t.refused[limit] ?? 0)") }
            }
        }
        histogram("herd_request_duration_seconds", "Time from the proxy's route request to the end of the response.", duration)
        histogram("herd_time_to_first_token_seconds", "Time from the proxy's route request to the response's first byte.", ttft)
        histogram("herd_queue_wait_seconds", "Time routed requests waited in herd's queue for a free node (0 for most).", queueWait)
        histogram("herd_router_overhead_seconds",
                  "herd's own time per successful request: its duration minus the backend's (from the proxy) and the queue wait.", overhead)

        // Queues, tickets, scheduling.
        header("herd_in_flight", "gauge", "Requests routed and not finished.")
        sample("herd_in_flight", [], "\(state.inFlight)")
        header("herd_queue_length", "gauge", "Requests waiting for a free node.")
        sample("herd_queue_length", [], "\(state.queueLength)")
        header("herd_route_tickets_total", "counter",
               "Routes decided ahead for proxies (route tickets), by what became of them: granted, spent (a request used it), returned unspent (expired), revoked.")
        for (event, n) in [("granted", state.tickets.granted), ("spent", state.tickets.spent), ("returned", state.tickets.returned),
                           ("revoked", state.tickets.revoked)] {
            sample("herd_route_tickets_total", [("event", event)], "\(n)")
        }
        header("herd_route_tickets_out", "gauge", "Route tickets granted and not yet come back.")
        sample("herd_route_tickets_out", [], "\(state.ticketsOut)")
        header("herd_prewarms_total", "counter", "Models loaded ahead of demand on a runner-up node (a queue elsewhere was longer than the load).")
        sample("herd_prewarms_total", [], "\(state.prewarms)")
        header("herd_scorings_total", "counter", "Times the scorer ranked the fleet for a request (on arrival, retry, or re-scored while queued).")
        sample("herd_scorings_total", [], "\(state.scorings)")
        header("herd_num_ctx_total", "counter", "Requests whose num_ctx the loaded context already covered, by what herd did (--num-ctx-policy).")
        for action in ["stripped", "kept", "warned"] { sample("herd_num_ctx_total", [("action", action)], "\(state.numCtx[action] ?? 0)") }
        header("herd_learned_concurrency", "gauge", "Requests a node serves at once for a model, as learned.")
        for l in state.learned { sample("herd_learned_concurrency", [("node", l.node), ("model", l.model)], "\(l.limit)") }

        // The fleet.
        header("herd_proxies", "gauge", "Connected herd-proxy processes.")
        sample("herd_proxies", [], "\(state.proxies)")
        header("herd_nodes", "gauge", "Nodes by status.")
        for status in ["online", "degraded", "offline"] {
            sample("herd_nodes", [("status", status)], "\(state.nodes.filter { $0.status.rawValue == status }.count)")
        }
        let nodes = state.nodes.sorted { $0.id < $1.id }
        header("herd_node_up", "gauge", "1 when the node is online or degraded (heartbeats arrive), 0 when offline.")
        for n in nodes { sample("herd_node_up", [("node", n.id)], n.status == .offline ? "0" : "1") }
        header("herd_node_degraded", "gauge", "1 when the node's heartbeats are late.")
        for n in nodes { sample("herd_node_degraded", [("node", n.id)], n.status == .degraded ? "1" : "0") }
        header("herd_node_memory_total_bytes", "gauge", "A node's memory.")
        for n in nodes { sample("herd_node_memory_total_bytes", [("node", n.id)], "\(n.heartbeat.memoryTotalBytes)") }
        header("herd_node_memory_available_bytes", "gauge", "A node's memory available.")
        for n in nodes { sample("herd_node_memory_available_bytes", [("node", n.id)], "\(n.heartbeat.memoryAvailableBytes)") }
        header("herd_node_cpu_utilization_ratio", "gauge", "A node's CPU use, 0–1.")
        for n in nodes { sample("herd_node_cpu_utilization_ratio", [("node", n.id)], number(n.heartbeat.cpuUtilization)) }
        header("herd_node_temperature_celsius", "gauge", "A node's hottest reported sensor.")
        for n in nodes { if let t = n.heartbeat.telemetry.maxTemperatureCelsius { sample("herd_node_temperature_celsius", [("node", n.id)], number(t)) } }
        header("herd_node_throttled", "gauge", "1 when a node's CPU or a GPU is throttled or its thermal state is serious or worse.")
        for n in nodes {
            let t = n.heartbeat.telemetry
            sample("herd_node_throttled", [("node", n.id)], t.cpuThrottled || t.thermal >= .serious || t.gpus.contains { $0.throttled } ? "1" : "0")
        }
        header("herd_gpu_memory_used_bytes", "gauge", "VRAM in use, per GPU.")
        for n in nodes { for (i, g) in n.heartbeat.telemetry.gpus.enumerated() { sample("herd_gpu_memory_used_bytes", [("node", n.id), ("gpu", "\(i)")], "\(g.memoryUsedBytes)") } }
        header("herd_gpu_memory_total_bytes", "gauge", "VRAM, per GPU.")
        for n in nodes { for (i, g) in n.heartbeat.telemetry.gpus.enumerated() { sample("herd_gpu_memory_total_bytes", [("node", n.id), ("gpu", "\(i)")], "\(g.memoryTotalBytes)") } }
        header("herd_gpu_temperature_celsius", "gauge", "GPU temperature, per GPU.")
        for n in nodes {
            for (i, g) in n.heartbeat.telemetry.gpus.enumerated() {
                if let t = g.temperatureCelsius { sample("herd_gpu_temperature_celsius", [("node", n.id), ("gpu", "\(i)")], number(t)) }
            }
        }
        header("herd_model_loaded", "gauge", "1 for each model loaded on a node (its backend says so).")
        for n in nodes where n.status != .offline {
            for name in Set(n.heartbeat.backends.flatMap { $0.loaded.map(\.name) }).sorted() { sample("herd_model_loaded", [("node", n.id), ("model", name)], "1") }
        }
        header("herd_model_vram_bytes", "gauge", "VRAM a loaded model holds on a node.")
        for n in nodes where n.status != .offline {
            for b in n.heartbeat.backends { for m in b.loaded { sample("herd_model_vram_bytes", [("node", n.id), ("model", m.name)], "\(m.vramBytes)") } }
        }

        // Health and herd's own state.
        header("herd_health_check_firing", "gauge", "1 while a health check fires (GET /api/v1/health says why and what to do).")
        for h in state.health { sample("herd_health_check_firing", [("check", h.id), ("severity", h.severity)], h.firing ? "1" : "0") }
        if let traces = state.traces {
            header("herd_trace_rows_total", "counter", "Statements written to <data-dir>/herd.db: one per traced request, plus the hourly retention prune.")
            sample("herd_trace_rows_total", [], "\(traces.rows)")
            header("herd_trace_write_failures_total", "counter", "Trace write batches that failed (a full disk, an I/O error); their rows are lost.")
            sample("herd_trace_write_failures_total", [], "\(traces.failures)")
            header("herd_trace_rows_dropped_total", "counter", "Trace rows dropped because the writer fell behind.")
            sample("herd_trace_rows_dropped_total", [], "\(traces.dropped)")
        }
        return out
    }

    private func seconds(_ ms: Double) -> String { number(ms / 1000) }

    /// A sample value: integers without a fraction, others shortest-round-trip.
    private func number(_ x: Double) -> String {
        guard x.isFinite else { return x.isNaN ? "NaN" : x > 0 ? "+Inf" : "-Inf" }
        if x == x.rounded(), abs(x) < 1e15 { return String(Int(saturating: x)) }
        return "\(x)"
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
