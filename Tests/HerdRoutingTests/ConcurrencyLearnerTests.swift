import HerdWire
import Testing
@testable import HerdRouting

/// The concurrency learner and the scheduler that uses it, in virtual time.
@Suite struct ConcurrencyLearnerTests {
    @Test func slowStartRaisesTheLimitWhileItBindsAndTTFTHolds() {
        var learner = ConcurrencyLearner(prior: 2)
        #expect(learner.limit == 2)
        learner.completed(ttft: 100, concurrency: 1, ok: true, busy: false)
        #expect(learner.limit == 2, "a request that did not fill the limit says nothing about it")
        learner.completed(ttft: 100, concurrency: 2, ok: true, busy: false)
        learner.completed(ttft: 105, concurrency: 3, ok: true, busy: false)
        #expect(learner.limit == 4, "slow start: one more per request that found the limit binding")
        #expect(learner.slowStart)
    }

    @Test func aRequestThatWaitedInsideTheBackendLowersTheLimit() {
        var learner = ConcurrencyLearner(prior: 2)
        learner.completed(ttft: 200, concurrency: 1, ok: true, busy: false)
        // With a second one in flight it took a whole request longer: the backend queued it.
        learner.completed(ttft: 600, concurrency: 2, ok: true, busy: false)
        #expect(learner.limit == 1)
        #expect(!learner.slowStart)
        // Then it grows back slowly: a quarter of a slot per request at the limit.
        for _ in 0..<3 { learner.completed(ttft: 200, concurrency: 1, ok: true, busy: false) }
        #expect(learner.limit == 1)
        learner.completed(ttft: 200, concurrency: 1, ok: true, busy: false)
        #expect(learner.limit == 2, "four good requests at limit 1 give one more slot")
    }

    @Test func aReportedParallelismIsKeptAndLeftOnlyWhileBusy() {
        var learner = ConcurrencyLearner(prior: 4, reported: true)
        learner.completed(ttft: 100, concurrency: 4, ok: true, busy: false)
        learner.completed(ttft: 900, concurrency: 4, ok: true, busy: false)
        #expect(learner.limit == 4, "a slower batch is priced by the scorer, not a reason to leave the backend's slots unused")
        for _ in 0..<10 { learner.completed(ttft: 100, concurrency: 4, ok: true, busy: false) }
        #expect(learner.limit == 4, "never above what the backend serves at once")
        learner.completed(ttft: 0, concurrency: 4, ok: false, busy: true)
        #expect(learner.limit == 2, "busy: halved")
        learner.completed(ttft: 100, concurrency: 2, ok: true, busy: false)
        learner.completed(ttft: 100, concurrency: 2, ok: true, busy: false)
        learner.completed(ttft: 100, concurrency: 2, ok: true, busy: false)
        #expect(learner.limit == 4, "and back up to the reported slots")
    }

    @Test func theSchedulerStartsFromTheNodesReport() {
        var fleet = [node("a", models: ["m:1b"])]
        fleet[0].heartbeat.backends[0].parallel = 3
        var scheduler = Scheduler(settings: .perRequest)
        var actions: [SchedulerAction] = []
        scheduler.fleetChanged(fleet: fleet, now: 0, into: &actions)
        #expect(scheduler.limit(node: "a", model: "m:1b") == 3)
        fleet[0].heartbeat.backends[0].parallel = nil
        scheduler.fleetChanged(fleet: fleet, now: 0, into: &actions)
        #expect(scheduler.limit(node: "a", model: "m:1b") == 2, "no report: the safe 2")
    }

    @Test func jitterBelowTheToleranceIsNotQueueing() {
        var learner = ConcurrencyLearner(prior: 8)
        learner.completed(ttft: 0.3, concurrency: 1, ok: true, busy: false)
        learner.completed(ttft: 15, concurrency: 8, ok: true, busy: false)
        #expect(learner.limit == 9, "a fast backend's milliseconds of CPU jitter are not a queue")
    }

    @Test func busyAnswersHalveFailuresSayNothing() {
        var learner = ConcurrencyLearner(prior: 8)
        learner.completed(ttft: 0, concurrency: 8, ok: false, busy: true)
        #expect(learner.limit == 4)
        learner.completed(ttft: 0, concurrency: 4, ok: false, busy: false)
        #expect(learner.limit == 4)
        var floor = ConcurrencyLearner(prior: 1)
        floor.completed(ttft: 0, concurrency: 1, ok: false, busy: true)
        #expect(floor.limit == 1, "never below one")
    }

