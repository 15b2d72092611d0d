import Glibc
import Testing
import HerdJSON
import HerdRuntime
@testable import HerdWire

@Suite struct ControlProtocolTests {
    @Test func framesSplitAnywhereDecodeTheSame() throws {
        var bytes: [UInt8] = []
        let route = RouteRequest(id: 7, api: .openai, path: "/v1/chat/completions", model: "m", stream: true, fallbacks: ["f"], numCtx: 4096)
        ControlFrame.encode(.hello, ControlHello(proxyID: "p").json, into: &bytes)
        ControlFrame.encode(.route, route, into: &bytes)
        for split in 0...bytes.count {
            var decoder = ControlFrameDecoder()
            var seen: [(ControlMessageType, [UInt8])] = []
            for part in [Array(bytes[..<split]), Array(bytes[split...])] {
                part.withUnsafeBytes { decoder.append($0) }
                seen += try decoder.frames()
            }
            #expect(seen.map(\.0) == [.hello, .route])
            let hello = seen[0].1.withUnsafeBytes { raw in Result { () throws(ControlProtocolError) in try ControlFrameBody(type: .hello, bytes: raw).json() } }
            #expect(try ControlHello(json: hello.get()) == ControlHello(proxyID: "p"))
            #expect(try decoded(RouteRequest.self, seen[1].1).get() == route)
        }
    }

    /// Frames that are not frames: a zero or huge length, an unknown type.
    @Test func garbageIsAProtocolError() {
        for garbage: [UInt8] in [[0, 0, 0, 0], [0xFF, 0, 0, 0, 1], [0, 0, 0, 2, 77, 1]] {
            var decoder = ControlFrameDecoder()
            garbage.withUnsafeBytes { decoder.append($0) }
            #expect(throws: ControlProtocolError.self) { _ = try decoder.frames() }
        }
        // A truncated frame is not an error: more bytes may come.
        var decoder = ControlFrameDecoder()
        ([0, 0, 0, 3, 3, 123] as [UInt8]).withUnsafeBytes { decoder.append($0) }
        #expect((try? decoder.frames())?.isEmpty == true)
    }

