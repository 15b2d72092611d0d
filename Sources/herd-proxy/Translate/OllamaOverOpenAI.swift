import HerdBounds
import HerdJSON
import HerdRuntime

/// Ollama-API requests served by an OpenAI-compatible backend (llama.cpp,
/// vLLM, LM Studio, llama-cpp-python): the request becomes the OpenAI one,
/// the answer (whole, or an SSE stream event by event) becomes Ollama's.
/// So langchain-ollama, litellm `ollama/`, llama-index and `ollama` itself
/// reach every model in the fleet.
///
/// Mapped: messages (text, `images` → `image_url` data URLs, assistant
/// `tool_calls`, `tool` results), `tools`, `format` (`"json"` or a JSON
/// schema → `response_format`), `options` (`temperature`, `top_p`, `top_k`,
/// `seed`, `stop`, `num_predict` → `max_tokens`, `frequency_penalty`,
/// `presence_penalty`, `repeat_penalty`, `min_p`), `stream`; `/api/generate`'s
/// `prompt`, `system` and `images` (→ chat), `raw` (→ `/v1/completions`);
/// `/api/embed` and `/api/embeddings` (→ `/v1/embeddings`). Left out, as an
/// OpenAI server has no such thing: `keep_alive`, `num_ctx`, `context`,
/// `suffix`, `think` levels.
enum OllamaOverOpenAI {
    struct Translated {
        var path: String
        var body: [UInt8]
    }

    /// The OpenAI request for an Ollama one; `nil` when the body is not an object.
    static func request(_ endpoint: Endpoint, body: [UInt8], model: String, stream: Bool) -> Translated? {
        guard case let .object(members)? = try? JSONValue.parse(body) else { return nil }
        let request = JSONValue.object(members)
        var out: [(String, JSONValue)] = [("model", .string(model))]
        let path: String
        switch endpoint {
        case .chat:
            path = "/v1/chat/completions"
            out.append(("messages", .array(messages(request["messages"]?.arrayValue ?? []))))
            if let tools = request["tools"], tools != .null { out.append(("tools", tools)) }
        case .generate where request["raw"]?.boolValue == true:
            path = "/v1/completions"
            out.append(("prompt", request["prompt"] ?? .string("")))
        case .generate:
            path = "/v1/chat/completions"
            var list: [JSONValue] = []
            if let system = request["system"]?.stringValue, !system.isEmpty { list.append(["role": "system", "content": .string(system)]) }
            var user: [(String, JSONValue)] = [("role", "user"), ("content", request["prompt"] ?? .string(""))]
            if let images = request["images"], images != .null { user.append(("images", images)) }
            list.append(.object(user))
            out.append(("messages", .array(messages(list))))
        case .embed:
            path = "/v1/embeddings"
            out.append(("input", request["input"] ?? .string("")))
            if let dimensions = request["dimensions"], dimensions != .null { out.append(("dimensions", dimensions)) }
        case .embeddings:
            path = "/v1/embeddings"
            out.append(("input", request["prompt"] ?? .string("")))
        default:
            return nil
        }
        if endpoint == .chat || endpoint == .generate {
            out.append(("stream", .bool(stream)))
            if stream { out.append(("stream_options", ["include_usage": true])) }
            out += options(request["options"])
            if let format = request["format"], format != .null {
                if format.stringValue == "json" {
                    out.append(("response_format", ["type": "json_object"]))
                } else if format.objectValue != nil {
                    out.append(("response_format", ["type": "json_schema", "json_schema": ["name": "response", "schema": format, "strict": true]]))
                }
            }
        }
        var bytes: [UInt8] = []
        JSONValue.object(out).write(to: &bytes)
        return Translated(path: path, body: bytes)
    }

