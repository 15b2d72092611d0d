import HerdRuntime
import HerdJSON
/// The proxy ↔ control messages (see `ControlProtocol.md`). Each converts to and
/// from the JSON object carried in a `ControlFrame`.

/// Which client API a request speaks.
public enum ClientAPI: String, Sendable {
    case ollama
    case openai
}

/// What a backend serves.
public enum BackendKind: String, Sendable {
    /// An Ollama server (serves the Ollama API and `/v1/*`).
    case ollama
    /// An OpenAI-compatible server (llama.cpp, vLLM, LM Studio): `/v1/*` only.
    case openai

    /// Whether a request in `api` may go to this kind of backend.
    public func serves(_ api: ClientAPI) -> Bool { self == .ollama || api == .openai }
}

/// proxy → control, first frame: who the proxy is and which protocol it speaks.
public struct ControlHello: Equatable, Sendable {
    public static let protocolVersion = 1
    public var protocolVersion: Int
    public var proxyID: String
    public var version: String

    public init(proxyID: String, version: String = HerdVersion.current, protocolVersion: Int = ControlHello.protocolVersion) {
        self.protocolVersion = protocolVersion
        self.proxyID = proxyID
        self.version = version
    }

    public var json: JSONValue { ["protocol": .int(protocolVersion), "proxy_id": .string(proxyID), "version": .string(version)] }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "hello")
        protocolVersion = try f.int("protocol")
        proxyID = try f.string("proxy_id")
        version = try f.string("version")
    }
}

/// proxy → control: choose a node for this request.
public struct RouteRequest: Equatable, Sendable {
    public var id: UInt64
    public var api: ClientAPI
    /// The request path (`/api/chat`, `/v1/embeddings`, …).
    public var path: String
    public var model: String
    public var stream: Bool
    /// Models to use instead, in order, when `model` cannot be served.
    public var fallbacks: [String]
    public var tags: [String]
    /// Estimated prompt tokens (characters / 4).
    public var estimatedTokens: Int
    /// `options.num_ctx` when the client set it.
    public var numCtx: Int?
    /// The client's address.
    public var client: String

    public init(id: UInt64, api: ClientAPI, path: String, model: String, stream: Bool, fallbacks: [String] = [], tags: [String] = [],
                estimatedTokens: Int = 0, numCtx: Int? = nil, client: String = "") {
        self.id = id
        self.api = api
        self.path = path
        self.model = model
        self.stream = stream
        self.fallbacks = fallbacks
        self.tags = tags
        self.estimatedTokens = estimatedTokens
        self.numCtx = numCtx
        self.client = client
    }

    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .int(Int(id))), ("api", .string(api.rawValue)), ("path", .string(path)), ("model", .string(model)),
            ("stream", .bool(stream)), ("fallbacks", .strings(fallbacks)), ("tags", .strings(tags)),
            ("est_tokens", .int(estimatedTokens)), ("client", .string(client)),
        ]
        if let numCtx { members.append(("num_ctx", .int(numCtx))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "route")
        id = UInt64(max(0, try f.int("id")))
        guard let api = ClientAPI(rawValue: try f.string("api")) else { throw JSONFieldError("route.api must be ollama or openai") }
        self.api = api
        path = try f.string("path")
        model = try f.string("model")
        stream = try f.bool("stream", default: false)
        fallbacks = try f.strings("fallbacks")
        tags = try f.strings("tags")
        estimatedTokens = try f.optionalInt("est_tokens") ?? 0
        numCtx = try f.optionalInt("num_ctx")
        client = try f.optionalString("client") ?? ""
    }
}

/// control → proxy: send the request here.
public struct RouteAnswer: Equatable, Sendable {
    public var id: UInt64
    public var node: String
    /// `host:port` of the backend.
    public var upstream: String
    public var backend: BackendKind
    /// The model to ask for (differs from the request's when a fallback was chosen).
    public var model: String
    /// Milliseconds the request waited in a queue.
    public var queuedMilliseconds: Int
    /// The winning score and why, for `X-Herd-*` headers and traces.
    public var reason: String
    /// Nodes that failed this request before this answer (the router counts them).
    public var retries: Int

    public init(id: UInt64, node: String, upstream: String, backend: BackendKind, model: String, queuedMilliseconds: Int = 0, reason: String = "",
                retries: Int = 0) {
        self.id = id
        self.node = node
        self.upstream = upstream
        self.backend = backend
        self.model = model
        self.queuedMilliseconds = queuedMilliseconds
        self.reason = reason
        self.retries = retries
    }

    public var json: JSONValue {
        ["id": .int(Int(id)), "node": .string(node), "upstream": .string(upstream), "backend": .string(backend.rawValue),
         "model": .string(model), "queued_ms": .int(queuedMilliseconds), "reason": .string(reason), "retries": .int(retries)]
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "route_ok")
        id = UInt64(max(0, try f.int("id")))
        node = try f.string("node")
        upstream = try f.string("upstream")
        guard let backend = BackendKind(rawValue: try f.string("backend")) else { throw JSONFieldError("route_ok.backend is unknown") }
        self.backend = backend
        model = try f.string("model")
        queuedMilliseconds = try f.optionalInt("queued_ms") ?? 0
        reason = try f.optionalString("reason") ?? ""
        retries = try f.optionalInt("retries") ?? 0
    }
}

