import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdTestSupport
import Testing

/// The router end to end: real herd-control, herd-proxy and herd-node
/// processes in front of fake backends, all on loopback.
@Suite(.serialized) struct RouterTests {
    /// A: llama3:8b (loaded), qwen:7b. B: llama3:8b (loaded), mistral:7b (loaded).
    static func twoNodeFleet(control: [String] = [], tokens: Int = 5, node: [String] = []) throws -> TestFleet {
        let fleet = TestFleet(controlArguments: control)
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,qwen:7b", "--loaded", "llama3:8b", "--tokens", String(tokens)])
        try fleet.addBackend("B", arguments: ["--models", "llama3:8b,mistral:7b", "--loaded", "llama3:8b,mistral:7b", "--tokens", String(tokens)])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A", extra: node)
        try fleet.addNode("node-b", backend: "B", extra: node)
        try fleet.waitForNodes(2)
        return fleet
    }

    static func rawPost(_ body: String, path: String = "/api/chat") -> String {
        "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test func ollamaAndOpenAIThroughTwoNodes() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }

        let whole = fleet.post("/api/chat", #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}"#)
        #expect(whole.status == 200, "\(whole.text)\n\(fleet.logs)")
        let answer = try JSONValue.parse(whole.body)
        #expect(answer["done"]?.boolValue == true)
        #expect(answer["message"]?["content"]?.stringValue == "tok0 tok1 tok2 tok3 tok4 ")
        #expect(whole.header("X-Herd-Model") == "llama3:8b")

        // Ollama streams by default: NDJSON, one object per line, the last one done.
        let stream = fleet.post("/api/chat", #"{"model":"mistral:7b","messages":[]}"#)
        #expect(stream.status == 200)
        #expect(stream.header("Content-Type") == "application/x-ndjson")
        #expect(stream.header("Transfer-Encoding") == "chunked")
        let lines = stream.text.split(separator: "\n").map { try? JSONValue.parse(String($0)) }
        #expect(lines.count == 6)
        #expect(lines.last??["done"]?.boolValue == true)
        #expect(lines.last??["eval_count"]?.intValue == 5)
        #expect(stream.header("X-Herd-Node") == "node-b")
        // The decision explained: every term of the winner's expected time, and why.
        #expect(stream.header("X-Herd-Score")?.hasPrefix("ect_ms=") == true && stream.header("X-Herd-Score")?.contains(" decode=") == true)
        #expect(stream.header("X-Herd-Reason")?.hasPrefix("hot") == true, "\(stream.header("X-Herd-Reason") ?? "none")")

        let generate = fleet.post("/api/generate", #"{"model":"qwen:7b","prompt":"hi","stream":false}"#)
        #expect(try JSONValue.parse(generate.body)["response"]?.stringValue == "tok0 tok1 tok2 tok3 tok4 ")
        #expect(generate.header("X-Herd-Node") == "node-a")

        let chat = fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}]}"#)
        let completion = try JSONValue.parse(chat.body)
        #expect(completion["object"]?.stringValue == "chat.completion")
        #expect(completion["usage"]?["completion_tokens"]?.intValue == 5)

        let sse = fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","stream":true,"messages":[]}"#)
        #expect(sse.header("Content-Type") == "text/event-stream")
        let events = sse.text.split(separator: "\n\n").map(String.init)
        #expect(events.last == "data: [DONE]")
        let ids = Set(events.dropLast().compactMap { try? JSONValue.parse(String($0.dropFirst(6)))["id"]?.stringValue })
        #expect(ids.count == 1, "one id for the whole stream")

        #expect(try JSONValue.parse(fleet.post("/v1/completions", #"{"model":"qwen:7b","prompt":"x"}"#).body)["object"]?.stringValue == "text_completion")
        #expect(try JSONValue.parse(fleet.post("/v1/embeddings", #"{"model":"qwen:7b","input":["a","b"]}"#).body)["data"]?.arrayValue?.count == 2)
        #expect(try JSONValue.parse(fleet.post("/api/embed", #"{"model":"llama3:8b","input":["a","b","c"]}"#).body)["embeddings"]?.arrayValue?.count == 3)
        #expect(try JSONValue.parse(fleet.post("/api/embeddings", #"{"model":"llama3:8b","prompt":"a"}"#).body)["embedding"]?.arrayValue?.isEmpty == false)
        #expect(try JSONValue.parse(fleet.post("/api/show", #"{"model":"mistral:7b"}"#).body)["capabilities"]?.arrayValue?.isEmpty == false)
    }