    /// Ollama messages → OpenAI messages. Tool calls get ids (`call_N`, in
    /// order) that the `tool` results after them answer, in the same order.
    static func messages(_ list: [JSONValue]) -> [JSONValue] {
        var issued: [String] = []
        var answered = 0
        return list.map { message in
            let role = message["role"]?.stringValue ?? "user"
            var out: [(String, JSONValue)] = [("role", .string(role))]
            let text = message["content"] ?? .string("")
            if let images = message["images"]?.arrayValue, !images.isEmpty {
                var parts: [JSONValue] = []
                if let t = text.stringValue, !t.isEmpty { parts.append(["type": "text", "text": .string(t)]) }
                for image in images {
                    guard let data = image.stringValue else { continue }
                    parts.append(["type": "image_url", "image_url": ["url": .string(dataURL(data))]])
                }
                out.append(("content", .array(parts)))
            } else {
                out.append(("content", text))
            }
            if let calls = message["tool_calls"]?.arrayValue, !calls.isEmpty {
                out.append(("tool_calls", .array(calls.map { call in
                    let id = "call_\(issued.count)"
                    issued.append(id)
                    var arguments: [UInt8] = []
                    (call["function"]?["arguments"] ?? [:]).write(to: &arguments)
                    return ["id": .string(id), "type": "function",
                            "function": ["name": call["function"]?["name"] ?? "", "arguments": .string(String(decoding: arguments, as: UTF8.self))]]
                })))
            }
            if role == "tool" {
                let id = answered < issued.count ? issued[answered] : "call_\(answered)"
                answered += 1
                out.append(("tool_call_id", .string(id)))
                if let name = message["tool_name"] { out.append(("name", name)) }
            }
            return .object(out)
        }
    }

    /// An Ollama image (bare base64) as a data URL, its type read from its first bytes.
    static func dataURL(_ base64: String) -> String {
        if base64.hasPrefix("data:") { return base64 }
        let type = base64.hasPrefix("/9j/") ? "jpeg" : base64.hasPrefix("R0lG") ? "gif" : base64.hasPrefix("UklG") ? "webp" : "png"
        return "data:image/\(type);base64," + base64
    }

    /// Ollama `options` an OpenAI-compatible server understands.
    static func options(_ options: JSONValue?) -> [(String, JSONValue)] {
        guard let members = options?.objectValue else { return [] }
        var out: [(String, JSONValue)] = []
        for (key, value) in members where value != .null {
            switch key {
            case "temperature", "top_p", "top_k", "seed", "stop", "frequency_penalty", "presence_penalty", "repeat_penalty", "min_p":
                out.append((key, value))
            case "num_predict":
                if let n = value.intValue, n > 0 { out.append(("max_tokens", .int(n))) }
            default:
                break
            }
        }
        return out
    }

    /// `/api/show` for a model an OpenAI-compatible server serves: what herd knows of it.
    static func show(model: String) -> [UInt8] {
        var out: [UInt8] = []
        JSONValue.object([
            ("modelfile", .string("# served by an OpenAI-compatible server through herd\nFROM \(model)\n")), ("parameters", ""), ("template", ""),
            ("details", ["parent_model": "", "format": "gguf", "family": "", "families": nil, "parameter_size": "", "quantization_level": ""]),
            ("model_info", [:]), ("capabilities", ["completion"]), ("modified_at", "1970-01-01T00:00:00Z"),
        ]).write(to: &out)
        return out
    }
}

/// An OpenAI answer turned into Ollama's as it arrives: a whole JSON body
/// (collected, bounded), or an SSE stream turned into NDJSON lines. Tool-call
/// arguments, streamed in fragments, are sent whole with the last line.
final class OllamaAnswerTranslator {

    let endpoint: Endpoint
    let model: String
    let stream: Bool
    private(set) var status = 200
    private var answer = AnswerBuffer()
    private var finished = false
    private var promptTokens = 0
    private var completionTokens = 0
    private var doneReason = "stop"
    private var timings: JSONValue?
    /// Tool calls being streamed, by index: name and argument fragments.
    private var calls: [Int: (name: String, arguments: String)] = [:]

