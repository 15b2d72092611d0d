import Glibc
import HerdWire
import Testing
@testable import HerdRouting

@Suite struct LearnedConcurrencySchedulerTests {
    /// A scheduler with learned limits over the one-node fleet.
    func learning() -> SchedulerHarness {
        var h = SchedulerHarness()
        h.scheduler = Scheduler(settings: Scheduler.Settings.perRequest) // no override: learned, starting at 2
        return h
    }

    /// A result as the proxy reports it: 100 prompt and 50 output tokens,
    /// `ttft` ms to the first byte, `duration` ms in all (a non-streaming
    /// answer's first byte is its end).
    func result(_ h: inout SchedulerHarness, _ id: UInt64, ttft: Double, duration: Double? = nil) -> [SchedulerAction] {
        let end = duration ?? ttft
        h.scheduler.result(RouteResult(id: id, node: "a", model: "m:1b", outcome: .ok, status: 200, ttftMilliseconds: ttft,
                                       durationMilliseconds: end, promptTokens: 100, completionTokens: 50,
                                       upstreamTtftMilliseconds: ttft, upstreamMilliseconds: end),
                           from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        defer { h.actions.removeAll() }
        return h.actions
    }

    /// Three requests sent alone, `ms` each: what the learner's cost fit needs.
    func alone(_ h: inout SchedulerHarness, ids: ClosedRange<UInt64>, ms: Double, stream: Bool = false) {
        for id in ids {
            _ = h.route(id, stream: stream)
            _ = result(&h, id, ttft: stream ? ms / 10 : ms, duration: ms)
        }
    }

    @Test func aFastBackendOpensUp() {
        var h = learning()
        alone(&h, ids: 1...3, ms: 1_000)
        #expect(h.route(4).map(\.routedID) == [4])
        _ = h.advance(by: 10)
        #expect(h.route(5).map(\.routedID) == [5])
        #expect(h.route(6).isEmpty, "the prior is 2")
        // An answer that took what its tokens take while the limit bound (2 of 2),
        // and ended before the one sent ahead of it (served alongside): the limit grows and the queue drains.
        // In slow start it doubles: two proven served at once, four let in.
        let freed = result(&h, 5, ttft: 1_100)
        #expect(freed.compactMap(\.routedID) == [6])
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 4)
        #expect(h.route(7).map(\.routedID) == [7])
        #expect(h.route(8).map(\.routedID) == [8])
        #expect(h.route(9).isEmpty, "four in flight")
    }

