import HerdBounds
import HerdRouting
import HerdWire

/// What a set of finished requests came to: counts, tokens, latencies.
/// Mergeable, so that a window of minutes is the sum of its minutes.
struct RequestTally: Equatable, Sendable {
    var requests = 0
    var ok = 0
    var upstreamErrors = 0
    var rejected = 0
    var timeouts = 0
    var clientGone = 0
    /// Requests sent again to another node at least once, and the resends.
    var retried = 0
    var retries = 0
    var fallbacks = 0
    /// Successful generations with no token out.
    var emptyGenerations = 0
    /// Streams that broke after the response had begun (status 200, not ok).
    var incompleteStreams = 0
    /// Requests that waited for the model to load (the backend said > 1 s of load).
    var coldLoads = 0
    var byTicket = 0
    /// Requests whose `num_ctx` differs from the context their model is loaded with there (the backend reloads it).
    var numCtxReloads = 0
    /// Routed by a proxy from its snapshot (control away or slow).
    var local = 0
    var promptTokens = 0
    var completionTokens = 0
    /// Requests that waited in herd's queue, and their wait.
    var queued = 0
    var queueWait = Histogram(bounds: Histogram.latencyBounds)
    var ttft = Histogram(bounds: Histogram.latencyBounds)
    var duration = Histogram(bounds: Histogram.latencyBounds)
    /// herd's own time: the request's time minus the backend's and the queue's.
    var overhead = Histogram(bounds: Histogram.overheadBounds)
    /// The context each successful generation used: its prompt and its output, in tokens.
    var contextUse = Histogram(bounds: Histogram.contextBounds)
    /// Generation speed (tokens over the backend's decode time), summed over requests that report it.
    var decodeTokens = 0
    var decodeMilliseconds = 0.0

    var errors: Int { upstreamErrors + timeouts }
    /// Tokens per second of decoding, when the backend reported its decode time.
    var decodeRate: Double? { decodeMilliseconds > 0 && decodeTokens > 0 ? Double(decodeTokens) * 1000 / decodeMilliseconds : nil }

    mutating func record(_ finished: FinishedRequest) {
        let r = finished.result
        requests += 1
        switch r.outcome {
        case .ok: ok += 1
        case .upstreamError: upstreamErrors += 1
        case .rejected: rejected += 1
        case .timeout: timeouts += 1
        case .clientGone: clientGone += 1
        }
        if r.retries > 0 { retried += 1; retries = retries.addingSaturated(r.retries) }
        if finished.servedByFallback { fallbacks += 1 }
        let generates = finished.request.map { Scheduler.generates(path: $0.path) } ?? true
        if r.outcome == .ok, generates, r.completionTokens == 0 { emptyGenerations += 1 }
        if r.outcome == .ok, generates, r.promptTokens > 0 { contextUse.record(Double(r.promptTokens.addingSaturated(r.completionTokens))) }
        if r.status == 200, r.outcome == .upstreamError || r.outcome == .timeout { incompleteStreams += 1 }
        if let load = r.backendLoadMilliseconds, load > 1_000 { coldLoads += 1 }
        if finished.ticket { byTicket += 1 }
        if let numCtx = finished.request?.numCtx, let decision = finished.decision, !decision.stripNumCtx,
           let chosen = finished.card?.candidates.first(where: { $0.node == r.node }), chosen.hot, chosen.loadedContext > 0,
           numCtx != chosen.loadedContext {
            numCtxReloads += 1
        }
        if r.local { local += 1 }
        promptTokens = promptTokens.addingSaturated(r.promptTokens)
        completionTokens = completionTokens.addingSaturated(r.completionTokens)
        if finished.queuedMilliseconds > 0 { queued += 1; queueWait.record(finished.queuedMilliseconds) }
        if r.outcome == .ok || r.outcome == .clientGone, r.ttftMilliseconds > 0 { ttft.record(r.ttftMilliseconds) }
        if r.outcome != .rejected { duration.record(r.durationMilliseconds) }
        if let own = finished.overheadMilliseconds { overhead.record(own) }
        if r.outcome == .ok, let decode = r.backendDecodeMilliseconds, decode > 0, r.completionTokens > 0 {
            decodeTokens = decodeTokens.addingSaturated(r.completionTokens)
            decodeMilliseconds += decode
        }
    }

    mutating func merge(_ o: RequestTally) {
        requests += o.requests; ok += o.ok; upstreamErrors += o.upstreamErrors; rejected += o.rejected
        timeouts += o.timeouts; clientGone += o.clientGone; retried += o.retried; retries = retries.addingSaturated(o.retries)
        fallbacks += o.fallbacks; emptyGenerations += o.emptyGenerations; incompleteStreams += o.incompleteStreams
        coldLoads += o.coldLoads; byTicket += o.byTicket; local += o.local; numCtxReloads += o.numCtxReloads
        promptTokens = promptTokens.addingSaturated(o.promptTokens); completionTokens = completionTokens.addingSaturated(o.completionTokens); queued += o.queued
        queueWait.merge(o.queueWait); ttft.merge(o.ttft); duration.merge(o.duration); overhead.merge(o.overhead)
        contextUse.merge(o.contextUse)
        decodeTokens = decodeTokens.addingSaturated(o.decodeTokens); decodeMilliseconds += o.decodeMilliseconds
    }
}

