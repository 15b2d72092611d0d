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
    /// Made once (see `SlotKey`).
    private let hash: Int

    init(proxy: ProxyKey, api: ClientAPI, model: String) {
        self.proxy = proxy
        self.api = api
        self.model = model
        var hasher = Hasher()
        hasher.combine(proxy)
        hasher.combine(api)
        hasher.combine(model)
        hash = hasher.finalize()
    }

    static func == (a: DemandKey, b: DemandKey) -> Bool {
        a.hash == b.hash && a.proxy == b.proxy && a.api == b.api && a.model == b.model
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

/// Route tickets (`ControlProtocol.md`): decisions made ahead of requests,
/// by the same scorer, each holding its slot from grant to return. A
/// ticket is granted only where a ROUTE would be answered at once with the
/// same plain decision: a hot model (not a fallback), a free slot, nobody
/// queued, no concurrency being learned in slow start (that needs a
/// request's first byte). Everything else goes by ROUTE.
extension Scheduler {
    /// Tickets start here, for a proxy's model (doubling while it runs out).
    static let initialTickets = 4

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
        let key = DemandKey(proxy: proxy, api: request.api, model: request.model)
        var demand = demands[key] ?? Demand(target: 0, template: request)
        demand.target = min(settings.maxTicketsPerModel, max(Scheduler.initialTickets, demand.out >= demand.target ? demand.target * 2 : demand.target))
        demand.template = request
        demands[key] = demand
        grantTickets(key, fleet: fleet, now: now, into: &actions)
        // A demand lives while it has tickets out or names a model the fleet
        // serves: a client's made-up model names leave nothing behind.
        if let d = demands[key], d.out == 0, !Scheduler.fleetServes(request.model, fleet) { demands[key] = nil }
        if demands.count > Scheduler.maxDemands { demands = demands.filter { $0.value.out > 0 } }
    }

    /// Demands kept at most (proxies × APIs × models: far above a real fleet's).
    package static let maxDemands = 4_096

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
        guard var demand = demands[key], demand.out < demand.target, queue.isEmpty else { return }
        var granted: [RouteTicket] = []
        while demand.out < demand.target {
            nextTicket += 1
            let id = nextTicket
            var template = demand.template
            template.id = id
            template.client = ""
            template.session = nil
            template.prefix = nil
            template.fallbacks = []
            var entry = Entry(request: template, arrivedAt: now)
            let (decision, card) = scorer.decide(scoringRequest(entry), fleet: fleet, load: self, now: now)
            scorings += 1
            guard case let .route(candidate) = decision, candidate.hot, !candidate.drains, ModelName.same(candidate.model, key.model) else { break }
            let slot = SlotKey(candidate.node, candidate.canonicalModel)
            // The request that fills a limit still being learned reports its first byte: that one goes by ROUTE.
            let learning = settings.maxConcurrencyPerModel == nil && reportedParallel[slot.node] == nil
                && inFlight(slot) + 1 >= limit(slot) && (learners[slot]?.slowStart ?? true)
            if learning { break }
            _ = occupy(candidate, &entry, now: now)
            let ticket = RouteTicket(
                ticket: id, api: key.api, model: key.model, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                servedModel: candidate.model, reason: Scheduler.reason(candidate, card: card), score: candidate.breakdown.header,
                ttlMilliseconds: settings.ticketTTLMilliseconds, exclusive: card.candidates.count == 1)
            entry.card = card
            entry.decision = ticket.answer(for: id)
            tickets[TicketKey(proxy: key.proxy, ticket: id)] = entry
            demand.out += 1
            granted.append(ticket)
        }
        demands[key] = demand
        guard !granted.isEmpty else { return }
        ticketCounts.granted += UInt64(clamping: granted.count)
        actions.append(.granted(key.proxy, granted))
    }

    /// Takes a ticket back from the books (spent or returned): its demand has one fewer out.
    private mutating func takeTicket(_ key: TicketKey) -> Entry? {
        guard let entry = tickets.removeValue(forKey: key) else { return nil }
        let demand = DemandKey(proxy: key.proxy, api: entry.request.api, model: entry.request.model)
        if var d = demands[demand] {
            d.out -= 1
            demands[demand] = d
        }
        return entry
    }

    /// A RESULT of a request that spent a ticket: as a RESULT of a routed
    /// request, then the proxy's tickets for that model are topped up.
    package mutating func ticketResult(_ use: TicketUse, _ result: RouteResult, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                       into actions: inout [SchedulerAction]) {
        let key = TicketKey(proxy: proxy, ticket: use.ticket)
        guard var entry = takeTicket(key) else {
            // Not a ticket this control granted (it restarted): traced as told.
            actions.append(.finished(FinishedRequest(result: result, request: use.request, ticket: true)))
            return
        }
        ticketCounts.spent += 1
        let template = entry.request
        entry.request = use.request
        entry.decision?.id = use.request.id
        if let slot = entry.slot { affinities.remember(session: use.request.session, prefix: use.request.prefix, slot: slot) }
        learn(from: result, entry, now: now)
        release(&entry)
        actions.append(.finished(FinishedRequest(result: result, request: use.request, decision: entry.decision, card: entry.card,
                                                 concurrency: entry.nodeBatch, ticket: true)))
        dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false)
        grantTickets(DemandKey(proxy: proxy, api: template.api, model: template.model), fleet: fleet, now: now, into: &actions)
    }

    /// A RETRY of a request that spent a ticket: from here on it is a request
    /// control routes (its ticket's slot is its slot until the retry frees it).
    package mutating func ticketRetry(_ use: TicketUse, _ retry: RouteRetry, from proxy: ProxyKey, fleet: [FleetNode], now: UInt64,
                                      into actions: inout [SchedulerAction]) {
        var entry = takeTicket(TicketKey(proxy: proxy, ticket: use.ticket)) ?? Entry(request: use.request, arrivedAt: now)
        ticketCounts.spent += 1
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
            guard var entry = takeTicket(TicketKey(proxy: proxy, ticket: id)) else { continue }
            ticketCounts.returned += 1
            let demand = DemandKey(proxy: proxy, api: entry.request.api, model: entry.request.model)
            if !entry.revoked, var d = demands[demand] {
                d.target = max(1, d.target / 2)
                demands[demand] = d
            }
            release(&entry)
            freed = true
        }
        if freed { dispatchWaiting(fleet: fleet, now: now, into: &actions, everyone: false) }
    }

    /// Revokes the tickets out for `slot` (every slot when nil) that were not
    /// revoked yet: the proxies return those they have not spent.
    mutating func revokeTickets(slot: SlotKey?, into actions: inout [SchedulerAction]) {
        guard !tickets.isEmpty else { return }
        var byProxy: [ProxyKey: [UInt64]] = [:]
        for (key, entry) in tickets where !entry.revoked && (slot == nil || entry.slot == slot) {
            byProxy[key.proxy, default: []].append(key.ticket)
        }
        for (proxy, ids) in byProxy {
            for id in ids { tickets[TicketKey(proxy: proxy, ticket: id)]?.revoked = true }
            ticketCounts.revoked += UInt64(clamping: ids.count)
            actions.append(.revoked(proxy, ids.sorted()))
        }
    }

    /// A proxy went away: its tickets and demands go with it.
    mutating func forgetTickets(of proxy: ProxyKey) {
        for key in tickets.keys where key.proxy == proxy {
            guard var entry = tickets.removeValue(forKey: key) else { continue }
            release(&entry)
        }
        demands = demands.filter { $0.key.proxy != proxy }
    }
}
