import HerdWire
import Testing
@testable import HerdRouting

/// Route tickets in control's scheduler, in virtual time: decisions made
/// ahead of requests hold real slots, come back, are revoked when the queue
/// or the fleet needs it, and teach what a routed request teaches.
@Suite struct TicketTests {
    static let p1 = ProxyKey(raw: 1)
    static let p2 = ProxyKey(raw: 2)

    struct Harness {
        var scheduler: Scheduler
        var fleet: [FleetNode]
        var now: UInt64 = 1_000
        var actions: [SchedulerAction] = []

        init(limit: Int? = 5, fleet: [FleetNode] = [node("a", models: ["m:1b"], loaded: ["m:1b"])]) {
            var settings = Scheduler.Settings()
            settings.maxConcurrencyPerModel = limit
            scheduler = Scheduler(settings: settings)
            self.fleet = fleet
        }

        static func request(_ id: UInt64, tags: [String] = [], session: ContentHash? = nil) -> RouteRequest {
            RouteRequest(id: id, api: .ollama, path: "/api/chat", model: "m:1b", stream: false, tags: tags, estimatedTokens: 10, session: session)
        }

        mutating func route(_ id: UInt64, from proxy: ProxyKey = p1, tags: [String] = []) -> [SchedulerAction] {
            scheduler.route(Harness.request(id, tags: tags), from: proxy, fleet: fleet, now: now, into: &actions)
            return take()
        }

        mutating func spend(_ ticket: RouteTicket, as id: UInt64, from proxy: ProxyKey = p1, status: Int = 200) -> [SchedulerAction] {
            let use = TicketUse(ticket: ticket.ticket, request: Harness.request(id, session: ContentHash(id)))
            scheduler.ticketResult(use, RouteResult(id: id, node: ticket.node, model: ticket.servedModel, outcome: .ok, status: status,
                                                    upstreamTtftMilliseconds: 5, upstreamMilliseconds: 9),
                                   from: proxy, fleet: fleet, now: now, into: &actions)
            return take()
        }

        mutating func giveBack(_ ids: [UInt64], from proxy: ProxyKey = p1) -> [SchedulerAction] {
            scheduler.ticketsReturned(ids, from: proxy, fleet: fleet, now: now, into: &actions)
            return take()
        }

        mutating func take() -> [SchedulerAction] {
            defer { actions.removeAll() }
            return actions
        }
    }

