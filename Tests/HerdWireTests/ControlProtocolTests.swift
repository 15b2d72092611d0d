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

    /// The wire types are Codable over JSONValue; errors still name the field.
    @Test func decodingErrorsNameTheField() {
        func message(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return (error as? JSONFieldError)?.message ?? "\(error)" }
        }
        #expect(message { _ = try RouteRequest(json: ["id": 1, "api": "grpc", "path": "/", "model": "m"]) } == "route.api must be ollama or openai (not 'grpc')")
        #expect(message { _ = try RouteRequest(json: ["id": 1, "api": "ollama", "path": "/"]) } == "route.model must be a string")
        #expect(message { _ = try RouteRequest(json: ["id": -1, "api": "ollama", "path": "/", "model": "m"]) }?.hasPrefix("route.id must be an integer") == true)
        #expect(message { _ = try RouteResult(json: ["id": 1, "node": "n", "model": "m", "outcome": "ok", "status": "200"]) } == "result.status must be an integer")
        #expect(message { _ = try RouteRefusal(json: ["id": 1, "code": "nope", "message": "x"]) }?.hasPrefix("route_error.code must be one of model_not_found") == true)
        let heartbeat: JSONValue = ["schema": 1, "node_id": "n", "backends": [["kind": "ollama", "address": "127.0.0.1:1", "models": [["name": "a"], ["name": 7]]]]]
        #expect(message { _ = try Heartbeat(json: heartbeat) } == "heartbeat.backends[0].models[1].name must be a string")
        #expect(message { _ = try Heartbeat(json: ["schema": 1, "node_id": "n", "telemetry": ["gpus": [["utilization": "high"]]]]) }
                == "heartbeat.telemetry.gpus[0].utilization must be a number")
        #expect(message { _ = try Heartbeat(json: "not an object") } == "heartbeat must be a JSON object")
    }

    @Test func fieldsASenderLeavesOutTakeTheirDefaults() throws {
        let route = try RouteRequest(json: ["id": 9, "api": "openai", "path": "/v1/embeddings", "model": "m"])
        #expect(route == RouteRequest(id: 9, api: .openai, path: "/v1/embeddings", model: "m", stream: false))
        #expect(route.json["num_ctx"] == nil, "an absent optional stays absent")
        let heartbeat = try Heartbeat(json: ["schema": 1, "node_id": "old-agent", "backends": [["kind": "ollama", "address": "127.0.0.1:9", "models": [["name": "m"]]]]])
        #expect(heartbeat.backends[0].reachable, "reachable unless said otherwise")
        #expect(heartbeat.telemetry == Telemetry())
        #expect(heartbeat.backends[0].models[0].details == [:])
        // A pressure level this control does not know reads as low.
        let newer = try Heartbeat(json: ["schema": 1, "node_id": "new-agent", "telemetry": ["pressure": "apocalyptic", "thermal": "hot"]])
        #expect(newer.telemetry.pressure == .low && newer.telemetry.thermal == .nominal)
    }

    /// The per-request messages are coded by hand on the hot path; their
    /// Codable form is the specification. Both must give the same JSON, read
    /// the same values (defaults included) and refuse the same input the same way.
    @Test func hotPathCodingMatchesTheCodableSpecification() throws {
        func same<T: WireCodable & Equatable>(_ value: T) throws {
            #expect(value.json == value.codableJSON, "\(T.self) encodes as its Codable form")
            #expect(try T(json: value.json) == value)
            #expect(try T(codableJSON: value.json) == value)
        }
        try same(RouteRequest(id: 7, api: .openai, path: "/v1/chat/completions", model: "m", stream: true, fallbacks: ["f"], tags: ["t"],
                              estimatedTokens: 12, numCtx: 4096, client: "10.0.0.2"))
        try same(RouteRequest(id: 8, api: .ollama, path: "/api/chat", model: "m", stream: false))
        try same(RouteRequest(id: 8, api: .openai, path: "/v1/chat/completions", model: "m", stream: true, maxTokens: 64, think: false,
                              session: ContentHash(UInt64.max - 1), prefix: ContentHash(of: Array("system".utf8))))
        try same(RouteAnswer(id: 3, node: "n", upstream: "[::1]:11434", backend: .openai, model: "m", queuedMilliseconds: 5, reason: "hot=1", retries: 2,
                             score: "ect_ms=1 wait=0 load=0 prefill=0 decode=1"))
        try same(RouteRefusal(id: 4, code: .queueTimeout, message: "busy", retryAfter: 5))
        try same(RouteRefusal(id: 4, code: .modelNotFound, message: "x", models: ["a", "b"]))
        try same(RouteRetry(id: 5, node: "n", reason: "status 503", upstreamStatus: 503))
        try same(RouteRetry(id: 5, node: "n", reason: "connect failed: ECONNREFUSED"))
        try same(RouteCancel(id: 6))
        try same(RouteResult(id: 9, node: "n", model: "m", outcome: .ok, status: 200, ttftMilliseconds: 1.5, durationMilliseconds: 20.25,
                             promptTokens: 3, completionTokens: 4, bytes: 99, retries: 1, error: nil, local: false))
        try same(RouteResult(id: 9, node: "", model: "m", outcome: .clientGone, status: 499, error: "gone", local: true))
        try same(RouteStarted(id: 9, status: 200, upstreamTtftMilliseconds: 1.25))
        try same(RouteResult(id: 9, node: "n", model: "m", outcome: .ok, status: 200, completionTokens: 40, backendPromptMilliseconds: 12.5,
                             backendDecodeMilliseconds: 800, backendLoadMilliseconds: 2300, upstreamTtftMilliseconds: 0.25,
                             upstreamMilliseconds: 810.5))

        func sameReading<T: WireCodable & Equatable>(_ type: T.Type, _ json: JSONValue) {
            let hand = Result { () throws(JSONFieldError) -> T in try T(json: json) }
            let codable = Result { () throws(JSONFieldError) -> T in try T(codableJSON: json) }
            switch (hand, codable) {
            case let (.success(a), .success(b)): #expect(a == b, "\(json)")
            case let (.failure(a), .failure(b)): #expect(a == b, "\(json)")
            default: Issue.record("\(T.self): one form accepts \(json), the other refuses it: \(hand) / \(codable)")
            }
        }
        sameReading(RouteRequest.self, ["id": 1, "api": "ollama", "path": "/", "model": "m"])
        sameReading(RouteRequest.self, ["id": 1, "api": "grpc", "path": "/", "model": "m"])
        sameReading(RouteRequest.self, ["id": 1, "api": "ollama", "path": "/"])
        sameReading(RouteRequest.self, ["id": -1, "api": "ollama", "path": "/", "model": "m"])
        sameReading(RouteRequest.self, ["id": 1, "api": "ollama", "path": "/", "model": "m", "num_ctx": nil, "stream": nil])
        sameReading(RouteAnswer.self, ["id": 2, "node": "n", "upstream": "127.0.0.1:1", "backend": "ollama", "model": "m"])
        sameReading(RouteAnswer.self, ["id": 2, "node": "n", "upstream": "127.0.0.1:1", "backend": "tpu", "model": "m"])
        sameReading(RouteRefusal.self, ["id": 1, "code": "no_node", "message": "x"])
        sameReading(RouteRefusal.self, ["id": 1, "code": "nope", "message": "x"])
        sameReading(RouteResult.self, ["id": 1, "node": "n", "model": "m", "outcome": "ok", "status": 200])
        sameReading(RouteResult.self, ["id": 1, "node": "n", "model": "m", "outcome": "ok", "status": "200"])
        sameReading(RouteResult.self, ["id": 1, "node": "n", "model": "m", "outcome": "ok", "status": 200, "ttft_ms": "fast"])
        sameReading(RouteRetry.self, ["id": 1, "node": "n"])
        sameReading(RouteCancel.self, ["id": "one"])
        sameReading(RouteCancel.self, "not an object")
    }
}
