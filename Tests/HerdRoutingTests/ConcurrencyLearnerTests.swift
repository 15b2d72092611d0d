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
        var learner = ConcurrencyLearner(prior: 250)
        for i in 0..<20 { learner.completed(ttft: 10, concurrency: 250 + i, ok: true, busy: false) }
        #expect(learner.limit == Int(ConcurrencyLearner.ceiling))
    }
}

@Suite struct LearnedConcurrencySchedulerTests {
    /// A scheduler with learned limits over the one-node fleet.
    func learning() -> SchedulerHarness {
        var h = SchedulerHarness()
        h.scheduler = Scheduler(settings: Scheduler.Settings()) // no override: learned, starting at 2
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
