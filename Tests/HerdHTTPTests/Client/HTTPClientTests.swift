import HerdFakeBackend
import HerdTestSupport
import Testing
import HerdJSON
import HerdRuntime
@testable import HerdHTTP

@Suite struct HTTPClientTests {
    @Test func keepAliveConnectionIsReused() throws {
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        for _ in 0..<5 {
            let response = try fixture.send(chatRequest())
            #expect(response.head?.status == 200)
            let json = try JSONValue.parse(response.body)
            #expect(json["done"]?.boolValue == true)
            #expect(json["eval_count"]?.intValue == 8)
        }
        let opened = try fixture.onLoop { fixture.client.pool(for: fixture.backendAddress).connectionsOpened }
        #expect(opened == 1)
    }

    @Test func streamingResponseIsDeliveredDeChunked() throws {
        var configuration = FakeBackendConfiguration()
        configuration.tokens = 50
        let fixture = try LoopFixture(backend: configuration)
        defer { fixture.shutdown() }
        let response = try fixture.send(chatRequest(stream: true))
        let lines = response.text.split(separator: "\n")
        #expect(lines.count == 51)
        #expect(try JSONValue.parse(String(lines.last!))["done"]?.boolValue == true)
    }

    @Test func idleConnectionClosedByServerIsReplaced() throws {
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        // A server whose keep-alive timeout runs in virtual time closes the pooled connection.
        let thread = fixture.thread
        let holder = ServerHolder()
        let serverClock = ManualClock()
        defer { _ = try? thread.sync { holder.server?.close() } }
        let port = try thread.sync {
            var configuration = HTTPServerConfiguration()
            configuration.keepAliveTimeoutMilliseconds = 50
            let server = HTTPServer(loop: thread.loop, clock: serverClock, configuration: configuration) { $0.respond(status: 200, body: "ok") }
            holder.server = server
            return try server.listen(host: "127.0.0.1", port: 0).port
        }
        let address = try SocketAddress(host: "127.0.0.1", port: port)
        let get = HTTPClientRequest(method: "GET", target: "/")
        #expect(try fixture.send(get, to: address).text == "ok")
        #expect(waitUntil(seconds: 5) { (try? thread.sync { holder.server!.http1Phases }) == [.idle] })
        try thread.sync { serverClock.advance(by: 50) }
        #expect(waitUntil(seconds: 5) { (try? fixture.onLoop { fixture.client.pool(for: address).idleCount }) == 0 },
                "the client saw the server close its pooled connection")
        let second = try fixture.send(get, to: address)
        #expect(second.error == nil)
        #expect(second.text == "ok")
        let opened = try fixture.onLoop { fixture.client.pool(for: address).connectionsOpened }
        #expect(opened == 2)
    }

    @Test func deadPooledConnectionIsRetriedOnAFreshOne() throws {
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        // A raw upstream that answers the first request of a connection with a
        // keep-alive response and closes, unanswered, at the second: the
        // client's pooled connection is dead when it is reused.
        let holder = ServerHolder()
        defer { _ = try? fixture.onLoop { holder.listener?.close() } }
        let port = try fixture.onLoop {
            let listener = try StreamListener(loop: fixture.thread.loop, address: SocketAddress(host: "127.0.0.1", port: 0)) { connection in
                let peer = OneShotUpstream(connection: connection)
                connection.delegate = peer
                connection.startReading()
            }
            holder.listener = listener
            return listener.localAddress!.port
        }
        let address = try SocketAddress(host: "127.0.0.1", port: port)
        let get = HTTPClientRequest(method: "GET", target: "/")
        #expect(try fixture.send(get, to: address).text == "first")
        let delegate = CollectingDelegate()
        let task = try fixture.onLoop { fixture.client.execute(get, to: address, delegate: delegate) }
        try delegate.wait()
        #expect(delegate.error == nil)
        #expect(delegate.text == "first")
        let retried = try fixture.onLoop { task.retriedOnFreshConnection }
        #expect(retried)
    }

    @Test func refusedConnectionFailsWithConnectError() throws {
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        let closed = try SocketAddress(host: "127.0.0.1", port: 1)
        let response = try fixture.send(chatRequest(), to: closed)
        guard case let .connectFailed(error)? = response.error else {
            Issue.record("expected connectFailed, got \(String(describing: response.error))")
            return
        }
        #expect(error.name == "ECONNREFUSED")
        #expect(response.error?.isBeforeResponse == true)
    }

    // Client timeouts in virtual time: the client's clock is a ManualClock the
    // test advances once the exchange is in the phase under test.

    @Test func hangingUpstreamHitsTheFirstByteTimeout() throws {
        var backend = FakeBackendConfiguration()
        backend.failure = .hang
        var client = HTTPClientConfiguration()
        client.firstByteTimeoutMilliseconds = 120_000
        let clock = ManualClock()
        let fixture = try LoopFixture(backend: backend, client: client, clock: clock)
        defer { fixture.shutdown() }
        let delegate = try fixture.start(chatRequest())
        #expect(waitUntil(seconds: 5) { (try? fixture.onLoop { fixture.backend.totalRequests }) == 1 }, "the request reached the backend")
        try fixture.onLoop { clock.advance(by: 119_999) }
        #expect(!delegate.done.wait(milliseconds: 0), "not a millisecond early")
        try fixture.onLoop { clock.advance(by: 1) }
        try delegate.wait()
        #expect(delegate.error == .firstByteTimeout)
        #expect(delegate.error?.isBeforeResponse == true)
    }

    @Test func aStalledResponseHitsTheReadIdleTimeout() throws {
        var backend = FakeBackendConfiguration()
        backend.tokens = 3
        backend.tokenDelayMilliseconds = 600_000 // the head comes at once, then silence
        var client = HTTPClientConfiguration()
        client.readIdleTimeoutMilliseconds = 5_000
        let clock = ManualClock()
        let fixture = try LoopFixture(backend: backend, client: client, clock: clock)
        defer { fixture.shutdown() }
        let delegate = try fixture.start(chatRequest(stream: true))
        #expect(waitUntil(seconds: 5) { (try? fixture.onLoop { delegate.head != nil }) == true })
        try fixture.onLoop { clock.advance(by: 5_000) }
        try delegate.wait()
        #expect(delegate.error == .readTimeout)
        #expect(delegate.error?.isBeforeResponse == false)
    }

    @Test func aSlowExchangeHitsTheTotalTimeout() throws {
        var backend = FakeBackendConfiguration()
        backend.failure = .hang
        var client = HTTPClientConfiguration()
        client.totalTimeoutMilliseconds = 10_000
        let clock = ManualClock()
        let fixture = try LoopFixture(backend: backend, client: client, clock: clock)
        defer { fixture.shutdown() }
        let delegate = try fixture.start(chatRequest())
        #expect(waitUntil(seconds: 5) { (try? fixture.onLoop { fixture.backend.totalRequests }) == 1 })
        try fixture.onLoop { clock.advance(by: 10_000) }
        try delegate.wait()
        #expect(delegate.error == .totalTimeout(afterResponseStarted: false))
        #expect(delegate.error?.isBeforeResponse == true)
    }

    @Test func resetMidStreamIsConnectionLostAfterStart() throws {
        var backend = FakeBackendConfiguration()
        backend.failure = .resetAfterChunks(3)
        backend.tokens = 10
        backend.tokenDelayMilliseconds = 2
        let fixture = try LoopFixture(backend: backend)
        defer { fixture.shutdown() }
        let response = try fixture.send(chatRequest(stream: true))
        guard case .connectionLost(_, afterResponseStarted: true)? = response.error else {
            Issue.record("expected connectionLost mid-response, got \(String(describing: response.error))")
            return
        }
        #expect(response.text.split(separator: "\n").count == 3)
    }

    /// A server that answers `100 Continue` before its answer (asked with
    /// `Expect`, or not): the client skips the interim response.
    @Test func interimContinueIsSkipped() throws {
        let fixture = try LoopFixture(backend: FakeBackendConfiguration())
        defer { fixture.shutdown() }
        var request = chatRequest()
        request.headers.add("Expect", "100-continue")
        let response = try fixture.send(request)
        #expect(response.error == nil && response.head?.status == 200, "\(String(describing: response.error)) \(String(describing: response.head?.status))")
        #expect(response.text.contains("\"done\":true"))
        // The connection is reused cleanly after it.
        let again = try fixture.send(chatRequest())
        #expect(again.head?.status == 200 && again.text.contains("\"done\":true"))
    }

    @Test func poolLimitQueuesRequests() throws {
        var client = HTTPClientConfiguration()
        client.maxConnectionsPerUpstream = 2
        var backend = FakeBackendConfiguration()
        backend.firstByteDelayMilliseconds = 20
        let fixture = try LoopFixture(backend: backend, client: client)
        defer { fixture.shutdown() }
        let delegates = (0..<6).map { _ in CollectingDelegate() }
        try fixture.onLoop {
            for d in delegates { fixture.client.execute(chatRequest(), to: fixture.backendAddress, delegate: d) }
        }
        for d in delegates {
            try d.wait()
            #expect(d.head?.status == 200)
        }
        let opened = try fixture.onLoop { fixture.client.pool(for: fixture.backendAddress).connectionsOpened }
        #expect(opened == 2)
    }

    /// 10,000 chunks through a slow reader: the consumer pauses reading above
    /// 64 KiB and drains slowly; the backend's unsent bytes and the consumer's
    /// buffer both stay bounded while every byte arrives.
    @Test func tenThousandChunksThroughASlowReaderKeepMemoryBounded() throws {
        var backend = FakeBackendConfiguration()
        backend.tokens = 10_000
        backend.tokenPadding = 100
        let fixture = try LoopFixture(backend: backend)
        defer { fixture.shutdown() }
        let delegate = CollectingDelegate()
        let consumer = SlowConsumer(loop: fixture.thread.loop)
        delegate.onBody = { task, count in consumer.received(count, task: task) }
        _ = try fixture.onLoop { fixture.client.execute(chatRequest(stream: true), to: fixture.backendAddress, delegate: delegate) }
        try delegate.wait(60_000)
        #expect(delegate.finished)
        #expect(delegate.text.split(separator: "\n").count == 10_001)
        let maxBuffered = try fixture.onLoop { consumer.maxBuffered }
        let maxPending = try fixture.onLoop { fixture.backend.maxPendingResponseBytes }
        let pauses = try fixture.onLoop { consumer.pauses }
        #expect(pauses > 10, "the reader must have applied backpressure")
        #expect(maxBuffered <= SlowConsumer.highWatermark + 64 * 1024)
        #expect(maxPending <= 1024 * 1024, "backend kept \(maxPending) unsent bytes")
        #expect(delegate.body.count > 1_000_000)
    }
}

