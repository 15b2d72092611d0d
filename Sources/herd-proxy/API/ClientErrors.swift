import HerdHTTP
import HerdJSON
import HerdWire

/// Errors in the format of the client's API: Ollama `{"error":"…"}`, OpenAI
/// `{"error":{"message","type","param","code"}}`; in streams, an NDJSON error
/// line or an SSE error event.
enum ClientErrors {
    static func body(api: ClientAPI, status: Int, message: String, models: [String] = []) -> [UInt8] {
        var out: [UInt8] = []
        switch api {
        case .ollama:
            var members: [(String, JSONValue)] = [("error", .string(message))]
            if !models.isEmpty { members.append(("models", .strings(models))) }
            JSONValue.object(members).write(to: &out)
        case .openai:
            let (type, code) = openAIKind(status)
            var error: [(String, JSONValue)] = [("message", .string(message)), ("type", .string(type)),
                                                ("param", status == 404 ? "model" : .null), ("code", code.map { .string($0) } ?? .null)]
            if !models.isEmpty { error.append(("available_models", .strings(models))) }
            JSONValue.object([("error", .object(error))]).write(to: &out)
        }
        return out
    }

    static func openAIKind(_ status: Int) -> (String, String?) {
        switch status {
        case 400, 413: ("invalid_request_error", nil)
        case 404: ("invalid_request_error", "model_not_found")
        case 408: ("invalid_request_error", "timeout")
        case 429: ("rate_limit_exceeded", "rate_limit_exceeded")
        case 503: ("server_error", "service_unavailable")
        case 504: ("server_error", "timeout")
        default: ("server_error", nil)
        }
    }

    /// Answers `exchange` with an error (nothing of a response has been sent).
    static func respond(_ exchange: HTTPExchange, api: ClientAPI, status: Int, message: String, models: [String] = [],
                        retryAfter: Int? = nil, extra: HTTPHeaders = HTTPHeaders()) {
        var headers = extra
        headers.add("Content-Type", "application/json; charset=utf-8")
        if let retryAfter { headers.add("Retry-After", String(retryAfter)) }
        exchange.respond(status: status, headers: headers, body: body(api: api, status: status, message: message, models: models))
    }

    /// The bytes that end a broken stream in the client's framing; `nil` when the
    /// response is not a stream this can be said in (then the connection is cut).
    static func streamError(contentType: String?, message: String) -> [UInt8]? {
        let type = contentType?.lowercased() ?? ""
        var out: [UInt8] = []
        if type.hasPrefix("application/x-ndjson") {
            JSONValue.object([("error", .string(message))]).write(to: &out)
            out.append(10)
            return out
        }
        if type.hasPrefix("text/event-stream") {
            out.append(contentsOf: "data: ".utf8)
            JSONValue.object([("error", .object([("message", .string(message)), ("type", "server_error"), ("param", .null), ("code", "upstream_error")]))]).write(to: &out)
            out.append(contentsOf: [10, 10])
            return out
        }
        return nil
    }
}