    /// Bodies that do not decode as their type: each a protocol error that
    /// names the message, never a crash or a partial value.
    @Test func malformedBodiesAreProtocolErrors() throws {
        func refused<M: WireBinaryMessage>(_ type: M.Type, _ bytes: [UInt8]) -> String? {
            switch decoded(M.self, bytes) {
            case .success: nil
            case let .failure(error): error.reason
            }
        }
        let route = RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m", stream: false, client: "c").binary
        #expect(refused(RouteRequest.self, route) == nil)
        // Every truncation of a valid body (protocol 8: every field is always written, `key` last).
        for n in 0..<route.count { #expect(refused(RouteRequest.self, Array(route[..<n])) != nil, "\(n)") }
        var keyed = RouteRequest(id: 1, api: .openai, path: "/v1/chat/completions", model: "m", stream: false, client: "key:alice")
        keyed.key = 4_321
        #expect(try decoded(RouteRequest.self, keyed.binary).get() == keyed)
        keyed.key = Int(Int32.max) + 1
        #expect(refused(RouteRequest.self, keyed.binary)?.contains("key must be") == true, "a key id past its range is refused")
        var seeing = RouteRequest(id: 1, api: .anthropic, path: "/v1/messages", model: "m", stream: false, client: "c")
        seeing.vision = true
        #expect(try decoded(RouteRequest.self, seeing.binary).get() == seeing)
        // `work_units` (protocol 6) follows only when not 0; a partial one is refused, bytes past it are left over.
        var speech = RouteRequest(id: 1, api: .openai, path: "/v1/audio/speech", model: "m", stream: false, client: "c")
        speech.workUnits = 42.5
        #expect(try decoded(RouteRequest.self, speech.binary).get() == speech)
        #expect(speech.binary.count == RouteRequest(id: 1, api: .openai, path: "/v1/audio/speech", model: "m", stream: false, client: "c").binary.count + 8)
        #expect(refused(RouteRequest.self, route + [0])?.contains("left over") == true)
        // Inside a RESULT (a ticket's request), results follow it: each is read whole, with or without units.
        let chat = RouteRequest(id: 2, api: .ollama, path: "/api/chat", model: "m", stream: false, client: "c")
        let batch = ResultBatch([
            ReportedResult(RouteResult(id: 2, node: "n", model: "m", outcome: .ok, status: 200), ticket: TicketUse(ticket: 7, request: chat)),
            ReportedResult(RouteResult(id: 1, node: "n", model: "m", outcome: .ok, status: 200), ticket: TicketUse(ticket: 8, request: speech)),
            ReportedResult(RouteResult(id: 3, node: "n", model: "m", outcome: .ok, status: 200), ticket: TicketUse(ticket: 9, request: chat)),
        ])
        #expect(try decoded(ResultBatch.self, batch.binary).get() == batch)
        let cache = CacheStats(hits: 3, misses: 2, stores: 2, evictions: 0, bytes: 1 << 40, entries: 2)
        #expect(try decoded(CacheStats.self, cache.binary).get() == cache)
        #expect(refused(CacheStats.self, Array(cache.binary.dropLast())) != nil)
        // Pull claims: round trips, and a model or node out of range is refused.
        let claim = PullClaim(id: 9, model: "llama3.1:8b", node: "gpu-box", named: true)
        #expect(try decoded(PullClaim.self, claim.binary).get() == claim)
        #expect(refused(PullClaim.self, PullClaim(id: 1, model: "", node: "n").binary)?.contains("pull model") == true)
        #expect(refused(PullClaim.self, PullClaim(id: 1, model: "m", node: String(repeating: "n", count: 257)).binary)?.contains("pull node") == true)
        #expect(refused(PullClaim.self, PullClaim(id: 1, model: "m\u{1}", node: "n").binary)?.contains("pull model") == true)
        // The rule control and a proxy on its own share: same model, and the same node or an unnamed one.
        #expect(PullClaim.stops(running: "m:latest", on: "a", model: "m:latest", node: "a", named: true))
        #expect(PullClaim.stops(running: "m:latest", on: "a", model: "m:latest", node: "b", named: false))
        #expect(!PullClaim.stops(running: "m:latest", on: "a", model: "m:latest", node: "b", named: true))
        #expect(!PullClaim.stops(running: "m:latest", on: "a", model: "n:latest", node: "a", named: false))
        let answer = PullAnswer(id: 9, granted: false, node: "gpu-box")
        #expect(try decoded(PullAnswer.self, answer.binary).get() == answer)
        #expect(try decoded(PullDone.self, PullDone(id: 1 << 40).binary).get() == PullDone(id: 1 << 40))
        speech.workUnits = -1
        #expect(refused(RouteRequest.self, speech.binary)?.contains("work_units") == true)
        // An unknown api code, a bool that is not 0/1, a string longer than the frame, an overlong varint.
        var badAPI = route
        badAPI[1] = 9
        #expect(refused(RouteRequest.self, badAPI)?.contains("unknown ClientAPI code 9") == true)
        let result = RouteResult(id: 1, node: "n", model: "m", outcome: .ok, status: 200).binary
        var badOutcome = result
        badOutcome[5] = 77
        #expect(refused(RouteResult.self, badOutcome)?.contains("unknown Outcome code 77") == true)
        #expect(refused(RouteCancel.self, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]) != nil)
        #expect(refused(RouteRetry.self, [1, 200, 1]) != nil, "a string longer than the frame")
        var badBool = RouteAnswer(id: 1, node: "n", upstream: "u", backend: .ollama, model: "m").binary
        badBool[badBool.count - 1] = 2
        #expect(refused(RouteAnswer.self, badBool)?.contains("bool 2") == true)
        // Invalid UTF-8 is repaired, not passed on.
        #expect(try decoded(RouteRetry.self, [1, 2, 0xC3, 0x28, 0, 0]).get().node == "\u{FFFD}(")
    }

    /// Control trusts a ROUTE only within `RequestLimits` (the proxy's
    /// validator applies the same ones): anything past them is refused, and
    /// a RESULT's numbers (a backend's) are clamped, not trusted.
    @Test func framesOutsideTheLimitsAreRefusedOrClamped() throws {
        let fine = RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m", stream: false)
        var bad: [RouteRequest] = []
        for change in [
            { (r: inout RouteRequest) in r.numCtx = Int.min }, { $0.numCtx = 0 }, { $0.numCtx = 100_000_000_000_000 },
            { $0.maxTokens = Int.max }, { $0.estimatedTokens = -3 }, { $0.model = "" },
            { $0.model = String(repeating: "m", count: 257) }, { $0.model = "a\nb" }, { $0.path = "" },
            { $0.fallbacks = Array(repeating: "f", count: 9) }, { $0.tags = Array(repeating: "t", count: 17) },
            { $0.tags = [String(repeating: "t", count: 257)] }, { $0.client = String(repeating: "c", count: 129) },
        ] as [(inout RouteRequest) -> Void] {
            var r = fine
            change(&r)
            bad.append(r)
        }
        #expect(try decoded(RouteRequest.self, fine.binary).get() == fine)
        for r in bad {
            #expect(throws: ControlProtocolError.self, "\(r.json)") { try decoded(RouteRequest.self, r.binary).get() }
        }
        let wild = RouteResult(id: 9, node: "n", model: "m", outcome: .ok, status: 200, ttftMilliseconds: .nan, durationMilliseconds: 9e15,
                               promptTokens: Int.max, completionTokens: -5, bytes: -1, retries: Int.max, error: nil, local: false,
                               backendPromptMilliseconds: -.infinity, backendDecodeMilliseconds: .infinity)
        let read = try decoded(RouteResult.self, wild.binary).get()
        #expect(read.ttftMilliseconds == 0 && read.durationMilliseconds == ResultLimits.maxMilliseconds)
        #expect(read.promptTokens == ResultLimits.tokens.upperBound && read.completionTokens == 0 && read.bytes == 0)
        #expect(read.retries == ResultLimits.retries.upperBound)
        #expect(read.backendPromptMilliseconds == 0 && read.backendDecodeMilliseconds == ResultLimits.maxMilliseconds)
    }

    @Test func messagesRoundTrip() throws {
        func same<M: WireBinaryMessage & Equatable>(_ value: M) throws {
            #expect(try decoded(M.self, value.binary).get() == value)
        }
        try same(RouteRequest(id: 7, api: .openai, path: "/v1/chat/completions", model: "m", stream: true, fallbacks: ["f", "g"], tags: ["t"],
                              estimatedTokens: 12, numCtx: 4096, client: "10.0.0.2"))
        try same(RouteRequest(id: 8, api: .ollama, path: "/api/chat", model: "m", stream: false))
        try same(RouteRequest(id: UInt64.max, api: .openai, path: "/v1/chat/completions", model: "ü", stream: true,
                              estimatedTokens: RequestLimits.estimatedTokens.upperBound, numCtx: RequestLimits.numCtx.upperBound,
                              maxTokens: RequestLimits.maxTokens.upperBound, think: false, session: ContentHash(UInt64.max - 1),
                              prefix: ContentHash(of: Array("system".utf8))))
        try same(RouteRequest(id: 0, api: .ollama, path: "/api/chat", model: String(repeating: "m", count: 256), stream: false,
                              fallbacks: Array(repeating: "f", count: 8), tags: Array(repeating: String(repeating: "t", count: 256), count: 16), think: true))
        try same(RouteAnswer(id: 3, node: "n", upstream: "[::1]:11434", backend: .openai, model: "m", queuedMilliseconds: 5, reason: "hot=1", retries: 2,
                             score: "ect_ms=1 wait=0 load=0 prefill=0 decode=1", stripNumCtx: true, reportStart: true))
        try same(RouteRefusal(id: 4, code: .queueTimeout, message: "busy", retryAfter: 5))
        try same(RouteRefusal(id: 4, code: .clientLimit, message: "x", models: ["a", "b"]))
        try same(RouteRetry(id: 5, node: "n", reason: "status 503", upstreamStatus: 503))
        try same(RouteRetry(id: 5, node: "n", reason: "connect failed: ECONNREFUSED"))
        try same(RouteCancel(id: 6))
        try same(RouteQueued(id: 6, timeoutMilliseconds: 30_000))
        try same(RouteStarted(id: 9, status: 200, upstreamTtftMilliseconds: 1.25))
        try same(RouteResult(id: 9, node: "n", model: "m", outcome: .ok, status: 200, ttftMilliseconds: 1.5, durationMilliseconds: 20.25,
                             promptTokens: 3, completionTokens: 4, bytes: 99, retries: 1, error: nil, local: false))
        try same(RouteResult(id: 9, node: "", model: "m", outcome: .clientGone, status: 499, error: "gone", local: true, localReason: "control unreachable"))
        try same(RouteResult(id: 9, node: "n", model: "m", outcome: .timeout, status: 200, completionTokens: 40, backendPromptMilliseconds: 12.5,
                             backendDecodeMilliseconds: 800, backendLoadMilliseconds: 2300, upstreamTtftMilliseconds: 0.25,
                             upstreamMilliseconds: 1_000))
        for outcome in RouteResult.Outcome.allCases { #expect(RouteResult.Outcome(wireCode: outcome.wireCode) == outcome) }
        for code in RouteRefusal.Code.allCases { #expect(RouteRefusal.Code(wireCode: code.wireCode) == code) }
        #expect(RouteResult.Outcome.wireOrder.count == RouteResult.Outcome.allCases.count)
        #expect(RouteRefusal.Code.wireOrder.count == RouteRefusal.Code.allCases.count)
        let snapshot = RoutingSnapshot(version: 9, nodes: [.init(id: "n", status: "online", backends: [.init(kind: .ollama, address: "127.0.0.1:1", models: ["a"], loaded: [])])])
        #expect(try RoutingSnapshot(json: snapshot.json) == snapshot)
        let delta = SnapshotDelta(base: 9, version: 10, nodes: snapshot.nodes, removed: ["gone"], ps: ["models": []], ollamaVersion: "0.12.1")
        #expect(try SnapshotDelta(json: delta.json) == delta)
        #expect(throws: JSONFieldError.self) { try RouteRequest(json: ["id": 1, "api": "grpc", "path": "/", "model": "m"]) }
    }

    /// What a ROUTE costs on the wire: a typical chat ROUTE and RESULT take
    /// less than half the bytes of their JSON form.
    @Test func compactFramesAreSmall() {
        let route = RouteRequest(id: 123_456, api: .ollama, path: "/api/chat", model: "llama3:8b", stream: true, estimatedTokens: 40,
                                 client: "127.0.0.1", session: ContentHash(42), prefix: ContentHash(43))
        var json: [UInt8] = []
        route.json.write(to: &json)
        #expect(route.binary.count * 2 < json.count, "\(route.binary.count) vs \(json.count) bytes")
        let result = RouteResult(id: 123_456, node: "gpu-box", model: "llama3:8b", outcome: .ok, status: 200, ttftMilliseconds: 12.5,
                                 durationMilliseconds: 800.25, promptTokens: 40, completionTokens: 200, bytes: 9000,
                                 upstreamTtftMilliseconds: 11, upstreamMilliseconds: 799)
        json = []
        result.json.write(to: &json)
        #expect(result.binary.count * 2 < json.count, "\(result.binary.count) vs \(json.count) bytes")
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
        #expect(message { _ = try RouteRequest(json: ["id": 1, "api": "grpc", "path": "/", "model": "m"]) } == "route.api must be one of ollama, openai, anthropic (not 'grpc')")
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
}

/// Decodes a compact message from `bytes` as a frame body.
func decoded<M: WireBinaryMessage>(_: M.Type, _ bytes: [UInt8]) -> Result<M, ControlProtocolError> {
    bytes.withUnsafeBytes { raw in Result { () throws(ControlProtocolError) -> M in try ControlFrameBody(type: .route, bytes: raw).decode(M.self) } }
}

@Suite struct FrameCorpusTests {
    /// The fuzzer starts from Fuzz/corpus/frame: its seeds must be frames
    /// this build reads whole (or the fuzzer explores only the error paths).
    @Test func theFuzzSeedsAreValidFrames() throws {
        let directory = URLPath.repository + "/Fuzz/corpus/frame"
        let seeds = try listDirectory(directory)
        #expect(seeds.count >= 5)
        for seed in seeds {
            var decoder = ControlFrameDecoder()
            try readBytes(directory + "/" + seed).withUnsafeBytes { decoder.append($0) }
            let frames = try decoder.frames()
            #expect(!frames.isEmpty, "\(seed)")
            for (type, body) in frames {
                let ok: Bool
                switch type {
                case .hello, .helloOK, .snapshot, .snapshotDelta:
                    ok = body.withUnsafeBytes { raw in (try? ControlFrameBody(type: type, bytes: raw).json()) != nil }
                case .route: ok = (try? decoded(RouteAsk.self, body).get()) != nil
                case .routeOK: ok = (try? decoded(RouteAnswer.self, body).get()) != nil
                case .routeError: ok = (try? decoded(RouteRefusal.self, body).get()) != nil
                case .retry: ok = (try? decoded(RetryMessage.self, body).get()) != nil
                case .result: ok = (try? decoded(ResultBatch.self, body).get()) != nil
                case .grant: ok = (try? decoded(TicketGrant.self, body).get()) != nil
                case .ticketReturn, .revoke: ok = (try? decoded(TicketList.self, body).get()) != nil
                case .cancel: ok = (try? decoded(RouteCancel.self, body).get()) != nil
                case .started: ok = (try? decoded(RouteStarted.self, body).get()) != nil
                case .queued: ok = (try? decoded(RouteQueued.self, body).get()) != nil
                case .cacheStats: ok = (try? decoded(CacheStats.self, body).get()) != nil
                case .pullClaim: ok = (try? decoded(PullClaim.self, body).get()) != nil
                case .pullAnswer: ok = (try? decoded(PullAnswer.self, body).get()) != nil
                case .pullDone: ok = (try? decoded(PullDone.self, body).get()) != nil
                }
                #expect(ok, "\(seed): \(type) does not decode")
            }
        }
    }
}

private enum URLPath {
    static var repository: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3) // Tests/HerdWireTests/ControlProtocolTests.swift
        return parts.joined(separator: "/")
    }
}

private func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw ControlProtocolError("cannot open \(path)") }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if !name.hasPrefix(".") { names.append(name) }
    }
    return names.sorted()
}