    init(endpoint: Endpoint, model: String, stream: Bool) {
        self.endpoint = endpoint
        self.model = model
        self.stream = stream
    }

    /// The answer's status decides its shape: an error is a whole JSON body.
    func head(status: Int) { self.status = status }

    var contentType: String { stream && status == 200 ? "application/x-ndjson" : "application/json; charset=utf-8" }

    private var createdAt: String { Logger.timestamp(secondsSinceEpoch: Int(clamping: EventLoop.wallClockMilliseconds() / 1000)) }

    /// Bytes from the backend in, bytes for the client out.
    func feed(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        guard stream, status == 200 else {
            answer.collect(bytes)
            return []
        }
        var out: [UInt8] = []
        answer.split(bytes) { handle($0, into: &out) }
        return out
    }

    /// The rest, once the backend's answer has ended.
    func finish() -> [UInt8] {
        var out: [UInt8] = []
        if answer.overflow {
            JSONValue.object([("error", .string("the model server's answer was too large to translate"))]).write(to: &out)
            out.append(10)
            return out
        }
        guard stream, status == 200 else { return whole() }
        answer.finishStream { handle($0, into: &out) }
        if !finished { final(into: &out) }
        return out
    }

    // MARK: Streams

    private func handle(_ event: AnswerBuffer.Event, into out: inout [UInt8]) {
        guard case let .chunk(chunk) = event else {
            if !finished { final(into: &out) }
            return
        }
        if let message = chunk["error"]?["message"]?.stringValue ?? chunk["error"]?.stringValue {
            JSONValue.object([("error", .string(message))]).write(to: &out)
            out.append(10)
            finished = true
            return
        }
        if let usage = chunk["usage"], usage != .null {
            promptTokens = usage["prompt_tokens"]?.intValue ?? promptTokens
            completionTokens = usage["completion_tokens"]?.intValue ?? completionTokens
        }
        if let t = chunk["timings"], t != .null { timings = t }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return }
        if let reason = choice["finish_reason"]?.stringValue { doneReason = reason == "length" ? "length" : "stop" }
        let delta = choice["delta"] ?? choice
        for call in delta["tool_calls"]?.arrayValue ?? [] {
            let index = call["index"]?.intValue ?? calls.count
            var entry = calls[index] ?? ("", "")
            if let name = call["function"]?["name"]?.stringValue { entry.name += name }
            if let fragment = call["function"]?["arguments"]?.stringValue { entry.arguments += fragment }
            calls[index] = entry
        }
        let content = delta["content"]?.stringValue ?? choice["text"]?.stringValue ?? ""
        let thinking = delta["reasoning_content"]?.stringValue ?? ""
        guard !content.isEmpty || !thinking.isEmpty else { return }
        var members = opening()
        if endpoint == .chat {
            var message: [(String, JSONValue)] = [("role", "assistant"), ("content", .string(content))]
            if !thinking.isEmpty { message.append(("thinking", .string(thinking))) }
            members.append(("message", .object(message)))
        } else {
            members.append(("response", .string(content)))
            if !thinking.isEmpty { members.append(("thinking", .string(thinking))) }
        }
        members.append(("done", false))
        JSONValue.object(members).write(to: &out)
        out.append(10)
    }

    private func final(into out: inout [UInt8]) {
        finished = true
        var members = opening()
        let toolCalls = calls.keys.sorted().map { index in
            let call = calls[index]!
            let arguments = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? [:]
            return JSONValue.object([("function", .object([("name", .string(call.name)), ("arguments", arguments)]))])
        }
        if endpoint == .chat {
            var message: [(String, JSONValue)] = [("role", "assistant"), ("content", "")]
            if !toolCalls.isEmpty { message.append(("tool_calls", .array(toolCalls))) }
            members.append(("message", .object(message)))
        } else {
            members.append(("response", ""))
        }
        members += counters()
        JSONValue.object(members).write(to: &out)
        out.append(10)
    }

    private func opening() -> [(String, JSONValue)] { [("model", .string(model)), ("created_at", .string(createdAt))] }

    /// `done`, the reason, the token counts and (where llama.cpp's `timings` say) the durations in nanoseconds.
    private func counters() -> [(String, JSONValue)] {
        var members: [(String, JSONValue)] = [("done_reason", .string(doneReason)), ("done", true),
                                              ("prompt_eval_count", .int(promptTokens)), ("eval_count", .int(completionTokens))]
        if let timings {
            if let ms = timings["prompt_ms"]?.doubleValue, ms.isFinite, ms >= 0, ms < 1e9 { members.append(("prompt_eval_duration", .int(Int(saturating: ms * 1e6)))) }
            if let ms = timings["predicted_ms"]?.doubleValue, ms.isFinite, ms >= 0, ms < 1e9 { members.append(("eval_duration", .int(Int(saturating: ms * 1e6)))) }
        }
        return members
    }

    // MARK: Whole answers

    private func whole() -> [UInt8] {
        var out: [UInt8] = []
        guard let answer = try? JSONValue.parse(answer.bytes) else {
            let text = String(decoding: answer.bytes.prefix(300), as: UTF8.self)
            JSONValue.object([("error", .string(status == 200 ? "the model server's answer was not JSON" : "the model server answered \(status): \(text)"))])
                .write(to: &out)
            return out
        }
        guard status == 200 else {
            let message = answer["error"]?["message"]?.stringValue ?? answer["error"]?.stringValue ?? answer["detail"]?.stringValue
                ?? "the model server answered \(status)"
            JSONValue.object([("error", .string(message))]).write(to: &out)
            return out
        }
        switch endpoint {
        case .embed:
            let vectors = (answer["data"]?.arrayValue ?? []).compactMap { $0["embedding"] }
            JSONValue.object([("model", .string(model)), ("embeddings", .array(vectors)),
                              ("prompt_eval_count", .int(answer["usage"]?["prompt_tokens"]?.intValue ?? 0))]).write(to: &out)
            return out
        case .embeddings:
            JSONValue.object([("embedding", answer["data"]?.arrayValue?.first?["embedding"] ?? [])]).write(to: &out)
            return out
        default:
            break
        }
        if let usage = answer["usage"], usage != .null {
            promptTokens = usage["prompt_tokens"]?.intValue ?? 0
            completionTokens = usage["completion_tokens"]?.intValue ?? 0
        }
        if let t = answer["timings"], t != .null { timings = t }
        let choice = answer["choices"]?.arrayValue?.first
        if let reason = choice?["finish_reason"]?.stringValue { doneReason = reason == "length" ? "length" : "stop" }
        let content = choice?["message"]?["content"]?.stringValue ?? choice?["text"]?.stringValue ?? ""
        let thinking = choice?["message"]?["reasoning_content"]?.stringValue
        var members = opening()
        if endpoint == .chat {
            var message: [(String, JSONValue)] = [("role", "assistant"), ("content", .string(content))]
            if let thinking, !thinking.isEmpty { message.append(("thinking", .string(thinking))) }
            let calls = (choice?["message"]?["tool_calls"]?.arrayValue ?? []).map { call -> JSONValue in
                let arguments = call["function"]?["arguments"]?.stringValue.flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? [:]
                return ["function": ["name": call["function"]?["name"] ?? "", "arguments": arguments]]
            }
            if !calls.isEmpty { message.append(("tool_calls", .array(calls))) }
            members.append(("message", .object(message)))
        } else {
            members.append(("response", .string(content)))
            if let thinking, !thinking.isEmpty { members.append(("thinking", .string(thinking))) }
        }
        members += counters()
        JSONValue.object(members).write(to: &out)
        return out
    }
}
