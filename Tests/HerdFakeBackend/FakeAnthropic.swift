import HerdJSON

/// Anthropic Messages (`/v1/messages`) as Ollama ≥ 0.14 and llama.cpp's server
/// frame it: a whole message, or the SSE events `message_start` …
/// `message_stop`. A request with `tools` is answered with a `tool_use` block
/// (unless its last message already carries a `tool_result`).
enum FakeAnthropic {
    static func error(_ message: String, type: String) -> JSONValue {
        ["type": "error", "error": ["type": .string(type), "message": .string(message)]]
    }

    /// The tool the answer calls, if any.
    static func toolCall(_ request: JSONValue) -> String? {
        guard let tool = request["tools"]?.arrayValue?.first?["name"]?.stringValue else { return nil }
        let last = request["messages"]?.arrayValue?.last
        let answered = last?["content"]?.arrayValue?.contains { $0["type"]?.stringValue == "tool_result" } ?? false
        return answered ? nil : tool
    }

    static func text(_ configuration: FakeBackendConfiguration) -> String {
        (0..<configuration.tokens).map { FakeOllama.token($0, configuration) }.joined()
    }

    static func whole(model: FakeModel, request: JSONValue, configuration: FakeBackendConfiguration) -> JSONValue {
        var content: [JSONValue] = [["type": "text", "text": .string(text(configuration))]]
        var stop: JSONValue = "end_turn"
        if let tool = toolCall(request) {
            content.append(["type": "tool_use", "id": "toolu_fake", "name": .string(tool), "input": ["city": "Paris"]])
            stop = "tool_use"
        }
        return ["id": "msg_fake", "type": "message", "role": "assistant", "model": .string(model.name), "content": .array(content),
                "stop_reason": stop, "stop_sequence": nil,
                "usage": ["input_tokens": 12, "output_tokens": .int(configuration.tokens)]]
    }

    static func event(_ name: String, _ data: JSONValue) -> [UInt8] {
        var out = Array("event: \(name)\ndata: ".utf8)
        data.write(to: &out)
        out.append(contentsOf: [10, 10])
        return out
    }

    static func streamEvents(model: FakeModel, request: JSONValue, configuration: FakeBackendConfiguration) -> FakeLineSource {
        let count = configuration.tokens
        let tool = toolCall(request)
        // message_start, content_block_start, ping, deltas…, content_block_stop,
        // [tool block: start, delta, stop], message_delta, message_stop.
        let toolEvents = tool == nil ? 0 : 3
        return FakeLineSource(count: count + 6 + toolEvents) { i in
            switch i {
            case 0:
                return event("message_start", ["type": "message_start", "message": [
                    "id": "msg_fakestream", "type": "message", "role": "assistant", "model": .string(model.name), "content": [],
                    "stop_reason": nil, "stop_sequence": nil, "usage": ["input_tokens": 12, "output_tokens": 1]]])
            case 1:
                return event("content_block_start", ["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]])
            case 2:
                return event("ping", ["type": "ping"])
            case 3..<(3 + count):
                return event("content_block_delta", ["type": "content_block_delta", "index": 0,
                                                     "delta": ["type": "text_delta", "text": .string(FakeOllama.token(i - 3, configuration))]])
            case 3 + count:
                return event("content_block_stop", ["type": "content_block_stop", "index": 0])
            case 4 + count where tool != nil:
                return event("content_block_start", ["type": "content_block_start", "index": 1, "content_block": [
                    "type": "tool_use", "id": "toolu_fake", "name": .string(tool ?? ""), "input": [:]]])
            case 5 + count where tool != nil:
                return event("content_block_delta", ["type": "content_block_delta", "index": 1,
                                                     "delta": ["type": "input_json_delta", "partial_json": #"{"city": "Paris"}"#]])
            case 6 + count where tool != nil:
                return event("content_block_stop", ["type": "content_block_stop", "index": 1])
            case 4 + count + toolEvents:
                return event("message_delta", ["type": "message_delta", "delta": ["stop_reason": tool == nil ? "end_turn" : "tool_use", "stop_sequence": nil],
                                               "usage": ["output_tokens": .int(count)]])
            default:
                return event("message_stop", ["type": "message_stop"])
            }
        }
    }
}

/// OpenAI Responses (`/v1/responses`) as Ollama ≥ 0.13.3 frames it.
enum FakeResponses {
    static func response(model: FakeModel, status: String, text: String?, configuration: FakeBackendConfiguration) -> JSONValue {
        let output: JSONValue = text.map { text in
            [["type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
              "content": [["type": "output_text", "text": .string(text), "annotations": []]]]]
        } ?? []
        var members: [(String, JSONValue)] = [
            ("id", "resp_fake"), ("object", "response"), ("created_at", .int(FakeClock.unixSeconds())), ("status", .string(status)),
            ("model", .string(model.name)), ("output", output), ("parallel_tool_calls", true), ("tool_choice", "auto"), ("tools", []),
            ("error", nil), ("incomplete_details", nil),
        ]
        if status == "completed" {
            members.append(("usage", ["input_tokens": 12, "output_tokens": .int(configuration.tokens), "total_tokens": .int(12 + configuration.tokens)]))
        }
        return .object(members)
    }

    static func whole(model: FakeModel, configuration: FakeBackendConfiguration) -> JSONValue {
        response(model: model, status: "completed", text: FakeAnthropic.text(configuration), configuration: configuration)
    }

    static func streamEvents(model: FakeModel, configuration: FakeBackendConfiguration) -> FakeLineSource {
        let count = configuration.tokens
        let item: JSONValue = ["type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []]
        let part: JSONValue = ["type": "output_text", "text": "", "annotations": []]
        // created, item added, part added, deltas…, text done, part done, item done, completed.
        return FakeLineSource(count: count + 7) { i in
            func event(_ type: String, _ members: [(String, JSONValue)]) -> [UInt8] {
                FakeAnthropic.event(type, .object([("type", .string(type)), ("sequence_number", .int(i))] + members))
            }
            switch i {
            case 0: return event("response.created", [("response", response(model: model, status: "in_progress", text: nil, configuration: configuration))])
            case 1: return event("response.output_item.added", [("output_index", 0), ("item", item)])
            case 2: return event("response.content_part.added", [("item_id", "msg_fake"), ("output_index", 0), ("content_index", 0), ("part", part)])
            case 3..<(3 + count):
                return event("response.output_text.delta", [("item_id", "msg_fake"), ("output_index", 0), ("content_index", 0),
                                                            ("delta", .string(FakeOllama.token(i - 3, configuration)))])
            case 3 + count:
                return event("response.output_text.done", [("item_id", "msg_fake"), ("output_index", 0), ("content_index", 0),
                                                           ("text", .string(FakeAnthropic.text(configuration)))])
            case 4 + count:
                return event("response.content_part.done", [("item_id", "msg_fake"), ("output_index", 0), ("content_index", 0),
                                                            ("part", ["type": "output_text", "text": .string(FakeAnthropic.text(configuration)), "annotations": []])])
            case 5 + count:
                let done = whole(model: model, configuration: configuration)["output"]?.arrayValue?.first ?? nil
                return event("response.output_item.done", [("output_index", 0), ("item", done)])
            default:
                return event("response.completed", [("response", whole(model: model, configuration: configuration))])
            }
        }
    }
}