private func readBytes(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw ControlProtocolError("cannot open \(path)") }
    defer { fclose(file) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        out += chunk[..<n]
    }
    return out
}

@Suite struct SnapshotDeltaTests {
    static func node(_ id: String, status: String = "online", loaded: [String] = []) -> RoutingSnapshot.Node {
        .init(id: id, status: status, backends: [.init(kind: .ollama, address: "127.0.0.1:\(id.count)", models: ["a", "b", "c"], loaded: loaded)])
    }

    static func fleet(version: Int, _ nodes: [RoutingSnapshot.Node]) -> RoutingSnapshot {
        let loaded = Set(nodes.flatMap { $0.backends.flatMap(\.loaded) }).sorted()
        return RoutingSnapshot(version: version, nodes: nodes.sorted { $0.id < $1.id },
                               tags: ["models": .array(["a", "b", "c"].map { ["name": .string($0)] })],
                               ps: ["models": .array(loaded.map { ["name": .string($0)] })])
    }

    /// One node's change sends that node and the listing it changed, nothing
    /// else; applying it gives the new snapshot exactly.
    @Test func aDeltaCarriesOnlyWhatChanged() throws {
        let old = Self.fleet(version: 4, (0..<20).map { Self.node("node-\($0)") })
        let nodes = old.nodes.map { $0.id == "node-7" ? Self.node("node-7", loaded: ["a"]) : $0 }
        let new = Self.fleet(version: 5, nodes)
        let delta = SnapshotDelta(from: old, to: new)
        #expect(delta.base == 4 && delta.version == 5)
        #expect(delta.nodes.map(\.id) == ["node-7"])
        #expect(delta.removed.isEmpty && delta.tags == .none && delta.openAIModels == .none && delta.ollamaVersion == nil)
        #expect(delta.ps == new.ps)
        #expect(try old.applying(delta) == new)
        // On the wire: a small fraction of the whole snapshot.
        var full: [UInt8] = [], small: [UInt8] = []
        new.json.write(to: &full)
        delta.json.write(to: &small)
        #expect(small.count * 8 < full.count, "delta \(small.count) bytes, snapshot \(full.count)")
    }

