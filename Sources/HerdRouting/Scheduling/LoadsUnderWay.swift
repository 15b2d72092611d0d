import HerdBounds

/// Models being loaded, as the scheduler knows them: a load a request
/// started (sent to a cold model) or a pre-warm started, until a heartbeat
/// shows the model loaded; and the pre-warms' books (when each node:model
/// was last pre-warmed, those under way, those done but not yet seen
/// loaded). One job: what `loading` means to the scorer. A value; times
/// are the scheduler's milliseconds.
struct LoadsUnderWay {
    /// When each load under way should be done.
    private var until: [SlotKey: UInt64] = [:]
    /// When each node:model was last pre-warmed.
    private var prewarmedAt: [SlotKey: UInt64] = [:]
    /// Pre-warms under way: their weights' size (for load time per GB).
    private var prewarming: [SlotKey: Int] = [:]
    /// Pre-warms done, not yet seen loaded: when each finished.
    private var warmedAt: [SlotKey: UInt64] = [:]
    /// Pre-warms started.
    private(set) var prewarmCount: UInt64 = 0

    /// How long a finished pre-warm counts as loaded without a heartbeat showing it.
    static let prewarmTrustMilliseconds: UInt64 = 10_000

    /// What is left of the load under way on `slot`, if one is.
    func remainingMs(_ slot: SlotKey, now: UInt64) -> Double? {
        guard let until = until[slot] else { return nil }
        return until > now ? Double(until - now) : 0
    }

    func underWay(_ slot: SlotKey) -> Bool { until[slot] != nil }

    /// The models (canonical) being loaded on `node`.
    func models(on node: String) -> [String] {
        until.keys.lazy.filter { $0.node == node }.map(\.model)
    }

    /// A request was sent to a cold model: its load is under way (unless one already is).
    mutating func started(_ slot: SlotKey, expectedMs: Double, now: UInt64) {
        guard until[slot] == nil else { return }
        until[slot] = now.addingSaturated(UInt64(saturating: max(1, expectedMs.rounded())))
    }

    /// A request there ended (the model answered, or failed to load): no load is under way.
    mutating func ended(_ slot: SlotKey) { until[slot] = nil }

    /// A heartbeat shows the model loaded.
    mutating func seenLoaded(_ slot: SlotKey) {
        until[slot] = nil
        warmedAt[slot] = nil
    }

    /// No load under way there and none pre-warmed within `cooldown`.
    func mayPrewarm(_ slot: SlotKey, now: UInt64, cooldown: UInt64) -> Bool {
        until[slot] == nil && (prewarmedAt[slot].map { now >= $0.addingSaturated(cooldown) } ?? true)
    }

    mutating func prewarmStarted(_ slot: SlotKey, expectedMs: Double, weightBytes: Int, now: UInt64) {
        until[slot] = now.addingSaturated(UInt64(saturating: max(1, expectedMs.rounded())))
        prewarmedAt[slot] = now
        prewarming[slot] = weightBytes
        prewarmCount += 1
    }

    /// A pre-warm ended; returns its weights' size. A success leaves the model
    /// `loading` with nothing left (as good as hot) until a heartbeat shows it
    /// loaded or `prewarmTrustMilliseconds` pass (`expireWarmed`).
    mutating func prewarmFinished(_ slot: SlotKey, ok: Bool, now: UInt64) -> Int {
        let bytes = prewarming.removeValue(forKey: slot) ?? 0
        if ok {
            until[slot] = now
            warmedAt[slot] = now
        } else {
            until[slot] = nil
        }
        return bytes
    }

    /// Forgets pre-warms that heartbeats never confirmed.
    mutating func expireWarmed(now: UInt64) {
        guard !warmedAt.isEmpty else { return }
        for (slot, at) in warmedAt where now >= at.addingSaturated(LoadsUnderWay.prewarmTrustMilliseconds) {
            warmedAt[slot] = nil
            if until[slot] == at { until[slot] = nil }
        }
    }
}
