import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire
import Testing
@testable import herd_proxy

@Suite struct ProxyFlowTests {
    let answerA = RouteAnswer(id: 1, node: "a", upstream: "127.0.0.1:1", backend: .ollama, model: "m")
    let answerB = RouteAnswer(id: 1, node: "b", upstream: "127.0.0.1:2", backend: .ollama, model: "m")

    @Test func happyPath() {
        var flow = ProxyFlow()
        #expect(flow.start() == [.askRoute])
        #expect(flow.routed(answerA) == [.sendUpstream(answerA)])
        #expect(flow.upstreamHead(status: 200) == [.relayHead])
        #expect(flow.upstreamFinished(status: 200) == [.endClient, .report(outcome: .ok, status: 200, error: nil)])
        #expect(flow.phase == .finished)
    }

    @Test func failureBeforeTheFirstByteIsRetriedElsewhere() {
        var flow = ProxyFlow()
        _ = flow.start()
        _ = flow.routed(answerA)
        let refused = HTTPClientError.connectFailed(UVError(code: -111, operation: "connect"))
        #expect(flow.upstreamFailed(refused, status: 0) == [.askRetry(node: "a", reason: refused.description, status: nil)])
        #expect(flow.routed(answerB) == [.sendUpstream(answerB)])
        #expect(flow.upstreamHead(status: 503) == [.cancelUpstream, .askRetry(node: "b", reason: "status 503", status: 503)])
    }

    @Test func aBackendsOwnNotImplementedReachesTheClient() {
        var flow = ProxyFlow()
        _ = flow.start()
        _ = flow.routed(answerA)
        #expect(flow.upstreamHead(status: 501) == [.relayHead], "\"start it with --embeddings\" is the client's to read, not a failed node")
        #expect(flow.upstreamFinished(status: 501) == [.endClient, .report(outcome: .ok, status: 501, error: nil)])
    }

    /// Anthropic's `count_tokens` on a backend without it: herd answers its estimate.
    @Test func anEndpointTheBackendLacksIsAnsweredByHerdWhereHerdCan() {
        for status in [404, 405, 501] {
            var flow = ProxyFlow(answersWhenUnsupported: true)
            _ = flow.start()
            _ = flow.routed(answerA)
            #expect(flow.upstreamHead(status: status) == [.cancelUpstream, .answerItself, .report(outcome: .ok, status: 200, error: nil)])
            #expect(flow.phase == .finished)
        }
        var served = ProxyFlow(answersWhenUnsupported: true)
        _ = served.start()
        _ = served.routed(answerA)
        #expect(served.upstreamHead(status: 200) == [.relayHead], "a backend that counts tokens itself is relayed")
        var plain = ProxyFlow()
        _ = plain.start()
        _ = plain.routed(answerA)
        #expect(plain.upstreamHead(status: 404) == [.relayHead], "elsewhere a backend's 404 is the client's")
    }

    /// Anthropic Messages to a backend that has no /v1/messages: sent again translated, once.
    @Test func anEndpointTheBackendLacksIsSentAgainTranslatedOnce() {
        var flow = ProxyFlow()
        flow.mayTranslate = true
        _ = flow.start()
        _ = flow.routed(answerA)
        #expect(flow.upstreamHead(status: 404) == [.cancelUpstream, .resendTranslated])
        #expect(flow.phase == .upstream(node: "a"))
        #expect(flow.upstreamHead(status: 404) == [.relayHead], "the translated request's own 404 is the client's")
    }

    @Test func exhaustedRetriesAfterTimeoutsAre504() {
        var flow = ProxyFlow()
        _ = flow.start()
        _ = flow.routed(answerA)
        _ = flow.upstreamFailed(.firstByteTimeout, status: 0)
        let actions = flow.refused(RouteRefusal(id: 1, code: .retriesExhausted, message: "every node tried failed"))
        guard case let .failClient(error) = actions.first else { Issue.record("expected failClient"); return }
        #expect(error.status == 504)
    }

