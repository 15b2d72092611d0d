import HerdJSON
import HerdTestSupport
import Testing
@testable import herd_proxy

/// Ollama-API requests to an OpenAI-compatible server: the request and the
/// answer (whole and streamed) translated, tool calls and usage included.
@Suite struct OllamaOverOpenAITests {
    func translated(_ endpoint: Endpoint, _ body: String, stream: Bool = false) throws -> (String, JSONValue) {
        let t = try #require(OllamaOverOpenAI.request(endpoint, body: Array(body.utf8), model: "qwen", stream: stream))
        return (t.path, try JSONValue.parse(t.body))
    }

    @Test func chatRequestsBecomeChatCompletions() throws {
        let (path, body) = try translated(.chat, #"""
        {"model":"q","stream":true,"keep_alive":"5m","format":{"type":"object"},
         "options":{"temperature":0.2,"num_predict":64,"num_ctx":8192,"seed":7,"stop":["\n"]},
         "tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}],
         "messages":[{"role":"system","content":"Be brief."},
                     {"role":"user","content":"What is this?","images":["iVBORw0KGgo","/9j/4AAQ"]},
                     {"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Paris"}}}]},
                     {"role":"tool","content":"18 C","tool_name":"weather"}]}
        """#, stream: true)
        #expect(path == "/v1/chat/completions")
        #expect(body["model"]?.stringValue == "qwen")
        #expect(body["stream"]?.boolValue == true && body["stream_options"]?["include_usage"]?.boolValue == true)
        #expect(body["max_tokens"]?.intValue == 64 && body["temperature"]?.doubleValue == 0.2 && body["seed"]?.intValue == 7)
        #expect(body["num_ctx"] == nil && body["keep_alive"] == nil && body["options"] == nil)
        #expect(body["response_format"]?["type"]?.stringValue == "json_schema")
        #expect(body["tools"]?.arrayValue?.count == 1)
        let messages = body["messages"]?.arrayValue ?? []
        #expect(messages.count == 4)
        let parts = messages[1]["content"]?.arrayValue ?? []
        #expect(parts.map { $0["type"]?.stringValue } == ["text", "image_url", "image_url"])
        #expect(parts[1]["image_url"]?["url"]?.stringValue == "data:image/png;base64,iVBORw0KGgo")
        #expect(parts[2]["image_url"]?["url"]?.stringValue?.hasPrefix("data:image/jpeg;base64,") == true)
        let call = messages[2]["tool_calls"]?.arrayValue?.first
        #expect(call?["id"]?.stringValue == "call_0" && call?["function"]?["arguments"]?.stringValue == #"{"city":"Paris"}"#)
        #expect(messages[3]["tool_call_id"]?.stringValue == "call_0" && messages[3]["role"]?.stringValue == "tool")
    }

    @Test func generateAndEmbedRequests() throws {
        let (path, body) = try translated(.generate, #"{"model":"q","prompt":"Hi","system":"Be brief","format":"json","stream":false}"#)
        #expect(path == "/v1/chat/completions")
        #expect(body["messages"]?.arrayValue?.map { $0["role"]?.stringValue } == ["system", "user"])
        #expect(body["response_format"]?["type"]?.stringValue == "json_object" && body["stream"]?.boolValue == false)
        #expect(try translated(.generate, #"{"model":"q","prompt":"1 2 3","raw":true}"#).0 == "/v1/completions")
        let (embedPath, embed) = try translated(.embed, #"{"model":"q","input":["a","b"]}"#)
        #expect(embedPath == "/v1/embeddings" && embed["input"]?.arrayValue?.count == 2)
        #expect(try translated(.embeddings, #"{"model":"q","prompt":"a"}"#).1["input"]?.stringValue == "a")
        #expect(OllamaOverOpenAI.request(.chat, body: Array("[1]".utf8), model: "q", stream: false) == nil)
    }

    func run(_ translator: OllamaAnswerTranslator, status: Int = 200, _ pieces: [String]) -> [JSONValue] {
        translator.head(status: status)
        var out: [UInt8] = []
        for piece in pieces { out += Array(piece.utf8).withUnsafeBytes { translator.feed($0) } }
        out += translator.finish()
        return String(decoding: out, as: UTF8.self).split(separator: "\n").compactMap { try? JSONValue.parse(Array($0.utf8)) }
    }

    @Test func aStreamBecomesNDJSONWithTheCountsAndToolCallsAtTheEnd() {
        let translator = OllamaAnswerTranslator(endpoint: .chat, model: "q", stream: true)
        #expect(translator.contentType == "application/x-ndjson")
        // Split mid-line on purpose: lines are joined across reads.
        let lines = run(translator, [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\ndata: {\"choi",
            "ces\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":\\\"Paris\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9},\"timings\":{\"prompt_ms\":2.5,\"predicted_ms\":90}}\n\n",
            "data: [DONE]\n\n",
        ])
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.prefix(2).map { $0["message"]?["content"]?.stringValue } == ["Hel", "lo"])
        #expect(lines[0]["done"]?.boolValue == false && lines[0]["model"]?.stringValue == "q")
        let last = lines.last
        #expect(last?["done"]?.boolValue == true && last?["eval_count"]?.intValue == 9 && last?["prompt_eval_count"]?.intValue == 5)
        #expect(last?["eval_duration"]?.intValue == 90_000_000)
        #expect(last?["message"]?["tool_calls"]?.arrayValue?.first?["function"]?["arguments"]?["city"]?.stringValue == "Paris")
    }

    @Test func aStreamCutWithoutDoneStillEndsWithADoneLine() {
        let lines = run(OllamaAnswerTranslator(endpoint: .generate, model: "q", stream: true),
                        ["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"])
        #expect(lines.map { $0["response"]?.stringValue } == ["Hi", ""])
        #expect(lines.last?["done"]?.boolValue == true)
    }

    @Test func wholeAnswersAndErrors() {
        let chat = run(OllamaAnswerTranslator(endpoint: .chat, model: "q", stream: false), [#"""
        {"choices":[{"message":{"role":"assistant","content":"Hi","reasoning_content":"hmm",
          "tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"length"}],
         "usage":{"prompt_tokens":3,"completion_tokens":4}}
        """#])
        #expect(chat.count == 1)
        #expect(chat[0]["message"]?["content"]?.stringValue == "Hi" && chat[0]["message"]?["thinking"]?.stringValue == "hmm")
        #expect(chat[0]["message"]?["tool_calls"]?.arrayValue?.first?["function"]?["arguments"]?["a"]?.intValue == 1)
        #expect(chat[0]["done_reason"]?.stringValue == "length" && chat[0]["eval_count"]?.intValue == 4)
        let embed = run(OllamaAnswerTranslator(endpoint: .embed, model: "e", stream: false),
                        [#"{"data":[{"embedding":[0.1,0.2]},{"embedding":[0.3,0.4]}],"usage":{"prompt_tokens":2}}"#])
        #expect(embed.first?["embeddings"]?.arrayValue?.count == 2)
        let legacy = run(OllamaAnswerTranslator(endpoint: .embeddings, model: "e", stream: false), [#"{"data":[{"embedding":[0.5]}]}"#])
        #expect(legacy.first?["embedding"]?.arrayValue?.count == 1)
        // A streamed request's error answer is a whole Ollama error.
        let error = OllamaAnswerTranslator(endpoint: .chat, model: "q", stream: true)
        let failed = run(error, status: 400, [#"{"error":{"message":"context too long","type":"invalid_request_error"}}"#])
        #expect(error.contentType.hasPrefix("application/json"))
        #expect(failed.first?["error"]?.stringValue == "context too long")
        #expect(run(OllamaAnswerTranslator(endpoint: .chat, model: "q", stream: false), ["not json"]).first?["error"] != nil)
    }
}

/// The whole path: a model only an OpenAI-compatible server serves, asked for
/// over Ollama's API, listed in /api/tags and /api/ps.
@Suite(.serialized) struct OllamaOverOpenAIProcessTests {
    @Test func ollamaClientsReachAModelOnlyAnOpenAIServerServes() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let port = try fleet.addBackend("L", arguments: ["--models", "qwen2.5:0.5b,bge-m3", "--tokens", "6"])
        try fleet.startControl()
        try fleet.addNode("node-l", backend: "L", extra: ["--ollama", "none", "--backend", "openai=http://127.0.0.1:\(port)"])
        try fleet.waitForNodes(1)
        let tags = try JSONValue.parse(fleet.get("/api/tags").body)
        #expect(tags["models"]?.arrayValue?.compactMap { $0["name"]?.stringValue }.contains("qwen2.5:0.5b") == true, "\(tags)")
        #expect(try JSONValue.parse(fleet.get("/api/ps").body)["models"]?.arrayValue?.count == 2)
        let whole = fleet.post("/api/chat", #"{"model":"qwen2.5:0.5b","stream":false,"messages":[{"role":"user","content":"Hi"}]}"#)
        #expect(whole.status == 200, "\(whole.text)")
        let answer = try JSONValue.parse(whole.body)
        #expect(answer["message"]?["content"]?.stringValue?.hasPrefix("tok0") == true && answer["done"]?.boolValue == true, "\(answer)")
        #expect(answer["eval_count"]?.intValue == 6)
        let streamed = fleet.post("/api/chat", #"{"model":"qwen2.5:0.5b","messages":[{"role":"user","content":"Hi"}]}"#)
        #expect(streamed.header("Content-Type") == "application/x-ndjson")
        let lines = streamed.text.split(separator: "\n").compactMap { try? JSONValue.parse(Array($0.utf8)) }
        #expect(lines.count == 7 && lines.last?["done"]?.boolValue == true, "\(streamed.text)")
        let generated = try JSONValue.parse(fleet.post("/api/generate", #"{"model":"qwen2.5:0.5b","prompt":"Hi","stream":false}"#).body)
        #expect(generated["response"]?.stringValue?.isEmpty == false)
        let embedded = try JSONValue.parse(fleet.post("/api/embed", #"{"model":"bge-m3","input":["a","b"]}"#).body)
        #expect(embedded["embeddings"]?.arrayValue?.count == 2)
        let show = fleet.post("/api/show", #"{"model":"qwen2.5:0.5b"}"#)
        #expect(show.status == 200)
        #expect(try JSONValue.parse(show.body)["capabilities"]?.arrayValue?.first?.stringValue == "completion")
        // The backend saw OpenAI requests only.
        #expect(fleet.backendRequests("L", path: "/v1/chat/completions") == 3 && fleet.backendRequests("L", path: "/api/chat") == 0)
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"herd_completion_tokens_total{model="qwen2.5:0.5b"} 18"#) })
    }
}
