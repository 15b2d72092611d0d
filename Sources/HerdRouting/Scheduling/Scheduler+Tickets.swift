import HerdWire

/// A ticket of one proxy.
struct TicketKey: Hashable {
    let proxy: ProxyKey
    let ticket: UInt64
}

/// What one proxy serves: requests in one API for one model name.
struct DemandKey: Hashable {
    let proxy: ProxyKey
    let api: ClientAPI
    let model: String
    /// The kind of work (from the path): a ticket serves requests of its kind only.
    let work: WorkKind
    /// Made once (see `SlotKey`).
    private let hash: Int

    init(proxy: ProxyKey, api: ClientAPI, model: String, path: String) {
        self.proxy = proxy
        self.api = api
        self.model = model
        work = WorkKind(path: path)
        var hasher = Hasher()
        hasher.combine(proxy)
        hasher.combine(api)
        hasher.combine(model)
        hasher.combine(work)
        hash = hasher.finalize()
    }

    static func == (a: DemandKey, b: DemandKey) -> Bool {
        a.hash == b.hash && a.proxy == b.proxy && a.api == b.api && a.model == b.model && a.work == b.work
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// How many tickets to keep a proxy in for one model.
struct Demand {
    /// Tickets to hold out (unspent + spent in flight): doubles when the
    /// proxy ran out and asked, halves when its tickets expire unspent.
    var target: Int
    /// Granted and not yet back.
    var out = 0
    /// What a plain request for it looks like (path, stream, size): what tickets are scored for.
    var template: RouteRequest
}

/// Ticket counts since start (for `/metrics`).
package struct TicketCounts: Equatable, Sendable {
    package var granted: UInt64 = 0
    package var spent: UInt64 = 0
    package var returned: UInt64 = 0
    package var revoked: UInt64 = 0

    package init() {}
}

/// The route tickets' books: the tickets out (each holds its request's
/// slot until it comes back), what each proxy serves and how many tickets to
/// keep it in, and the counts. A value with one job; the scheduler decides
/// where tickets go.
struct TicketLedger {
    /// Granted and not yet come back (in a RESULT, a RETRY or a RETURN).
    private(set) var out: [TicketKey: Scheduler.Entry] = [:]
    /// What each proxy is serving, per API and model.
    private(set) var demands: [DemandKey: Demand] = [:]
    private var lastID: UInt64 = 0
    /// Tickets granted, spent, returned unspent, revoked.
    var counts = TicketCounts()

    /// Demands kept at most (proxies × APIs × models: far above a real fleet's).
    static let maxDemands = 4_096
    /// Tickets start here, for a proxy's model (doubling while it runs out).
    static let initialTickets = 4

    var isEmpty: Bool { out.isEmpty }

    func demand(_ key: DemandKey) -> Demand? { demands[key] }

    /// A ROUTE came for a ticketable request: the proxy ran out (keep it in
    /// twice as many, up to `max`) or had none yet.
    mutating func asked(_ key: DemandKey, template: RouteRequest, max: Int) {
        var demand = demands[key] ?? Demand(target: 0, template: template)
        demand.target = min(max, Swift.max(TicketLedger.initialTickets, demand.out >= demand.target ? demand.target * 2 : demand.target))
        demand.template = template
        demands[key] = demand
    }

    /// A demand lives while it has tickets out or names a model the fleet
    /// serves (`serves`): a client's made-up model names leave nothing behind.
    mutating func settle(_ key: DemandKey, serves: Bool) {
        if let d = demands[key], d.out == 0, !serves { demands[key] = nil }
        if demands.count > TicketLedger.maxDemands { demands = demands.filter { $0.value.out > 0 } }
    }

    mutating func nextID() -> UInt64 {
        lastID += 1
        return lastID
    }

    /// `entry` holds a slot for the ticket `key` granted for `demand`.
    mutating func granted(_ key: TicketKey, _ entry: Scheduler.Entry, for demand: DemandKey) {
        out[key] = entry
        demands[demand]?.out += 1
        counts.granted += 1
    }

    /// Takes a ticket off the books (spent or returned): its demand has one fewer out.
    mutating func take(_ key: TicketKey) -> Scheduler.Entry? {
        guard let entry = out.removeValue(forKey: key) else { return nil }
        demands[DemandKey(proxy: key.proxy, api: entry.request.api, model: entry.request.model, path: entry.request.path)]?.out -= 1
        return entry
    }

    /// A ticket came back unspent: a proxy that lets tickets expire is kept in
    /// fewer (not for one control revoked).
    mutating func expired(_ entry: Scheduler.Entry, of proxy: ProxyKey) {
        guard !entry.revoked else { return }
        let key = DemandKey(proxy: proxy, api: entry.request.api, model: entry.request.model, path: entry.request.path)
        if let d = demands[key] { demands[key]?.target = Swift.max(1, d.target / 2) }
    }

    /// Marks the tickets out for `slot` (every slot when nil) revoked, those
    /// not revoked yet: per proxy, the ids to revoke.
    mutating func revoke(slot: SlotKey?) -> [(ProxyKey, [UInt64])] {
        guard !out.isEmpty else { return [] }
        var byProxy: [ProxyKey: [UInt64]] = [:]
        for (key, entry) in out where !entry.revoked && (slot == nil || entry.slot == slot) {
            byProxy[key.proxy, default: []].append(key.ticket)
        }
        var revoked: [(ProxyKey, [UInt64])] = []
        for (proxy, ids) in byProxy {
            for id in ids { out[TicketKey(proxy: proxy, ticket: id)]?.revoked = true }
            counts.revoked += UInt64(clamping: ids.count)
            revoked.append((proxy, ids.sorted()))
        }
        return revoked
    }

    /// A proxy went away: its tickets (returned, to free their slots) and demands go.
    mutating func forget(_ proxy: ProxyKey) -> [Scheduler.Entry] {
        var entries: [Scheduler.Entry] = []
        for key in out.keys where key.proxy == proxy {
            if let entry = out.removeValue(forKey: key) { entries.append(entry) }
        }
        demands = demands.filter { $0.key.proxy != proxy }
        return entries
    }
}

/// Route tickets (`ControlProtocol.md`): decisions made ahead of requests,
/// by the same scorer, each holding its slot from grant to return. A
/// ticket is granted only where a ROUTE would be answered at once with the
/// same plain decision: a hot model (not a fallback), a free slot, nobody
/// queued, no concurrency being learned in slow start (that needs a
/// request's first byte). Everything else goes by ROUTE.
extension Scheduler {
    /// Whether a request's shape lets tickets serve its kind: no tags, no
    /// `num_ctx`, no per-client cap to count.
    func ticketable(_ request: RouteRequest) -> Bool {
        settings.maxTicketsPerModel > 0 && settings.maxInFlightPerClient == nil && request.tags.isEmpty && request.numCtx == nil
    }

    /// A ROUTE for a ticketable request: the proxy had no ticket for it;
    /// keep it in more.
    mutating func noteDemand(_ request: RouteRequest, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                             into actions: inout [SchedulerAction]) {
        guard ticketable(request) else { return }
        let key = DemandKey(proxy: proxy, api: request.api, model: request.model, path: request.path)
        tickets.asked(key, template: request, max: settings.maxTicketsPerModel)
        grantTickets(key, fleet: fleet, now: now, into: &actions)
        tickets.settle(key, serves: Scheduler.fleetServes(request.model, fleet))
    }

    /// Whether some node has `model` on disk or loaded.
    static func fleetServes(_ model: String, _ fleet: [FleetNode]) -> Bool {
        fleet.contains { node in
            node.heartbeat.backends.contains { backend in
                backend.loaded.contains { ModelName.same($0.name, model) } || backend.models.contains { ModelName.same($0.name, model) }
            }
        }
    }

    /// Grants `key`'s proxy tickets up to its target, while they fit.
    mutating func grantTickets(_ key: DemandKey, fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        guard let demand = tickets.demand(key), demand.out < demand.target, waiting.queue.isEmpty else { return }
        var granted: [RouteTicket] = []
        while granted.count < demand.target - demand.out {
            let id = tickets.nextID()
            var template = demand.template
            template.id = id
            template.client = ""
            template.session = nil
            template.prefix = nil
            template.fallbacks = []
            var entry = Entry(request: template, arrivedAt: now)
            let (decision, card) = scorer.decide(scoringRequest(entry), fleet: fleet, load: self, now: now)
            scorings += 1
            guard case let .route(candidate) = decision, candidate.hot, !candidate.drains, ModelName.same(candidate.model, key.model),
                  fittedContext(candidate, template) == nil else { break } // a fitted context is set per request, by ROUTE
            let slot = SlotKey(candidate.node, candidate.canonicalModel)
            // The request that fills a limit still being learned reports its first byte: that one goes by ROUTE.
            if settings.maxConcurrencyPerModel == nil, learning.inSlowStart(slot), inFlight(slot) + 1 >= limit(slot) { break }
            _ = occupy(candidate, &entry, now: now)
            let ticket = RouteTicket(
                ticket: id, api: key.api, model: key.model, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                servedModel: candidate.model, reason: Scheduler.reason(candidate, card: card), score: candidate.breakdown.header,
                ttlMilliseconds: settings.ticketTTLMilliseconds, exclusive: card.candidates.count == 1, work: key.work)
            entry.card = card
            entry.decision = ticket.answer(for: id)
            tickets.granted(TicketKey(proxy: key.proxy, ticket: id), entry, for: key)
            granted.append(ticket)
        }
        guard !granted.isEmpty else { return }
        actions.append(.granted(key.proxy, granted))
    }

    /// A RESULT of a request that spent a ticket: as a RESULT of a routed
    /// request, then the proxy's tickets for that model are topped up.
    package mutating func ticketResult(_ use: TicketUse, _ result: RouteResult, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                       into actions: inout [SchedulerAction]) {
        let key = TicketKey(proxy: proxy, ticket: use.ticket)
        guard var entry = tickets.take(key) else {
            // Not a ticket this control granted (it restarted): traced as told.
            actions.append(.finished(FinishedRequest(result: result, request: use.request, ticket: true)))
            return
        }
        tickets.counts.spent += 1
        let template = entry.request
        entry.request = use.request
        entry.decision?.id = use.request.id
        if let slot = entry.slot { affinities.remember(session: use.request.session, prefix: use.request.prefix, slot: slot) }
        learn(from: result, entry, now: now)
        release(&entry, now: now)
        actions.append(.finished(FinishedRequest(result: result, request: use.request, decision: entry.decision, card: entry.card,
                                                 concurrency: entry.nodeBatch, ticket: true)))
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false)
        grantTickets(DemandKey(proxy: proxy, api: template.api, model: template.model, path: template.path), fleet: fleet, now: now, into: &actions)
    }

    /// A RETRY of a request that spent a ticket: from here on it is a request
    /// control routes (its ticket's slot is its slot until the retry frees it).
    package mutating func ticketRetry(_ use: TicketUse, _ retry: RouteRetry, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                      into actions: inout [SchedulerAction]) {
        var entry = tickets.take(TicketKey(proxy: proxy, ticket: use.ticket)) ?? Entry(request: use.request, arrivedAt: now)
        tickets.counts.spent += 1
        entry.request = use.request
        entry.decision?.id = use.request.id
        entries[RequestKey(proxy: proxy, id: use.request.id)] = entry
        self.retry(retry, from: proxy, fleet: fleet, now: now, into: &actions)
    }

    /// A RETURN: tickets the proxy did not spend (their time ran out, or they
    /// were revoked). Their slots free; a proxy that lets tickets expire is
    /// kept in fewer.
    package mutating func ticketsReturned(_ ids: [UInt64], from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                          into actions: inout [SchedulerAction]) {
        var freed = false
        for id in ids {
            guard var entry = tickets.take(TicketKey(proxy: proxy, ticket: id)) else { continue }
            tickets.counts.returned += 1
            tickets.expired(entry, of: proxy)
            release(&entry, now: now)
            freed = true
        }
        if freed { dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false) }
    }

    /// Revokes the tickets out for `slot` (every slot when nil) that were not
    /// revoked yet: the proxies return those they have not spent.
    mutating func revokeTickets(slot: SlotKey?, into actions: inout [SchedulerAction]) {
        for (proxy, ids) in tickets.revoke(slot: slot) { actions.append(.revoked(proxy, ids)) }
    }

    /// A proxy went away: its tickets and demands go with it.
    mutating func forgetTickets(of proxy: ProxyKey) {
        for var entry in tickets.forget(proxy) { release(&entry) }
    }
}
