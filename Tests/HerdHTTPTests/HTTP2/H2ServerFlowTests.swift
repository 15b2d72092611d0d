import HerdRuntime
import HerdTestSupport
import Testing
@testable import HerdHTTP

/// The h2c connection's timeouts in virtual time.
@Suite struct H2ServerFlowTests {
    static var limits: H2ServerFlow.Limits {
        var configuration = HTTPServerConfiguration()
        configuration.headTimeoutMilliseconds = 100
        configuration.keepAliveTimeoutMilliseconds = 1_000
        configuration.bodyIdleTimeoutMilliseconds = 300
        return H2ServerFlow.Limits(configuration)
    }

    @Test func aPrefaceAloneDoesNotHoldTheSocket() {
        var flow = H2ServerFlow(limits: Self.limits)
        flow.start(now: 0)
        flow.readProcessed(now: 50) // SETTINGS, PING: not a request
        #expect(flow.deadline == 100, "frames without a stream do not extend the first-stream timeout")
        #expect(flow.timerFired(now: 99) == .none)
        #expect(flow.timerFired(now: 100) == .goAway)
    }

    @Test func aStalledRequestTimesOutAndACompleteOneWaitsForItsResponse() {
        var flow = H2ServerFlow(limits: Self.limits)
        flow.start(now: 0)
        flow.streamOpened(now: 10)
        #expect(flow.deadline == 310)
        flow.readProcessed(now: 200)
        #expect(flow.deadline == 500, "body bytes re-arm")
        #expect(flow.timerFired(now: 500) == .timeOutIncompleteRequests)
        var complete = H2ServerFlow(limits: Self.limits)
        complete.start(now: 0)
        complete.streamOpened(now: 10)
        complete.requestCompleted(now: 20)
        #expect(complete.deadline == nil, "responding: the handler's time")
        complete.streamClosed(requestWasComplete: true, now: 5_000)
        #expect(complete.deadline == 6_000, "idle again: the keep-alive timeout")
        #expect(complete.timerFired(now: 6_000) == .goAway)
    }
}

