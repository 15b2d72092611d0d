/// What the scheduler learns: each node:model's concurrency limit
/// (`ConcurrencyLearner`, starting at what its node reports, else the
/// setting) and the rates the scorer reads (`LearnedRates`). One job, a
/// value; the scheduler feeds it results and heartbeats.
struct Learning {
    private(set) var learners: [SlotKey: ConcurrencyLearner] = [:]
    /// What each node says its backend serves at once per model (the learners' prior and ceiling).
    private(set) var reportedParallel: [String: Int] = [:]
    var rates = LearnedRates()
    /// The limit's starting point when the node reports none.
    let initialConcurrency: Int

    init(initialConcurrency: Int) { self.initialConcurrency = initialConcurrency }

    /// The learned limit of `slot`, else where it starts.
    func limit(_ slot: SlotKey) -> Int { learners[slot]?.limit ?? prior(slot.node) }

    /// Where a node:model's learned concurrency starts: what the node reports, else the setting.
    func prior(_ node: String) -> Int { reportedParallel[node] ?? initialConcurrency }

    /// The limit of `slot` is found by first bytes: nothing reported, and its learner (if any) in slow start.
    func inSlowStart(_ slot: SlotKey) -> Bool {
        reportedParallel[slot.node] == nil && (learners[slot]?.slowStart ?? true)
    }

    /// Updates `slot`'s learner (created at the prior on first use; at most `LearnedRates.maxEntries`).
    mutating func learn(_ slot: SlotKey, _ update: (inout ConcurrencyLearner) -> Void) {
        guard learners[slot] != nil || learners.count < LearnedRates.maxEntries else { return }
        var learner = learners[slot] ?? ConcurrencyLearner(prior: prior(slot.node), reported: reportedParallel[slot.node] != nil)
        update(&learner)
        learners[slot] = learner
    }

    /// What a node's heartbeat says its backend serves at once: a change (the
    /// backend restarted with another parallelism) is learned afresh.
    mutating func reported(node: String, parallel: Int?) {
        guard parallel != reportedParallel[node] else { return }
        reportedParallel[node] = parallel
        learners = learners.filter { $0.key.node != node }
    }
}