/// The last hour of finished requests as per-minute tallies, by node and
/// model, by tag and by client: what the live views and the health checks
/// read. Bounded: 60 minutes, and per minute at most `maxKeys` of each kind
/// (past it, `other`). Loop-thread only; `now` is the loop clock (ms).
final class RequestStats {
    struct Minute {
        var index: UInt64
        var bySlot: [SlotKey: RequestTally] = [:]
        var byTag: [String: RequestTally] = [:]
        var byClient: [String: RequestTally] = [:]
        /// By kind of work (six at most).
        var byWork: [WorkKind: RequestTally] = [:]
    }

    static let minutes = 60
    /// The model key of requests for a model no node has (as `SlotKey` spells it).
    static let otherModel = SlotKey("other", "other").model
    static let maxKeys = 256
    private var ring: [Minute] = []

    /// Counts a finished request under the node that served it (`none` if
    /// none did) and the model it was served as (`other` for a model no node
    /// has: what a client typed is not a key).
    func record(_ finished: FinishedRequest, now: UInt64) {
        let minute = now / 60_000
        if ring.last?.index != minute {
            ring.append(Minute(index: minute))
            if ring.count > Self.minutes { ring.removeFirst(ring.count - Self.minutes) }
        }
        let r = finished.result
        let model = finished.decision?.model ?? (!r.node.isEmpty && !r.model.isEmpty ? r.model : "other")
        var slot = SlotKey(r.node.isEmpty ? "none" : r.node, model)
        let last = ring.count - 1
        if ring[last].bySlot[slot] == nil, ring[last].bySlot.count >= Self.maxKeys { slot = SlotKey("other", "other") }
        ring[last].bySlot[slot, default: RequestTally()].record(finished)
        ring[last].byWork[finished.request.map { WorkKind(path: $0.path) } ?? .chat, default: RequestTally()].record(finished)
        for tag in finished.request?.tags ?? [] {
            let key = ring[last].byTag[tag] != nil || ring[last].byTag.count < Self.maxKeys ? tag : "other"
            ring[last].byTag[key, default: RequestTally()].record(finished)
        }
        if let client = finished.request?.client, !client.isEmpty {
            let key = ring[last].byClient[client] != nil || ring[last].byClient.count < Self.maxKeys ? client : "other"
            ring[last].byClient[key, default: RequestTally()].record(finished)
        }
    }

    /// The minutes that overlap the last `minutes` minutes before `now`.
    private func recent(_ minutes: Int, now: UInt64) -> ArraySlice<Minute> {
        let first = now / 60_000 >= UInt64(clamping: minutes) ? now / 60_000 - UInt64(clamping: minutes) + 1 : 0
        guard let start = ring.firstIndex(where: { $0.index >= first }) else { return [] }
        return ring[start...]
    }

    /// Per node and model, over the last `minutes` minutes.
    func bySlot(minutes: Int, now: UInt64) -> [SlotKey: RequestTally] {
        var out: [SlotKey: RequestTally] = [:]
        for minute in recent(minutes, now: now) {
            for (key, tally) in minute.bySlot { out[key, default: RequestTally()].merge(tally) }
        }
        return out
    }

    /// Per kind of work, over the last `minutes` minutes.
    func byWork(minutes: Int, now: UInt64) -> [WorkKind: RequestTally] {
        var out: [WorkKind: RequestTally] = [:]
        for minute in recent(minutes, now: now) {
            for (key, tally) in minute.byWork { out[key, default: RequestTally()].merge(tally) }
        }
        return out
    }

    /// Everything, over the last `minutes` minutes.
    func total(minutes: Int, now: UInt64) -> RequestTally {
        var out = RequestTally()
        for minute in recent(minutes, now: now) {
            for tally in minute.bySlot.values { out.merge(tally) }
        }
        return out
    }

    /// Per tag (`byClient: false`) or per client, over the last `minutes` minutes.
    func byLabel(clients: Bool, minutes: Int, now: UInt64) -> [String: RequestTally] {
        var out: [String: RequestTally] = [:]
        for minute in recent(minutes, now: now) {
            for (key, tally) in clients ? minute.byClient : minute.byTag { out[key, default: RequestTally()].merge(tally) }
        }
        return out
    }

    /// Minute by minute (oldest first) over the last `minutes`: the total, for sparklines.
    func series(minutes: Int, now: UInt64) -> [(minute: UInt64, tally: RequestTally)] {
        recent(minutes, now: now).map { minute in
            var t = RequestTally()
            for tally in minute.bySlot.values { t.merge(tally) }
            return (minute.index, t)
        }
    }
}
