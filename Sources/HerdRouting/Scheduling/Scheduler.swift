import HerdWire

/// One connected proxy, as the scheduler knows it (the driver maps it to a
/// connection).
package struct ProxyKey: Hashable, Sendable {
    package let raw: Int
    package init(raw: Int) { self.raw = raw }
}

/// A request that ended, with everything control knew about it: what the
/// trace row, the log line and the metrics are made of.
package struct FinishedRequest: Equatable, Sendable {
    package var result: RouteResult
    /// Nil when control never saw the request (routed locally while control was away).
    package var request: RouteRequest?
    /// The last routing answer, if it was routed.
    package var decision: RouteAnswer?
    /// Every candidate of the last decision, ranked, and every elimination.
    package var card: ScoreCard?
    /// Requests in flight on its node:model when it was sent there, itself included.
    package var concurrency: Int?
    /// Its route came by a ticket (decided ahead), not by a ROUTE.
    package var ticket: Bool

    package init(result: RouteResult, request: RouteRequest? = nil, decision: RouteAnswer? = nil, card: ScoreCard? = nil,
                 concurrency: Int? = nil, ticket: Bool = false) {
        self.result = result
        self.request = request
        self.decision = decision
        self.card = card
        self.concurrency = concurrency
        self.ticket = ticket
    }
}

/// What the driver (`ControlServer`) must do after a scheduler event.
package enum SchedulerAction: Equatable {
    /// Send ROUTE_OK to `proxy`.
    case routed(ProxyKey, RouteAnswer)
    /// Send ROUTE_ERROR to `proxy`.
    case refused(ProxyKey, RouteRefusal)
    /// Send QUEUED to `proxy` (the request waits; its answer comes later).
    case queued(ProxyKey, RouteQueued)
    /// Load a model ahead of demand (then call `prewarmFinished`).
    case prewarm(Prewarm)
    /// A request ended (its RESULT came): trace it, log it, count it. For
    /// requests control routed, the result's retries are control's own count.
    case finished(FinishedRequest)
    /// Send GRANT to `proxy`.
    case granted(ProxyKey, [RouteTicket])
    /// Send REVOKE to `proxy`.
    case revoked(ProxyKey, [UInt64])
}

