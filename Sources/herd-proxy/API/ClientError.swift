import HerdHTTP
import HerdJSON
import HerdWire

/// An error a client sees: the one place where a failure becomes a status and
/// a body in the client's own API format (Ollama `{"error":"…"}`, OpenAI
/// `{"error":{"message","type","param","code"}}`), or, mid-stream, an NDJSON
/// error line or an SSE error event. The proxy's own refusals, control's
/// refusals, upstream failures and the HTTP server's own 400/408/413/431 (for
/// HTTP/1.1 and h2 alike, by the request target) all come through here.
struct ClientError: Error, Equatable {
    var status: Int
    var message: String
    /// The models that do exist (404 for an unknown model).
    var models: [String] = []
    /// Seconds to wait before trying again (503).
    var retryAfter: Int?
    /// A 404 for a path herd does not serve (not for a model): OpenAI says no `model_not_found`.
    var unknownPath = false

    static func badRequest(_ message: String) -> ClientError { ClientError(status: 400, message: message) }

    static func unknownEndpoint(method: String, path: some StringProtocol) -> ClientError {
        ClientError(status: 404, message: "herd does not serve \(method) \(path)", unknownPath: true)
    }

    /// A pull of `model` is already under way (to `node`; "" when control is
    /// full of pulls) through this router: 409, not a second download.
    static func pullUnderWay(_ model: String, node: String) -> ClientError {
        node.isEmpty
            ? ClientError(status: 429, message: "too many pulls are under way through this router; try again when one ends", retryAfter: 30)
            : ClientError(status: 409, message: "a pull of '\(model)' to node \(node) is already under way through this router")
    }

    static func methodNotAllowed(method: String, path: some StringProtocol) -> ClientError {
        ClientError(status: 405, message: "\(method) is not allowed on \(path); use POST")
    }

    /// Control (or the local policy) could not route the request. After
    /// retries ran out, the status says what the last upstream did: 504 when
    /// it timed out, 502 otherwise.
    static func refused(_ refusal: RouteRefusal, lastFailure: HTTPClientError? = nil, lastUpstreamStatus: Int? = nil) -> ClientError {
        switch refusal.code {
        case .modelNotFound:
            return ClientError(status: 404, message: refusal.message, models: refusal.models)
        case .queueTimeout, .noNode:
            return ClientError(status: 503, message: refusal.message, retryAfter: refusal.retryAfter)
        case .incapable:
            return ClientError(status: 400, message: refusal.message)
        case .clientLimit, .keyLimit:
            return ClientError(status: 429, message: refusal.message, retryAfter: refusal.retryAfter)
        case .retriesExhausted:
            if lastFailure == .firstByteTimeout || lastFailure == .totalTimeout(afterResponseStarted: false) {
                return ClientError(status: 504, message: "the model server did not answer in time (\(refusal.message))")
            }
            if let upstream = lastUpstreamStatus {
                return ClientError(status: 502, message: "the model server answered \(upstream) (\(refusal.message))")
            }
            return ClientError(status: 502, message: refusal.message)
        }
    }

    /// The body in `api`'s format.
    func body(for api: ClientAPI) -> [UInt8] {
        var out: [UInt8] = []
        switch api {
        case .ollama:
            var members: [(String, JSONValue)] = [("error", .string(message))]
            if !models.isEmpty { members.append(("models", .strings(models))) }
            JSONValue.object(members).write(to: &out)
        case .anthropic:
            var error: [(String, JSONValue)] = [("type", .string(ClientError.anthropicType(status))), ("message", .string(message))]
            if !models.isEmpty { error.append(("available_models", .strings(models))) }
            JSONValue.object([("type", "error"), ("error", .object(error))]).write(to: &out)
        case .openai:
            let (type, code) = unknownPath ? ("invalid_request_error", nil) : ClientError.openAIKind(status)
            var error: [(String, JSONValue)] = [("message", .string(message)), ("type", .string(type)),
                                                ("param", status == 404 && !models.isEmpty ? "model" : .null), ("code", code.map { .string($0) } ?? .null)]
            if !models.isEmpty { error.append(("available_models", .strings(models))) }
            JSONValue.object([("error", .object(error))]).write(to: &out)
        }
        return out
    }

    static let contentType = "application/json; charset=utf-8"

    /// OpenAI's error `type` and `code` for a status.
    static func openAIKind(_ status: Int) -> (type: String, code: String?) {
        switch status {
        case 400, 405, 413, 431: ("invalid_request_error", nil)
        case 401: ("invalid_request_error", "invalid_api_key")
        case 403: ("invalid_request_error", "model_not_allowed")
        case 404: ("invalid_request_error", "model_not_found")
        case 408: ("invalid_request_error", "timeout")
        case 429: ("rate_limit_exceeded", "rate_limit_exceeded")
        case 503: ("server_error", "service_unavailable")
        case 504: ("server_error", "timeout")
        default: ("server_error", nil)
        }
    }

    /// Anthropic's error `type` for a status.
    static func anthropicType(_ status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 400..<500: "invalid_request_error"
        default: "api_error"
        }
    }

    /// Answers `exchange` with this error (nothing of a response has been sent).
    func respond(_ exchange: HTTPExchange, api: ClientAPI, headers extra: HTTPHeaders = HTTPHeaders()) {
        var headers = extra
        headers.add("Content-Type", ClientError.contentType)
        if let retryAfter { headers.add("Retry-After", String(retryAfter)) }
        exchange.respond(status: status, headers: headers, body: body(for: api))
    }

    /// The body of an error the HTTP server answers itself (400, 408, 413,
    /// 431), in the format of the API the request target belongs to (as much
    /// of the target as arrived; unknown: Ollama's).
    static func serverError(status: Int, message: String, target: String?) -> (contentType: String, body: [UInt8]) {
        (contentType, ClientError(status: status, message: message).body(for: ClientAPI(target: target ?? "")))
    }

    /// The bytes that end a broken stream in the client's framing; `nil` when the
    /// response is not a stream this can be said in (then the connection is cut).
    static func streamError(contentType: String?, message: String, api: ClientAPI = .openai) -> [UInt8]? {
        let type = contentType?.lowercased() ?? ""
        var out: [UInt8] = []
        if type.hasPrefix("application/x-ndjson") {
            JSONValue.object([("error", .string(message))]).write(to: &out)
            out.append(10)
            return out
        }
        if type.hasPrefix("text/event-stream"), api == .anthropic {
            // Anthropic's stream ends with an `error` event.
            out.append(contentsOf: "event: error\ndata: ".utf8)
            JSONValue.object([("type", "error"), ("error", .object([("type", "api_error"), ("message", .string(message))]))]).write(to: &out)
            out.append(contentsOf: [10, 10])
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

extension ClientAPI {
    /// The API a request target belongs to: `/v1/messages…` is Anthropic's,
    /// the rest of `/v1/…` (and `/rerank`) OpenAI's, the rest Ollama's.
    init(target: some StringProtocol) {
        if target.hasPrefix("/v1/messages") {
            self = .anthropic
        } else {
            self = target.hasPrefix("/v1/") || target.hasPrefix("/rerank") ? .openai : .ollama
        }
    }
}
