import HerdBounds
import HerdJSON
import HerdRuntime

/// OpenAI Responses (`/v1/responses`) served by a backend without them
/// (Ollama before 0.13.3, llama-cpp-python, older vLLM): stateless, the
/// request becomes a chat completion, the answer a response object and its
/// stream the `response.*` events (`created`, `in_progress`,
/// `output_item.added/done`, `content_part.added/done`,
/// `output_text.delta/done`, `function_call_arguments.delta/done`,
/// `completed`).
///
/// Mapped: `input` (a string, or messages with `input_text`/`output_text`/
/// `input_image` parts, `function_call` and `function_call_output` items),
/// `instructions`, function `tools`, `tool_choice`, `max_output_tokens`,
/// `temperature`, `top_p`, `text.format` (JSON schema / object). Left out:
/// built-in tools (web search, files), `reasoning`, `store`. Refused (400):
/// `previous_response_id` — herd keeps no responses to continue.
enum ResponsesOverOpenAI {
    struct Refusal: Error {
        let message: String
    }

    static func request(body: [UInt8], model: String, stream: Bool) throws(Refusal) -> [UInt8] {
        guard case let .object(members)? = try? JSONValue.parse(body) else { throw Refusal(message: "the request body must be a JSON object") }
        let request = JSONValue.object(members)
        if let previous = request["previous_response_id"], previous != .null {
            throw Refusal(message: "previous_response_id cannot be honoured: this model's server has no Responses API and herd keeps no responses; send the whole conversation as input")
        }
        var messages: [JSONValue] = []
        if let instructions = request["instructions"]?.stringValue, !instructions.isEmpty {
            messages.append(["role": "system", "content": .string(instructions)])
        }
        if let text = request["input"]?.stringValue {
            messages.append(["role": "user", "content": .string(text)])
        } else {
            messages += items(request["input"]?.arrayValue ?? [])
        }
        var out: [(String, JSONValue)] = [("model", .string(model)), ("messages", .array(messages))]
        if let n = request["max_output_tokens"], n != .null { out.append(("max_tokens", n)) }
        for key in ["temperature", "top_p"] { if let v = request[key], v != .null { out.append((key, v)) } }
        let functions = (request["tools"]?.arrayValue ?? []).filter { $0["type"]?.stringValue == "function" }
        if !functions.isEmpty {
            out.append(("tools", .array(functions.map { tool in
                var function: [(String, JSONValue)] = [("name", tool["name"] ?? "")]
                if let description = tool["description"], description != .null { function.append(("description", description)) }
                function.append(("parameters", tool["parameters"] ?? ["type": "object"]))
                return ["type": "function", "function": .object(function)]
            })))
            if let choice = request["tool_choice"] {
                if let name = choice["name"]?.stringValue {
                    out.append(("tool_choice", ["type": "function", "function": ["name": .string(name)]]))
                } else if choice.stringValue != nil {
                    out.append(("tool_choice", choice))
                }
            }
        }
        if let format = request["text"]?["format"], let type = format["type"]?.stringValue {
            if type == "json_schema" {
                out.append(("response_format", ["type": "json_schema", "json_schema": [
                    "name": format["name"] ?? "response", "schema": format["schema"] ?? [:], "strict": format["strict"] ?? false]]))
            } else if type == "json_object" {
                out.append(("response_format", ["type": "json_object"]))
            }
        }
        out.append(("stream", .bool(stream)))
        if stream { out.append(("stream_options", ["include_usage": true])) }
        var bytes: [UInt8] = []
        JSONValue.object(out).write(to: &bytes)
        return bytes
    }

    /// Responses input items → chat messages (consecutive function calls join one assistant message).
    static func items(_ list: [JSONValue]) -> [JSONValue] {
        var out: [JSONValue] = []
        var calls: [JSONValue] = []
        func flushCalls() {
            guard !calls.isEmpty else { return }
            out.append(["role": "assistant", "content": nil, "tool_calls": .array(calls)])
            calls = []
        }
        for item in list {
            switch item["type"]?.stringValue ?? "message" {
            case "function_call":
                calls.append(["id": item["call_id"] ?? "", "type": "function",
                              "function": ["name": item["name"] ?? "", "arguments": item["arguments"] ?? "{}"]])
            case "function_call_output":
                flushCalls()
                let output = item["output"]?.stringValue ?? {
                    var bytes: [UInt8] = []
                    (item["output"] ?? "").write(to: &bytes)
                    return String(decoding: bytes, as: UTF8.self)
                }()
                out.append(["role": "tool", "tool_call_id": item["call_id"] ?? "", "content": .string(output)])
            case "message":
                flushCalls()
                var role = item["role"]?.stringValue ?? "user"
                if role == "developer" { role = "system" }
                if let text = item["content"]?.stringValue {
                    out.append(["role": .string(role), "content": .string(text)])
                    continue
                }
                var parts: [JSONValue] = []
                var text = ""
                for part in item["content"]?.arrayValue ?? [] {
                    switch part["type"]?.stringValue ?? "" {
                    case "input_text", "output_text", "text":
                        let t = part["text"]?.stringValue ?? ""
                        text += t
                        parts.append(["type": "text", "text": .string(t)])
                    case "input_image":
                        let url = part["image_url"]?.stringValue ?? part["image_url"]?["url"]?.stringValue ?? ""
                        parts.append(["type": "image_url", "image_url": ["url": .string(url)]])
                    default:
                        break
                    }
                }
                let onlyText = parts.allSatisfy { $0["type"]?.stringValue == "text" }
                out.append(["role": .string(role), "content": onlyText || role != "user" ? .string(text) : .array(parts)])
            default:
                break // reasoning items, built-in tool calls: nothing a chat completion reads
            }
        }
        flushCalls()
        return out
    }
}

