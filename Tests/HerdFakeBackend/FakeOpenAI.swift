import HerdJSON

/// OpenAI API bodies as Ollama's `/v1` endpoints frame them.
enum FakeOpenAI {
    static func error(_ message: String, type: String, code: String? = nil) -> JSONValue {
        ["error": ["message": .string(message), "type": .string(type), "param": nil, "code": code.map { .string($0) } ?? nil]]
    }

    static func models(_ configuration: FakeBackendConfiguration) -> JSONValue {
        ["object": "list", "data": .array(configuration.models.map { model in
            ["id": .string(model.name), "object": "model", "created": 1_761_000_000, "owned_by": "library"]
        })]
    }

    static func usage(_ configuration: FakeBackendConfiguration) -> JSONValue {
        ["prompt_tokens": 12, "completion_tokens": .number(Double(configuration.tokens)), "total_tokens": .number(Double(12 + configuration.tokens))]
    }

    /// The tool a chat request's answer calls: its first tool, unless the last message is already a tool's result.
    static func toolCall(_ request: JSONValue) -> String? {
        guard let name = request["tools"]?.arrayValue?.first?["function"]?["name"]?.stringValue else { return nil }
        return request["messages"]?.arrayValue?.last?["role"]?.stringValue == "tool" ? nil : name
    }

    static func whole(model: FakeModel, chat: Bool, configuration: FakeBackendConfiguration, tool: String? = nil) -> JSONValue {
        let text = JSONValue.string((0..<configuration.tokens).map { FakeOllama.token($0, configuration) }.joined())
        var message: [(String, JSONValue)] = [("role", "assistant"), ("content", text)]
        if let tool {
            message.append(("tool_calls", [["id": "call_fake", "type": "function", "function": ["name": .string(tool), "arguments": #"{"city": "Paris"}"#]]]))
        }
        let choice: JSONValue = chat
            ? ["index": 0, "message": .object(message), "finish_reason": tool == nil ? "stop" : "tool_calls"]
            : ["text": text, "index": 0, "finish_reason": "stop"]
        return ["id": chat ? "chatcmpl-fake" : "cmpl-fake", "object": chat ? "chat.completion" : "text_completion",
                "created": .number(Double(FakeClock.unixSeconds())), "model": .string(model.name),
                "system_fingerprint": "fp_ollama", "choices": [choice], "usage": usage(configuration)]
    }

    static func streamEvents(model: FakeModel, chat: Bool, includeUsage: Bool, configuration: FakeBackendConfiguration, tool: String? = nil) -> FakeLineSource {
        let count = configuration.tokens
        let id: JSONValue = chat ? "chatcmpl-fakestream" : "cmpl-fakestream"
        let created = JSONValue.number(Double(FakeClock.unixSeconds()))
        let extra = includeUsage ? 1 : 0
        return FakeLineSource(count: count + 2 + extra) { i in
            var event: [UInt8] = Array("data: ".utf8)
            if i == count + 1 + extra {
                return Array("data: [DONE]\n\n".utf8)
            }
            let object: JSONValue = chat ? "chat.completion.chunk" : "text_completion"
            let choice: JSONValue
            var choices: JSONValue
            if i < count {
                let text = JSONValue.string(FakeOllama.token(i, configuration))
                choice = chat ? ["index": 0, "delta": ["role": "assistant", "content": text], "finish_reason": nil]
                              : ["text": text, "index": 0, "finish_reason": nil]
                choices = [choice]
            } else if i == count, chat, let tool {
                // The call's arguments in two fragments, then the finish.
                choices = [["index": 0, "delta": ["tool_calls": [
                    ["index": 0, "id": "call_fake", "type": "function", "function": ["name": .string(tool), "arguments": #"{"city": "#]],
                    ["index": 0, "function": ["arguments": #""Paris"}"#]],
                ]], "finish_reason": "tool_calls"]]
            } else if i == count {
                choice = chat ? ["index": 0, "delta": ["role": "assistant", "content": ""], "finish_reason": "stop"]
                              : ["text": "", "index": 0, "finish_reason": "stop"]
                choices = [choice]
            } else {
                choices = []
            }
            var members: [(String, JSONValue)] = [("id", id), ("object", object), ("created", created), ("model", .string(model.name)),
                                                  ("system_fingerprint", "fp_ollama"), ("choices", choices)]
            if i == count + 1 { members.append(("usage", usage(configuration))) }
            JSONValue.object(members).write(to: &event)
            event.append(contentsOf: [10, 10])
            return event
        }
    }

    static func embeddings(model: FakeModel, inputs: Int, texts: [String?] = []) -> JSONValue {
        ["object": "list", "data": .array((0..<inputs).map { i in
            ["object": "embedding", "index": .number(Double(i)),
             "embedding": FakeOllama.vector(model.embeddingDimensions, text: i < texts.count ? texts[i] : nil)]
        }), "model": .string(model.name), "usage": ["prompt_tokens": .number(Double(inputs * 4)), "total_tokens": .number(Double(inputs * 4))]]
    }
}