/// A consumer that drains 16 KiB every millisecond and pauses the upstream
/// above its high watermark.
final class SlowConsumer: @unchecked Sendable {
    static let highWatermark = 64 * 1024
    let timer: LoopTimer
    var buffered = 0
    var maxBuffered = 0
    var pauses = 0
    weak var paused: HTTPClientTask?

    init(loop: EventLoop) {
        timer = LoopTimer(loop: loop)
        timer.start(after: 1, repeating: 1) { [unowned self] in
            self.buffered = max(0, self.buffered - 16 * 1024)
            if self.buffered < SlowConsumer.highWatermark / 2, let task = self.paused {
                self.paused = nil
                task.resumeReading()
            }
        }
    }

    deinit { timer.close() }

    func received(_ count: Int, task: HTTPClientTask) {
        buffered += count
        maxBuffered = max(maxBuffered, buffered)
        if buffered > SlowConsumer.highWatermark, paused == nil {
            pauses += 1
            paused = task
            task.pauseReading()
        }
    }
}

/// A raw upstream: answers a connection's first request and closes at the second.
final class OneShotUpstream: StreamConnectionDelegate {
    let connection: StreamConnection
    var requests = 0
    init(connection: StreamConnection) { self.connection = connection }
    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        requests += 1
        if requests == 1 {
            connection.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst".utf8))
        } else {
            connection.close()
        }
    }
    func connection(_ connection: StreamConnection, didEndWith error: UVError?) { connection.close() }
}

/// Keeps test servers alive for a test's duration.
final class ServerHolder: @unchecked Sendable {
    var server: HTTPServer?
    var listener: StreamListener?
}
