import HerdJSON
import Testing
@testable import herd_proxy

/// OpenAI Responses to a backend without them: the request as a chat
/// completion, the answer and its stream as a response object and events.
@Suite struct ResponsesOverOpenAITests {
    @Test func theRequestBecomesAChatCompletion() throws {
        let body = #"""
        {"model":"gpt","instructions":"Be brief","max_output_tokens":50,"stream":true,"store":false,"reasoning":{"effort":"low"},
         "text":{"format":{"type":"json_schema","name":"city","schema":{"type":"object"},"strict":true}},
         "tools":[{"type":"function","name":"weather","parameters":{"type":"object"}},{"type":"web_search"}],"tool_choice":"auto",
         "input":[{"role":"developer","content":"Use tools"},
                  {"role":"user","content":[{"type":"input_text","text":"Look"},{"type":"input_image","image_url":"data:image/png;base64,iVBOR"}]},
                  {"type":"function_call","call_id":"c1","name":"weather","arguments":"{\"city\":\"Paris\"}"},
                  {"type":"function_call_output","call_id":"c1","output":"18 C"}]}
        """#
        let out = try JSONValue.parse(try ResponsesOverOpenAI.request(body: Array(body.utf8), model: "qwen", stream: true))
        #expect(out["max_tokens"]?.intValue == 50 && out["stream_options"]?["include_usage"]?.boolValue == true)
        #expect(out["response_format"]?["json_schema"]?["name"]?.stringValue == "city")
        #expect(out["tools"]?.arrayValue?.count == 1, "built-in tools are left out")
        let messages = out["messages"]?.arrayValue ?? []
        #expect(messages.map { $0["role"]?.stringValue ?? "" } == ["system", "system", "user", "assistant", "tool"])
        #expect(messages[2]["content"]?.arrayValue?.last?["type"]?.stringValue == "image_url")
        #expect(messages[3]["tool_calls"]?.arrayValue?.first?["id"]?.stringValue == "c1" && messages[4]["tool_call_id"]?.stringValue == "c1")
        #expect(try JSONValue.parse(try ResponsesOverOpenAI.request(body: Array(#"{"model":"m","input":"Hi"}"#.utf8), model: "m", stream: false))["messages"]?
            .arrayValue?.first?["content"]?.stringValue == "Hi")
        #expect(throws: ResponsesOverOpenAI.Refusal.self) {
            try ResponsesOverOpenAI.request(body: Array(#"{"model":"m","input":"more","previous_response_id":"resp_1"}"#.utf8), model: "m", stream: false)
        }
    }

    @Test func aStreamBecomesResponseEvents() {
        let translator = ResponsesAnswerTranslator(model: "gpt", stream: true)
        translator.head(status: 200)
        var out: [UInt8] = []
        for piece in [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"weather\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6}}\n\ndata: [DONE]\n\n",
        ] { out += Array(piece.utf8).withUnsafeBytes { translator.feed($0) } }
        out += translator.finish()
        var types: [String] = []
        var last: JSONValue?
        for line in String(decoding: out, as: UTF8.self).split(separator: "\n") where line.hasPrefix("data: ") {
            let data = try? JSONValue.parse(Array(line.dropFirst(6).utf8))
            types.append(data?["type"]?.stringValue ?? "?")
            last = data
        }
        #expect(types == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
                          "response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done", "response.completed"], "\(types)")
        let response = last?["response"]
        #expect(response?["output"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" } == ["message", "function_call"])
        #expect(response?["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"]?.stringValue == "Hi!")
        #expect(response?["usage"]?["output_tokens"]?.intValue == 6)
        #expect(TokenCounter.count(out) == (4, 6))
    }

    @Test func wholeAnswers() throws {
        let translator = ResponsesAnswerTranslator(model: "gpt", stream: false)
        translator.head(status: 200)
        var out = Array(#"{"choices":[{"message":{"content":"Hello"},"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":9}}"#.utf8)
            .withUnsafeBytes { translator.feed($0) }
        out += translator.finish()
        let response = try JSONValue.parse(out)
        #expect(response["object"]?.stringValue == "response" && response["status"]?.stringValue == "incomplete")
        #expect(response["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"]?.stringValue == "Hello")
    }
}
