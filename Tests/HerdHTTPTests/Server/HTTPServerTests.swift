import Glibc
import HerdTestSupport
import Testing
import HerdRuntime
@testable import HerdHTTP

/// An echo handler: answers with the method, target and the request body.
func echoHandler(_ exchange: HTTPExchange) {
    exchange.collectBody { body in
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/plain")
        headers.add("X-Target", exchange.head.target)
        exchange.respond(status: 200, headers: headers, body: Array("\(exchange.head.method) \(exchange.head.target) ".utf8) + body)
    }
}

@Suite struct HTTPServerTests {
    @Test func answersAndKeepsTheConnectionAlive() throws {
        let fixture = try ServerFixture(handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.text == "GET /one ")
        #expect(first.header("Date") != nil)
        client.send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        let second = try client.readResponse()
        #expect(second.text == "POST /two hello")
        #expect(second.header("Connection") == nil)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        // The first request is answered only when the test says so, after the
        // others have arrived; order must hold.
        let held = HeldExchange()
        let fixture = try ServerFixture { exchange in
            exchange.collectBody { _ in
                if exchange.head.target == "/slow" { held.hold(exchange) } else { exchange.respond(status: 200, body: exchange.head.target) }
            }
        }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\nPOST /third HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nConnection: close\r\n\r\n")
        #expect(held.arrived.wait(milliseconds: 5000))
        try fixture.onLoop { held.exchange?.respond(status: 200, body: "/slow") }
        let texts = try (0..<4).map { _ in try client.readResponse().text }
        #expect(texts == ["/slow", "/fast", "/third", "/last"])
        #expect(client.isClosedByPeer())
    }

