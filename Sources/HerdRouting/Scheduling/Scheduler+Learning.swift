import HerdWire

extension Scheduler {
    /// What a finished request teaches: the concurrency learner of its
    /// node:model (backend time to first byte, busy answers), its rates
    /// (prefill, decode at its batch, load, service time), failures.
    mutating func learn(from result: RouteResult, _ entry: Entry, now: UInt64) {
        guard let slot = entry.slot, let decision = entry.decision else { return }
        // The backend's own time: herd's queue wait and its control hop are
        // not the backend's (counting them taught the learner that a busy
        // control plane was a slow backend, and it closed the slots).
        let queued = Double(decision.queuedMilliseconds)
        let ttft = result.upstreamTtftMilliseconds ?? max(0, result.ttftMilliseconds - queued)
        let duration = result.upstreamMilliseconds ?? max(0, result.durationMilliseconds - queued)
        let busy = result.status == 503 || result.status == 429
        // The backend's own figures, where believable; else herd's measurement stands.
        let timings = BackendTimings(prompt: result.backendPromptMilliseconds, decode: result.backendDecodeMilliseconds,
                                     load: result.backendLoadMilliseconds, total: result.backendTotalMilliseconds,
                                     promptTokens: result.promptTokens, completionTokens: result.completionTokens, durationMs: duration)
        var waited = false
        if entry.retries == 0, !entry.startCounted {
            let sample = ConcurrencyLearner.Sample(
                concurrency: entry.concurrency, ok: result.outcome == .ok, busy: busy, streamed: entry.request.stream,
                ttftMs: max(0, ttft - (timings.loadMs ?? 0)), durationMs: max(0, duration - (timings.loadMs ?? 0)),
                // A stream that said nothing of its usage: its prompt as herd estimated it (its output, counted by the proxy).
                promptTokens: result.promptTokens > 0 ? result.promptTokens : entry.request.estimatedTokens,
                completionTokens: result.completionTokens, queuedInsideMs: timings.queuedMs,
                // Its send as the backend met it: a ticket is granted before it is spent.
                sentAt: Double(now) - duration, endedAt: Double(now),
                overtook: occupancy.sentBefore(entry.sentAt, on: slot), othersOnNode: othersBeside(entry, on: slot),
                limitAtSend: entry.limitAtSend, alongsideAtStart: entry.alongsideAtStart)
            learn(slot) { waited = $0.observe(sample) }
        }
        switch result.outcome {
        case .ok:
            var observation = LearnedRates.Observation(
                slot: slot, ok: true, generates: Scheduler.generates(path: entry.request.path), batch: entry.nodeBatch,
                promptTokens: result.promptTokens, completionTokens: result.completionTokens, ttftMs: ttft, durationMs: duration,
                streamed: entry.request.stream, backendPromptMs: timings.promptMs,
                backendDecodeMs: timings.decodeMs, backendLoadMs: timings.loadMs,
                modelBytes: entry.chosen?.temperature == .hot ? 0 : weights(of: entry), weightBytes: weights(of: entry))
            observation.waitedInside = waited
            // The batch its decode shared: the node's mean in flight over its time (requests sent after it slowed it too).
            if now > entry.sentAt {
                let mean = (occupancy.area(node: slot.node, now: now) - entry.nodeAreaAtSend) / Double(now - entry.sentAt)
                if mean.isFinite, mean >= 1 { observation.meanBatch = mean }
            }
            if WorkKind(path: entry.request.path) != .chat { observation.workUnits = entry.request.workUnits }
            learning.rates.observe(observation)
            loads.ended(slot)
        case .upstreamError, .timeout:
            if !busy { learning.rates.failed(node: slot.node, at: now) }
            loads.ended(slot)
        case .clientGone, .rejected:
            break
        }
    }

    /// The chosen model's weights, when its card knew them (for load time per GB).
    private func weights(of entry: Entry) -> Int {
        entry.chosen?.modelBytes ?? 0
    }