    @Test func fleetListingsAreTheUnion() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        let tags = try JSONValue.parse(fleet.get("/api/tags").body)["models"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(tags == ["llama3:8b", "mistral:7b", "qwen:7b"])
        let ps = try JSONValue.parse(fleet.get("/api/ps").body)["models"]?.arrayValue
        #expect(ps?.compactMap { $0["name"]?.stringValue } == ["llama3:8b", "mistral:7b"])
        #expect(ps?.first?["size_vram"]?.intValue ?? 0 > 0)
        let models = try JSONValue.parse(fleet.get("/v1/models").body)
        #expect(models["object"]?.stringValue == "list")
        #expect(models["data"]?.arrayValue?.count == 3)
        #expect(try JSONValue.parse(fleet.get("/api/version").body)["version"]?.stringValue == "0.12.0")
        let root = fleet.get("/")
        #expect(root.status == 200 && root.text == "Ollama is running")
        #expect(fleet.request("HEAD", "/", body: nil, headers: [:], port: fleet.proxyPort).status == 200)
    }

    @Test func prometheusMetricsCountOutcomes() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        for _ in 0..<3 { _ = fleet.post("/api/chat", #"{"model":"mistral:7b","stream":false}"#) }
        _ = fleet.post("/api/chat", #"{"model":"nope:1b"}"#)
        let ok = waitUntil(seconds: 5) {
            let text = fleet.getControl("/metrics").text
            return text.contains(#"herd_requests_total{api="ollama",node="node-b",model="mistral:7b",outcome="ok"} 3"#) && text.contains(#"outcome="rejected""#)
        }
        let metrics = fleet.getControl("/metrics")
        #expect(ok, "\(metrics.text)")
        #expect(metrics.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(metrics.text.contains(#"herd_requests_total{api="ollama",node="none",model="other",outcome="rejected"} 1"#), "an unknown model is rejected, and a client cannot grow the label set")
        #expect(!metrics.text.contains("nope:1b"))
        #expect(metrics.text.contains(#"herd_completion_tokens_total{model="mistral:7b"} 15"#))
        #expect(metrics.text.contains(#"herd_nodes{status="online"} 2"#))
        #expect(metrics.text.contains("herd_proxies 1"))
    }

    /// Requests at once spread over the nodes that have the model (one
    /// node's slots full, the other idle finishes sooner). Sequential requests
    /// to equal idle nodes may all go to the one measured faster: on a loaded
    /// machine the measured speeds wobble, so this test sends them together.
    @Test func requestsSpreadOverNodesThatBothHaveTheModel() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        for name in ["A", "B"] {
            try fleet.addBackend(name, arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--first-byte-delay-ms", "300"])
        }
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.addNode("node-b", backend: "B")
        try fleet.waitForNodes(2)
        let clients = try (0..<8).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
        for client in clients { client.send(Self.rawPost(#"{"model":"llama3:8b","stream":false}"#)) }
        var served: [String: Int] = [:]
        for client in clients {
            let response = try client.readResponse()
            #expect(response.status == 200)
            served[response.header("X-Herd-Node") ?? "?", default: 0] += 1
        }
        #expect(served["node-a", default: 0] >= 2, "\(served)")
        #expect(served["node-b", default: 0] >= 2, "\(served)")
    }

    @Test func modelOnlyOnBGoesToB() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        for _ in 0..<5 {
            let response = fleet.post("/api/chat", #"{"model":"mistral:7b","stream":false}"#)
            #expect(response.header("X-Herd-Node") == "node-b")
            #expect(response.header("X-Fake-Backend") == "B")
        }
    }

    @Test func failoverWhenANodeRefusesConnections() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        try fleet.script("A", #"{"failure":"refuse"}"#)
        var retried = 0
        for _ in 0..<6 {
            let response = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#)
            #expect(response.status == 200, "\(response.text)")
            #expect(response.header("X-Fake-Backend") == "B")
            if response.header("X-Herd-Retries") == "1" { retried += 1 }
        }
        #expect(retried >= 1, "A was tried and failed over at least once")
    }

    @Test func failoverWhenANodeHangsBeforeTheFirstByte() throws {
        let fleet = try Self.twoNodeFleet(control: ["--proxy-arg=--first-byte-timeout=0.3"])
        defer { fleet.shutdown() }
        try fleet.script("A", #"{"failure":"hang"}"#)
        for _ in 0..<4 {
            let response = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#)
            #expect(response.status == 200, "\(response.text)")
            #expect(response.header("X-Fake-Backend") == "B")
        }
    }

    @Test func resetMidStreamEndsWithAnErrorInTheClientsFormat() throws {
        let fleet = try Self.twoNodeFleet(tokens: 10)
        defer { fleet.shutdown() }
        try fleet.script("B", #"{"failure":"reset:3","token_delay_ms":2}"#)
        let ndjson = fleet.post("/api/chat", #"{"model":"mistral:7b","messages":[]}"#)
        let lines = ndjson.text.split(separator: "\n")
        #expect(lines.count == 4, "\(ndjson.text)")
        #expect(try JSONValue.parse(String(lines.last!))["error"]?.stringValue?.contains("mid-response") == true)
        #expect(!ndjson.text.contains("\"done\":true"))

        let sse = fleet.post("/v1/chat/completions", #"{"model":"mistral:7b","stream":true}"#)
        #expect(sse.text.contains("data: {\"error\":{"))
        #expect(!sse.text.contains("[DONE]"), "a broken stream never ends like a good one")
    }

    /// Found: a backend that stalls mid-stream held its slot (and the client) forever.
    @Test func aBackendThatStallsMidStreamIsCutAtTheUpstreamIdleTimeout() throws {
        let fleet = try Self.twoNodeFleet(control: ["--proxy-arg=--upstream-idle-timeout=0.5"], tokens: 10)
        defer { fleet.shutdown() }
        try fleet.script("B", #"{"failure":"stall:3","token_delay_ms":2}"#)
        let started = monotonicSeconds()
        let ndjson = fleet.post("/api/chat", #"{"model":"mistral:7b","messages":[]}"#)
        #expect(monotonicSeconds() - started < 5, "cut after the idle timeout, not at the client's patience")
        let lines = ndjson.text.split(separator: "\n")
        #expect(lines.count == 4, "\(ndjson.text)")
        #expect(try JSONValue.parse(String(lines.last!))["error"]?.stringValue?.contains("stalled") == true, "\(ndjson.text)")
        #expect(waitUntil(seconds: 5) {
            (try? JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["B"]!).body))?["cancelled"]?.intValue == 1
        }, "the backend's request was abandoned (its slot freed)")
    }

    @Test func fallbackModelsFromBodyAndHeader() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        let body = fleet.post("/api/chat", #"{"model":"gone:1b","fallback_models":["nope:2b","mistral:7b"],"stream":false}"#)
        #expect(body.status == 200)
        #expect(body.header("X-Herd-Model") == "mistral:7b")
        #expect(try JSONValue.parse(body.body)["model"]?.stringValue == "mistral:7b", "the backend was asked for the fallback")
        let header = fleet.post("/v1/chat/completions", #"{"model":"gone:1b"}"#, headers: ["X-Herd-Fallback-Models": "qwen:7b"])
        #expect(header.status == 200)
        #expect(header.header("X-Herd-Model") == "qwen:7b")
        #expect(header.header("X-Herd-Node") == "node-a")
    }

    @Test func clientErrorsAreClearAndInTheClientsFormat() throws {
        let fleet = try Self.twoNodeFleet(control: ["--proxy-arg=--max-body-mb=1"])
        defer { fleet.shutdown() }
        let unknown = fleet.post("/api/chat", #"{"model":"nope:1b"}"#)
        #expect(unknown.status == 404)
        let json = try JSONValue.parse(unknown.body)
        #expect(json["error"]?.stringValue?.contains("nope:1b") == true)
        #expect(json["models"]?.arrayValue?.count == 3)
        let openAI = fleet.post("/v1/chat/completions", #"{"model":"nope:1b"}"#)
        #expect(openAI.status == 404)
        #expect(try JSONValue.parse(openAI.body)["error"]?["code"]?.stringValue == "model_not_found")
        let bad = fleet.post("/api/chat", #"{"model": "llama3:8b", "messages": [}"#)
        #expect(bad.status == 400)
        // Found under attack: a model name with a newline forged a line in control's log; invalid UTF-8 was accepted.
        let forged = fleet.post("/api/chat", #"{"model":"x\n2026-11-22T00:00:00Z herd-control info forged=1"}"#)
        #expect(forged.status == 400, "a model name has no control characters")
        #expect(String(decoding: forged.body, as: UTF8.self).contains("control characters"))
        #expect(fleet.control?.output.split(separator: "\n").contains { $0.hasPrefix("2026-11-22T00:00:00Z") } == false)
        let body: [UInt8] = Array(#"{"model":"bad"#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 10)
        client.send(Array("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
        let invalid = try client.readResponse()
        #expect(invalid.status == 400, "invalid UTF-8 in the model name")
        #expect(invalid.text.contains("UTF-8"))
        #expect(try JSONValue.parse(bad.body)["error"]?.stringValue?.contains("invalid JSON") == true)
        let badOpenAI = fleet.post("/v1/embeddings", "[1,2]")
        #expect(badOpenAI.status == 400)
        #expect(try JSONValue.parse(badOpenAI.body)["error"]?["type"]?.stringValue == "invalid_request_error")
        let noModel = fleet.post("/api/chat", #"{"messages":[]}"#)
        #expect(noModel.status == 400)
        let big = fleet.post("/api/chat", #"{"model":"llama3:8b","prompt":""# + String(repeating: "x", count: 2 * 1024 * 1024) + #""}"#)
        #expect(big.status == 413)
        #expect(try JSONValue.parse(big.body)["error"]?.stringValue?.contains("over the limit") == true)
        // The server's own refusals speak the API of the request target.
        let bigOpenAI = fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","prompt":""# + String(repeating: "x", count: 2 * 1024 * 1024) + #""}"#)
        #expect(bigOpenAI.status == 413)
        #expect(try JSONValue.parse(bigOpenAI.body)["error"]?["type"]?.stringValue == "invalid_request_error")
        let hugeHead = fleet.post("/v1/embeddings", #"{"model":"qwen:7b"}"#, headers: ["X-Big": String(repeating: "b", count: 40_000)])
        #expect(hugeHead.status == 431)
        #expect(try JSONValue.parse(hugeHead.body)["error"]?["message"]?.stringValue?.contains("head") == true)
        #expect(fleet.get("/api/nothing").status == 404)
        #expect(fleet.get("/api/chat").status == 405)
        #expect(fleet.get("/").status == 200, "still serving after bad input")
    }

    /// Control's gauges, from `/metrics`.
    static func gauge(_ fleet: TestFleet, _ name: String) -> Int? {
        fleet.getControl("/metrics").text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ")[1]) }
    }

    // The queue's timing is tested in virtual time (SchedulerTests); these
    // check what a client sees, each step waiting for the router's own gauges.
    @Test func queueTimeoutIs503WithRetryAfter() throws {
        let fleet = try TestFleet.single("S", backend: ["--models", "slow:1b", "--loaded", "slow:1b", "--first-byte-delay-ms", "2500"], control: ["--max-concurrency", "1", "--queue-timeout", "0.5"])
        defer { fleet.shutdown() }
        let first = try RawClient(port: fleet.proxyPort)
        first.send(Self.rawPost(#"{"model":"slow:1b","stream":false}"#))
        #expect(waitUntil(seconds: 5) { Self.gauge(fleet, "herd_in_flight") == 1 }, "the first request holds the only slot")
        let second = fleet.post("/api/chat", #"{"model":"slow:1b","stream":false}"#)
        #expect(second.status == 503, "\(second.text)")
        #expect(second.header("Retry-After") != nil)
        #expect(try JSONValue.parse(second.body)["error"]?.stringValue?.contains("stayed busy") == true)
        #expect(try first.readResponse().status == 200, "the first request was not disturbed")
    }

    @Test func aClientOverItsCapGets429WithRetryAfterOthersAreServed() throws {
        let fleet = try TestFleet.single("S", backend: ["--models", "slow:1b", "--loaded", "slow:1b", "--first-byte-delay-ms", "2500"],
                                         control: ["--max-client-in-flight", "1"])
        defer { fleet.shutdown() }
        let first = try RawClient(port: fleet.proxyPort)
        first.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nX-Herd-Client: greedy\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n"
                   + #"{"model":"slow:1b","stream":false}"# + " ")
        #expect(waitUntil(seconds: 5) { Self.gauge(fleet, "herd_in_flight") == 1 })
        let second = fleet.post("/v1/chat/completions", #"{"model":"slow:1b","messages":[{"role":"user","content":"hi"}]}"#,
                                headers: ["X-Herd-Client": "greedy"])
        #expect(second.status == 429, "\(second.text)")
        #expect(second.header("Retry-After") == "1")
        #expect(try JSONValue.parse(second.body)["error"]?["message"]?.stringValue?.contains("too many requests") == true, "\(second.text)")
        let other = fleet.post("/api/chat", #"{"model":"slow:1b","stream":false}"#, headers: ["X-Herd-Client": "patient"])
        #expect(other.status == 200, "another client is served")
        #expect(try first.readResponse().status == 200)
    }

    /// A num_ctx the loaded context already covers would make Ollama reload the
    /// model: herd strips it (counted); a larger one goes through (the scorer
    /// prices the reload); `--num-ctx-policy keep` sends it as it is.
    @Test func aNumCtxTheLoadedContextCoversIsStripped() throws {
        let fleet = try TestFleet.single("S", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        func seen() throws -> Int? {
            try JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["S"]!).body)["num_ctx_requests"]?.intValue
        }
        let covered = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"options":{"num_ctx":4096,"temperature":0.2}}"#)
        #expect(covered.status == 200)
        #expect(try seen() == 0, "loaded at 8192: num_ctx 4096 stripped \(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["S"]!).text)")
        #expect(fleet.getControl("/metrics").text.contains(#"herd_num_ctx_total{action="stripped"} 1"#))
        #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"options":{"num_ctx":32768}}"#).status == 200)
        #expect(try seen() == 1, "a larger context is the client's to ask for")
    }

    /// With default flags the concurrency is learned: a backend that serves one
    /// request at a time ends up with one at a time, the rest waiting in herd's
    /// queue (where they could still go elsewhere), never more than one inside it.
    @Test func aOneSlotBackendNeverHoldsMoreThanOneWaitingRequest() throws {
        let fleet = try TestFleet.single("S", backend: ["--models", "slow:1b", "--loaded", "slow:1b", "--slots", "1", "--first-byte-delay-ms", "150"])
        defer { fleet.shutdown() }
        let clients = try (0..<8).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
        for client in clients { client.send(Self.rawPost(#"{"model":"slow:1b","stream":false}"#)) }
        for client in clients { #expect(try client.readResponse().status == 200) }
        let stats = try JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["S"]!).body)
        #expect(stats["by_path"]?["/api/chat"]?.intValue == 8)
        #expect((stats["max_waiting"]?.intValue ?? 99) <= 1, "\(stats)")
        let fleetJSON = try JSONValue.parse(fleet.getControl("/api/fleet").body)
        let limits = fleetJSON["nodes"]?.arrayValue?.first?["concurrency"]
        // Learned down to one slot, then probing one above it now and then (AIMD): never more.
        #expect((limits?["slow:1b"]?.intValue ?? 99) <= 2, "learned limits: \(String(describing: limits))")
    }

    /// vLLM (Starlette) sends a stream's head at once and its first token only
    /// when a slot frees: the wait is in the first body bytes, not the head. Read
    /// at the head, every stream looked instant and slow start doubled the limit
    /// of a 2-slot server to 16 (6 of a wave of 10 waiting inside it). Each wave of streams
    /// comes as the last ends, so herd's queue is never deep for long.
    @Test func aServerThatSendsStreamHeadsAtOnceIsNotOverfilled() throws {
        let fleet = try TestFleet.single("V", backend: ["--models", "v:7b", "--loaded", "v:7b", "--slots", "2", "--no-props", "--heads-early",
                                                        "--first-byte-delay-ms", "60", "--tokens", "6", "--token-delay-ms", "30"])
        defer { fleet.shutdown() }
        for _ in 0..<3 {
            let clients = try (0..<10).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
            for client in clients { client.send(Self.rawPost(#"{"model":"v:7b","stream":true}"#)) }
            for client in clients {
                let response = try client.readResponse()
                #expect(response.status == 200)
                #expect(response.text.contains(#""done":true"#), "streamed to the end")
            }
        }
        let stats = try JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["V"]!).body)
        #expect(stats["by_path"]?["/api/chat"]?.intValue == 30)
        let limits = try JSONValue.parse(fleet.getControl("/api/fleet").body)["nodes"]?.arrayValue?.first?["concurrency"]
        #expect((stats["max_waiting"]?.intValue ?? 99) <= 3, "\(stats), learned limits: \(String(describing: limits))")
        #expect((limits?["v:7b"]?.intValue ?? 99) <= 3, "learned limits: \(String(describing: limits))")
    }

    /// The trace's time to first byte is the first token's: a server that
    /// sends a stream's head at once (vLLM) and its first token 400 ms later
    /// showed 1 ms on the dashboard.
    @Test func aStreamsTimeToFirstByteIsItsFirstTokens() throws {
        let fleet = try TestFleet.single("V", backend: ["--models", "v:7b", "--loaded", "v:7b", "--no-props", "--heads-early",
                                                        "--first-byte-delay-ms", "400", "--tokens", "3", "--token-delay-ms", "10"])
        defer { fleet.shutdown() }
        let response = fleet.post("/api/chat", #"{"model":"v:7b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(response.status == 200)
        var trace: JSONValue?
        #expect(waitUntil(seconds: 5) {
            trace = (try? JSONValue.parse(fleet.getControl("/api/v1/traces?model=v:7b").body))?["traces"]?.arrayValue?.first
            return trace != nil
        })
        let ttft = trace?["ttft_ms"]?.doubleValue ?? 0
        #expect(ttft >= 350 && ttft < 5_000, "ttft_ms \(ttft): \(String(describing: trace))")
    }

    /// vLLM streams carry no usage unless the client asks (`stream_options`),
    /// and most clients do not: the proxy counts the stream's events as its
    /// output tokens, so the learner still fits its work and opens up a
    /// many-slot server (before: every such answer had 0 tokens, taught
    /// nothing, and the limit stayed at the prior, 2, on an 8-slot server).
    @Test func streamsThatSayNothingOfTheirUsageStillTeachTheLimit() throws {
        let fleet = try TestFleet.single("V", backend: ["--models", "v:7b", "--loaded", "v:7b", "--slots", "8", "--no-props", "--heads-early",
                                                        "--first-byte-delay-ms", "30", "--tokens", "20", "--token-delay-ms", "15"])
        defer { fleet.shutdown() }
        let body = #"{"model":"v:7b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        for _ in 0..<5 {
            let clients = try (0..<12).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
            for client in clients { client.send(Self.rawPost(body, path: "/v1/chat/completions")) }
            for client in clients {
                let response = try client.readResponse()
                #expect(response.status == 200)
                #expect(response.text.contains("data: [DONE]") && !response.text.contains("usage"), "streamed to the end, no usage")
            }
        }
        #expect(fleet.control!.output.contains("tokens=20"), "the 20 events counted as tokens: \(fleet.logs)")
        let stats = try JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["V"]!).body)
        let limits = try JSONValue.parse(fleet.getControl("/api/fleet").body)["nodes"]?.arrayValue?.first?["concurrency"]
        #expect((limits?["v:7b"]?.intValue ?? 0) >= 5, "learned limits: \(String(describing: limits)), \(stats)")
        #expect((stats["max_waiting"]?.intValue ?? 99) <= 4, "\(stats), learned limits: \(String(describing: limits))")
    }

    @Test func clientDisconnectWhileQueuedReleasesTheSlot() throws {
        let fleet = try TestFleet.single("S", backend: ["--models", "slow:1b", "--loaded", "slow:1b", "--first-byte-delay-ms", "600"], control: ["--max-concurrency", "1", "--queue-timeout", "20"])
        defer { fleet.shutdown() }
        let request = Self.rawPost(#"{"model":"slow:1b","stream":false}"#)
        let first = try RawClient(port: fleet.proxyPort)
        first.send(request)
        #expect(waitUntil(seconds: 5) { Self.gauge(fleet, "herd_in_flight") == 1 })
        do {
            let queued = try RawClient(port: fleet.proxyPort)
            queued.send(request) // waits behind the first, then leaves
            #expect(waitUntil(seconds: 5) { Self.gauge(fleet, "herd_queue_length") == 1 })
        }
        #expect(fleet.control!.waitForOutput("outcome=client_gone status=499", seconds: 5), "\(fleet.logs)")
        #expect(try first.readResponse().status == 200)
        // The abandoned request holds nothing: the next one is served at once.
        let next = fleet.post("/api/chat", #"{"model":"slow:1b","stream":false}"#)
        #expect(next.status == 200)
    }

    @Test func clientDisconnectMidStreamCancelsTheUpstream() throws {
        let fleet = try TestFleet.single("T", backend: ["--models", "talk:1b", "--loaded", "talk:1b", "--tokens", "500", "--token-delay-ms", "10"])
        defer { fleet.shutdown() }
        do {
            let client = try RawClient(port: fleet.proxyPort)
            client.send(Self.rawPost(#"{"model":"talk:1b"}"#))
            client.fill()
        }
        let backendPort = fleet.backendPorts["T"]!
        let cancelled = waitUntil(seconds: 5) {
            let stats = fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: backendPort)
            return (try? JSONValue.parse(stats.body))?["cancelled"]?.intValue == 1
        }
        #expect(cancelled, "the backend's stream was cancelled")
        #expect(fleet.control!.waitForOutput("outcome=client_gone", seconds: 5))
    }

    @Test func h2cClientsAreServedLikeHTTP1() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        let result = ProcessRunner.run("/usr/bin/curl", ["-s", "-i", "--http2-prior-knowledge", "-d", #"{"model":"mistral:7b","stream":false}"#,
                                                         "http://127.0.0.1:\(fleet.proxyPort)/api/chat"])
        #expect(result.output.hasPrefix("HTTP/2 200"), "\(result.output)")
        #expect(result.output.contains("x-herd-node: node-b"))
        #expect(result.output.contains("\"done\":true"))
    }

    @Test func browserPreflightAndOrigins() throws {
        let fleet = try Self.twoNodeFleet()
        defer { fleet.shutdown() }
        let preflight = fleet.request("OPTIONS", "/api/chat", body: nil, headers: [
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
        ], port: fleet.proxyPort)
        #expect(preflight.status == 204)
        #expect(preflight.header("Access-Control-Allow-Origin") == "http://localhost:3000")
        #expect(preflight.header("Access-Control-Allow-Headers") == "content-type")
        let chat = fleet.post("/api/chat", #"{"model":"mistral:7b","stream":false}"#, headers: ["Origin": "chrome-extension://abc"])
        #expect(chat.header("Access-Control-Allow-Origin") == "chrome-extension://abc")
        let foreign = fleet.post("/api/chat", #"{"model":"mistral:7b","stream":false}"#, headers: ["Origin": "https://evil.example"])
        #expect(foreign.header("Access-Control-Allow-Origin") == nil)
    }
}