    @Test func failureAfterTheFirstByteEndsTheStreamWithAnError() {
        var flow = ProxyFlow()
        _ = flow.start()
        _ = flow.routed(answerA)
        _ = flow.upstreamHead(status: 200)
        let actions = flow.upstreamFailed(.connectionLost(nil, afterResponseStarted: true), status: 200)
        guard case .failStream = actions.first else { Issue.record("expected failStream, got \(actions)"); return }
        #expect(flow.phase == .finished)
        #expect(flow.upstreamFailed(.readTimeout, status: 200).isEmpty, "nothing after the end")
    }

    @Test func clientGoneCancelsWhateverIsUnderWay() {
        var queued = ProxyFlow()
        _ = queued.start()
        #expect(queued.clientGone().first == .cancelRoute)
        var streaming = ProxyFlow()
        _ = streaming.start()
        _ = streaming.routed(answerA)
        _ = streaming.upstreamHead(status: 200)
        #expect(streaming.clientGone().first == .cancelUpstream)
        #expect(streaming.clientGone().isEmpty)
    }

    @Test func lateAnswersAreIgnored() {
        var flow = ProxyFlow()
        _ = flow.start()
        _ = flow.clientGone()
        #expect(flow.routed(answerA).isEmpty)
        #expect(flow.upstreamHead(status: 200).isEmpty)
    }
}

@Suite struct RouteFieldsTests {
    func read(_ json: String, _ endpoint: Endpoint = .chat, fallbacks: [String] = []) throws -> RouteFields {
        try RouteFields.read(Array(json.utf8), endpoint: endpoint, headerFallbacks: fallbacks, headerTags: [])
    }