/// h2c timeouts through a real socket, the server on a ManualClock.
@Suite struct H2CTimeoutTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    static let emptySettings: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]

    /// Frames read until the peer closes: (type, stream id, payload).
    static func frames(_ bytes: [UInt8]) -> [(type: UInt8, stream: UInt32, payload: [UInt8])] {
        var out: [(UInt8, UInt32, [UInt8])] = []
        var i = 0
        while i + 9 <= bytes.count {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let stream = UInt32(bytes[i + 5] & 0x7F) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])
            guard i + 9 + length <= bytes.count else { break }
            out.append((bytes[i + 3], stream, Array(bytes[(i + 9)..<(i + 9 + length)])))
            i += 9 + length
        }
        return out
    }

    @Test func anIdleClientThatSentThePrefaceGetsGoAwayAndIsClosed() throws {
        var configuration = HTTPServerConfiguration()
        configuration.headTimeoutMilliseconds = 10_000
        let clock = ManualClock()
        let fixture = try ServerFixture(configuration: configuration, clock: clock) { $0.respond(status: 200) }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send(Self.preface + Self.emptySettings)
        #expect(waitUntil(seconds: 5) { (try? fixture.onLoop { clock.armedCount }) == 1 }, "the h2 connection armed its timer")
        // The server has read our SETTINGS once it acknowledged them (its own SETTINGS + the ACK):
        // closing with our bytes unread would reset the connection and lose the GOAWAY.
        while Self.frames(client.buffered).filter({ $0.type == 4 }).count < 2, client.fill() {}
        try fixture.onLoop { clock.advance(by: 10_000) }
        let frames = Self.frames(client.readToEnd())
        #expect(frames.contains { $0.type == 7 }, "GOAWAY before the close: \(frames.map(\.type))")
        #expect(try fixture.onLoop { fixture.server.connectionCount } == 0)
    }

    @Test func aStalledRequestBodyIs408OnItsStream() throws {
        var configuration = HTTPServerConfiguration()
        configuration.bodyIdleTimeoutMilliseconds = 30_000
        let clock = ManualClock()
        let held = HeldExchange()
        let fixture = try ServerFixture(configuration: configuration, clock: clock) { exchange in
            held.hold(exchange)
            exchange.collectBody { _ in exchange.respond(status: 200) }
        }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        // HEADERS (END_HEADERS, no END_STREAM) for POST / over http: HPACK static
        // entries 3, 4, 6, and `:authority: x` (name index 1, literal value).
        let headers: [UInt8] = [0, 0, 6, 1, 0x4, 0, 0, 0, 1, 0x83, 0x84, 0x86, 0x01, 0x01, 0x78]
        client.send(Self.preface + Self.emptySettings + headers)
        #expect(held.arrived.wait(milliseconds: 5000))
        try fixture.onLoop { clock.advance(by: 30_000) }
        var received: [UInt8] = []
        let answered = waitUntil(seconds: 5) {
            client.fill()
            received = client.buffered
            return Self.frames(received).contains { $0.type == 0 && $0.stream == 1 }
        }
        #expect(answered)
        let onStream = Self.frames(received).filter { $0.stream == 1 }
        #expect(onStream.first?.type == 1, "a response HEADERS frame: \(onStream.map(\.type))")
        #expect(onStream.first.map { String(decoding: $0.payload, as: UTF8.self).contains("408") } == true)
        let body = onStream.filter { $0.type == 0 }.flatMap(\.payload)
        #expect(String(decoding: body, as: UTF8.self).contains("not received in time"))
    }

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(payload.count >> 16), UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF), type, flags,
         UInt8(stream >> 24), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    /// DATA frames of at most 16 KiB (the default frame size) carrying `count` bytes.
    static func data(stream: UInt32, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var left = count
        while left > 0 {
            let n = min(left, 16_384)
            out += frame(type: 0, stream: stream, [UInt8](repeating: 0x61, count: n))
            left -= n
        }
        return out
    }

    /// Connection-level WINDOW_UPDATE increments the server sent, once it has
    /// answered our PING `tag` (so every frame sent before it was processed).
    static func windowUpdates(_ client: RawClient, afterPing tag: UInt8) -> Int? {
        client.send(frame(type: 6, stream: 0, [UInt8](repeating: tag, count: 8)))
        var frames: [(type: UInt8, stream: UInt32, payload: [UInt8])] = []
        let acked = waitUntil(seconds: 5) {
            client.fill()
            frames = Self.frames(client.buffered)
            return frames.contains { $0.type == 6 && $0.payload.first == tag }
        }
        guard acked else { return nil }
        return frames.filter { $0.type == 8 && $0.stream == 0 }
            .map { Int($0.payload[0] & 0x7F) << 24 | Int($0.payload[1]) << 16 | Int($0.payload[2]) << 8 | Int($0.payload[3]) }
            .reduce(0, +)
    }

    /// Found: h2 request bodies were acknowledged as they arrived, so one
    /// connection could hold 256 streams × the body limit in memory.
    @Test func requestBodiesPastTheConnectionBudgetAreNotAcknowledgedUntilAStreamEnds() throws {
        var configuration = HTTPServerConfiguration()
        configuration.maxConnectionBodyBytes = 40_960
        let fixture = try ServerFixture(configuration: configuration, clock: ManualClock()) { exchange in
            exchange.collectBody { _ in exchange.respond(status: 200) }
        }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        // POST / on streams 1 and 3 (see aStalledRequestBodyIs408OnItsStream), bodies not ended.
        let post: [UInt8] = [0x83, 0x84, 0x86, 0x01, 0x01, 0x78]
        client.send(Self.preface + Self.emptySettings + Self.frame(type: 1, flags: 0x4, stream: 1, post) + Self.data(stream: 1, count: 40_960))
        // nghttp2 sends WINDOW_UPDATE once half the window (32 KiB) is consumed. The
        // server consumes as it delivers the body, which may come after a PING's ack
        // on a loaded machine: wait for the update, not for one ack.
        var first: Int?
        #expect(waitUntil(seconds: 5) {
            first = Self.windowUpdates(client, afterPing: 1)
            return first == 32_768
        }, "within the budget: acknowledged (\(first.map(String.init) ?? "no ack"))")
        client.send(Self.frame(type: 1, flags: 0x4, stream: 3, post) + Self.data(stream: 3, count: 40_960))
        #expect(Self.windowUpdates(client, afterPing: 2) == first, "over the budget: stream 3's 40 KiB are held")
        // Stream 1 ends; its response closes it and frees its share of the budget.
        client.send(Self.frame(type: 0, flags: 0x1, stream: 1, []))
        #expect(waitUntil(seconds: 5) { Self.windowUpdates(client, afterPing: 3) == 81_920 }, "stream 3's bytes acknowledged once stream 1 closed")
    }
}
