import HerdBounds
import HerdJSON
import HerdRuntime

/// What turns a backend's OpenAI answer into the client's API as it arrives.
protocol AnswerTranslator: AnyObject {
    /// The answer's status (an error becomes a whole error body).
    func head(status: Int)
    var contentType: String { get }
    /// Bytes from the backend in, bytes for the client out.
    func feed(_ bytes: UnsafeRawBufferPointer) -> [UInt8]
    /// The rest, once the backend's answer has ended.
    func finish() -> [UInt8]
}

extension OllamaAnswerTranslator: AnswerTranslator {}

/// Anthropic Messages served by a backend that does not speak them (Ollama
/// before 0.14, llama-cpp-python, older vLLM): the request becomes an OpenAI
/// chat completion, the answer an Anthropic message, and its stream the
/// events `message_start`, `content_block_start/delta/stop` (text,
/// `thinking` from `reasoning_content`, `tool_use` with `input_json_delta`),
/// `ping`, `message_delta`, `message_stop` — or `error`.
///
/// Mapped: `system` (string or text blocks), messages with text, images
/// (base64 or URL), `tool_use` and `tool_result` blocks, `tools`,
/// `tool_choice`, `max_tokens`, `temperature`, `top_p`, `top_k`,
/// `stop_sequences`, `stream`. Left out (no chat-completions equivalent):
/// `thinking` budgets, `cache_control`, `metadata`.
enum AnthropicOverOpenAI {
    static func request(body: [UInt8], model: String, stream: Bool) -> [UInt8]? {
        guard case let .object(members)? = try? JSONValue.parse(body) else { return nil }
        let request = JSONValue.object(members)
        var messages: [JSONValue] = []
        if let system = request["system"], system != .null {
            let text = system.stringValue ?? (system.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
            if !text.isEmpty { messages.append(["role": "system", "content": .string(text)]) }
        }
        for message in request["messages"]?.arrayValue ?? [] { messages += translate(message) }
        var out: [(String, JSONValue)] = [("model", .string(model)), ("messages", .array(messages))]
        if let n = request["max_tokens"], n != .null { out.append(("max_tokens", n)) }
        for key in ["temperature", "top_p", "top_k"] { if let v = request[key], v != .null { out.append((key, v)) } }
        if let stop = request["stop_sequences"], stop != .null { out.append(("stop", stop)) }
        if let tools = request["tools"]?.arrayValue, !tools.isEmpty {
            out.append(("tools", .array(tools.map { tool in
                var function: [(String, JSONValue)] = [("name", tool["name"] ?? "")]
                if let description = tool["description"] { function.append(("description", description)) }
                function.append(("parameters", tool["input_schema"] ?? ["type": "object"]))
                return ["type": "function", "function": .object(function)]
            })))
        }
        if let choice = request["tool_choice"], let type = choice["type"]?.stringValue {
            switch type {
            case "any": out.append(("tool_choice", "required"))
            case "none": out.append(("tool_choice", "none"))
            case "tool": out.append(("tool_choice", ["type": "function", "function": ["name": choice["name"] ?? ""]]))
            default: out.append(("tool_choice", "auto"))
            }
        }
        out.append(("stream", .bool(stream)))
        if stream { out.append(("stream_options", ["include_usage": true])) }
        var bytes: [UInt8] = []
        JSONValue.object(out).write(to: &bytes)
        return bytes
    }

    /// One Anthropic message → OpenAI messages (tool results become `tool` messages of their own).
    static func translate(_ message: JSONValue) -> [JSONValue] {
        let role = message["role"]?.stringValue ?? "user"
        guard let blocks = message["content"]?.arrayValue else {
            return [["role": .string(role), "content": message["content"] ?? ""]]
        }
        var out: [JSONValue] = []
        var parts: [JSONValue] = []
        var text = ""
        var calls: [JSONValue] = []
        for block in blocks {
            switch block["type"]?.stringValue ?? "" {
            case "text":
                let t = block["text"]?.stringValue ?? ""
                text += t
                parts.append(["type": "text", "text": .string(t)])
            case "image":
                let source = block["source"]
                let url = source?["type"]?.stringValue == "url" ? source?["url"]?.stringValue ?? ""
                    : "data:\(source?["media_type"]?.stringValue ?? "image/png");base64,\(source?["data"]?.stringValue ?? "")"
                parts.append(["type": "image_url", "image_url": ["url": .string(url)]])
            case "tool_use":
                var arguments: [UInt8] = []
                (block["input"] ?? [:]).write(to: &arguments)
                calls.append(["id": block["id"] ?? "", "type": "function",
                              "function": ["name": block["name"] ?? "", "arguments": .string(String(decoding: arguments, as: UTF8.self))]])
            case "tool_result":
                let content = block["content"]
                let result = content?.stringValue ?? (content?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
                out.append(["role": "tool", "tool_call_id": block["tool_use_id"] ?? "", "content": .string(result)])
            default:
                break // thinking, redacted_thinking, documents: not said to a chat completion
            }
        }
        if role == "assistant" {
            var members: [(String, JSONValue)] = [("role", "assistant"), ("content", calls.isEmpty || !text.isEmpty ? .string(text) : .null)]
            if !calls.isEmpty { members.append(("tool_calls", .array(calls))) }
            out.append(.object(members))
        } else if !parts.isEmpty {
            let onlyText = parts.allSatisfy { $0["type"]?.stringValue == "text" }
            out.append(["role": .string(role), "content": onlyText ? .string(text) : .array(parts)])
        }
        return out
    }

    static func stopReason(_ finish: String?) -> String {
        switch finish {
        case "length": "max_tokens"
        case "tool_calls", "function_call": "tool_use"
        default: "end_turn"
        }
    }
}

/// An OpenAI chat completion (whole, or streamed) turned into Anthropic's message and events.
final class AnthropicAnswerTranslator: AnswerTranslator {

    let model: String
    let stream: Bool
    private var status = 200
    private var answer = AnswerBuffer()
    private var started = false
    private var finished = false
    private let id = "msg_herd\(UInt32.random(in: 0...UInt32.max))"
    /// The open content block: its index and kind (`text`, `thinking`, `tool_use`).
    private var block: (index: Int, kind: String)?
    private var nextIndex = 0
    /// OpenAI tool-call index → Anthropic block index.
    private var toolBlocks: [Int: Int] = [:]
    private var stop: String?
    private var inputTokens = 0
    private var outputTokens = 0

    init(model: String, stream: Bool) {
        self.model = model
        self.stream = stream
    }

    func head(status: Int) { self.status = status }

    var contentType: String { stream && status == 200 ? "text/event-stream; charset=utf-8" : "application/json; charset=utf-8" }

    func feed(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        guard stream, status == 200 else {
            answer.collect(bytes)
            return []
        }
        var out: [UInt8] = []
        answer.split(bytes) { handle($0, into: &out) }
        return out
    }

    func finish() -> [UInt8] {
        var out: [UInt8] = []
        if answer.overflow {
            if stream, status == 200 {
                event("error", ["type": "error", "error": ["type": "api_error", "message": "the model server's answer was too large to translate"]], into: &out)
            } else {
                error(502, "the model server's answer was too large to translate").write(to: &out)
            }
            return out
        }
        guard stream, status == 200 else { return whole() }
        answer.finishStream { handle($0, into: &out) }
        if !finished { end(into: &out) }
        return out
    }

    private func error(_ status: Int, _ message: String) -> JSONValue {
        ["type": "error", "error": ["type": .string(ClientError.anthropicType(status)), "message": .string(message)]]
    }

    // MARK: Streams

    private func event(_ name: String, _ data: JSONValue, into out: inout [UInt8]) {
        out.append(contentsOf: "event: \(name)\ndata: ".utf8)
        data.write(to: &out)
        out.append(contentsOf: [10, 10])
    }

    private func begin(into out: inout [UInt8]) {
        guard !started else { return }
        started = true
        event("message_start", ["type": "message_start", "message": [
            "id": .string(id), "type": "message", "role": "assistant", "model": .string(model), "content": [],
            "stop_reason": nil, "stop_sequence": nil, "usage": ["input_tokens": 0, "output_tokens": 0]]], into: &out)
        event("ping", ["type": "ping"], into: &out)
    }

    private func closeBlock(into out: inout [UInt8]) {
        guard let open = block else { return }
        event("content_block_stop", ["type": "content_block_stop", "index": .int(open.index)], into: &out)
        block = nil
    }

    private func openBlock(_ kind: String, _ start: JSONValue, into out: inout [UInt8]) -> Int {
        closeBlock(into: &out)
        let index = nextIndex
        nextIndex += 1
        block = (index, kind)
        event("content_block_start", ["type": "content_block_start", "index": .int(index), "content_block": start], into: &out)
        return index
    }

    private func handle(_ line: AnswerBuffer.Event, into out: inout [UInt8]) {
        guard !finished else { return }
        guard case let .chunk(chunk) = line else { return end(into: &out) }
        if let message = chunk["error"]?["message"]?.stringValue ?? chunk["error"]?.stringValue {
            event("error", ["type": "error", "error": ["type": "api_error", "message": .string(message)]], into: &out)
            finished = true
            return
        }
        begin(into: &out)
        if let usage = chunk["usage"], usage != .null {
            inputTokens = usage["prompt_tokens"]?.intValue ?? inputTokens
            outputTokens = usage["completion_tokens"]?.intValue ?? outputTokens
        }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return }
        let delta = choice["delta"] ?? [:]
        if let thinking = delta["reasoning_content"]?.stringValue, !thinking.isEmpty {
            let index = block?.kind == "thinking" ? block!.index : openBlock("thinking", ["type": "thinking", "thinking": ""], into: &out)
            event("content_block_delta", ["type": "content_block_delta", "index": .int(index),
                                          "delta": ["type": "thinking_delta", "thinking": .string(thinking)]], into: &out)
        }
        if let content = delta["content"]?.stringValue, !content.isEmpty {
            let index = block?.kind == "text" ? block!.index : openBlock("text", ["type": "text", "text": ""], into: &out)
            event("content_block_delta", ["type": "content_block_delta", "index": .int(index),
                                          "delta": ["type": "text_delta", "text": .string(content)]], into: &out)
        }
        for call in delta["tool_calls"]?.arrayValue ?? [] {
            let callIndex = call["index"]?.intValue ?? 0
            let index: Int
            if let known = toolBlocks[callIndex] {
                index = known
            } else {
                let id = call["id"]?.stringValue ?? "toolu_herd\(callIndex)"
                index = openBlock("tool_use", ["type": "tool_use", "id": .string(id), "name": call["function"]?["name"] ?? "", "input": [:]], into: &out)
                toolBlocks[callIndex] = index
            }
            if let fragment = call["function"]?["arguments"]?.stringValue, !fragment.isEmpty {
                event("content_block_delta", ["type": "content_block_delta", "index": .int(index),
                                              "delta": ["type": "input_json_delta", "partial_json": .string(fragment)]], into: &out)
            }
        }
        if let reason = choice["finish_reason"]?.stringValue { stop = AnthropicOverOpenAI.stopReason(reason) }
    }

    private func end(into out: inout [UInt8]) {
        finished = true
        begin(into: &out)
        closeBlock(into: &out)
        event("message_delta", ["type": "message_delta", "delta": ["stop_reason": .string(stop ?? "end_turn"), "stop_sequence": nil],
                                "usage": ["input_tokens": .int(inputTokens), "output_tokens": .int(outputTokens)]], into: &out)
        event("message_stop", ["type": "message_stop"], into: &out)
    }

    // MARK: Whole answers

    private func whole() -> [UInt8] {
        var out: [UInt8] = []
        guard let answer = try? JSONValue.parse(answer.bytes) else {
            let text = String(decoding: answer.bytes.prefix(300), as: UTF8.self)
            error(status == 200 ? 502 : status, status == 200 ? "the model server's answer was not JSON" : "the model server answered \(status): \(text)")
                .write(to: &out)
            return out
        }
        guard status == 200 else {
            let message = answer["error"]?["message"]?.stringValue ?? answer["error"]?.stringValue ?? answer["detail"]?.stringValue
                ?? "the model server answered \(status)"
            error(status, message).write(to: &out)
            return out
        }
        let choice = answer["choices"]?.arrayValue?.first
        let message = choice?["message"]
        var content: [JSONValue] = []
        if let thinking = message?["reasoning_content"]?.stringValue, !thinking.isEmpty {
            content.append(["type": "thinking", "thinking": .string(thinking), "signature": ""])
        }
        if let text = message?["content"]?.stringValue, !text.isEmpty { content.append(["type": "text", "text": .string(text)]) }
        for call in message?["tool_calls"]?.arrayValue ?? [] {
            let input = call["function"]?["arguments"]?.stringValue.flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? [:]
            content.append(["type": "tool_use", "id": call["id"] ?? "toolu_herd", "name": call["function"]?["name"] ?? "", "input": input])
        }
        if content.isEmpty { content.append(["type": "text", "text": ""]) }
        JSONValue.object([
            ("id", .string(id)), ("type", "message"), ("role", "assistant"), ("model", .string(model)), ("content", .array(content)),
            ("stop_reason", .string(AnthropicOverOpenAI.stopReason(choice?["finish_reason"]?.stringValue))), ("stop_sequence", nil),
            ("usage", ["input_tokens": .int(answer["usage"]?["prompt_tokens"]?.intValue ?? 0),
                       "output_tokens": .int(answer["usage"]?["completion_tokens"]?.intValue ?? 0)]),
        ]).write(to: &out)
        return out
    }
}