/// An OpenAI chat completion (whole, or streamed) turned into a Responses object and its events.
final class ResponsesAnswerTranslator: AnswerTranslator {

    let model: String
    let stream: Bool
    private var status = 200
    private var answer = AnswerBuffer()
    private var started = false
    private var finished = false
    private var sequence = 0
    private let id = "resp_herd\(UInt32.random(in: 0...UInt32.max))"
    private let createdAt = Int(clamping: EventLoop.wallClockMilliseconds() / 1000)
    /// Output items so far (completed), and the one open: a message's text or a function call.
    private var output: [JSONValue] = []
    private var openText: String?
    private var openCall: (callIndex: Int, id: String, callID: String, name: String, arguments: String)?
    private var finishReason: String?
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
            error("the model server's answer was too large to translate").write(to: &out)
            return out
        }
        guard stream, status == 200 else { return whole() }
        answer.finishStream { handle($0, into: &out) }
        if !finished { end(into: &out) }
        return out
    }

    private func error(_ message: String) -> JSONValue {
        ["error": ["message": .string(message), "type": .string(status >= 500 || status == 200 ? "server_error" : "invalid_request_error"),
                   "param": nil, "code": nil]]
    }

    private func response(status text: String) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .string(id)), ("object", "response"), ("created_at", .int(createdAt)), ("status", .string(text)), ("model", .string(model)),
            ("output", .array(output)), ("parallel_tool_calls", true), ("tool_choice", "auto"), ("tools", []), ("error", nil),
            ("incomplete_details", text == "incomplete" ? ["reason": "max_output_tokens"] : nil),
        ]
        if text != "in_progress" {
            members.append(("usage", ["input_tokens": .int(inputTokens), "output_tokens": .int(outputTokens),
                                      "total_tokens": .int(inputTokens.addingSaturated(outputTokens))]))
        }
        return .object(members)
    }

    private var finalStatus: String { finishReason == "length" ? "incomplete" : "completed" }

    // MARK: Streams

    private func event(_ type: String, _ members: [(String, JSONValue)], into out: inout [UInt8]) {
        out.append(contentsOf: "event: \(type)\ndata: ".utf8)
        JSONValue.object([("type", .string(type)), ("sequence_number", .int(sequence))] + members).write(to: &out)
        out.append(contentsOf: [10, 10])
        sequence += 1
    }

    private func begin(into out: inout [UInt8]) {
        guard !started else { return }
        started = true
        event("response.created", [("response", response(status: "in_progress"))], into: &out)
        event("response.in_progress", [("response", response(status: "in_progress"))], into: &out)
    }

    private func messageItem(_ text: String, status: String) -> JSONValue {
        ["type": "message", "id": .string("msg_\(id.dropFirst(5))_\(output.count)"), "status": .string(status), "role": "assistant",
         "content": status == "in_progress" ? [] : [["type": "output_text", "text": .string(text), "annotations": []]]]
    }

    private func callItem(_ call: (callIndex: Int, id: String, callID: String, name: String, arguments: String), status: String) -> JSONValue {
        ["type": "function_call", "id": .string(call.id), "call_id": .string(call.callID), "name": .string(call.name),
         "arguments": .string(call.arguments), "status": .string(status)]
    }

    /// Closes the open item (its `done` events) and adds it to the output.
    private func closeItem(into out: inout [UInt8]) {
        let index = JSONValue.int(output.count)
        if let text = openText {
            let item = messageItem(text, status: "completed")
            let itemID = item["id"] ?? ""
            event("response.output_text.done", [("item_id", itemID), ("output_index", index), ("content_index", 0), ("text", .string(text))], into: &out)
            event("response.content_part.done", [("item_id", itemID), ("output_index", index), ("content_index", 0),
                                                 ("part", ["type": "output_text", "text": .string(text), "annotations": []])], into: &out)
            event("response.output_item.done", [("output_index", index), ("item", item)], into: &out)
            output.append(item)
            openText = nil
        } else if let call = openCall {
            event("response.function_call_arguments.done", [("item_id", .string(call.id)), ("output_index", index), ("arguments", .string(call.arguments))],
                  into: &out)
            let item = callItem(call, status: "completed")
            event("response.output_item.done", [("output_index", index), ("item", item)], into: &out)
            output.append(item)
            openCall = nil
        }
    }

    private func handle(_ line: AnswerBuffer.Event, into out: inout [UInt8]) {
        guard !finished else { return }
        guard case let .chunk(chunk) = line else { return end(into: &out) }
        begin(into: &out)
        if let message = chunk["error"]?["message"]?.stringValue ?? chunk["error"]?.stringValue {
            event("error", [("code", "server_error"), ("message", .string(message)), ("param", nil)], into: &out)
            finished = true
            return
        }
        if let usage = chunk["usage"], usage != .null {
            inputTokens = usage["prompt_tokens"]?.intValue ?? inputTokens
            outputTokens = usage["completion_tokens"]?.intValue ?? outputTokens
        }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return }
        let delta = choice["delta"] ?? [:]
        if let content = delta["content"]?.stringValue, !content.isEmpty {
            if openText == nil {
                closeItem(into: &out)
                openText = ""
                let item = messageItem("", status: "in_progress")
                event("response.output_item.added", [("output_index", .int(output.count)), ("item", item)], into: &out)
                event("response.content_part.added", [("item_id", item["id"] ?? ""), ("output_index", .int(output.count)), ("content_index", 0),
                                                      ("part", ["type": "output_text", "text": "", "annotations": []])], into: &out)
            }
            openText? += content
            event("response.output_text.delta", [("item_id", messageItem("", status: "in_progress")["id"] ?? ""), ("output_index", .int(output.count)),
                                                 ("content_index", 0), ("delta", .string(content))], into: &out)
        }
        for call in delta["tool_calls"]?.arrayValue ?? [] {
            let callIndex = call["index"]?.intValue ?? 0
            if openCall?.callIndex != callIndex {
                closeItem(into: &out)
                let callID = call["id"]?.stringValue ?? "call_herd\(callIndex)"
                openCall = (callIndex, "fc_\(id.dropFirst(5))_\(output.count)", callID, call["function"]?["name"]?.stringValue ?? "", "")
                event("response.output_item.added", [("output_index", .int(output.count)), ("item", callItem(openCall!, status: "in_progress"))], into: &out)
            }
            if let fragment = call["function"]?["arguments"]?.stringValue, !fragment.isEmpty {
                openCall!.arguments += fragment
                event("response.function_call_arguments.delta", [("item_id", .string(openCall!.id)), ("output_index", .int(output.count)),
                                                                 ("delta", .string(fragment))], into: &out)
            }
        }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
    }

    private func end(into out: inout [UInt8]) {
        begin(into: &out)
        closeItem(into: &out)
        finished = true
        event(finalStatus == "completed" ? "response.completed" : "response.incomplete", [("response", response(status: finalStatus))], into: &out)
    }

    // MARK: Whole answers

    private func whole() -> [UInt8] {
        var out: [UInt8] = []
        guard let answer = try? JSONValue.parse(answer.bytes) else {
            error(status == 200 ? "the model server's answer was not JSON" : "the model server answered \(status): \(String(decoding: answer.bytes.prefix(300), as: UTF8.self))")
                .write(to: &out)
            return out
        }
        guard status == 200 else {
            if answer["error"]?["message"] != nil { return self.answer.bytes }
            error(answer["error"]?.stringValue ?? answer["detail"]?.stringValue ?? "the model server answered \(status)").write(to: &out)
            return out
        }
        let choice = answer["choices"]?.arrayValue?.first
        let message = choice?["message"]
        finishReason = choice?["finish_reason"]?.stringValue
        inputTokens = answer["usage"]?["prompt_tokens"]?.intValue ?? 0
        outputTokens = answer["usage"]?["completion_tokens"]?.intValue ?? 0
        if let text = message?["content"]?.stringValue, !text.isEmpty { output.append(messageItem(text, status: "completed")) }
        for (i, call) in (message?["tool_calls"]?.arrayValue ?? []).enumerated() {
            output.append(callItem((i, "fc_\(id.dropFirst(5))_\(output.count)", call["id"]?.stringValue ?? "call_herd\(i)",
                                    call["function"]?["name"]?.stringValue ?? "", call["function"]?["arguments"]?.stringValue ?? "{}"),
                                   status: "completed"))
        }
        response(status: finalStatus).write(to: &out)
        return out
    }
}
