import Testing
@testable import HerdHTTP

/// The HTTP/1.1 connection's logic in virtual time: no socket, no sleep.
@Suite struct HTTP1ServerFlowTests {
    static var limits: HTTP1ServerFlow.Limits {
        var configuration = HTTPServerConfiguration()
        configuration.maxBodyBytes = 1000
        configuration.headTimeoutMilliseconds = 100
        configuration.bodyIdleTimeoutMilliseconds = 200
        configuration.keepAliveTimeoutMilliseconds = 300
        configuration.lingerMilliseconds = 50
        return HTTP1ServerFlow.Limits(configuration)
    }

    static let get = HTTP1ServerFlow.Head(isHEAD: false, versionMinor: 1, keepAlive: true, contentLength: 0)
    static func post(_ length: Int?) -> HTTP1ServerFlow.Head { .init(isHEAD: false, versionMinor: 1, keepAlive: true, contentLength: length) }

    /// A flow that has parsed a request head at `now`.
    static func inBody(_ head: HTTP1ServerFlow.Head = post(10), now: UInt64 = 0) -> HTTP1ServerFlow {
        var flow = HTTP1ServerFlow(limits: limits)
        flow.start(now: now)
        flow.requestBytes(now: now)
        #expect(flow.head(head, draining: false) == .dispatch)
        flow.readProcessed(now: now)
        return flow
    }

    @Test func aConnectionThatSendsNothingIsClosedQuietly() {
        var flow = HTTP1ServerFlow(limits: Self.limits)
        flow.start(now: 0)
        #expect(flow.deadline == 100)
        #expect(flow.timerFired(now: 99) == .none, "a timer cannot fire early")
        #expect(flow.timerFired(now: 100) == .close)
        #expect(flow.phase == .closing)
    }

    @Test func aSlowHeadIs408AndLaterBytesDoNotExtendIt() {
        var flow = HTTP1ServerFlow(limits: Self.limits)
        flow.start(now: 0)
        flow.requestBytes(now: 40) // the head's first bytes
        flow.readProcessed(now: 40)
        #expect(flow.deadline == 140)
        flow.requestBytes(now: 120) // more of the same head
        flow.readProcessed(now: 120)
        #expect(flow.deadline == 140)
        #expect(flow.timerFired(now: 140) == .requestTimeout("request head not received in time"))
    }

    @Test func aStalledBodyIs408AfterTheIdleTimeSinceTheLastBytes() {
        var flow = Self.inBody(now: 0)
        #expect(flow.deadline == 200)
        let accepted = flow.body(3)
        #expect(accepted)
        flow.readProcessed(now: 150)
        #expect(flow.deadline == 350, "each read re-arms the body timer")
        #expect(flow.timerFired(now: 350) == .requestTimeout("request body not received in time"))
    }

    @Test func aStalledBodyAfterTheResponseBeganCutsTheResponse() {
        var flow = Self.inBody(now: 0)
        _ = flow.responseStarts(status: 200, contentLength: nil, draining: false)
        #expect(flow.timerFired(now: 200) == .abortResponse)
    }

    @Test func aPausedBodyDoesNotTimeOutAndResumingReArms() {
        var flow = Self.inBody(now: 0)
        flow.setBodyPaused(true, now: 10)
        #expect(flow.deadline == nil)
        #expect(flow.timerFired(now: 10_000) == .none)
        flow.setBodyPaused(false, now: 10_000)
        #expect(flow.deadline == 10_200)
    }

    @Test func aCompleteRequestStopsTheReadTimer() {
        var flow = Self.inBody(now: 0)
        _ = flow.body(10)
        flow.messageComplete()
        #expect(flow.phase == .responding)
        #expect(flow.deadline == nil)
    }

    @Test func keepAliveThenIdleClose() {
        var flow = Self.inBody(Self.get, now: 0)
        flow.messageComplete()
        let framing = flow.responseStarts(status: 200, contentLength: 5, draining: false)
        #expect(framing == .init(contentLength: 5, chunked: false, connection: .none))
        #expect(flow.responseEnded(now: 20) == .nextRequest)
        #expect(flow.phase == .idle)
        #expect(flow.deadline == 320, "the keep-alive timeout, from the end of the response")
        #expect(flow.timerFired(now: 320) == .close)
    }