    @Test func readsTheRouteFieldsOnly() throws {
        let fields = try read(#"{"messages":[{"role":"user","content":"x","images":["aGVsbG8="]}],"model":"llama3","options":{"num_ctx":4096},"fallback_models":["a","b"],"metadata":{"tags":["app"]},"user":"u1"}"#)
        #expect(fields.model == "llama3")
        #expect(fields.stream == true, "Ollama chat streams by default")
        #expect(fields.numCtx == 4096)
        #expect(fields.fallbacks == ["a", "b"])
        #expect(fields.tags == ["app", "user:u1"])
        #expect(fields.hasFallbackField)
        #expect(try read(#"{"model":"x"}"#, .openAIChat).stream == false, "OpenAI does not stream by default")
        #expect(try read(#"{"model":"x"}"#, .chat, fallbacks: ["y"]).fallbacks == ["y"])
    }

    @Test func readsWhatScoringNeeds() throws {
        let turn1 = try read(#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"options":{"num_predict":64},"think":false}"#)
        #expect(turn1.maxTokens == 64 && turn1.think == false)
        let turn2 = try read(#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}],"tools":[{"type":"function"}]}"#)
        #expect(turn1.session != nil && turn1.session == turn2.session, "one conversation, one session, turn after turn")
        #expect(turn1.prefix != nil && turn1.prefix == turn2.prefix)
        let other = try read(#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"something else"}],"tools":[{"type":"function"}]}"#)
        #expect(other.session != turn1.session, "another conversation")
        #expect(other.prefix == turn1.prefix, "… with the same system prompt and tools")
        // Without a system prompt the first question names the conversation.
        let a = try read(#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#)
        let b = try read(#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"q2"}]}"#)
        #expect(a.session == b.session && a.prefix == nil)
        // OpenAI's user and X-Herd-Session name it outright.
        let named = try RouteFields.read(Array(#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#.utf8), endpoint: .chat,
                                         headerFallbacks: [], headerTags: [], headerSession: "s-1")
        #expect(named.session == ContentHash(of: Array("session:s-1".utf8)))
        for (message, system) in [(#"{"content":"role","role" : "system"}"#, true), (#"{"content":"\"role\": \"system\"","role":"user"}"#, false),
                                  (#"{"role":"systems"}"#, false), (#"{"role":"user"}"#, false)] {
            let bytes = Array(message.utf8)
            #expect(RouteFields.isSystemMessage(bytes, 0..<bytes.count) == system, "\(message)")
        }
        #expect(try read(#"{"model":"m","max_tokens":10,"user":"u"}"#, .openAIChat).maxTokens == 10)
        #expect(try read(#"{"model":"m","max_tokens":10,"user":"u"}"#, .openAIChat).session == ContentHash(of: Array("user:u".utf8)))
    }

    @Test(arguments: ["", "{", "[]", #"{"model":1}"#, #"{"model":""}"#, #"{"messages":[]}"#, #"{"model":"m","stream":"yes"}"#,
                      #"{"model":"m","fallback_models":"x"}"#, #"{"model":"m"} trailing"#, #"{"model":"m","x":[1,]}"#])
    func refusesBadBodies(body: String) {
        #expect(throws: RouteFields.Invalid.self) { try read(body) }
    }
}

@Suite struct TokenCounterTests {
    @Test func ollamaLastLine() {
        let stream = #"{"done":false}"# + "\n" + #"{"done":true,"prompt_eval_count":12,"eval_count":34}"# + "\n"
        #expect(TokenCounter.count(Array(stream.utf8)) == (12, 34))
    }

    @Test func openAIUsageBeforeDone() {
        let sse = "data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n"
        #expect(TokenCounter.count(Array(sse.utf8)) == (5, 7))
        #expect(TokenCounter.count(Array(#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#.utf8)) == (1, 2))
        #expect(TokenCounter.count(Array("garbage".utf8)) == (0, 0))
    }

    /// A stream that says nothing of its usage (vLLM unless asked): its events
    /// are counted, chunk boundaries anywhere, the role and `[DONE]` events
    /// not taken for tokens.
    @Test func eventsOfAStreamWithoutUsage() {
        let sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
            + (0..<5).map { _ in "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n" }.joined() + "data: [DONE]\n\n"
        let bytes = Array(sse.utf8)
        #expect(TokenCounter.count(bytes) == (0, 0))
        for cut in [0, 1, 7, 60, bytes.count - 1, bytes.count] {
            let lines = bytes[..<cut].withUnsafeBytes { TokenCounter.newlines(in: $0) } + bytes[cut...].withUnsafeBytes { TokenCounter.newlines(in: $0) }
            #expect(lines == 14 && TokenCounter.streamedTokens(newlines: lines) == 5, "cut at \(cut)")
        }
        #expect(TokenCounter.streamedTokens(newlines: 0) == 0 && TokenCounter.streamedTokens(newlines: 1) == 0)
        #expect(TokenCounter.streamedTokens(newlines: 4) == 1 && TokenCounter.streamedTokens(newlines: Int.max) == Int.max / 2 - 2)
    }

    /// The backend's own timings teach control its rates: Ollama's durations
    /// are nanoseconds, llama.cpp's `timings` milliseconds.
    @Test func backendTimings() {
        let ollama = #"{"done":true,"prompt_eval_count":12,"prompt_eval_duration":24000000,"eval_count":34,"eval_duration":680000000,"load_duration":2500000000}"#
        #expect(TokenCounter.read(Array(ollama.utf8)) == BackendUsage(promptTokens: 12, completionTokens: 34, promptMilliseconds: 24,
                                                                      decodeMilliseconds: 680, loadMilliseconds: 2500))
        let llamaCpp = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7},\"timings\":{\"prompt_n\":5,\"prompt_ms\":3.5,\"predicted_n\":7,\"predicted_ms\":70.0}}\n\ndata: [DONE]\n\n"
        #expect(TokenCounter.read(Array(llamaCpp.utf8)) == BackendUsage(promptTokens: 5, completionTokens: 7, promptMilliseconds: 3.5,
                                                                        decodeMilliseconds: 70))
        // Anthropic Messages (whole, and a stream's message_delta) and OpenAI Responses (inside `response`).
        #expect(TokenCounter.count(Array(#"{"type":"message","usage":{"input_tokens":9,"output_tokens":4}}"#.utf8)) == (9, 4))
        let anthropic = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        #expect(TokenCounter.count(Array(anthropic.utf8)) == (0, 15))
        let responses = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}}\n\n"
        #expect(TokenCounter.count(Array(responses.utf8)) == (3, 5))
        let bad = #"{"done":true,"eval_count":3,"eval_duration":-5,"prompt_eval_duration":"x"}"#
        #expect(TokenCounter.read(Array(bad.utf8)) == BackendUsage(completionTokens: 3), "nonsense timings are dropped, not trusted")
    }
}

@Suite struct ClientErrorTests {
    @Test func formatsPerAPI() throws {
        let unknown = ClientError.refused(RouteRefusal(id: 1, code: .modelNotFound, message: "model 'x' not found", models: ["a"]))
        #expect(unknown.status == 404)
        let ollama = try JSONValue.parse(unknown.body(for: .ollama))
        #expect(ollama["error"]?.stringValue == "model 'x' not found")
        #expect(ollama["models"]?.arrayValue?.count == 1)
        let openAI = try JSONValue.parse(unknown.body(for: .openai))
        #expect(openAI["error"]?["code"]?.stringValue == "model_not_found")
        #expect(openAI["error"]?["type"]?.stringValue == "invalid_request_error")
        #expect(openAI["error"]?["param"]?.stringValue == "model")
        let path = try JSONValue.parse(ClientError.unknownEndpoint(method: "GET", path: "/v1/nope").body(for: .openai))
        #expect(path["error"]?["code"] == .null && path["error"]?["type"]?.stringValue == "invalid_request_error",
                "an unknown path is no model_not_found")
        #expect(ClientError.streamError(contentType: "application/x-ndjson", message: "x").map { String(decoding: $0, as: UTF8.self) } == "{\"error\":\"x\"}\n")
        #expect(ClientError.streamError(contentType: "text/event-stream", message: "x")?.starts(with: Array("data: {\"error\":".utf8)) == true)
        #expect(ClientError.streamError(contentType: "application/json", message: "x") == nil)
        let anthropic = try JSONValue.parse(unknown.body(for: .anthropic))
        #expect(anthropic["type"]?.stringValue == "error" && anthropic["error"]?["type"]?.stringValue == "not_found_error", "\(anthropic)")
        #expect(anthropic["error"]?["message"]?.stringValue == "model 'x' not found")
        #expect(ClientError.anthropicType(529) == "overloaded_error" && ClientError.anthropicType(400) == "invalid_request_error")
        let event = ClientError.streamError(contentType: "text/event-stream", message: "x", api: .anthropic).map { String(decoding: $0, as: UTF8.self) }
        #expect(event?.hasPrefix("event: error\ndata: {\"type\":\"error\"") == true, "\(event ?? "")")
        for endpoint in Endpoint.allCases { #expect(endpoint.api == ClientAPI(target: endpoint.rawValue), "\(endpoint)") }
        #expect(ClientAPI(target: "/v1/messages/count_tokens") == .anthropic && ClientAPI(target: "/rerank") == .openai
                && ClientAPI(target: "/v1/responses") == .openai && ClientAPI(target: "/api/chat") == .ollama)
    }

    @Test func refusalsMapToTheirStatus() {
        #expect(ClientError.refused(RouteRefusal(id: 1, code: .queueTimeout, message: "busy", retryAfter: 5)) == ClientError(status: 503, message: "busy", retryAfter: 5))
        #expect(ClientError.refused(RouteRefusal(id: 1, code: .noNode, message: "none", retryAfter: 2)).status == 503)
        let exhausted = RouteRefusal(id: 1, code: .retriesExhausted, message: "every node tried failed")
        #expect(ClientError.refused(exhausted).status == 502)
        #expect(ClientError.refused(exhausted, lastFailure: .firstByteTimeout).status == 504)
        #expect(ClientError.refused(exhausted, lastUpstreamStatus: 500).message.contains("answered 500"))
    }

    /// The HTTP server's own errors speak the API of the request target.
    @Test func serverErrorsFollowTheRequestTarget() throws {
        let (type, openAI) = ClientError.serverError(status: 413, message: "too big", target: "/v1/chat/completions")
        #expect(type.hasPrefix("application/json"))
        #expect(try JSONValue.parse(openAI)["error"]?["message"]?.stringValue == "too big")
        #expect(try JSONValue.parse(openAI)["error"]?["type"]?.stringValue == "invalid_request_error")
        let (_, timeout) = ClientError.serverError(status: 408, message: "slow", target: "/v1/embed")
        #expect(try JSONValue.parse(timeout)["error"]?["code"]?.stringValue == "timeout")
        let (_, ollama) = ClientError.serverError(status: 431, message: "head too big", target: "/api/chat")
        #expect(try JSONValue.parse(ollama)["error"]?.stringValue == "head too big")
        let (_, unknown) = ClientError.serverError(status: 400, message: "garbage", target: nil)
        #expect(try JSONValue.parse(unknown)["error"]?.stringValue == "garbage")
    }
}

@Suite struct ProxyHeadersTests {
    @Test func hopByHopAndConnectionNamedFieldsAreDropped() {
        let headers: HTTPHeaders = ["Host": "router", "connection": "keep-alive, X-Secret", "X-Secret": "1", "Keep-Alive": "timeout=5",
                                    "TE": "trailers", "Content-Type": "application/json", "X-Custom": "kept", "content-length": "9",
                                    "X-Herd-Fallback-Models": "a"]
        let out = ProxyHeaders.endToEnd(headers, dropping: [.host, .contentLength, .xHerdFallbackModels])
        #expect(out.fields.map(\.name) == ["Content-Type", "X-Custom"])
        #expect(out.kinds == [.contentType, nil])
    }

    @Test func namesAreClassifiedCaseInsensitively() {
        #expect(KnownHeader.classify("content-LENGTH") == .contentLength)
        #expect(KnownHeader.classify("Transfer-Encoding") == .transferEncoding)
        #expect(KnownHeader.classify("Content-Lengthy") == nil)
        #expect(KnownHeader.classify("Connexion") == nil)
        #expect(KnownHeader.classify("") == nil)
        #expect(HTTPHeaders([("TE", "x"), ("Te", "y")]).kinds == [.te, .te])
    }
}

@Suite struct ClientIdentityTests {
    @Test func namedThenKeyThenAddress() {
        #expect(ClientIdentity.of(["X-Herd-Client": "ci-runner-7"], address: "10.0.0.2") == "c:ci-runner-7")
        let key = ClientIdentity.of(["Authorization": "Bearer sk-secret-123"], address: "10.0.0.2")
        #expect(key.hasPrefix("key:") && key.count == 16 && !key.contains("secret"), "\(key)")
        #expect(ClientIdentity.of(["Authorization": "bearer sk-secret-123"], address: nil) == key, "the scheme is case-insensitive")
        #expect(ClientIdentity.of(["Authorization": "Bearer other"], address: nil) != key)
        #expect(ClientIdentity.of(["Authorization": "Basic abc"], address: "10.0.0.2") == "10.0.0.2")
        #expect(ClientIdentity.of([:], address: "10.0.0.2") == "10.0.0.2")
        // A name that could break a log line or a label is hashed, not kept.
        let odd = ClientIdentity.of(["X-Herd-Client": "evil\u{1b}[31m name"], address: nil)
        #expect(odd.hasPrefix("c#") && odd.count == 14, "\(odd)")
        #expect(ClientIdentity.of(["X-Herd-Client": String(repeating: "a", count: 65)], address: nil).hasPrefix("c#"))
    }
}

/// Which requests carry images (vision-safe routing).
@Suite struct VisionDetectionTests {
    func vision(_ body: String, _ endpoint: Endpoint) throws -> Bool {
        try RouteFields.read(Array(body.utf8), endpoint: endpoint, headerFallbacks: [], headerTags: []).vision
    }

    @Test func imagesInEveryAPIAreSeen() throws {
        #expect(try vision(#"{"model":"m","messages":[{"role":"user","content":"hi","images":["iVBOR"]}]}"#, .chat))
        #expect(try vision(#"{"model":"m","prompt":"what","images":["iVBOR"]}"#, .generate))
        #expect(try vision(#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}"#, .openAIChat))
        #expect(try vision(#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}]}]}"#, .anthropicMessages))
        #expect(try vision(#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"data:,"}]}]}"#, .openAIResponses))
        #expect(try !vision(#"{"model":"m","messages":[{"role":"user","content":"describe an image of a cat","images":[]}]}"#, .chat))
        #expect(try !vision(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#, .chat))
        #expect(try !vision(#"{"model":"m","prompt":"hi","images":[]}"#, .generate))
    }
}