    @Test func theBaselineFollowsABackendThatGotSlower() {
        var learner = ConcurrencyLearner(prior: 2)
        learner.completed(ttft: 100, concurrency: 1, ok: true, busy: false)
        for _ in 0..<200 { learner.completed(ttft: 1_000, concurrency: 1, ok: true, busy: false) }
        #expect(learner.baseline.map { $0 > 500 } == true, "drifted toward what the backend does now")
    }

    @Test func theLimitHasACeiling() {
        var learner = ConcurrencyLearner(prior: 1_020)
        for i in 0..<20 { learner.completed(ttft: 10, concurrency: 1_020 + i, ok: true, busy: false) }
        #expect(learner.limit == Int(ConcurrencyLearner.ceiling))
    }
}

@Suite struct LearnedConcurrencySchedulerTests {
    /// A scheduler with learned limits over the one-node fleet.
    func learning() -> SchedulerHarness {
        var h = SchedulerHarness()
        h.scheduler = Scheduler(settings: Scheduler.Settings.perRequest) // no override: learned, starting at 2
        return h
    }

    func result(_ h: inout SchedulerHarness, _ id: UInt64, ttft: Double) -> [SchedulerAction] {
        h.scheduler.result(RouteResult(id: id, node: "a", model: "m:1b", outcome: .ok, status: 200, ttftMilliseconds: ttft),
                           from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        defer { h.actions.removeAll() }
        return h.actions
    }

    @Test func aFastBackendOpensUp() {
        var h = learning()
        #expect(h.route(1).map(\.routedID) == [1])
        #expect(h.route(2).map(\.routedID) == [2])
        #expect(h.route(3).isEmpty, "the prior is 2")
        // An answer that came fast while the limit bound (2 of 2): the limit grows and the queue drains.
        let freed = result(&h, 2, ttft: 1)
        #expect(freed.compactMap(\.routedID) == [3])
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 3)
        #expect(h.route(4).map(\.routedID) == [4])
    }