    @Test func aOneSlotBackendIsLearnedAsOneSlot() {
        var h = learning()
        alone(&h, ids: 1...3, ms: 500)
        _ = h.route(4)
        _ = h.route(5)
        _ = result(&h, 4, ttft: 500)
        // The second waited inside the backend behind the first: twice its tokens' time.
        _ = result(&h, 5, ttft: 1_000)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 1)
        _ = h.route(6)
        #expect(h.route(7).isEmpty, "the next one waits in herd's queue, not inside the backend")
    }

    @Test func anotherModelSentDuringAnAnswerExcusesItsTime() {
        // Two models' runners may take turns rather than batch (two processes
        // sharing a GPU's memory bandwidth): another model's request sent to
        // the node while an answer runs can slow it as much as a wait for a
        // slot. That answer is judged as one beside other models (only the
        // backend's word or its order proves a wait), not as a wait: on
        // simulated machines whose runners take turns, a model's limit was
        // cut to half its slots so.
        var h = learning()
        h.fleet = [node("a", models: ["m:1b", "n:1b"], loaded: ["m:1b", "n:1b"])]
        alone(&h, ids: 1...3, ms: 500)
        _ = h.route(4)
        _ = h.route(5)
        _ = h.route(6, model: "n:1b")
        #expect(result(&h, 4, ttft: 500).compactMap(\.routedID) == [6], "the other model's request joins after both were sent")
        _ = result(&h, 5, ttft: 1_000)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 2)
        // The same two answers with nothing else on the node: the second waited (aOneSlotBackendIsLearnedAsOneSlot).
        var alone = learning()
        alone.fleet = h.fleet
        self.alone(&alone, ids: 1...3, ms: 500)
        _ = alone.route(4)
        _ = alone.route(5)
        _ = result(&alone, 4, ttft: 500)
        _ = result(&alone, 5, ttft: 1_000)
        #expect(alone.scheduler.limit(node: "a", model: "m:1b") == 1)
    }

    /// Long requests (10 s streams): slow start cannot wait for completions.
    /// The stream that fills the limit reports its first byte; a good one
    /// doubles the limit at once.
    @Test func firstBytesOpenUpALongRequestsBackendInRoundTrips() {
        var h = learning()
        alone(&h, ids: 101...103, ms: 10_000, stream: true)
        func answers(_ actions: [SchedulerAction]) -> [RouteAnswer] {
            actions.compactMap { if case let .routed(_, answer) = $0 { answer } else { nil } }
        }
        #expect(answers(h.route(1, stream: true)).map(\.reportStart) == [false], "one of two: the limit does not bind")
        #expect(answers(h.route(2, stream: true)).map(\.reportStart) == [true], "it fills the limit: report its first byte")
        for id in UInt64(3)...20 { #expect(h.route(id, stream: true).isEmpty) }
        h.scheduler.started(RouteStarted(id: 2, status: 200, upstreamTtftMilliseconds: 1_000), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 4)
        let next = answers(h.actions)
        h.actions.removeAll()
        #expect(next.map(\.id) == [3, 4] && next.map(\.reportStart) == [false, true])
        h.scheduler.started(RouteStarted(id: 4, status: 200, upstreamTtftMilliseconds: 1_000), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 8)
        #expect(answers(h.actions).map(\.id) == [5, 6, 7, 8])
        h.actions.removeAll()
        _ = result(&h, 2, ttft: 1_000, duration: 10_000)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 8, "its end teaches nothing its first byte did not")
        // A first byte that came late (the request waited inside the backend) ends slow start.
        h.scheduler.started(RouteStarted(id: 8, status: 200, upstreamTtftMilliseconds: 9_000), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") < 8)
    }

    /// Before any answer prices a prompt, a first byte's order still proves
    /// something: the stream ahead was still in flight when this one's first
    /// token came, so both were served at once. Waiting for a cost fit held
    /// the fastest machine's model at a limit of 2 for 70 s in a mix of
    /// streams and models (nothing alone on the node to fit).
    @Test func beforeAnyFitAFirstByteOpensByItsOrder() {
        var h = learning()
        _ = h.route(1, stream: true)
        _ = h.advance(by: 10)
        _ = h.route(2, stream: true)
        h.scheduler.started(RouteStarted(id: 2, status: 200, upstreamTtftMilliseconds: 200), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 4)
        // The one ahead had ended: its first byte proves nothing served at once (a one-slot backend does so).
        var one = learning()
        _ = one.route(1, stream: true)
        _ = one.advance(by: 10)
        _ = one.route(2, stream: true)
        _ = one.advance(by: 1_000)
        _ = result(&one, 1, ttft: 100, duration: 1_010)
        one.scheduler.started(RouteStarted(id: 2, status: 200, upstreamTtftMilliseconds: 1_100), from: SchedulerHarness.p1, fleet: one.fleet,
                              now: one.now, into: &one.actions)
        #expect(one.scheduler.limit(node: "a", model: "m:1b") < 4)
    }

    /// Slow start with a cost fit (three 10 s streams alone): two streams
    /// sent, the first ends, then the second's quick first byte (STARTED).
    func firstByteAfterTheOneAheadEnded() -> SchedulerHarness {
        var h = learning()
        alone(&h, ids: 101...103, ms: 10_000, stream: true)
        _ = h.route(1, stream: true)
        _ = h.route(2, stream: true)
        _ = result(&h, 1, ttft: 1_000, duration: 10_000)
        h.scheduler.started(RouteStarted(id: 2, status: 200, upstreamTtftMilliseconds: 1_000), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        return h
    }

    /// A first byte that judged nothing (it met the one ahead nearly done)
    /// leaves the stream's end to teach: this one took twice its tokens' time.
    @Test func aFirstByteThatJudgesNothingLeavesTheEndToTeach() {
        var h = firstByteAfterTheOneAheadEnded()
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 2)
        _ = result(&h, 2, ttft: 1_000, duration: 20_000)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 1, "its end is a wait: twice its time alone")
    }

    /// A one-slot backend in slow start: the stream that filled the limit met
    /// the one ahead nearly done and starts at once when it ends. Its quick
    /// first byte proves nothing served alongside: the limit must not double.
    @Test func aQuickFirstByteAfterTheOneAheadEndedProvesNothing() {
        var h = firstByteAfterTheOneAheadEnded()
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 2, "the one it met had ended: nothing served at once")
        // The next one's same first byte while the one ahead (2) is still in flight proves two at once.
        _ = h.route(3, stream: true)
        h.scheduler.started(RouteStarted(id: 3, status: 200, upstreamTtftMilliseconds: 1_000), from: SchedulerHarness.p1, fleet: h.fleet,
                            now: h.now, into: &h.actions)
        #expect(h.scheduler.limit(node: "a", model: "m:1b") == 4)
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