    @Test func aRouteGrantsTicketsThatHoldSlotsOfTheSameDecision() throws {
        var h = Harness()
        let actions = h.route(1)
        #expect(actions.map(\.kind) == ["routed", "granted"])
        let tickets = try #require(actions.granted)
        #expect(tickets.count == TicketLedger.initialTickets)
        #expect(tickets.allSatisfy { $0.node == "a" && $0.servedModel == "m:1b" && $0.model == "m:1b" && $0.exclusive && $0.ttlMilliseconds == 250 })
        #expect(Set(tickets.map(\.ticket)).count == tickets.count, "each ticket its own number")
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1 + tickets.count, "a ticket holds a slot from its grant")
        #expect(h.scheduler.ticketsOut == tickets.count)
        #expect(!tickets[0].reason.isEmpty && !tickets[0].score.isEmpty, "X-Herd-Reason and -Score as for a ROUTE")
    }

    @Test func aSpentTicketIsTracedAsATicketFreesItsSlotAndIsReplaced() throws {
        var h = Harness()
        let tickets = try #require(h.route(1).granted)
        let after = h.spend(tickets[0], as: 100)
        let finished = try #require(after.compactMap(\.finished).first)
        #expect(finished.ticket && finished.request?.id == 100 && finished.decision?.id == 100 && finished.decision?.node == "a")
        #expect(finished.request?.session == ContentHash(100), "the request as the proxy saw it, not the ticket's template")
        #expect(after.granted?.count == 1, "topped up: one back, one out")
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1 + tickets.count)
        #expect(h.scheduler.ticketCounts.spent == 1 && h.scheduler.ticketCounts.granted == UInt64(tickets.count + 1))
        // A ticket that never existed (control restarted) is traced as told, and frees nothing.
        let stray = RouteTicket(ticket: 999, api: .ollama, model: "m:1b", node: "a", upstream: "127.0.0.1:1", backend: .ollama,
                                servedModel: "m:1b", reason: "", score: "", ttlMilliseconds: 250, exclusive: true)
        let strayActions = h.spend(stray, as: 101)
        #expect(strayActions.compactMap(\.finished).first?.ticket == true)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1 + tickets.count)
    }

    @Test func ticketsLeftUnspentComeBackFreeTheirSlotsAndTheProxyGetsFewer() throws {
        var h = Harness(limit: 64)
        let tickets = try #require(h.route(1).granted)
        #expect(h.giveBack(tickets.map(\.ticket)).isEmpty)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1)
        #expect(h.scheduler.ticketsOut == 0 && h.scheduler.ticketCounts.returned == UInt64(tickets.count))
        // Returning again (or another proxy's numbers) changes nothing.
        _ = h.giveBack(tickets.map(\.ticket), from: TicketTests.p2)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1)
        // Next time it runs out it gets the initial number again (halved, then at least the start).
        #expect(h.route(2).granted?.count == TicketLedger.initialTickets)
        // A proxy that keeps running out is kept in more.
        #expect(h.route(3).granted?.count == TicketLedger.initialTickets, "doubled: 4 out, 8 wanted")
        #expect(h.scheduler.ticketsOut == 2 * TicketLedger.initialTickets)
    }

    @Test func aRequestThatMustQueueRevokesTheTicketsHeldForItsSlot() throws {
        var h = Harness(limit: 5)
        let tickets = try #require(h.route(1).granted)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 5, "full: one request, four tickets")
        // Another proxy's request finds the node full: it waits, and the tickets are called back.
        let second = h.route(2, from: TicketTests.p2)
        #expect(Set(second.map(\.kind)) == ["queued", "revoked"])
        #expect(second.revoked?.proxy == TicketTests.p1 && second.revoked?.ids == tickets.map(\.ticket).sorted())
        #expect(h.scheduler.ticketCounts.revoked == UInt64(tickets.count))
        // p1 returns what it had not spent (three); one was spent meanwhile.
        let returned = h.giveBack(tickets.dropFirst().map(\.ticket))
        #expect(returned.compactMap(\.routedID) == [2], "the waiting request takes a freed slot")
        // No new tickets while anyone waits; the spent one's result comes later.
        #expect(h.spend(tickets[0], as: 50).granted == nil || h.scheduler.queueLength == 0)
    }

    @Test func aFleetChangeRevokesEveryTicket() throws {
        var h = Harness()
        let tickets = try #require(h.route(1).granted)
        h.scheduler.fleetChanged(fleet: h.fleet, now: h.now, into: &h.actions)
        let revoked = try #require(h.take().revoked)
        #expect(revoked.ids == tickets.map(\.ticket).sorted())
        // Revoked tickets that come back do not shrink the proxy's share (it did not leave them idle).
        _ = h.giveBack(revoked.ids)
        #expect(h.route(2).granted?.count == 2 * TicketLedger.initialTickets - 1 || h.scheduler.ticketsOut > 0)
    }

    @Test func noTicketsForTaggedRequestsColdModelsOrALimitStillBeingLearned() throws {
        var tagged = Harness()
        #expect(tagged.route(1, tags: ["gpu"]).granted == nil, "tags change the decision: every such request asks")
        var cold = Harness(fleet: [node("a", models: ["m:1b"])])
        #expect(cold.route(1).granted == nil, "a cold model's load is decided per request")
        var learning = Harness(limit: nil)
        #expect(learning.route(1).granted == nil, "slow start: the request that fills the learned limit must report its first byte")
        var off = Harness()
        var settings = Scheduler.Settings()
        settings.maxConcurrencyPerModel = 5
        settings.maxTicketsPerModel = 0
        off.scheduler = Scheduler(settings: settings)
        #expect(off.route(1).granted == nil, "--route-tickets 0")
    }

    @Test func twoNodesGiveTicketsThatAffinityMayOverride() throws {
        var h = Harness(fleet: [node("a", models: ["m:1b"], loaded: ["m:1b"], port: 1), node("b", models: ["m:1b"], loaded: ["m:1b"], port: 2)])
        let tickets = try #require(h.route(1).granted)
        #expect(tickets.allSatisfy { !$0.exclusive })
        #expect(Set(tickets.map(\.node)) == ["a", "b"], "spread as the scorer spreads requests")
    }

    @Test func aTicketRequestThatFailsIsRetriedElsewhereByControl() throws {
        var h = Harness(fleet: [node("a", models: ["m:1b"], loaded: ["m:1b"], port: 1), node("b", models: ["m:1b"], loaded: ["m:1b"], port: 2)])
        let tickets = try #require(h.route(1).granted)
        let onA = try #require(tickets.first { $0.node == "a" })
        let use = TicketUse(ticket: onA.ticket, request: Harness.request(70))
        h.scheduler.ticketRetry(use, RouteRetry(id: 70, node: "a", reason: "connect failed"), from: TicketTests.p1, fleet: h.fleet, now: h.now,
                                into: &h.actions)
        let answer = try #require(h.take().compactMap(\.answer).first)
        #expect(answer.id == 70 && answer.node == "b" && answer.retries == 1)
        h.scheduler.result(RouteResult(id: 70, node: "b", model: "m:1b", outcome: .ok, status: 200), from: TicketTests.p1, fleet: h.fleet,
                           now: h.now, into: &h.actions)
        #expect(h.take().compactMap(\.finished).first?.result.retries == 1)
    }

    @Test func aProxyThatLeavesTakesItsTicketsWithIt() throws {
        var h = Harness()
        _ = try #require(h.route(1).granted)
        h.scheduler.proxyGone(TicketTests.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.scheduler.ticketsOut == 0 && h.scheduler.inFlight(node: "a", model: "m:1b") == 0)
    }
}

extension Array where Element == SchedulerAction {
    var granted: [RouteTicket]? {
        for action in self { if case let .granted(_, tickets) = action { return tickets } }
        return nil
    }

    var revoked: (proxy: ProxyKey, ids: [UInt64])? {
        for action in self { if case let .revoked(proxy, ids) = action { return (proxy, ids) } }
        return nil
    }
}

extension SchedulerAction {
    var finished: FinishedRequest? { if case let .finished(finished) = self { finished } else { nil } }
    var answer: RouteAnswer? { if case let .routed(_, answer) = self { answer } else { nil } }
}
