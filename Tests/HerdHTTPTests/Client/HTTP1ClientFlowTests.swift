import Testing
@testable import HerdHTTP

/// The upstream connection's timeouts in virtual time: no socket, no sleep.
@Suite struct HTTP1ClientFlowTests {
    static func limits(readIdle: UInt64 = 0, total: UInt64 = 0) -> HTTP1ClientFlow.Limits {
        var configuration = HTTPClientConfiguration()
        configuration.connectTimeoutMilliseconds = 100
        configuration.firstByteTimeoutMilliseconds = 1_000
        configuration.readIdleTimeoutMilliseconds = readIdle
        configuration.totalTimeoutMilliseconds = total
        configuration.idleTimeoutMilliseconds = 5_000
        return HTTP1ClientFlow.Limits(configuration)
    }

    @Test func connectThenFirstByte() {
        var flow = HTTP1ClientFlow(limits: Self.limits())
        flow.connecting(now: 0)
        #expect(flow.deadline == 100)
        #expect(flow.timerFired(now: 99) == .none)
        #expect(flow.timerFired(now: 100) == .connectTimeout)
        var sent = HTTP1ClientFlow(limits: Self.limits())
        sent.connecting(now: 0)
        sent.requestSent(now: 50)
        #expect(sent.deadline == 1_050)
        #expect(sent.timerFired(now: 1_050) == .firstByteTimeout)
        #expect(HTTP1ClientFlow.Expiry.firstByteTimeout.error == .firstByteTimeout)
    }

    @Test func theFirstByteStopsTheTimerUnlessReadsHaveAnIdleLimit() {
        var open = HTTP1ClientFlow(limits: Self.limits())
        open.requestSent(now: 0)
        open.bytesReceived(now: 10)
        #expect(open.deadline == nil, "no read idle limit: a long stream may pause")
        var idle = HTTP1ClientFlow(limits: Self.limits(readIdle: 300))
        idle.requestSent(now: 0)
        idle.bytesReceived(now: 10)
        #expect(idle.deadline == 310)
        idle.bytesReceived(now: 200)
        #expect(idle.deadline == 500, "each read re-arms")
        #expect(idle.timerFired(now: 500) == .readTimeout)
    }

    @Test func aPausedReaderIsNotASilentUpstream() {
        var flow = HTTP1ClientFlow(limits: Self.limits(readIdle: 300))
        flow.requestSent(now: 0)
        flow.bytesReceived(now: 10)
        flow.setPaused(true, now: 20)
        #expect(flow.deadline == nil)
        #expect(flow.timerFired(now: 10_000) == .none)
        flow.setPaused(false, now: 10_000)
        #expect(flow.deadline == 10_300)
    }

    @Test func theTotalTimeoutCoversTheWholeExchange() {
        var flow = HTTP1ClientFlow(limits: Self.limits(readIdle: 300, total: 2_000))
        flow.requestSent(now: 0)
        #expect(flow.deadline == 1_000, "the first-byte timeout comes first")
        flow.bytesReceived(now: 900)
        flow.bytesReceived(now: 1_800)
        #expect(flow.deadline == 2_000, "then the total timeout")
        #expect(flow.timerFired(now: 2_000) == .totalTimeout(afterResponseStarted: true))
        #expect(HTTP1ClientFlow.Expiry.totalTimeout(afterResponseStarted: true).error?.isBeforeResponse == false)
        var early = HTTP1ClientFlow(limits: Self.limits(total: 500))
        early.requestSent(now: 0)
        #expect(early.timerFired(now: 500) == .totalTimeout(afterResponseStarted: false))
        var done = HTTP1ClientFlow(limits: Self.limits(total: 500))
        done.requestSent(now: 0)
        done.bytesReceived(now: 10)
        done.responseFinished()
        #expect(done.deadline == nil)
    }

    @Test func parkedConnectionsCloseWhenUnused() {
        var flow = HTTP1ClientFlow(limits: Self.limits(total: 500))
        flow.requestSent(now: 0)
        flow.responseFinished()
        flow.parked(now: 100)
        #expect(flow.phase == .idle)
        #expect(flow.deadline == 5_100)
        #expect(flow.timerFired(now: 5_100) == .idleClose)
        #expect(HTTP1ClientFlow.Expiry.idleClose.error == nil)
    }

    @Test func whatAnEndedConnectionMeans() {
        var fresh = HTTP1ClientFlow(limits: Self.limits())
        fresh.requestSent(now: 0)
        #expect(fresh.connectionEnded(cleanly: true, reused: true, alreadyRetried: false) == .retryOnFreshConnection)
        #expect(fresh.connectionEnded(cleanly: true, reused: true, alreadyRetried: true) == .fail)
        #expect(fresh.connectionEnded(cleanly: true, reused: false, alreadyRetried: false) == .fail)
        fresh.bytesReceived(now: 1)
        #expect(fresh.connectionEnded(cleanly: true, reused: true, alreadyRetried: false) == .finishIfCloseDelimited)
        #expect(fresh.connectionEnded(cleanly: false, reused: true, alreadyRetried: false) == .fail)
    }
}