    @Test func chunkedRequestBodyIsDecoded() throws {
        let fixture = try ServerFixture(handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n")
        #expect(fixture.waitForPhases([.body]), "the first chunk was read on its own")
        client.send("5\r\npedia\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.text == "POST /c Wikipedia")
    }

    @Test func expectContinueGetsInterimResponse() throws {
        let fixture = try ServerFixture(handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        client.send("body")
        let final = try client.readResponse()
        #expect(final.status == 200)
        #expect(final.text == "POST /e body")
    }

    @Test func streamingChunkedResponse() throws {
        let fixture = try ServerFixture { exchange in
            exchange.startResponse(status: 200, headers: ["Content-Type": "application/x-ndjson"])
            var n = 0
            let timer = LoopTimer(loop: exchange.loop)
            timer.start(after: 1, repeating: 1) {
                n += 1
                exchange.write("{\"n\":\(n)}\n")
                if n == 5 {
                    timer.close()
                    exchange.end()
                }
            }
        }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET /s HTTP/1.1\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.header("Transfer-Encoding") == "chunked")
        #expect(response.text == "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n")
        // The connection is still usable afterwards.
        client.send("GET /s HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().status == 200)
    }

    @Test func headRequestHasNoBody() throws {
        let fixture = try ServerFixture { $0.respond(status: 200, body: "Ollama is running") }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        let head = try client.readResponse(headRequest: true)
        #expect(head.status == 200)
        #expect(head.header("Content-Length") == "17")
        let get = try client.readResponse()
        #expect(get.text == "Ollama is running")
    }

    @Test func oversizedHeadIs431() throws {
        var configuration = HTTPServerConfiguration()
        configuration.maxHeadBytes = 1024
        let fixture = try ServerFixture(configuration: configuration, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET / HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: 4096))\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 431)
        #expect(response.header("Connection") == "close")
        #expect(response.text.contains("\"error\""))
    }

    @Test func declaredBodyOverLimitIs413BeforeTheBodyIsSent() throws {
        var configuration = HTTPServerConfiguration()
        configuration.maxBodyBytes = 1000
        let fixture = try ServerFixture(configuration: configuration, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("POST / HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
    }

    @Test func chunkedBodyOverLimitIs413() throws {
        var configuration = HTTPServerConfiguration()
        configuration.maxBodyBytes = 1000
        let fixture = try ServerFixture(configuration: configuration, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        let chunk = String(repeating: "z", count: 600)
        client.send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n\(chunk)\r\n258\r\n\(chunk)\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
    }

    // The timeouts below run in virtual time: the server's clock is a
    // ManualClock that the test advances (on the loop thread) once the
    // connection is in the phase under test.

    @Test func slowHeadIs408() throws {
        var configuration = HTTPServerConfiguration()
        configuration.headTimeoutMilliseconds = 10_000
        let clock = ManualClock()
        let fixture = try ServerFixture(configuration: configuration, clock: clock, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET / HTTP/1.1\r\nHost: slo")
        #expect(fixture.waitForPhases([.head]))
        try fixture.onLoop { clock.advance(by: 9_999) }
        #expect(try fixture.onLoop { fixture.server.http1Phases } == [.head], "not a millisecond early")
        try fixture.onLoop { clock.advance(by: 1) }
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(client.isClosedByPeer())
    }

    @Test func slowBodyIs408() throws {
        var configuration = HTTPServerConfiguration()
        configuration.bodyIdleTimeoutMilliseconds = 30_000
        let clock = ManualClock()
        let fixture = try ServerFixture(configuration: configuration, clock: clock, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        #expect(fixture.waitForPhases([.body]))
        try fixture.onLoop { clock.advance(by: 30_000) }
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(response.text.contains("request body not received in time"))
    }

    @Test func idleKeepAliveConnectionIsClosed() throws {
        var configuration = HTTPServerConfiguration()
        configuration.keepAliveTimeoutMilliseconds = 60_000
        let clock = ManualClock()
        let fixture = try ServerFixture(configuration: configuration, clock: clock, handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET / HTTP/1.1\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        #expect(fixture.waitForPhases([.idle]))
        try fixture.onLoop { clock.advance(by: 59_999) }
        #expect(try fixture.onLoop { fixture.server.connectionCount } == 1, "still open just before the timeout")
        try fixture.onLoop { clock.advance(by: 1) }
        #expect(client.isClosedByPeer())
    }

    @Test(arguments: [
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!",
        "POST / HTTP/1.1\r\nContent-Length: 5, 7\r\n\r\nhello!!",
    ])
    func smugglingShapesAre400AndClose(request: String) throws {
        let fixture = try ServerFixture(handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send(request + "GET /smuggled HTTP/1.1\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 400)
        #expect(response.header("Connection") == "close")
        #expect(client.isClosedByPeer())
    }

    @Test func malformedRequestIs400() throws {
        let fixture = try ServerFixture(handler: echoHandler)
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("\u{1}\u{2}\u{3} nonsense\r\n\r\n")
        #expect(try client.readResponse().status == 400)
    }

    @Test func clientGoneCancelsTheExchange() throws {
        let cancelled = SyncFlag()
        let fixture = try ServerFixture { exchange in
            exchange.startResponse(status: 200)
            exchange.write("partial")
            exchange.onCancel = { cancelled.set() }
        }
        defer { fixture.shutdown() }
        do {
            let client = try RawClient(port: fixture.port)
            client.send("GET / HTTP/1.1\r\n\r\n")
            client.fill()
        }
        #expect(cancelled.wait(milliseconds: 2000))
    }

    @Test func drainLetsInFlightResponsesFinish() throws {
        let held = HeldExchange()
        let fixture = try ServerFixture { held.hold($0) }
        defer { fixture.shutdown() }
        let client = try RawClient(port: fixture.port)
        client.send("GET / HTTP/1.1\r\n\r\n")
        #expect(held.arrived.wait(milliseconds: 5000))
        let drained = SyncFlag()
        try fixture.onLoop {
            fixture.server.drain { drained.set() }
            held.exchange?.respond(status: 200, body: "done") // answered after the drain began
        }
        let response = try client.readResponse()
        #expect(response.text == "done")
        #expect(response.header("Connection") == "close")
        #expect(drained.wait(milliseconds: 2000))
        #expect(throws: (any Error).self) { try RawClient(port: fixture.port) }
    }
}

/// An exchange a handler keeps for the test to answer later (on the loop thread).
final class HeldExchange: @unchecked Sendable {
    var exchange: HTTPExchange?
    let arrived = SyncFlag()
    func hold(_ exchange: HTTPExchange) {
        self.exchange = exchange
        arrived.set()
    }
}