/// control → proxy: the request cannot be routed.
public struct RouteRefusal: Equatable, Sendable {
    public enum Code: String, Sendable {
        /// No node has the model (nor any fallback): 404.
        case modelNotFound = "model_not_found"
        /// Nodes have it but none can serve now, and the queue wait ran out: 503.
        case queueTimeout = "queue_timeout"
        /// No node is online that could serve it: 503.
        case noNode = "no_node"
        /// Retries exhausted: 502.
        case retriesExhausted = "retries_exhausted"
    }

    public var id: UInt64
    public var code: Code
    public var message: String
    /// Seconds a client should wait before trying again (503).
    public var retryAfter: Int?
    /// The models that do exist (404).
    public var models: [String]

    public init(id: UInt64, code: Code, message: String, retryAfter: Int? = nil, models: [String] = []) {
        self.id = id
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.models = models
    }

    public var json: JSONValue {
        var members: [(String, JSONValue)] = [("id", .int(Int(id))), ("code", .string(code.rawValue)), ("message", .string(message)),
                                              ("models", .strings(models))]
        if let retryAfter { members.append(("retry_after", .int(retryAfter))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "route_error")
        id = UInt64(max(0, try f.int("id")))
        guard let code = Code(rawValue: try f.string("code")) else { throw JSONFieldError("route_error.code is unknown") }
        self.code = code
        message = try f.string("message")
        retryAfter = try f.optionalInt("retry_after")
        models = try f.strings("models")
    }
}

/// proxy → control: the node failed before any byte reached the client; choose another.
public struct RouteRetry: Equatable, Sendable {
    public var id: UInt64
    public var node: String
    public var reason: String

    public init(id: UInt64, node: String, reason: String) {
        self.id = id
        self.node = node
        self.reason = reason
    }

    public var json: JSONValue { ["id": .int(Int(id)), "node": .string(node), "reason": .string(reason)] }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "retry")
        id = UInt64(max(0, try f.int("id")))
        node = try f.string("node")
        reason = try f.optionalString("reason") ?? ""
    }
}

/// proxy → control: how a routed request ended.
public struct RouteResult: Equatable, Sendable {
    public enum Outcome: String, Sendable {
        case ok
        /// The backend failed (after retries, or mid-stream).
        case upstreamError = "upstream_error"
        /// The client went away.
        case clientGone = "client_gone"
        case timeout
    }

    public var id: UInt64
    public var node: String
    public var model: String
    public var outcome: Outcome
    /// The HTTP status the client saw (499 when it left).
    public var status: Int
    public var ttftMilliseconds: Double
    public var durationMilliseconds: Double
    public var promptTokens: Int
    public var completionTokens: Int
    public var bytes: Int
    public var retries: Int
    public var error: String?
    /// Routed by the proxy's local policy while control was away.
    public var local: Bool

    public init(id: UInt64, node: String, model: String, outcome: Outcome, status: Int, ttftMilliseconds: Double = 0,
                durationMilliseconds: Double = 0, promptTokens: Int = 0, completionTokens: Int = 0, bytes: Int = 0,
                retries: Int = 0, error: String? = nil, local: Bool = false) {
        self.id = id
        self.node = node
        self.model = model
        self.outcome = outcome
        self.status = status
        self.ttftMilliseconds = ttftMilliseconds
        self.durationMilliseconds = durationMilliseconds
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.bytes = bytes
        self.retries = retries
        self.error = error
        self.local = local
    }

    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .int(Int(id))), ("node", .string(node)), ("model", .string(model)), ("outcome", .string(outcome.rawValue)),
            ("status", .int(status)), ("ttft_ms", .number(ttftMilliseconds)), ("duration_ms", .number(durationMilliseconds)),
            ("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)), ("bytes", .int(bytes)),
            ("retries", .int(retries)), ("local", .bool(local)),
        ]
        if let error { members.append(("error", .string(error))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "result")
        id = UInt64(max(0, try f.int("id")))
        node = try f.string("node")
        model = try f.string("model")
        guard let outcome = Outcome(rawValue: try f.string("outcome")) else { throw JSONFieldError("result.outcome is unknown") }
        self.outcome = outcome
        status = try f.int("status")
        ttftMilliseconds = try f.double("ttft_ms", default: 0)
        durationMilliseconds = try f.double("duration_ms", default: 0)
        promptTokens = try f.optionalInt("prompt_tokens") ?? 0
        completionTokens = try f.optionalInt("completion_tokens") ?? 0
        bytes = try f.optionalInt("bytes") ?? 0
        retries = try f.optionalInt("retries") ?? 0
        error = try f.optionalString("error")
        local = try f.bool("local", default: false)
    }
}