/// Routing decisions over time, as a value: asks the `Scorer` where each
/// request would finish first, counts the requests in flight per node:model
/// against its concurrency limit (learned, `ConcurrencyLearner`), holds
/// requests whose best choice is busy in a queue, learns rates from every
/// result (`LearnedRates`), and handles retries, results and cancellations.
/// Events in (with the fleet and the time), actions out; the driver
/// (`ControlServer`) sends the answers and arms one timer at `nextDeadline`.
/// No I/O and no clock of its own: every path is tested in virtual time.
///
/// Its state is values with one job each: `Waiting` (the queue),
/// `Occupancy` (the requests in flight, turns, arrival rates),
/// `TicketLedger` (route tickets), `LoadsUnderWay` (loads and pre-warms),
/// `Learning` (concurrency learners and rates); the scheduler's own code
/// is the events that move them.
///
/// A queued request is bound to no node: it is re-scored whenever a slot
/// frees, the fleet changes, or `rescoreIntervalMilliseconds` pass, and goes
/// wherever is best first. The retry budget lives here while control routes:
/// a RETRY beyond `maxRetries` is refused `retries_exhausted`, and each
/// ROUTE_OK says how many retries came before it.
package struct Scheduler {
    /// A client's `options.num_ctx` that the loaded model already covers makes
    /// Ollama reload the model at that context: `strip` removes it (the request
    /// runs in the larger loaded context), `keep` sends it (and the reload
    /// happens), `warn` sends it and counts it. Every event is counted
    /// (`herd_num_ctx_total{action}`).
    /// `fit`: as `strip`, and each model's context is sized by use: control
    /// sets `contextFit` (p99 of prompt + output × 1.5, while that does not
    /// make time to first byte worse: `ContextFitter`); a cold load on an
    /// Ollama node gets that `num_ctx` (never below what the request needs),
    /// and a request to a model loaded hot gets the loaded context, so Ollama
    /// never reloads to change it. Without a fit for the model, nothing is set.
    package enum NumCtxPolicy: String, Sendable, CaseIterable {
        case strip, keep, warn, fit
    }

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
        /// Queued requests are re-scored at least this often (estimates change as time passes).
        package var rescoreIntervalMilliseconds: UInt64 = 1_000
        /// A request waiting for a node's other models to drain (its model fits
        /// there only then) holds the node — other models start nothing there —
        /// once it has waited this long; before, the node's hot models keep
        /// serving. Virtual-time benchmark, home lab, seeds 1–5 × 2: mean
        /// 0.83 → 0.57 and p95 0.45 → 0.35 of the best baseline (machines that
        /// report nothing, with loads under way counted as busy memory); 0 holds at once.
        package var holdAfterMilliseconds: UInt64 = 15_000
        /// What to do with a client's `num_ctx` at or below the loaded context (`--num-ctx-policy`).
        package var numCtxPolicy = NumCtxPolicy.strip
        /// Requests one client may have queued or in flight at once (`--max-client-in-flight`); more get 429.
        package var maxInFlightPerClient: Int?
        /// Load a model on a runner-up node with room when its queue elsewhere is longer than the load (`--no-prewarm`).
        package var prewarm = true
        /// No second pre-warm of one node:model within this time.
        package var prewarmCooldownMilliseconds: UInt64 = 60_000
        package var scoring = Scorer.Settings()
        /// Route tickets a proxy may hold per model it serves, at most
        /// (`--route-tickets`; 0: every request asks).
        package var maxTicketsPerModel = 64
        /// An unspent ticket goes back after this long.
        package var ticketTTLMilliseconds: UInt64 = 250

        package init() {}
    }

    /// A request of one proxy.
    struct RequestKey: Hashable {
        let proxy: ProxyKey
        let id: UInt64
    }

    /// One request control knows about (queued or in flight).
    struct Entry {
        var request: RouteRequest
        let arrivedAt: UInt64
        var excluded: Set<String> = []
        var slot: SlotKey?
        var retries = 0
        /// While queued: when the wait runs out, and the node:model it waits for.
        var queueDeadline: UInt64?
        var waitingFor: SlotKey?
        /// The last routing answer and its score card (for the trace).
        var decision: RouteAnswer?
        var card: ScoreCard?
        /// The chosen candidate (what learning compares the outcome with).
        var chosen: ScoredCandidate?
        /// Requests in flight on its node:model when it was sent there, itself included.
        var concurrency = 0
        /// The node:model's learned limit when it was sent (it filled the limit when `concurrency` reached it).
        var limitAtSend = 0
        /// Requests in flight on its node, all models, when it was sent (the batch its decode joined).
        var nodeBatch = 0
        /// Other models' requests sent to its node before it (`Occupancy.otherModelSends`): at its end, how many ran beside it after its send.
        var otherSendsAtSend: UInt64 = 0
        /// The node's requests × ms in flight when it was sent (`Occupancy.area`): at its end, the mean batch it shared.
        var nodeAreaAtSend = 0.0
        /// Its STARTED taught the learner (its RESULT does not again).
        var startCounted = false
        /// A stream's first byte that judged nothing: how many of those it met
        /// at its send were still in flight then, itself included.
        var alongsideAtStart: Int?
        /// When it was sent and when it is expected to end (ms).
        var sentAt: UInt64 = 0
        var expectedEnd: UInt64 = 0
        /// A ticket control revoked (its RETURN is awaited).
        var revoked = false
        /// How long it may wait in the queue, when its client key says less than `--queue-timeout`.
        var queueTimeout: UInt64?
        /// `X-Herd-Node`: the only node it may go to (herd's limit does not hold it back).
        var pinned: String?
    }

    package let settings: Settings
    let scorer: Scorer
    var entries: [RequestKey: Entry] = [:]
    /// The queue.
    var waiting = Waiting()
    /// The requests in flight.
    var occupancy = Occupancy()
    /// Loads under way and the pre-warms' books.
    var loads = LoadsUnderWay()
    /// Pre-warms started.
    package var prewarmCount: UInt64 { loads.prewarmCount }
    /// Each node:model's learned concurrency and rates.
    var learning: Learning
    package var rates: LearnedRates { learning.rates }
    /// `num_ctx` at or below the loaded context, by what was done: stripped, kept, warned.
    package internal(set) var numCtxEvents: [String: Int] = [:]
    /// The most recent decisions, for the dashboard.
    package internal(set) var feed = DecisionFeed()
    /// Where conversations and prompt prefixes were last served (their KV caches).
    var affinities = AffinityMemory(capacity: 4096)
    /// Times the scorer ran (a request scored on arrival, on a retry, or re-scored while queued).
    package internal(set) var scorings: UInt64 = 0
    /// Requests refused by control, kept until the proxy's RESULT names them.
    var recentlyRefused: [RequestKey: Entry] = [:]
    /// Route tickets out and what each proxy is kept in.
    var tickets = TicketLedger()
    /// Tickets granted, spent (their RESULT or RETRY came), returned unspent.
    package var ticketCounts: TicketCounts { tickets.counts }

    package init(settings: Settings = Settings()) {
        self.settings = settings
        var scoring = settings.scoring
        // Limits the operator fixed (`--max-concurrency`) are not second-guessed per node either.
        scoring.capsNodes = scoring.capsNodes && settings.maxConcurrencyPerModel == nil
        scorer = Scorer(settings: scoring)
        learning = Learning(initialConcurrency: settings.initialConcurrency)
    }

    // MARK: Reading

    package var queueLength: Int { waiting.queue.count }
    /// Demands kept (proxies × APIs × models; bounded by `maxDemands`).
    package var demandCount: Int { tickets.demands.count }
    /// Demands kept at most (proxies × APIs × models: far above a real fleet's).
    package static let maxDemands = TicketLedger.maxDemands
    package var inFlightCount: Int { occupancy.total }
    /// Tickets out (unspent, or spent and in flight).
    package var ticketsOut: Int { tickets.out.count }

    /// Requests in flight on `node` for `model`.
    package func inFlight(node: String, model: String) -> Int { occupancy.inFlight(SlotKey(node, model)) }

    /// Requests in flight on `node`, all models.
    package func inFlight(node: String) -> Int { occupancy.inFlight(node: node) }

    /// How many requests `node` may serve of `model` at once: the override,
    /// else what was learned.
    package func limit(node: String, model: String) -> Int { limit(SlotKey(node, model)) }

    /// Requests queued for `node`:`model` (waiting for that slot).
    package func queued(node: String, model: String) -> Int { waiting.perSlot[SlotKey(node, model)] ?? 0 }

    /// Every node:model with requests in flight or queued, or a learned
    /// limit: in flight, limit, queued (for the queues API).
    package var slotSummary: [(node: String, model: String, inFlight: Int, limit: Int, queued: Int)] {
        var keys = Set(learning.learners.keys)
        for (key, load) in occupancy.slots where load.count > 0 { keys.insert(key) }
        for (key, n) in waiting.perSlot where n > 0 { keys.insert(key) }
        return keys.map { ($0.node, $0.model, occupancy.inFlight($0), limit($0), waiting.perSlot[$0] ?? 0) }
            .sorted { ($0.node, $0.model) < ($1.node, $1.model) }
    }

    /// The learned limits, per node and model (for the fleet API).
    package var learnedLimits: [(node: String, model: String, limit: Int)] {
        Set(learning.learners.keys).union(learning.benchmarked.keys).union(learning.remembered.keys).map { ($0.node, $0.model, learning.limit($0)) }
            .sorted { ($0.node, $0.model) < ($1.node, $1.model) }
    }

    /// The next time the driver must call `expire`: the earliest queue
    /// deadline, or the next re-scoring of the queue.
    package var nextDeadline: UInt64? {
        guard !waiting.queue.isEmpty else { return nil }
        guard let hint = waiting.queue.deadlineHint else { return waiting.nextRescore }
        return min(hint, waiting.nextRescore ?? hint)
    }

    // MARK: Events

    /// A ROUTE: decide now, or queue.
    package mutating func route(_ request: RouteRequest, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64, queueTimeout: UInt64? = nil,
                                pinned: String? = nil, into actions: inout [SchedulerAction]) {
        if let cap = settings.maxInFlightPerClient, entries.values.lazy.filter({ $0.request.client == request.client }).count >= cap {
            refuse(RequestKey(proxy: proxy, id: request.id), Entry(request: request, arrivedAt: now), RouteRefusal(
                id: request.id, code: .clientLimit, message: "too many requests from this client at once (at most \(cap) queued or in flight)",
                retryAfter: 1), into: &actions)
            return
        }
        var entry = Entry(request: request, arrivedAt: now)
        entry.queueTimeout = queueTimeout.map { min($0, settings.queueTimeoutMilliseconds) }
        entry.pinned = pinned.flatMap { $0.isEmpty ? nil : $0 }
        decide(RequestKey(proxy: proxy, id: request.id), entry, fleet: fleet, now: now, into: &actions)
        // A pinned request says nothing of where its kind should go: no tickets for it.
        if pinned?.isEmpty ?? true { noteDemand(request, from: proxy, fleet: fleet, now: now, into: &actions) }
    }

    /// The request of a ROUTE just refused (its entry is kept until its RESULT), if it is known.
    package func refusedRequest(proxy: ProxyKey, id: UInt64) -> (request: RouteRequest, arrivedAt: UInt64)? {
        recentlyRefused[RequestKey(proxy: proxy, id: id)].map { ($0.request, $0.arrivedAt) }
    }

    /// A ROUTE answered by the driver itself (a cloud provider): kept like a
    /// refused one, so that its RESULT is traced with the request.
    package mutating func routedElsewhere(_ request: RouteRequest, from proxy: ProxyKey, now: UInt64) {
        recentlyRefused[RequestKey(proxy: proxy, id: request.id)] = Entry(request: request, arrivedAt: now)
        trimRecentlyRefused()
    }

    /// A ROUTE refused before any routing (its client key is over a limit):
    /// answered with `refusal`, and its RESULT still traced with the request.
    package mutating func reject(_ request: RouteRequest, from proxy: ProxyKey, now: UInt64, refusal: RouteRefusal,
                                 into actions: inout [SchedulerAction]) {
        refuse(RequestKey(proxy: proxy, id: request.id), Entry(request: request, arrivedAt: now), refusal, into: &actions)
    }

    /// A RETRY: the node failed before any byte reached the client; try another
    /// (the node excluded), within the retry budget.
    package mutating func retry(_ retry: RouteRetry, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: retry.id)
        guard var entry = entries.removeValue(forKey: key) else { return }
        if let slot = entry.slot {
            if let status = retry.upstreamStatus, status == 503 || status == 429 {
                learn(slot) { $0.observe(ConcurrencyLearner.Sample(concurrency: entry.concurrency, ok: false, busy: true, ttftMs: 0, durationMs: 0)) }
            } else {
                learning.rates.failed(node: slot.node, at: now)
            }
            loads.ended(slot)
        }
        release(&entry, now: now)
        entry.excluded.insert(retry.node)
        entry.retries += 1
        if entry.retries > settings.maxRetries {
            refuse(key, entry, RouteRefusal(id: retry.id, code: .retriesExhausted,
                                            message: "every node tried failed (last: \(retry.node): \(retry.reason))"), into: &actions)
            return
        }
        decide(key, entry, fleet: fleet, now: now, into: &actions)
    }

    /// Rates learned before a restart (from the trace rows), replayed in order.
    package mutating func restore(_ observations: [LearnedRates.Observation]) {
        for observation in observations { learning.rates.observe(observation) }
    }

    /// `--num-ctx-policy fit`: the context each model (canonical name) is
    /// loaded with on a cold load, set by control as it judges it.
    package private(set) var contextFit: [String: Int] = [:]

    package mutating func setContextFit(_ fits: [String: Int]) {
        contextFit = fits.filter { RequestLimits.numCtx.contains($0.value) }
    }

    /// Limits learned before a restart (control's `learned_limits`): each
    /// node:model's learner starts there, out of slow start (under what its
    /// node reports, and replaced by a newer benchmark).
    package mutating func remember(limits: [(node: String, model: String, limit: Int)]) {
        for entry in limits { learning.remember(SlotKey(entry.node, entry.model), limit: entry.limit) }
    }

    /// The limits learned so far, out of slow start: what control keeps for its next start.
    package var settledLimits: [(node: String, model: String, limit: Int)] {
        learning.settled.map { ($0.0.node, $0.0.model, $0.1) }.sorted { ($0.node, $0.model) < ($1.node, $1.model) }
    }

    /// A `herd benchmark` result (posted now, or the last one stored): the
    /// node:model's learner starts at its knee and its rates from its figures.
    package mutating func benchmarked(_ prior: BenchmarkPrior) {
        learning.benchmarked(prior)
    }

    /// A RESULT: the request ended; its slot frees, herd learns from it, and the queue moves.
    package mutating func result(_ result: RouteResult, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                 into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: result.id)
        if var entry = entries.removeValue(forKey: key) ?? recentlyRefused.removeValue(forKey: key) {
            // The proxy routed a local one itself (it stopped waiting for
            // control): control's own answer, if one came late, was not used.
            if !result.local { learn(from: result, entry, now: now) }
            release(&entry, now: now)
            unqueue(key, &entry)
            if result.local {
                actions.append(.finished(FinishedRequest(result: result, request: entry.request)))
            } else {
                var result = result
                result.retries = entry.retries
                actions.append(.finished(FinishedRequest(result: result, request: entry.request, decision: entry.decision, card: entry.card,
                                                         concurrency: entry.decision == nil ? nil : entry.nodeBatch)))
            }
        } else {
            actions.append(.finished(FinishedRequest(result: result)))
        }
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false)
    }

    /// A STARTED: the first byte of a request control asked about (it filled
    /// its node:model's limit while that limit is learned in slow start).
    package mutating func started(_ started: RouteStarted, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                  into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: started.id)
        // A non-streaming answer's first byte is its end: its RESULT teaches instead.
        guard var entry = entries[key], let slot = entry.slot, !entry.startCounted, entry.retries == 0, entry.request.stream else { return }
        let before = limit(slot)
        let busy = started.status == 503 || started.status == 429
        // Those it met at its send that are still in flight at its first byte were served alongside it.
        let alongside = occupancy.othersSentBy(entry.sentAt, on: slot) + 1
        let others = othersBeside(entry, on: slot)
        var judged = false
        learn(slot) {
            judged = $0.started(ttft: started.upstreamTtftMilliseconds, concurrency: entry.concurrency, promptTokens: entry.request.estimatedTokens,
                                ok: (200..<300).contains(started.status), busy: busy, othersOnNode: others,
                                limitAtSend: entry.limitAtSend, alongside: alongside)
        }
        // A first byte that judged nothing leaves the request's end to teach.
        entry.startCounted = judged
        if !judged { entry.alongsideAtStart = alongside }
        entries[key] = entry
        if limit(slot) > before { dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false) }
    }

    /// A CANCEL: the client left while routing or queued (its RESULT follows).
    package mutating func cancel(id: UInt64, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        let key = RequestKey(proxy: proxy, id: id)
        guard var entry = entries.removeValue(forKey: key) else { return }
        release(&entry, now: now)
        unqueue(key, &entry)
        recentlyRefused[key] = entry
        trimRecentlyRefused()
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false)
    }

    /// A proxy went away: its requests free their slots and leave the queue.
    package mutating func proxyGone(_ proxy: ProxyKey, fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        for key in entries.keys where key.proxy == proxy {
            guard var entry = entries.removeValue(forKey: key) else { continue }
            release(&entry, now: now)
            unqueue(key, &entry)
        }
        recentlyRefused = recentlyRefused.filter { $0.key.proxy != proxy }
        forgetTickets(of: proxy)
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: true)
    }

    /// The fleet changed (a node came, went or loaded a model): learn what
    /// `/api/ps` shows and re-score the queue.
    package mutating func fleetChanged(fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        observe(fleet: fleet)
        loads.expireWarmed(now: now)
        // Decisions made ahead were made for the fleet as it was.
        revokeTickets(slot: nil, into: &actions)
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: true)
    }

    /// Time passed: queued requests whose deadline is `now` or earlier are
    /// refused, and the rest re-scored when their re-scoring is due.
    package mutating func expire(now: UInt64, fleet: [FleetNode], into actions: inout [SchedulerAction]) {
        for item in waiting.queue.removeExpired(now: now) {
            waiting.forget(item)
            guard var entry = entries.removeValue(forKey: item.key) else { continue }
            entry.waitingFor = nil
            refuse(item.key, entry, RouteRefusal(
                    id: entry.request.id, code: .queueTimeout,
                    message: "every node that has '\(entry.request.model)' stayed busy for "
                        + Scheduler.seconds(entry.queueTimeout ?? settings.queueTimeoutMilliseconds)
                        + (entry.queueTimeout != nil ? " (its key's --max-queue-wait)" : ""),
                    retryAfter: 5), into: &actions)
        }
        if let due = waiting.nextRescore, due <= now {
            dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: true)
        }
    }
}