    @Test func aOneSlotBackendIsLearnedAsOneSlot() {
        var h = learning()
        _ = h.route(1)
        _ = h.route(2)
        _ = result(&h, 1, ttft: 500)
        // The second waited inside the backend behind the first: a whole request longer.
        _ = result(&h, 2, ttft: 1_000)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 1)
        _ = h.route(3)
        #expect(h.route(4).isEmpty, "the next one waits in herd's queue, not inside the backend")
    }

    /// Long requests (10 s streams): slow start cannot wait for completions.
    /// The request that fills the limit reports its first byte; a good one
    /// doubles the limit at once.
    @Test func firstBytesOpenUpALongRequestsBackendInRoundTrips() {
        var h = learning()
        func answers(_ actions: [SchedulerAction]) -> [RouteAnswer] {
            actions.compactMap { if case let .routed(_, answer) = $0 { answer } else { nil } }
        }
        #expect(answers(h.route(1)).map(\.reportStart) == [false], "one of two: the limit does not bind")
        #expect(answers(h.route(2)).map(\.reportStart) == [true], "it fills the limit: report its first byte")
        for id in UInt64(3)...20 { #expect(h.route(id).isEmpty) }
        h.scheduler.started(RouteStarted(id: 2, status: 200, upstreamTtftMilliseconds: 2), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 4)
        let next = answers(h.actions)
        h.actions.removeAll()
        #expect(next.map(\.id) == [3, 4] && next.map(\.reportStart) == [false, true])
        h.scheduler.started(RouteStarted(id: 4, status: 200, upstreamTtftMilliseconds: 2), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 8)
        #expect(answers(h.actions).map(\.id) == [5, 6, 7, 8])
        h.actions.removeAll()
        _ = result(&h, 2, ttft: 2)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 8, "its end teaches nothing its first byte did not")
        // A first byte that came late (the request waited inside the backend) ends slow start.
        h.scheduler.started(RouteStarted(id: 8, status: 200, upstreamTtftMilliseconds: 900), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") < 8)
    }

    /// Under load the control plane itself lags: a client's TTFT grows with
    /// the time its ROUTE waited to be read, which is not the backend's. The
    /// proxy's own measure from its send to the node's first byte is used.
    @Test func theControlHopIsNotTheBackends() {
        var h = learning()
        _ = h.route(1)
        _ = h.route(2)
        _ = result(&h, 1, ttft: 1)
        h.scheduler.result(RouteResult(id: 2, node: "a", model: "m:1b", outcome: .ok, status: 200, ttftMilliseconds: 400,
                                       durationMilliseconds: 400, upstreamTtftMilliseconds: 1, upstreamMilliseconds: 1),
                           from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") >= 2, "400 ms spent before the request reached the node is not the node's")
    }

    @Test func theQueueWaitIsNotTheBackends() {
        var h = learning()
        _ = h.route(1)
        _ = h.route(2)
        _ = h.route(3) // queued
        _ = h.advance(by: 5_000)
        _ = result(&h, 1, ttft: 100)
        _ = result(&h, 2, ttft: 100)
        // 3 was dispatched from the queue after 5 s; its TTFT as the proxy saw it includes that wait.
        let limit = h.scheduler.limit(node: "a", model: "m:1b")
        _ = result(&h, 3, ttft: 5_100)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") >= limit, "herd's own queue wait does not count against the backend")
    }

    @Test func aBusyBackendHalvesItsLimitAndTheOverrideWins() {
        var h = learning()
        for id: UInt64 in 1...2 { _ = h.route(id) }
        h.scheduler.retry(RouteRetry(id: 1, node: "a", reason: "status 503", upstreamStatus: 503), from: SchedulerHarness.p1,
                          fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 1)
        var fixed = SchedulerHarness() // --max-concurrency 1
        _ = fixed.route(1)
        _ = fixed.result(1)
        #expect(fixed.scheduler.learnedLimits.isEmpty, "with the override nothing is learned")
        #expect(fixed.scheduler.limit(node: "a", model: "m:1b") == 1)
    }
}

/// The scheduler with the scorer: queued requests re-scored, loads tracked, rates learned.
@Suite struct SchedulerScoringTests {
    func twoNodes() -> [FleetNode] {
        [machine("a", loaded: ["m:8b"]), machine("b", loaded: ["m:8b"])]
    }

    func request(_ id: UInt64, session: UInt64? = nil) -> RouteRequest {
        RouteRequest(id: id, api: .ollama, path: "/api/chat", model: "m:8b", stream: true, estimatedTokens: 100,
                     session: session.map(ContentHash.init))
    }

    @Test func aQueuedRequestGoesToWhicheverNodeFreesFirst() {
        var settings = Scheduler.Settings.perRequest
        settings.maxConcurrencyPerModel = 1
        var scheduler = Scheduler(settings: settings)
        let fleet = twoNodes()
        var actions: [SchedulerAction] = []
        let p = ProxyKey(raw: 1)
        scheduler.route(request(1), from: p, fleet: fleet, now: 0, into: &actions)
        scheduler.route(request(2), from: p, fleet: fleet, now: 0, into: &actions)
        scheduler.route(request(3), from: p, fleet: fleet, now: 0, into: &actions)
        let first = actions.compactMap { if case let .routed(_, a) = $0 { a } else { nil } }
        #expect(first.map(\.id) == [1, 2] && Set(first.map(\.node)) == ["a", "b"])
        #expect(scheduler.queueLength == 1)
        actions.removeAll()
        // Whichever node finishes first takes request 3, whatever it was queued behind.
        let freed = first[1].node
        scheduler.result(RouteResult(id: 2, node: freed, model: "m:8b", outcome: .ok, status: 200, ttftMilliseconds: 10, durationMilliseconds: 50),
                         from: p, fleet: fleet, now: 50, into: &actions)
        guard case let .routed(_, third)? = actions.last else { Issue.record("3 not routed"); return }
        #expect(third.id == 3 && third.node == freed && third.queuedMilliseconds == 50)
    }

    @Test func theQueueIsRescoredAsTimePasses() {
        // One hot node, full; a cold node with room. Short answers (8 tokens):
        // about 2 s each on the hot node (prior), a cold load takes 5 s.
        var settings = Scheduler.Settings.perRequest
        settings.maxConcurrencyPerModel = 1
        var scheduler = Scheduler(settings: settings)
        let fleet = [machine("hot", loaded: ["m:8b"]), machine("cold", memory: 99_000_000_000)]
        var actions: [SchedulerAction] = []
        let p = ProxyKey(raw: 1)
        var short = request(1)
        short.maxTokens = 8
        scheduler.route(short, from: p, fleet: fleet, now: 0, into: &actions)
        short.id = 2
        scheduler.route(short, from: p, fleet: fleet, now: 0, into: &actions)
        #expect(scheduler.queueLength == 1, "waiting ~2 s for the hot one beats a 5 s cold load, at first")
        #expect(scheduler.nextDeadline == 1_000, "re-scored every second")
        actions.removeAll()
        // The hot one's request overruns; the longer it does, the longer it is
        // expected to go on, until the cold load wins — without any event.
        var now: UInt64 = 0
        while scheduler.queueLength > 0, now < 30_000 {
            now = scheduler.nextDeadline ?? 30_000
            scheduler.expire(now: now, fleet: fleet, into: &actions)
        }
        guard case let .routed(_, answer)? = actions.last else { Issue.record("never moved: \(actions)"); return }
        #expect(answer.node == "cold")
        #expect(now >= 6_000 && now <= 9_000, "moved once the overrun made the wait longer than the load: \(now)")
    }

    @Test func aColdLoadIsTrackedUntilTheModelShowsUp() {
        var scheduler = Scheduler(settings: .perRequest)
        var fleet = [machine("cold", memory: 99_000_000_000)]
        var actions: [SchedulerAction] = []
        scheduler.route(request(1), from: ProxyKey(raw: 1), fleet: fleet, now: 0, into: &actions)
        #expect(scheduler.loadingRemainingMs(SlotKey("cold", "m:8b"), now: 1_000) == 4_000, "5 s prior load, 1 s gone")
        scheduler.route(request(2), from: ProxyKey(raw: 1), fleet: fleet, now: 1_000, into: &actions)
        guard case let .routed(_, second)? = actions.last else { Issue.record("not routed"); return }
        #expect(second.score.contains("load=4000"), "the second request waits only for the rest of the load: \(second.score)")
        fleet = [machine("cold", loaded: ["m:8b"], memory: 99_000_000_000)]
        scheduler.fleetChanged(fleet: fleet, now: 3_000, into: &actions)
        #expect(scheduler.loadingRemainingMs(SlotKey("cold", "m:8b"), now: 3_000) == nil)
    }

    @Test func resultsTeachRatesAndFailuresPenalise() {
        var scheduler = Scheduler(settings: .perRequest)
        let fleet = twoNodes()
        var actions: [SchedulerAction] = []
        let p = ProxyKey(raw: 1)
        scheduler.route(request(1), from: p, fleet: fleet, now: 0, into: &actions)
        guard case let .routed(_, answer)? = actions.last else { Issue.record("not routed"); return }
        scheduler.result(RouteResult(id: 1, node: answer.node, model: "m:8b", outcome: .ok, status: 200, ttftMilliseconds: 60,
                                     durationMilliseconds: 560, promptTokens: 100, completionTokens: 51, backendPromptMilliseconds: 50,
                                     backendDecodeMilliseconds: 510), from: p, fleet: fleet, now: 560, into: &actions)
        let rates = scheduler.rates.slot(SlotKey(answer.node, "m:8b"))
        #expect(rates?.decode.msPerToken(batch: 1) == 10 && rates?.prefillMsPerToken.value == 0.5)
        scheduler.route(request(2), from: p, fleet: fleet, now: 600, into: &actions)
        guard case let .routed(_, next)? = actions.last else { Issue.record("not routed"); return }
        scheduler.retry(RouteRetry(id: 2, node: next.node, reason: "connect failed"), from: p, fleet: fleet, now: 610, into: &actions)
        #expect((scheduler.rates.node(next.node)?.errors.value(at: 610) ?? 0) > 0.99)
    }

    @Test func aSessionReturnsToItsNode() {
        var scheduler = Scheduler(settings: .perRequest)
        let fleet = twoNodes()
        var actions: [SchedulerAction] = []
        let p = ProxyKey(raw: 1)
        var nodes: [String] = []
        for id in UInt64(1)...4 {
            scheduler.route(request(id, session: 42), from: p, fleet: fleet, now: id * 10, into: &actions)
            guard case let .routed(_, answer)? = actions.last else { Issue.record("not routed"); return }
            nodes.append(answer.node)
            scheduler.result(RouteResult(id: id, node: answer.node, model: "m:8b", outcome: .ok, status: 200), from: p, fleet: fleet,
                             now: id * 10 + 5, into: &actions)
        }
        #expect(Set(nodes).count == 1, "the conversation stays where its KV cache is: \(nodes)")
        #expect(actions.contains { if case let .routed(_, a) = $0 { a.reason.contains("session affinity") } else { false } })
    }
}
