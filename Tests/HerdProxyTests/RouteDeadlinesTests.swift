import Testing
@testable import herd_proxy

/// The proxy's hold on herd-control's answers, in virtual time.
@Suite struct RouteDeadlinesTests {
    @Test func anUnansweredRouteExpiresAfterTheRouteTimeoutNotBefore() {
        var d = RouteDeadlines(routeTimeout: 1_000, granularity: 100)
        d.asked(1, now: 0)
        d.asked(2, now: 10)
        d.asked(3, now: 20)
        d.done(2)
        #expect(d.nextCheck(now: 20) == 1_000)
        #expect(d.expire(now: 999).isEmpty, "not a millisecond early")
        #expect(d.expire(now: 1_000) == [1])
        #expect(d.expire(now: 1_050) == [3], "an answered one is skipped")
        #expect(d.isEmpty && d.nextCheck(now: 1_050) == nil)
    }

    @Test func queuedExtendsTheDeadlineByTheQueueTime() {
        var d = RouteDeadlines(routeTimeout: 1_000, granularity: 100)
        d.asked(1, now: 0)
        d.queued(1, timeout: 30_000, now: 200)
        #expect(d.expire(now: 5_000).isEmpty, "queued: control answers within its queue time")
        #expect(d.expire(now: 31_199).isEmpty)
        #expect(d.expire(now: 31_200) == [1], "the queue time plus the route timeout")
        d.queued(9, timeout: 10, now: 0)
        #expect(d.isEmpty, "a QUEUED for a request no longer waiting is ignored")
    }

    @Test func aRetryRestartsTheClockAndChecksAreNotPerRequest() {
        var d = RouteDeadlines(routeTimeout: 1_000, granularity: 100)
        d.asked(1, now: 0)
        d.done(1)
        d.asked(1, now: 600) // answered, failed on its node, asked again
        #expect(d.expire(now: 1_000).isEmpty, "the first ask's deadline no longer holds")
        #expect(d.nextCheck(now: 1_000) == 1_600)
        #expect(d.expire(now: 1_600) == [1])
        // A steady stream of answered requests: checks stay at least `granularity` apart.
        for i in 0..<1_000 { d.asked(UInt64(100 + i), now: 2_000 + UInt64(i)); d.done(UInt64(100 + i)) }
        d.asked(5_000, now: 3_000)
        #expect(d.nextCheck(now: 3_000) == 3_100)
        #expect(d.expire(now: 3_100).isEmpty)
        #expect(d.expire(now: 4_000) == [5_000])
    }
}
