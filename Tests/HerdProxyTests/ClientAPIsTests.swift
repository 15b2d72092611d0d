import HerdJSON
import HerdTestSupport
import Testing

/// The APIs beyond Ollama's and OpenAI chat, through the real router to a fake
/// backend that speaks them: Anthropic Messages, OpenAI Responses, rerank,
/// `count_tokens`, `GET /v1/models/{model}`. Passed through untouched: what
/// reaches the backend is what the client sent, what comes back is the backend's.
@Suite(.serialized) struct ClientAPIsTests {
    static let messages = #"""
    {"model":"llama3:8b","max_tokens":64,"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
     "thinking":{"type":"enabled","budget_tokens":1024},
     "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
     "messages":[{"role":"user","content":[{"type":"text","text":"Weather in Paris?"},
       {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}
    """#

    static func fleet() throws -> TestFleet {
        try TestFleet.single("A", backend: ["--models", "llama3:8b,bge-reranker", "--loaded", "llama3:8b"])
    }

    @Test func anthropicMessagesPassThroughWithEverythingTheyCarry() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let answer = fleet.post("/v1/messages", Self.messages, headers: ["x-api-key": "sk-ant-local", "anthropic-version": "2023-06-01"])
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.header("X-Herd-Node") == "node-a")
        let message = try JSONValue.parse(answer.body)
        #expect(message["type"]?.stringValue == "message")
        #expect(message["stop_reason"]?.stringValue == "tool_use")
        #expect(message["content"]?.arrayValue?.last?["name"]?.stringValue == "get_weather")
        // The backend got the body as sent: system blocks, thinking, tools, the image.
        let received = try JSONValue.parse(fleet.request("GET", "/_fake/last", body: nil, headers: [:], port: fleet.backendPorts["A"]!).body)
        #expect(received == (try JSONValue.parse(Array(Self.messages.utf8))))
        // Its usage counts as any other API's.
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"herd_completion_tokens_total{model="llama3:8b"} 8"#) },
                "\(fleet.getControl("/metrics").text.split(separator: "\n").filter { $0.contains("tokens_total") })")
    }

    @Test func anthropicStreamsArriveEventByEvent() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let body = #"{"model":"llama3:8b","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#
        let answer = fleet.post("/v1/messages", body)
        #expect(answer.status == 200)
        #expect(answer.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        let events = answer.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(events.first == "message_start" && events.last == "message_stop", "\(events)")
        #expect(events.contains("ping") && events.filter { $0 == "content_block_delta" }.count == 8)
    }

    /// A backend without /v1/messages (Ollama before 0.14, llama-cpp-python)
    /// answers 404: herd sends the request again as a chat completion and
    /// translates the answer; later requests to it are translated at once.
    @Test func anthropicMessagesAreTranslatedForABackendWithoutThem() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--no-anthropic"])
        defer { fleet.shutdown() }
        let answer = fleet.post("/v1/messages", Self.messages)
        #expect(answer.status == 200, "\(answer.text)")
        let message = try JSONValue.parse(answer.body)
        #expect(message["type"]?.stringValue == "message" && message["stop_reason"]?.stringValue == "tool_use", "\(message)")
        #expect(message["content"]?.arrayValue?.last?["input"]?["city"]?.stringValue == "Paris")
        let body = #"{"model":"llama3:8b","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#
        let streamed = fleet.post("/v1/messages", body)
        #expect(streamed.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        let events = streamed.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(events.first == "message_start" && events.last == "message_stop" && events.filter { $0 == "content_block_delta" }.count == 8,
                "\(events)")
        #expect(fleet.backendRequests("A", path: "/v1/messages") == 1, "asked natively once, then translated at once")
        #expect(fleet.backendRequests("A", path: "/v1/chat/completions") == 2)
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"herd_completion_tokens_total{model="llama3:8b"} 16"#) })
    }

    @Test func openAIResponsesAreTranslatedForABackendWithoutThem() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--no-responses"])
        defer { fleet.shutdown() }
        let plain = fleet.post("/v1/responses", #"{"model":"llama3:8b","input":"Say hi","instructions":"Be brief"}"#)
        #expect(plain.status == 200, "\(plain.text)")
        let response = try JSONValue.parse(plain.body)
        #expect(response["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"]?.stringValue?.hasPrefix("tok0") == true, "\(response)")
        let streamed = fleet.post("/v1/responses", #"{"model":"llama3:8b","input":"Say hi","stream":true}"#)
        let events = streamed.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(events.first == "response.created" && events.last == "response.completed", "\(events)")
        let refused = fleet.post("/v1/responses", #"{"model":"llama3:8b","input":"more","previous_response_id":"resp_1"}"#)
        #expect(refused.status == 400 && refused.text.contains("previous_response_id"), "\(refused.text)")
        #expect(fleet.backendRequests("A", path: "/v1/responses") == 1 && fleet.backendRequests("A", path: "/v1/chat/completions") == 2)
    }

    /// Errors in Anthropic's shape: an unknown model, a bad body.
    @Test func anthropicErrorsAreAnthropicShaped() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let unknown = fleet.post("/v1/messages", #"{"model":"claude-nope","max_tokens":8,"messages":[]}"#)
        #expect(unknown.status == 404)
        let error = try JSONValue.parse(unknown.body)
        #expect(error["type"]?.stringValue == "error" && error["error"]?["type"]?.stringValue == "not_found_error", "\(unknown.text)")
        let bad = fleet.post("/v1/messages", #"{"model":"llama3:8b","max_tokens":1e14}"#)
        #expect(bad.status == 400)
        #expect(try JSONValue.parse(bad.body)["error"]?["type"]?.stringValue == "invalid_request_error", "\(bad.text)")
    }

    /// The fake, like Ollama, has no `count_tokens`: herd answers its estimate and says so.
    @Test func countTokensIsEstimatedWhereTheBackendHasNoTokenizer() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let answer = fleet.post("/v1/messages/count_tokens", Self.messages)
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.header("X-Herd-Token-Count") == "estimate")
        let tokens = try JSONValue.parse(answer.body)["input_tokens"]?.intValue ?? 0
        #expect(tokens > 50 && tokens < 500, "\(tokens)")
        #expect(fleet.backendRequests("A", path: "/v1/messages/count_tokens") == 1, "the backend was asked first")
    }

    @Test func openAIResponsesPassThroughPlainAndStreamed() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let body = #"{"model":"llama3:8b","input":"Say hi","instructions":"Be brief","reasoning":{"effort":"low"},"store":false}"#
        let plain = fleet.post("/v1/responses", body)
        #expect(plain.status == 200, "\(plain.text)")
        #expect(try JSONValue.parse(plain.body)["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["type"]?.stringValue == "output_text")
        let received = try JSONValue.parse(fleet.request("GET", "/_fake/last", body: nil, headers: [:], port: fleet.backendPorts["A"]!).body)
        #expect(received == (try JSONValue.parse(Array(body.utf8))))
        let streamed = fleet.post("/v1/responses", #"{"model":"llama3:8b","input":"Say hi","stream":true}"#)
        #expect(streamed.status == 200)
        let events = streamed.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(events.first == "response.created" && events.last == "response.completed", "\(events)")
    }

    @Test func rerankIsRoutedByModelUnderEachName() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        for path in ["/v1/rerank", "/rerank", "/v1/reranking"] {
            let answer = fleet.post(path, #"{"model":"bge-reranker","query":"q","documents":["a","b","c"]}"#)
            #expect(answer.status == 200, "\(path): \(answer.text)")
            #expect(try JSONValue.parse(answer.body)["results"]?.arrayValue?.count == 3)
        }
        #expect(fleet.post("/v1/rerank", #"{"model":"nope","query":"q","documents":["a"]}"#).status == 404)
    }

    /// A request with an image goes to a model that can see; where none of
    /// the models it names can, a clear 400 in the client's API.
    @Test func imagesGoOnlyToAModelThatSees() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.addBackend("T", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.addBackend("V", arguments: ["--models", "llava:7b", "--loaded", "llava:7b", "--vision", "llava:7b"])
        try fleet.startControl()
        try fleet.addNode("node-t", backend: "T")
        try fleet.addNode("node-v", backend: "V")
        try fleet.waitForNodes(2)
        let image = #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"What is this?","images":["iVBORw0KGgo="]}]}"#
        // Capabilities arrive with the node's next heartbeats (it asks /api/show once per model).
        var refused = fleet.post("/api/chat", image)
        #expect(waitUntil(seconds: 10) {
            refused = fleet.post("/api/chat", image)
            return refused.status == 400
        }, "\(refused.status) \(refused.text)")
        #expect(refused.text.contains("no vision capability"), "\(refused.text)")
        let openAI = fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}}]}]}"#)
        #expect(openAI.status == 400)
        #expect(try JSONValue.parse(openAI.body)["error"]?["type"]?.stringValue == "invalid_request_error")
        let fallback = fleet.post("/api/chat", image, headers: ["X-Herd-Fallback-Models": "llava:7b"])
        #expect(fallback.status == 200 && fallback.header("X-Herd-Node") == "node-v", "\(fallback.status) \(fallback.text)")
        let plain = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(plain.status == 200 && plain.header("X-Herd-Node") == "node-t")
    }

    @Test func oneModelIsListedByName() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let known = fleet.get("/v1/models/llama3:8b")
        #expect(known.status == 200)
        #expect(try JSONValue.parse(known.body)["id"]?.stringValue == "llama3:8b")
        #expect(try JSONValue.parse(fleet.get("/v1/models/llama3%3A8b").body)["id"]?.stringValue == "llama3:8b", "percent-encoded")
        let unknown = fleet.get("/v1/models/nope")
        #expect(unknown.status == 404)
        #expect(try JSONValue.parse(unknown.body)["error"]?["code"]?.stringValue == "model_not_found")
    }
}

/// Everything a client sends reaches the backend byte for byte, and its answer
/// comes back as the backend gave it: tools, `format` with a schema, `think`
/// (bool and level), `logprobs`, `stream_options.include_usage`, `keep_alive`,
/// `/api/generate` with `images`, `suffix`, `raw`, `context`.
@Suite(.serialized) struct PassthroughTests {
    static let bodies: [(String, String)] = [
        ("/api/chat", #"{"model":"llama3:8b","stream":false,"think":"high","keep_alive":"10m","format":{"type":"object","properties":{"a":{"type":"integer"}}},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"1","tool_name":"f"}],"options":{"temperature":0,"seed":42}}"#),
        ("/api/generate", #"{"model":"llama3:8b","stream":false,"prompt":"def f(","suffix":"  return 1","raw":true,"context":[1,2,3],"images":["iVBORw0KGgo="],"think":false,"keep_alive":0}"#),
        ("/v1/chat/completions", #"{"model":"llama3:8b","stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2,"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}},"reasoning_effort":"low","messages":[{"role":"user","content":"x"}]}"#),
    ]

    @Test func bodiesReachTheBackendByteForByteAndAnswersComeBack() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--vision", "llama3:8b"])
        defer { fleet.shutdown() }
        let port = fleet.backendPorts["A"]!
        for (path, body) in Self.bodies {
            let viaHerd = fleet.post(path, body)
            #expect(viaHerd.status == 200, "\(path): \(viaHerd.text)")
            let received = fleet.request("GET", "/_fake/last_raw", body: nil, headers: [:], port: port)
            #expect(received.body == Array(body.utf8), "\(path): the backend got \(received.text)")
            let direct = fleet.request("POST", path, body: body, headers: [:], port: port)
            #expect(withoutTimes(viaHerd.text) == withoutTimes(direct.text), "\(path)")
        }
    }
}

/// Each line of an answer as JSON without its time fields (`created_at`,
/// `created`: two answers differ there), or as text when it is not JSON.
func withoutTimes(_ text: String) -> [String] {
    text.split(separator: "\n").map { line in
        let json = line.hasPrefix("data: ") ? line.dropFirst(6) : line[...]
        guard case let .object(members)? = try? JSONValue.parse(Array(json.utf8)) else { return String(line) }
        var out: [UInt8] = []
        JSONValue.object(members.filter { $0.0 != "created_at" && $0.0 != "created" }).write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
