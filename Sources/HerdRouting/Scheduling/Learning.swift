/// What the scheduler learns: each node:model's concurrency limit
/// (`ConcurrencyLearner`, starting at what its node reports, else the
/// setting) and the rates the scorer reads (`LearnedRates`). One job, a
/// value; the scheduler feeds it results and heartbeats.
struct Learning {
    private(set) var learners: [SlotKey: ConcurrencyLearner] = [:]
    /// What each node says its backend serves at once per model (the learners' prior and ceiling).
    private(set) var reportedParallel: [String: Int] = [:]
    var rates = LearnedRates()
    /// The knee `herd benchmark` measured per node:model: where its learner
    /// starts, out of slow start (under a reported ceiling).
    private(set) var benchmarked: [SlotKey: Int] = [:]
    /// The limit each node:model had learned when control last stopped (or
    /// last saved it): where its learner starts, out of slow start, unless a
    /// newer benchmark says otherwise.
    private(set) var remembered: [SlotKey: Int] = [:]
    /// The limit's starting point when the node reports none.
    let initialConcurrency: Int

    init(initialConcurrency: Int) { self.initialConcurrency = initialConcurrency }

    /// The learned limit of `slot`, else where it starts.
    func limit(_ slot: SlotKey) -> Int { learners[slot]?.limit ?? prior(slot) }

    /// Where a node:model's learned concurrency starts: its benchmark's knee
    /// (never above what the node reports), else what the node reports, else the setting.
    func prior(_ slot: SlotKey) -> Int {
        let reported = reportedParallel[slot.node]
        if let knee = start(slot) { return min(knee, reported ?? knee) }
        return reported ?? initialConcurrency
    }

    /// Where a learner starts out of slow start: what it learned before a restart, else its benchmark's knee.
    private func start(_ slot: SlotKey) -> Int? { remembered[slot] ?? benchmarked[slot] }

    /// Learned limits to keep across a restart: every learner out of slow start.
    var settled: [(SlotKey, Int)] {
        learners.compactMap { $0.value.slowStart ? nil : ($0.key, $0.value.limit) }
    }

    /// A limit learned before a restart (`BenchmarkPrior.concurrency`'s range):
    /// the node:model's learner starts there, out of slow start.
    mutating func remember(_ slot: SlotKey, limit: Int) {
        guard BenchmarkPrior.concurrency.contains(limit), learners[slot] == nil,
              remembered[slot] != nil || remembered.count < LearnedRates.maxEntries else { return }
        remembered[slot] = limit
    }

    /// The limit of `slot` is found by first bytes: nothing reported or benchmarked, and its learner (if any) in slow start.
    func inSlowStart(_ slot: SlotKey) -> Bool {
        reportedParallel[slot.node] == nil && (learners[slot]?.slowStart ?? (start(slot) == nil))
    }

    /// A benchmark of `prior`'s node:model: its learner starts afresh at the knee, its rates from the figures.
    mutating func benchmarked(_ prior: BenchmarkPrior) {
        let slot = SlotKey(prior.node, prior.model)
        guard benchmarked[slot] != nil || benchmarked.count < LearnedRates.maxEntries else { return }
        benchmarked[slot] = prior.knee
        remembered[slot] = nil
        learners[slot] = nil
        rates.seed(prior)
    }

    /// Updates `slot`'s learner (created at the prior on first use; at most `LearnedRates.maxEntries`).
    mutating func learn(_ slot: SlotKey, _ update: (inout ConcurrencyLearner) -> Void) {
        guard learners[slot] != nil || learners.count < LearnedRates.maxEntries else { return }
        var learner = learners[slot] ?? start(slot).map { ConcurrencyLearner(knee: $0, ceiling: reportedParallel[slot.node]) }
            ?? ConcurrencyLearner(prior: prior(slot), reported: reportedParallel[slot.node] != nil)
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
