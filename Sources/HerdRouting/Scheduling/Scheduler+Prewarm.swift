import HerdBounds
import HerdWire

/// A model to load ahead of demand: an empty generate with `keep_alive` sent
/// to an Ollama node (the driver sends it and reports back with `prewarmFinished`).
package struct Prewarm: Equatable, Sendable {
    package var node: String
    /// The backend's address (`host:port`).
    package var address: String
    /// The model as the backend names it.
    package var model: String
    /// What herd expects the load to take (ms).
    package var expectedLoadMs: Double

    package init(node: String, address: String, model: String, expectedLoadMs: Double) {
        self.node = node
        self.address = address
        self.model = model
        self.expectedLoadMs = expectedLoadMs
    }
}

extension Scheduler {
    /// Pre-warming: a request queued for a hot node whose expected wait is
    /// longer than a load of the same model would take on another node that
    /// has room — free memory without evicting anything, a free slot, not
    /// draining, an Ollama backend — loads it there now, so that the next
    /// requests find it hot. The request itself still goes wherever it is
    /// best (a load is taken for one request only when it wins by
    /// `Scorer.loadMustWin`); the warmed node competes as `loading`, then as
    /// hot. One pre-warm per node:model at a time, and none again for
    /// `prewarmCooldownMilliseconds` after one (whatever its outcome).
    mutating func considerPrewarm(_ best: ScoredCandidate, card: ScoreCard, now: UInt64, into actions: inout [SchedulerAction]) {
        guard settings.prewarm, best.breakdown.wait > 0 else { return }
        for candidate in card.candidates where candidate.node != best.node {
            guard candidate.backend == .ollama, candidate.temperature == .cold || candidate.temperature == .warm,
                  candidate.canStart, !candidate.evicts, !candidate.drains,
                  candidate.breakdown.load < best.breakdown.wait else { continue }
            let slot = SlotKey(candidate.node, candidate.canonicalModel)
            guard loads.mayPrewarm(slot, now: now, cooldown: settings.prewarmCooldownMilliseconds) else { continue }
            loads.prewarmStarted(slot, expectedMs: candidate.breakdown.load, weightBytes: candidate.modelBytes, now: now)
            feed.record(DecisionFeed.Decision(
                sequence: 0, atMilliseconds: now, requestID: 0, model: candidate.model, client: "",
                action: "prewarm", node: candidate.node, servedModel: candidate.model, score: candidate.breakdown.header,
                reason: "queue for \(best.node) \(Int(saturatingRounded: best.breakdown.wait)) ms > load here \(Int(saturatingRounded: candidate.breakdown.load)) ms",
                card: ScoreCard()))
            actions.append(.prewarm(Prewarm(node: candidate.node, address: candidate.address, model: candidate.model,
                                            expectedLoadMs: candidate.breakdown.load)))
            return
        }
    }

    /// A pre-warm ended: `loadMs` is the backend's `load_duration`, when it
    /// answered. A success leaves the model `loading` with nothing left (as
    /// good as hot) until a heartbeat shows it loaded (or, after
    /// `LoadsUnderWay.prewarmTrustMilliseconds`, that it is not: then it is cold again).
    package mutating func prewarmFinished(node: String, model: String, ok: Bool, loadMs: Double?, fleet: [FleetNode], now: UInt64,
                                          into actions: inout [SchedulerAction]) {
        let slot = SlotKey(node, model)
        let bytes = loads.prewarmFinished(slot, ok: ok, now: now)
        guard ok else { return }
        if let loadMs { learning.rates.observeLoad(slot, loadMs: loadMs, modelBytes: bytes) }
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: true)
    }
}