    @Test func framingFollowsTheRequestAndTheStatus() {
        var streaming = Self.inBody(Self.get)
        streaming.messageComplete()
        #expect(streaming.responseStarts(status: 200, contentLength: nil, draining: false) == .init(contentLength: nil, chunked: true, connection: .none))

        var http10 = Self.inBody(.init(isHEAD: false, versionMinor: 0, keepAlive: true, contentLength: 0))
        http10.messageComplete()
        #expect(http10.responseStarts(status: 200, contentLength: nil, draining: false) == .init(contentLength: nil, chunked: false, connection: .close),
                "HTTP/1.0 and no length: the body ends with the connection")
        #expect(http10.responseEnded(now: 0) == .closeAfterFlush)

        var http10Length = Self.inBody(.init(isHEAD: false, versionMinor: 0, keepAlive: true, contentLength: 0))
        http10Length.messageComplete()
        #expect(http10Length.responseStarts(status: 200, contentLength: 2, draining: false).connection == .keepAlive)

        var head = Self.inBody(.init(isHEAD: true, versionMinor: 1, keepAlive: true, contentLength: 0))
        head.messageComplete()
        #expect(head.responseStarts(status: 200, contentLength: nil, draining: false) == .init(contentLength: nil, chunked: false, connection: .none))
        #expect(!head.writesBody)

        var noContent = Self.inBody(Self.get)
        noContent.messageComplete()
        #expect(noContent.responseStarts(status: 204, contentLength: 0, draining: false).contentLength == nil)
    }

    @Test func aDeclaredBodyOverTheLimitIs413BeforeReadingIt() {
        var flow = HTTP1ServerFlow(limits: Self.limits)
        flow.start(now: 0)
        flow.requestBytes(now: 0)
        guard case let .tooLarge(message) = flow.head(Self.post(5000), draining: false) else { Issue.record("expected 413"); return }
        #expect(message.contains("5000"))
        var chunked = Self.inBody(Self.post(nil))
        let first = chunked.body(600), second = chunked.body(600)
        #expect(first)
        #expect(!second, "a chunked body is counted as it arrives")
    }

    @Test func answeringBeforeTheBodyArrivedLingers() {
        var flow = Self.inBody(now: 0)
        _ = flow.responseStarts(status: 400, contentLength: 2, draining: false)
        #expect(flow.responseEnded(now: 10) == .linger)
        #expect(flow.phase == .closing)
        #expect(flow.timerFired(now: 60) == .close)
    }

    @Test func drainingClosesIdleConnectionsAndEndsKeepAlive() {
        var idle = HTTP1ServerFlow(limits: Self.limits)
        idle.start(now: 0)
        let closesNow = idle.drain()
        #expect(closesNow)
        var busy = Self.inBody(Self.get)
        busy.messageComplete()
        let busyClosesNow = busy.drain()
        #expect(!busyClosesNow)
        #expect(busy.responseStarts(status: 200, contentLength: 1, draining: true).connection == .close)
        #expect(busy.responseEnded(now: 0) == .closeAfterFlush)
    }

    @Test func errorsCloseWithOrWithoutLingering() {
        var lingering = Self.inBody(now: 0)
        lingering.errorAnswered(linger: true, now: 10)
        #expect(lingering.deadline == 60)
        var abrupt = Self.inBody(now: 0)
        abrupt.errorAnswered(linger: false, now: 10)
        #expect(abrupt.deadline == nil && abrupt.phase == .closing)
    }

    @Test func continueOnlyForHTTP11WithABodyToCome() {
        #expect(HTTP1ServerFlow.wantsContinue(versionMinor: 1, expectsContinue: true, contentLength: 4, answered: false))
        #expect(!HTTP1ServerFlow.wantsContinue(versionMinor: 1, expectsContinue: true, contentLength: 0, answered: false))
        #expect(!HTTP1ServerFlow.wantsContinue(versionMinor: 0, expectsContinue: true, contentLength: 4, answered: false))
        #expect(!HTTP1ServerFlow.wantsContinue(versionMinor: 1, expectsContinue: true, contentLength: 4, answered: true))
    }
}
