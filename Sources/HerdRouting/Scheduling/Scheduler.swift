import HerdWire

/// One connected proxy, as the scheduler knows it (the driver maps it to a
/// connection).
package struct ProxyKey: Hashable, Sendable {
    package let raw: Int
    package init(raw: Int) { self.raw = raw }
}

/// What the driver (`ControlServer`) must do after a scheduler event.
package enum SchedulerAction: Equatable {
    /// Send ROUTE_OK to `proxy`.
    case routed(ProxyKey, RouteAnswer)
    /// Send ROUTE_ERROR to `proxy`.
    case refused(ProxyKey, RouteRefusal)
    /// A request ended (its RESULT came): trace it, log it, count it.
    /// `request` and `decision` are nil when control never saw the request
    /// (routed locally while control was away). For requests control routed,
    /// the result's retries are control's own count.
    case finished(RouteResult, request: RouteRequest?, decision: RouteAnswer?)
}

/// Routing decisions over time, as a value: applies `RoutePolicy`, counts the
/// requests in flight per node:model against the concurrency limit, holds
/// requests that find every node busy in a FIFO queue until a slot frees or
/// their queue deadline passes, and handles retries, results and
/// cancellations. Events in (with the fleet and the time), actions out; the
/// driver (`ControlServer`) sends the answers and arms one timer at
/// `nextDeadline`. No I/O and no clock of its own: every path is tested in
/// virtual time.
///
/// The retry budget lives here while control routes: a RETRY beyond
/// `maxRetries` is refused `retries_exhausted`, and each ROUTE_OK says how many
/// retries came before it.
package struct Scheduler {
    package struct Settings: Sendable {
        /// Requests in flight per node and model, when set (`--max-concurrency`);
        /// else each node:model's limit is learned (`ConcurrencyLearner`):
        /// the queue lives here, where a request can still go to another node,
        /// not inside the backend.
        package var maxConcurrencyPerModel: Int?
        /// The learned limit's starting point when the node reports none.
        package var initialConcurrency = 2
        /// How long a request may wait for a slot before a 503.
        package var queueTimeoutMilliseconds: UInt64 = 30_000
        /// Requests waiting at most; more are answered 503 at once.
        package var maxQueueLength = 2048
        /// Other nodes tried after a failure before giving up (502).
        package var maxRetries = 2

        package init() {}
    }

    /// A request of one proxy.
    struct RequestKey: Hashable {
        let proxy: ProxyKey
        let id: UInt64
    }

    /// A node and a model (canonical name): the unit of concurrency.
    struct SlotKey: Hashable {
        let node: String
        let model: String

        init(_ node: String, _ model: String) {
            self.node = node
            self.model = ModelName.canonical(model)
        }
    }

    /// One request control knows about (queued or in flight).
    private struct Entry {
        let request: RouteRequest
        let arrivedAt: UInt64
        var excluded: Set<String> = []
        var slot: SlotKey?
        var retries = 0
        /// While queued: when the wait runs out.
        var queueDeadline: UInt64?
        /// The last routing answer (for the trace).
        var decision: RouteAnswer?
        /// Requests in flight on its node:model when it was sent there, itself included.
        var concurrency = 0
    }

    package let settings: Settings
    private var entries: [RequestKey: Entry] = [:]
    private var waiting: [RequestKey] = []
    private var slots: [SlotKey: Int] = [:]
    /// When each node:model was last given a request: equal candidates take turns.
    private var lastRouted: [SlotKey: UInt64] = [:]
    /// Each node:model's learned concurrency.
    private var learners: [SlotKey: ConcurrencyLearner] = [:]
    private var routeCounter: UInt64 = 0
    /// Requests refused by control, kept until the proxy's RESULT names them.
    private var recentlyRefused: [RequestKey: Entry] = [:]

    package init(settings: Settings = Settings()) {
        self.settings = settings
    }

    // MARK: Reading

    package var queueLength: Int { waiting.count }
    package var inFlightCount: Int { slots.values.reduce(0, +) }

    /// Requests in flight on `node` for `model`.
    package func inFlight(node: String, model: String) -> Int { slots[SlotKey(node, model)] ?? 0 }

    /// How many requests `node` may serve of `model` at once: the override,
    /// else what was learned.
    package func limit(node: String, model: String) -> Int {
        settings.maxConcurrencyPerModel ?? learners[SlotKey(node, model)]?.limit ?? settings.initialConcurrency
    }

    /// The learned limits, per node and model (for the fleet API).
    package var learnedLimits: [(node: String, model: String, limit: Int)] {
        learners.map { ($0.key.node, $0.key.model, $0.value.limit) }.sorted { ($0.node, $0.model) < ($1.node, $1.model) }
    }

    /// Requests in flight on `node`, all models.
    package func inFlight(node: String) -> Int {
        slots.filter { $0.key.node == node }.values.reduce(0, +)
    }

    /// The earliest queue deadline: the driver's timer fires `expire` then.
    package var nextDeadline: UInt64? {
        var earliest: UInt64?
        for key in waiting {
            guard let deadline = entries[key]?.queueDeadline else { continue }
            if earliest == nil || deadline < earliest! { earliest = deadline }
        }
        return earliest
    }

    // MARK: Events

    /// A ROUTE: decide now, or queue.
    package mutating func route(_ request: RouteRequest, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                        into actions: inout [SchedulerAction]) {
        decide(RequestKey(proxy: proxy, id: request.id), Entry(request: request, arrivedAt: now), fleet: fleet, now: now, into: &actions)
    }

    /// A RETRY: the node failed before any byte reached the client; try another
    /// (the node excluded), within the retry budget.
    package mutating func retry(_ retry: RouteRetry, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                        into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: retry.id)
        guard var entry = entries.removeValue(forKey: key) else { return }
        if let slot = entry.slot, let status = retry.upstreamStatus, status == 503 || status == 429 {
            learn(slot) { $0.completed(ttft: 0, concurrency: entry.concurrency, ok: false, busy: true) }
        }
        release(&entry)
        entry.excluded.insert(retry.node)
        entry.retries += 1
        if entry.retries > settings.maxRetries {
            refuse(key, entry, RouteRefusal(id: retry.id, code: .retriesExhausted,
                                            message: "every node tried failed (last: \(retry.node): \(retry.reason))"), into: &actions)
            return
        }
        decide(key, entry, fleet: fleet, now: now, into: &actions)
    }

    /// A RESULT: the request ended; its slot frees and the queue moves.
    package mutating func result(_ result: RouteResult, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                         into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: result.id)
        if var entry = entries.removeValue(forKey: key) ?? recentlyRefused.removeValue(forKey: key) {
            if let slot = entry.slot, let decision = entry.decision, entry.retries == 0 {
                // The backend's own time to first byte: herd's queue wait is not the backend's.
                let ttft = result.ttftMilliseconds - Double(decision.queuedMilliseconds)
                learn(slot) { $0.completed(ttft: ttft, concurrency: entry.concurrency, ok: result.outcome == .ok,
                                           busy: result.status == 503 || result.status == 429) }
            }
            release(&entry)
            var result = result
            result.retries = entry.retries
            actions.append(.finished(result, request: entry.request, decision: entry.decision))
        } else {
            actions.append(.finished(result, request: nil, decision: nil))
        }
        dispatchWaiting(fleet: fleet, now: now, into: &actions)
    }

    /// A CANCEL: the client left while routing or queued (its RESULT follows).
    package mutating func cancel(id: UInt64, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: id)
        guard var entry = entries.removeValue(forKey: key) else { return }
        release(&entry)
        waiting.removeAll { $0 == key }
        recentlyRefused[key] = entry
        trimRecentlyRefused()
        dispatchWaiting(fleet: fleet, now: now, into: &actions)
    }

    /// A proxy went away: its requests free their slots and leave the queue.
    package mutating func proxyGone(_ proxy: ProxyKey, fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        for key in entries.keys where key.proxy == proxy {
            guard var entry = entries.removeValue(forKey: key) else { continue }
            release(&entry)
        }
        waiting.removeAll { $0.proxy == proxy }
        recentlyRefused = recentlyRefused.filter { $0.key.proxy != proxy }
        dispatchWaiting(fleet: fleet, now: now, into: &actions)
    }

    /// The fleet changed (a node came, went or loaded a model): retry the queue.
    package mutating func fleetChanged(fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        dispatchWaiting(fleet: fleet, now: now, into: &actions)
    }

    /// Time passed: queued requests whose deadline is `now` or earlier are refused.
    package mutating func expire(now: UInt64, into actions: inout [SchedulerAction]) {
        let expired = waiting.filter { key in entries[key]?.queueDeadline.map { $0 <= now } ?? false }
        guard !expired.isEmpty else { return }
        waiting.removeAll { expired.contains($0) }
        for key in expired {
            guard let entry = entries.removeValue(forKey: key) else { continue }
            refuse(key, entry, RouteRefusal(
                id: entry.request.id, code: .queueTimeout,
                message: "every node that has '\(entry.request.model)' stayed busy for \(settings.queueTimeoutMilliseconds / 1000) s",
                retryAfter: 5), into: &actions)
        }
    }

    // MARK: Deciding

    /// Decides for `entry` (held here, not in `entries`): routes it or queues
    /// it (then it is stored), or refuses it (then it is remembered until its
    /// RESULT). Entries move through here, never copied.
    private mutating func decide(_ key: RequestKey, _ entry: consuming Entry, fleet: [FleetNode], now: UInt64,
                                 into actions: inout [SchedulerAction]) {
        var entry = entry
        var models = [entry.request.model]
        for fallback in entry.request.fallbacks where !models.contains(where: { ModelName.same($0, fallback) }) { models.append(fallback) }
        let slots = self.slots
        let lastRouted = self.lastRouted
        let scheduler = self
        let decision = RoutePolicy.decide(
            api: entry.request.api, models: models, nodes: fleet, excluded: entry.excluded,
            inFlight: { node, model in slots[SlotKey(node, model)] ?? 0 },
            lastRouted: { node, model in lastRouted[SlotKey(node, model)] ?? 0 },
            limit: { node, model in scheduler.limit(node: node, model: model) })
        switch decision {
        case let .route(candidate):
            let slot = SlotKey(candidate.node, candidate.model)
            self.slots[slot, default: 0] += 1
            entry.concurrency = self.slots[slot] ?? 1
            routeCounter += 1
            self.lastRouted[slot] = routeCounter
            let answer = RouteAnswer(
                id: entry.request.id, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                model: candidate.model, queuedMilliseconds: Int(now - min(now, entry.arrivedAt)), reason: candidate.reason,
                retries: entry.retries)
            entry.slot = slot
            entry.queueDeadline = nil
            entry.decision = answer
            entries[key] = entry
            actions.append(.routed(key.proxy, answer))
        case .queue:
            enqueue(key, entry, into: &actions)
        case let .notFound(known):
            let names = models.map { "'\($0)'" }.joined(separator: ", ")
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .modelNotFound, message: "model \(names) not found in the fleet",
                                            models: known), into: &actions)
        case .noNode:
            let message = entry.excluded.isEmpty ? "no online node can serve '\(entry.request.model)'" : "no other node can serve '\(entry.request.model)'"
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .noNode, message: message, retryAfter: 5), into: &actions)
        }
    }

    private mutating func enqueue(_ key: RequestKey, _ entry: consuming Entry, into actions: inout [SchedulerAction]) {
        var entry = entry
        if entry.queueDeadline == nil {
            guard waiting.count < settings.maxQueueLength else {
                refuse(key, entry, RouteRefusal(id: entry.request.id, code: .queueTimeout,
                                                message: "the queue is full (\(settings.maxQueueLength) requests)", retryAfter: 5), into: &actions)
                return
            }
            entry.queueDeadline = entry.arrivedAt + settings.queueTimeoutMilliseconds
        }
        // Still waiting: keeps its place (`dispatchWaiting` goes in order) and its deadline.
        entries[key] = entry
        waiting.append(key)
    }

    /// Tries the queued requests in arrival order.
    private mutating func dispatchWaiting(fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        guard !waiting.isEmpty else { return }
        let queue = waiting
        waiting.removeAll(keepingCapacity: true)
        for key in queue {
            guard let entry = entries.removeValue(forKey: key) else { continue }
            decide(key, entry, fleet: fleet, now: now, into: &actions)
        }
    }

    /// Answers ROUTE_ERROR; the request is remembered until its RESULT.
    private mutating func refuse(_ key: RequestKey, _ entry: consuming Entry, _ refusal: RouteRefusal, into actions: inout [SchedulerAction]) {
        var entry = entry
        release(&entry)
        actions.append(.refused(key.proxy, refusal))
        recentlyRefused[key] = entry
        trimRecentlyRefused()
    }

    /// Updates `slot`'s learner (created at the prior on first use).
    private mutating func learn(_ slot: SlotKey, _ update: (inout ConcurrencyLearner) -> Void) {
        guard settings.maxConcurrencyPerModel == nil else { return }
        var learner = learners[slot] ?? ConcurrencyLearner(prior: settings.initialConcurrency)
        update(&learner)
        learners[slot] = learner
    }

    private mutating func trimRecentlyRefused() {
        if recentlyRefused.count > 4096 { recentlyRefused.removeAll() }
    }

    private mutating func release(_ entry: inout Entry) {
        guard let slot = entry.slot else { return }
        entry.slot = nil
        if let count = slots[slot], count > 1 { slots[slot] = count - 1 } else { slots[slot] = nil }
    }
}
