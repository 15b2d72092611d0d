import HerdTestSupport
import Testing
import HerdRuntime
@testable import HerdHTTP

/// h2c (HTTP/2 with prior knowledge) served by the same handler as HTTP/1.1,
/// checked with real HTTP/2 clients: curl and h2load (nghttp2-client).
@Suite struct H2CTests {
    static func streamingHandler(_ exchange: HTTPExchange) {
        exchange.collectBody { body in
            if exchange.head.path == "/stream" {
                exchange.startResponse(status: 200, headers: ["Content-Type": "application/x-ndjson", "X-Proto": "\(exchange.head.versionMajor)"])
                var n = 0
                let timer = LoopTimer(loop: exchange.loop)
                timer.start(after: 1, repeating: 1) {
                    n += 1
                    exchange.write("{\"n\":\(n)}\n")
                    if n == 20 {
                        timer.close()
                        exchange.end()
                    }
                }
            } else {
                exchange.respond(status: 200, headers: ["X-Proto": "\(exchange.head.versionMajor)", "X-Host": exchange.head.headers["host"] ?? "-"],
                                 body: Array("\(exchange.head.method) \(exchange.head.target) ".utf8) + body)
            }
        }
    }

    @Test func curlPriorKnowledgeGetPostAndStream() throws {
        let fixture = try ServerFixture(handler: Self.streamingHandler)
        defer { fixture.shutdown() }
        let base = "http://127.0.0.1:\(fixture.port)"
        let get = ProcessRunner.run("/usr/bin/curl", ["-s", "-i", "--http2-prior-knowledge", base + "/api/tags?x=1"])
        #expect(get.status == 0)
        #expect(get.output.hasPrefix("HTTP/2 200"))
        #expect(get.output.contains("x-proto: 2"))
        #expect(get.output.contains("x-host: 127.0.0.1:\(fixture.port)"))
        #expect(get.output.hasSuffix("GET /api/tags?x=1 "))

        let post = ProcessRunner.run("/usr/bin/curl", ["-s", "--http2-prior-knowledge", "-d", "{\"model\":\"m\"}", base + "/api/chat"])
        #expect(post.output == "POST /api/chat {\"model\":\"m\"}")

        let stream = ProcessRunner.run("/usr/bin/curl", ["-s", "-N", "--http2-prior-knowledge", base + "/stream"])
        let lines = stream.output.split(separator: "\n")
        #expect(lines.count == 20)
        #expect(lines.last == "{\"n\":20}")
    }

    @Test func h2loadManyStreamsOverFewConnections() throws {
        let fixture = try ServerFixture(handler: Self.streamingHandler)
        defer { fixture.shutdown() }
        let result = ProcessRunner.run("/usr/bin/h2load", ["-n", "2000", "-c", "4", "-m", "10", "http://127.0.0.1:\(fixture.port)/api/version"])
        #expect(result.status == 0)
        #expect(result.output.contains("2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored"), "\(result.output)")
        #expect(result.output.contains("status codes: 2000 2xx"))
    }

    @Test func http1StillWorksOnTheSamePort() throws {
        let fixture = try ServerFixture(handler: Self.streamingHandler)
        defer { fixture.shutdown() }
        let result = ProcessRunner.run("/usr/bin/curl", ["-s", "-i", "--http1.1", "http://127.0.0.1:\(fixture.port)/x"])
        #expect(result.output.hasPrefix("HTTP/1.1 200"))
        #expect(result.output.contains("X-Proto: 1"))
    }
}