    /// Other models' requests that ran on `slot`'s node beside `entry`: those
    /// in flight at its send and those sent before its end. Runners of
    /// different models may take turns rather than batch, so one that joined
    /// after its send can slow it as much as a wait (measured: a model's limit
    /// cut to half its slots on a machine whose runners take turns).
    func othersBeside(_ entry: Entry, on slot: SlotKey) -> Int {
        let atSend = max(0, entry.nodeBatch - entry.concurrency)
        let since = occupancy.otherModelSends(slot) &- entry.otherSendsAtSend
        return atSend.addingSaturated(Int(clamping: min(since, 1 << 20)))
    }

    /// Updates `slot`'s learner (created at the prior on first use).
    mutating func learn(_ slot: SlotKey, _ update: (inout ConcurrencyLearner) -> Void) {
        guard settings.maxConcurrencyPerModel == nil else { return }
        learning.learn(slot, update)
    }

    /// A node's heartbeat with its backends' queue gauges: each gauge goes to
    /// the learner of the one model herd has requests on in that backend (a
    /// backend serving several at once cannot say whose requests wait). A
    /// limit that grew lets the queue move.
    package mutating func gauges(node: String, backends: [Heartbeat.Backend], fleet: [FleetNode], now: UInt64,
                                 into actions: inout [SchedulerAction]) {
        guard settings.maxConcurrencyPerModel == nil else { return }
        var grew = false
        for backend in backends {
            guard let queue = backend.queue else { continue }
            var busy: [SlotKey] = []
            for model in backend.models.prefix(4096) {
                let slot = SlotKey(node, ModelName.canonical(model.name))
                if occupancy.inFlight(slot) > 0, !busy.contains(slot) { busy.append(slot) }
                if busy.count > 1 { break }
            }
            guard busy.count == 1, let slot = busy.first else { continue }
            let before = learning.limit(slot)
            let inFlight = occupancy.inFlight(slot)
            learn(slot) { $0.gauged(running: queue.running, waiting: queue.waiting, inFlight: inFlight) }
            if learning.limit(slot) > before { grew = true }
        }
        if grew { dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: true) }
    }

    /// What `/api/ps` shows: KV-cache size per context token of each loaded
    /// model, and loads that finished (the model is hot now).
    mutating func observe(fleet: [FleetNode]) {
        for node in fleet {
            learning.reported(node: node.id, parallel: node.heartbeat.backends.lazy.compactMap(\.parallel).first)
            for backend in node.heartbeat.backends {
                for loaded in backend.loaded {
                    let canonical = ModelName.canonical(loaded.name)
                    loads.seenLoaded(SlotKey(node.id, canonical))
                    guard let weights = backend.models.first(where: { ModelName.same($0.name, loaded.name) })?.sizeBytes else { continue }
                    learning.rates.observeLoaded(model: canonical, loadedBytes: loaded.sizeBytes, weightBytes: weights, contextLength: loaded.contextLength)
                }
            }
        }
    }
}

/// Where conversations (sessions) and prompt prefixes (system prompt +
/// tools) were last served: that node's KV cache holds them. Bounded: the
/// oldest are forgotten first.
struct AffinityMemory {
    let capacity: Int
    private var sessions: [ContentHash: SlotKey] = [:]
    private var prefixes: [ContentHash: SlotKey] = [:]
    private var order: [(ContentHash, Bool)] = []

    init(capacity: Int) { self.capacity = capacity }

    mutating func remember(session: ContentHash?, prefix: ContentHash?, slot: SlotKey) {
        if let session {
            if sessions.updateValue(slot, forKey: session) == nil { order.append((session, true)) }
        }
        if let prefix {
            if prefixes.updateValue(slot, forKey: prefix) == nil { order.append((prefix, false)) }
        }
        if order.count > capacity * 2 {
            let drop = order.count - capacity
            for (key, isSession) in order.prefix(drop) {
                if isSession { sessions[key] = nil } else { prefixes[key] = nil }
            }
            order.removeFirst(drop)
        }
    }

    func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity? {
        if let session, let slot = sessions[session], slot.node == node, slot.model == model { return .session }
        if let prefix, let slot = prefixes[prefix], slot.node == node, slot.model == model { return .prefix }
        return nil
    }
}