    @Test func nodesJoinLeaveAndKeepTheirOrder() throws {
        let old = Self.fleet(version: 1, [Self.node("b"), Self.node("d")])
        let new = Self.fleet(version: 2, [Self.node("a"), Self.node("c", status: "degraded"), Self.node("d", status: "offline")])
        let delta = SnapshotDelta(from: old, to: new)
        #expect(delta.nodes.map(\.id) == ["a", "c", "d"] && delta.removed == ["b"])
        let applied = try old.applying(delta)
        #expect(applied == new && applied.nodes.map(\.id) == ["a", "c", "d"])
        // Nothing changed but the version: an empty delta.
        let same = SnapshotDelta(from: new, to: Self.fleet(version: 3, new.nodes))
        #expect(same.nodes.isEmpty && same.removed.isEmpty && same.ps == .none)
        #expect(try applied.applying(same).version == 3)
    }

    /// A delta for a snapshot the proxy does not hold is refused (the
    /// connection drops and the proxy gets a whole snapshot on reconnect).
    @Test func aDeltaForAnotherVersionIsRefused() {
        let held = Self.fleet(version: 7, [Self.node("a")])
        #expect(throws: ControlProtocolError.self) { try held.applying(SnapshotDelta(base: 6, version: 8)) }
        #expect(throws: JSONFieldError.self) { try SnapshotDelta(json: ["base": 1, "version": 2, "nodes": "all"]) }
    }

    /// A chain of random fleet changes: every step's delta, applied to the
    /// proxy's copy, keeps it equal to control's.
    @Test func aChainOfDeltasTracksTheFleet() throws {
        var random = SeededRandom(seed: 42)
        var control = Self.fleet(version: 0, [])
        var proxy = control
        for version in 1...300 {
            var byID = Dictionary(uniqueKeysWithValues: control.nodes.map { ($0.id, $0) })
            for _ in 0..<(1 + random.next() % 3) {
                let id = "n\(random.next() % 12)"
                switch random.next() % 4 {
                case 0: byID[id] = nil
                case 1: byID[id] = Self.node(id, status: ["online", "degraded", "offline"][Int(random.next() % 3)])
                default: byID[id] = Self.node(id, loaded: random.next() % 2 == 0 ? ["a"] : ["b", "c"])
                }
            }
            let next = Self.fleet(version: version, Array(byID.values))
            proxy = try proxy.applying(SnapshotDelta(json: SnapshotDelta(from: control, to: next).json))
            control = next
            #expect(proxy == control)
        }
    }
}
