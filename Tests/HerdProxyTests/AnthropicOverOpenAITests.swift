import HerdJSON
import HerdTestSupport
import Testing
@testable import herd_proxy

/// Anthropic Messages to a backend without them: the request as an OpenAI
/// chat completion, the answer and its stream as Anthropic's.
@Suite struct AnthropicOverOpenAITests {
    @Test func theRequestBecomesAChatCompletion() throws {
        let body = #"""
        {"model":"claude","max_tokens":100,"stop_sequences":["END"],"temperature":0.3,"stream":true,
         "system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Be kind."}],
         "tools":[{"name":"weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
         "tool_choice":{"type":"tool","name":"weather"},
         "messages":[{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]},
                     {"role":"assistant","content":[{"type":"thinking","thinking":"hmm"},{"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}}]},
                     {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18 C"}]}]},
                     {"role":"user","content":"Thanks"}]}
        """#
        let out = try JSONValue.parse(try #require(AnthropicOverOpenAI.request(body: Array(body.utf8), model: "qwen", stream: true)))
        #expect(out["model"]?.stringValue == "qwen" && out["max_tokens"]?.intValue == 100 && out["stop"]?.arrayValue?.count == 1)
        #expect(out["stream"]?.boolValue == true && out["stream_options"]?["include_usage"]?.boolValue == true)
        #expect(out["tools"]?.arrayValue?.first?["function"]?["parameters"]?["type"]?.stringValue == "object")
        #expect(out["tool_choice"]?["function"]?["name"]?.stringValue == "weather")
        let messages = out["messages"]?.arrayValue ?? []
        #expect(messages.map { $0["role"]?.stringValue ?? "" } == ["system", "user", "assistant", "tool", "user"])
        #expect(messages[0]["content"]?.stringValue == "Be brief.\nBe kind.")
        #expect(messages[1]["content"]?.arrayValue?.last?["image_url"]?["url"]?.stringValue == "data:image/jpeg;base64,/9j/")
        #expect(messages[2]["tool_calls"]?.arrayValue?.first?["function"]?["arguments"]?.stringValue == #"{"city":"Paris"}"#)
        #expect(messages[3]["tool_call_id"]?.stringValue == "toolu_1" && messages[3]["content"]?.stringValue == "18 C")
        #expect(messages[4]["content"]?.stringValue == "Thanks")
    }

    func events(_ text: String) -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        var name = ""
        for line in text.split(separator: "\n") {
            if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: "), let data = try? JSONValue.parse(Array(line.dropFirst(6).utf8)) { out.append((name, data)) }
        }
        return out
    }

    @Test func aStreamBecomesAnthropicEvents() {
        let translator = AnthropicAnswerTranslator(model: "claude", stream: true)
        translator.head(status: 200)
        var out: [UInt8] = []
        for piece in [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Let me\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":11}}\n\ndata: [DONE]\n\n",
        ] { out += Array(piece.utf8).withUnsafeBytes { translator.feed($0) } }
        out += translator.finish()
        let list = events(String(decoding: out, as: UTF8.self))
        #expect(list.map(\.0) == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                                  "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                  "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                  "message_delta", "message_stop"], "\(list.map(\.0))")
        #expect(list[2].1["content_block"]?["type"]?.stringValue == "thinking")
        #expect(list[9].1["content_block"]?["name"]?.stringValue == "weather" && list[9].1["index"]?.intValue == 2)
        #expect(list[10].1["delta"]?["partial_json"]?.stringValue == #"{"ci"#)
        #expect(list[13].1["delta"]?["stop_reason"]?.stringValue == "tool_use" && list[13].1["usage"]?["output_tokens"]?.intValue == 11)
        #expect(TokenCounter.count(out) == (7, 11), "usage counted from the translated stream")
    }

    @Test func wholeAnswersAndErrors() throws {
        let whole = AnthropicAnswerTranslator(model: "claude", stream: false)
        whole.head(status: 200)
        let body = #"{"choices":[{"message":{"content":"Hi","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#
        var out = Array(body.utf8).withUnsafeBytes { whole.feed($0) }
        out += whole.finish()
        let message = try JSONValue.parse(out)
        #expect(message["type"]?.stringValue == "message" && message["stop_reason"]?.stringValue == "max_tokens")
        #expect(message["content"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" } == ["text", "tool_use"])
        #expect(message["content"]?.arrayValue?.last?["input"]?["a"]?.intValue == 1 && message["usage"]?["output_tokens"]?.intValue == 4)
        let failed = AnthropicAnswerTranslator(model: "claude", stream: true)
        failed.head(status: 400)
        #expect(failed.contentType.hasPrefix("application/json"))
        var error = Array(#"{"error":{"message":"too long","type":"invalid_request_error"}}"#.utf8).withUnsafeBytes { failed.feed($0) }
        error += failed.finish()
        let parsed = try JSONValue.parse(error)
        #expect(parsed["type"]?.stringValue == "error" && parsed["error"]?["type"]?.stringValue == "invalid_request_error"
                && parsed["error"]?["message"]?.stringValue == "too long")
    }
}

/// A backend's answer is outside input: whatever it sends, each translator
/// ends with a well-formed answer or error, and holds a bounded buffer.
@Suite struct TranslatorHostileInputTests {
    static func translators(stream: Bool) -> [any AnswerTranslator] {
        [OllamaAnswerTranslator(endpoint: .chat, model: "m", stream: stream), AnthropicAnswerTranslator(model: "m", stream: stream),
         ResponsesAnswerTranslator(model: "m", stream: stream)]
    }

    @Test func garbageNonsenseAndTruncationEndCleanly() {
        var generator = SystemRandomNumberGenerator()
        let nasty = [
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1e300,\"function\":{\"arguments\":5}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-7}]},\"finish_reason\":17}],\"usage\":{\"prompt_tokens\":1e19,\"completion_tokens\":-4}}\n\n",
            "data: " + String(repeating: "[", count: 5000) + "\n\n",
            "data: {\"choices\":\"no\"}\n\ndata: [DONE]\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"after done\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"boom\"}}\n\n",
            "{\"not\":\"sse\"}\n", "\u{0}\u{1}\u{2}\r\n\r\n",
        ]
        for stream in [true, false] {
            for piece in nasty + [String(decoding: (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }, as: UTF8.self)] {
                for translator in Self.translators(stream: stream) {
                    translator.head(status: 200)
                    var out = Array(piece.utf8).withUnsafeBytes { translator.feed($0) }
                    out += translator.finish()
                    #expect(!out.isEmpty, "\(type(of: translator)) ended with nothing on \(piece.prefix(60))")
                }
            }
        }
        // A line that never ends is cut at the bound, said as an error.
        for translator in Self.translators(stream: true) {
            translator.head(status: 200)
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            for _ in 0..<17 { _ = chunk.withUnsafeBytes { translator.feed($0) } }
            let end = String(decoding: translator.finish(), as: UTF8.self)
            #expect(end.contains("too large"), "\(type(of: translator)): \(end.prefix(200))")
        }
    }
}
