import HerdJSON
import HerdBounds

/// The proxy ↔ control messages (see `ControlProtocol.md`): `Codable` over
/// `JSONValue`, each the JSON object carried in a `ControlFrame`. Field names
/// on the wire are the `CodingKeys`; fields a sender may leave out are
/// `Defaulted`.

/// Which client API a request speaks.
public enum ClientAPI: String, Sendable, Codable, CaseIterable {
    case ollama
    case openai
    /// Anthropic Messages (`/v1/messages`): served natively by Ollama ≥ 0.14
    /// and llama.cpp's server, passed through to them.
    case anthropic
}

/// What a backend serves.
public enum BackendKind: String, Sendable, Codable, CaseIterable {
    /// An Ollama server (serves the Ollama API and `/v1/*`).
    case ollama
    /// An OpenAI-compatible server (llama.cpp, vLLM, LM Studio, LocalAI): `/v1/*` only.
    case openai
    /// Servers of one kind of work, on OpenAI's paths: speech-to-text
    /// (`/v1/audio/transcriptions`, faster-whisper-server, whisper.cpp),
    /// text-to-speech (`/v1/audio/speech`), images (`/v1/images/*`),
    /// embeddings (`/v1/embeddings`) and rerank (`/v1/rerank`).
    case stt, tts, image, embed, rerank

    /// Whether a request in `api` may go to this kind of backend: either
    /// serves all three (Ollama-API requests reach an OpenAI-compatible
    /// server translated, by the proxy).
    public func serves(_ api: ClientAPI) -> Bool { true }

    /// Whether this kind of backend does `work`: Ollama chats, embeds,
    /// reranks (where its build serves it: the model decides) and transcribes
    /// (audio models), but speaks and draws nothing; a general
    /// OpenAI-compatible server may do anything (its models decide); a server
    /// of one kind does only that.
    public func serves(_ work: WorkKind) -> Bool {
        switch self {
        case .ollama: work != .tts && work != .image
        case .openai: true
        case .stt: work == .stt
        case .tts: work == .tts
        case .image: work == .image
        case .embed: work == .embed
        case .rerank: work == .rerank
        }
    }

    /// Everything but Ollama speaks OpenAI's API only.
    public var speaksOpenAIOnly: Bool { self != .ollama }
}

/// The kind of work a request asks for, from its path.
public enum WorkKind: String, Sendable, CaseIterable {
    case chat, embed, rerank, stt, tts, image

    /// Not generic, and the chat paths first: this runs on every proxied
    /// request (a generic `StringProtocol` switch cost ~2,000 instructions).
    public init(path: String) {
        switch path {
        case "/api/chat", "/v1/chat/completions", "/api/generate", "/v1/messages", "/v1/completions", "/v1/responses":
            self = .chat
        case "/api/embed", "/api/embeddings", "/v1/embeddings": self = .embed
        case "/v1/rerank", "/rerank", "/v1/reranking": self = .rerank
        case "/v1/audio/transcriptions", "/v1/audio/translations", "/api/transcribe": self = .stt
        case "/v1/audio/speech": self = .tts
        case "/v1/images/generations", "/v1/images/edits", "/api/generate-image": self = .image
        default: self = .chat
        }
    }

    /// What a job of this kind is measured in (`RouteRequest.workUnits`).
    public var unit: String {
        switch self {
        case .chat: "tokens"
        case .embed: "inputs"
        case .rerank: "documents"
        case .stt: "audio seconds"
        case .tts: "characters"
        case .image: "megapixel images"
        }
    }

    /// How a person says it (error messages).
    public var label: String {
        switch self {
        case .chat: "chat and text generation"
        case .embed: "embeddings"
        case .rerank: "rerank"
        case .stt: "speech-to-text"
        case .tts: "text-to-speech"
        case .image: "image generation"
        }
    }
}

/// proxy → control, first frame: who the proxy is and which protocol it speaks.
public struct ControlHello: Equatable, Sendable, WireCodable {
    public static let context = "hello"
    public static let protocolVersion = 11
    public var protocolVersion: Int
    public var proxyID: String
    public var version: String

    public init(proxyID: String, version: String = HerdVersion.current, protocolVersion: Int = ControlHello.protocolVersion) {
        self.protocolVersion = protocolVersion
        self.proxyID = proxyID
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol", proxyID = "proxy_id", version
    }
}

/// control → proxy: the hello is accepted.
public struct ControlHelloOK: Equatable, Sendable, WireCodable {
    public static let context = "hello_ok"
    public var protocolVersion: Int
    public var version: String
    /// SHA-256 (hex) of the fleet key when one is set: the proxy checks the
    /// key model-management requests carry against it (no round trip).
    public var adminKeyHash: String?

    public init(protocolVersion: Int = ControlHello.protocolVersion, version: String = HerdVersion.current, adminKeyHash: String? = nil) {
        self.protocolVersion = protocolVersion
        self.version = version
        self.adminKeyHash = adminKeyHash
    }

    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol", version, adminKeyHash = "admin_key_sha256"
    }
}

/// proxy → control: choose a node for this request.
public struct RouteRequest: Equatable, Sendable, WireCodable {
    public static let context = "route"
    public var id: UInt64
    public var api: ClientAPI
    /// The request path (`/api/chat`, `/v1/embeddings`, …).
    public var path: String
    public var model: String
    @Defaulted<WireDefaults.False> public var stream: Bool
    /// Models to use instead, in order, when `model` cannot be served.
    @Defaulted<WireDefaults.Empty<String>> public var fallbacks: [String]
    @Defaulted<WireDefaults.Empty<String>> public var tags: [String]
    /// Estimated prompt tokens (body bytes / 4).
    @Defaulted<WireDefaults.Zero> public var estimatedTokens: Int
    /// `options.num_ctx` when the client set it.
    public var numCtx: Int?
    /// Who asked, for fairness and the trace: `X-Herd-Client` (as `c:<value>`), else
    /// the API key's hash (`key:<hex>`), else the client's address.
    @Defaulted<WireDefaults.EmptyString> public var client: String
    /// The client's own output limit (`options.num_predict`, `max_tokens`, `max_completion_tokens`).
    public var maxTokens: Int?
    /// The client's `think` flag, when it sent one.
    public var think: Bool?
    /// Hashes of the conversation (`X-Herd-Session`, OpenAI `user`, else its
    /// first messages) and of its system prompt + tools: whose KV cache can serve it.
    public var session: ContentHash?
    public var prefix: ContentHash?
    /// The request carries images: only a model that can see may take it.
    @Defaulted<WireDefaults.False> public var vision: Bool
    /// How much work a speech, image, embedding or rerank job is, in its
    /// kind's unit (`WorkKind.unit`): seconds of audio, characters to speak,
    /// megapixel images, inputs, documents; 0 when not known.
    @Defaulted<WireDefaults.ZeroNumber> public var workUnits: Double
    /// The client key's id (`ClientKeys.Key.id`), 0 when the request has none:
    /// control counts its usage and holds it to the key's limits.
    @Defaulted<WireDefaults.Zero> public var key: Int

    public init(id: UInt64, api: ClientAPI, path: String, model: String, stream: Bool, fallbacks: [String] = [], tags: [String] = [],
                estimatedTokens: Int = 0, numCtx: Int? = nil, client: String = "", maxTokens: Int? = nil, think: Bool? = nil,
                session: ContentHash? = nil, prefix: ContentHash? = nil, vision: Bool = false, workUnits: Double = 0, key: Int = 0) {
        self.key = key
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
        self.maxTokens = maxTokens
        self.think = think
        self.session = session
        self.prefix = prefix
        self.vision = vision
        self.workUnits = workUnits
    }

    enum CodingKeys: String, CodingKey {
        case id, api, path, model, stream, fallbacks, tags, estimatedTokens = "est_tokens", numCtx = "num_ctx", client,
             maxTokens = "max_tokens", think, session, prefix, vision, workUnits = "work_units", key
    }
}

/// proxy → control: a ROUTE — the request, and the node the client asked
/// for with `X-Herd-Node` ("" none: only that node is a candidate, and herd's
/// learned limit does not hold it back; `herd benchmark` measures nodes so).
/// The pin travels beside the request, not in it: a `RouteRequest` is copied
/// on every request's path (tickets, RESULT), a pin is rare.
public struct RouteAsk: Equatable, Sendable {
    public var request: RouteRequest
    public var node: String

    public init(request: RouteRequest, node: String = "") {
        self.request = request
        self.node = node
    }
}

/// control → proxy: send the request here.
public struct RouteAnswer: Equatable, Sendable, WireCodable {
    public static let context = "route_ok"
    public var id: UInt64
    public var node: String
    /// `host:port` of the backend.
    public var upstream: String
    public var backend: BackendKind
    /// The model to ask for (differs from the request's when a fallback was chosen).
    public var model: String
    /// Milliseconds the request waited in a queue.
    @Defaulted<WireDefaults.Zero> public var queuedMilliseconds: Int
    /// The winning score and why, for `X-Herd-*` headers and traces.
    @Defaulted<WireDefaults.EmptyString> public var reason: String
    /// Nodes that failed this request before this answer (the router counts them).
    @Defaulted<WireDefaults.Zero> public var retries: Int
    /// The winner's expected time to complete, term by term (`X-Herd-Score`).
    @Defaulted<WireDefaults.EmptyString> public var score: String
    /// Remove the client's `options.num_ctx` before sending: the model is loaded with
    /// at least that context, and Ollama would reload it to change it.
    @Defaulted<WireDefaults.False> public var stripNumCtx: Bool
    /// Send STARTED when the node's first byte comes (control is learning this node:model's concurrency).
    @Defaulted<WireDefaults.False> public var reportStart: Bool
    /// Set `options.num_ctx` to this before sending (`--num-ctx-policy fit`:
    /// the context a cold load gets, or the one the model is loaded with, so
    /// Ollama does not reload it); 0: the body's own. An `Int32` beside the
    /// two flags: the answer, copied on every request, does not grow.
    @Defaulted<WireDefaults.ZeroInt32> public var fittedNumCtx: Int32

    /// `fittedNumCtx` as the proxy uses it: nil when not set.
    public var numCtx: Int? {
        get { fittedNumCtx > 0 ? Int(fittedNumCtx) : nil }
        set { fittedNumCtx = newValue.map { Int32(clamping: max(0, $0)) } ?? 0 }
    }

    public init(id: UInt64, node: String, upstream: String, backend: BackendKind, model: String, queuedMilliseconds: Int = 0, reason: String = "",
                retries: Int = 0, score: String = "", stripNumCtx: Bool = false, reportStart: Bool = false, numCtx: Int? = nil) {
        fittedNumCtx = numCtx.map { Int32(clamping: max(0, $0)) } ?? 0
        self.id = id
        self.node = node
        self.upstream = upstream
        self.backend = backend
        self.model = model
        self.queuedMilliseconds = queuedMilliseconds
        self.reason = reason
        self.retries = retries
        self.score = score
        self.stripNumCtx = stripNumCtx
        self.reportStart = reportStart
    }

    enum CodingKeys: String, CodingKey {
        case id, node, upstream, backend, model, queuedMilliseconds = "queued_ms", reason, retries, score, stripNumCtx = "strip_num_ctx",
             reportStart = "report_start", fittedNumCtx = "num_ctx"
    }
}

/// control → proxy: the request cannot be routed.
public struct RouteRefusal: Equatable, Sendable, WireCodable {
    public static let context = "route_error"

    public enum Code: String, Sendable, Codable, CaseIterable {
        /// No node has the model (nor any fallback): 404.
        case modelNotFound = "model_not_found"
        /// Nodes have it but none can serve now, and the queue wait ran out: 503.
        case queueTimeout = "queue_timeout"
        /// No node is online that could serve it: 503.
        case noNode = "no_node"
        /// Retries exhausted: 502.
        case retriesExhausted = "retries_exhausted"
        /// The client already has its share of requests queued or in flight (`--max-client-in-flight`): 429.
        case clientLimit = "client_limit"
        /// The request's client key is over one of its limits (rpm, tpm, budget): 429 with `retry_after`.
        case keyLimit = "key_limit"
        /// The request needs what no model it names can do (images to a model without vision): 400.
        case incapable
    }

    public var id: UInt64
    public var code: Code
    public var message: String
    /// Seconds a client should wait before trying again (503).
    public var retryAfter: Int?
    /// The models that do exist (404).
    @Defaulted<WireDefaults.Empty<String>> public var models: [String]

    public init(id: UInt64, code: Code, message: String, retryAfter: Int? = nil, models: [String] = []) {
        self.id = id
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.models = models
    }

    enum CodingKeys: String, CodingKey {
        case id, code, message, retryAfter = "retry_after", models
    }
}

/// proxy → control: the node failed before any byte reached the client; choose another.
public struct RouteRetry: Equatable, Sendable, WireCodable {
    public static let context = "retry"
    public var id: UInt64
    public var node: String
    @Defaulted<WireDefaults.EmptyString> public var reason: String
    /// The status the backend answered, when it answered (a 503 or 429 says it is busy).
    public var upstreamStatus: Int?

    public init(id: UInt64, node: String, reason: String, upstreamStatus: Int? = nil) {
        self.id = id
        self.node = node
        self.reason = reason
        self.upstreamStatus = upstreamStatus
    }

    enum CodingKeys: String, CodingKey {
        case id, node, reason, upstreamStatus = "status"
    }
}

/// proxy → control: the client left while its request was routed or queued.
public struct RouteCancel: Equatable, Sendable, WireCodable {
    public static let context = "cancel"
    public var id: UInt64

    public init(id: UInt64) { self.id = id }
}

/// control → proxy: the request waits in a queue for up to `timeoutMilliseconds`
/// (its answer comes later). Until this or an answer comes, the proxy holds
/// control to its route timeout.
public struct RouteQueued: Equatable, Sendable, WireCodable {
    public static let context = "queued"
    public var id: UInt64
    public var timeoutMilliseconds: UInt64

    public init(id: UInt64, timeoutMilliseconds: UInt64) {
        self.id = id
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case id, timeoutMilliseconds = "timeout_ms"
    }
}

/// proxy → control, only when ROUTE_OK asked for it (`report_start`): the
/// node's first byte came, with its status and how long after the proxy
/// sent the request. While a node:model's concurrency is being learned this
/// is its signal, a whole request sooner than the RESULT (a 10 s stream's
/// first byte comes in milliseconds).
public struct RouteStarted: Equatable, Sendable, WireCodable {
    public static let context = "started"
    public var id: UInt64
    public var status: Int
    public var upstreamTtftMilliseconds: Double

    public init(id: UInt64, status: Int, upstreamTtftMilliseconds: Double) {
        self.id = id
        self.status = status
        self.upstreamTtftMilliseconds = upstreamTtftMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case id, status, upstreamTtftMilliseconds = "upstream_ttft_ms"
    }
}

/// proxy → control: how a routed request ended.
public struct RouteResult: Equatable, Sendable, WireCodable {
    public static let context = "result"

    public enum Outcome: String, Sendable, Codable, CaseIterable {
        case ok
        /// The backend failed (after retries, or mid-stream).
        case upstreamError = "upstream_error"
        /// herd refused it: unknown model (404), no node or the queue wait ran out (503).
        case rejected
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
    @Defaulted<WireDefaults.ZeroNumber> public var ttftMilliseconds: Double
    @Defaulted<WireDefaults.ZeroNumber> public var durationMilliseconds: Double
    @Defaulted<WireDefaults.Zero> public var promptTokens: Int
    @Defaulted<WireDefaults.Zero> public var completionTokens: Int
    @Defaulted<WireDefaults.Zero> public var bytes: Int
    @Defaulted<WireDefaults.Zero> public var retries: Int
    public var error: String?
    /// Routed by the proxy's local policy while control was away.
    @Defaulted<WireDefaults.False> public var local: Bool
    /// Why it was routed locally (control unreachable, or it did not answer in time).
    public var localReason: String?
    /// The backend's own account of its time, when it gives one (Ollama's
    /// `*_duration`, llama.cpp's `timings`), in milliseconds: reading the
    /// prompt, generating, loading the model.
    public var backendPromptMilliseconds: Double?
    public var backendDecodeMilliseconds: Double?
    public var backendLoadMilliseconds: Double?
    /// The backend's whole time for the request (Ollama's `total_duration`):
    /// beyond load + prompt + generation, it is time spent waiting inside
    /// the backend for a slot.
    public var backendTotalMilliseconds: Double?
    /// From the moment the proxy sent the request to the node that served it
    /// (its last attempt) to the first byte and to the end, in milliseconds:
    /// the backend's time as herd sees it, without herd's own (the client's
    /// TTFT and duration above include the control hop and the queue).
    public var upstreamTtftMilliseconds: Double?
    public var upstreamMilliseconds: Double?

    public init(id: UInt64, node: String, model: String, outcome: Outcome, status: Int, ttftMilliseconds: Double = 0,
                durationMilliseconds: Double = 0, promptTokens: Int = 0, completionTokens: Int = 0, bytes: Int = 0,
                retries: Int = 0, error: String? = nil, local: Bool = false, localReason: String? = nil, backendPromptMilliseconds: Double? = nil,
                backendDecodeMilliseconds: Double? = nil, backendLoadMilliseconds: Double? = nil,
                upstreamTtftMilliseconds: Double? = nil, upstreamMilliseconds: Double? = nil, backendTotalMilliseconds: Double? = nil) {
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
        self.localReason = localReason
        self.backendPromptMilliseconds = backendPromptMilliseconds
        self.backendDecodeMilliseconds = backendDecodeMilliseconds
        self.backendLoadMilliseconds = backendLoadMilliseconds
        self.upstreamTtftMilliseconds = upstreamTtftMilliseconds
        self.upstreamMilliseconds = upstreamMilliseconds
        self.backendTotalMilliseconds = backendTotalMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case id, node, model, outcome, status, ttftMilliseconds = "ttft_ms", durationMilliseconds = "duration_ms",
             promptTokens = "prompt_tokens", completionTokens = "completion_tokens", bytes, retries, error, local,
             localReason = "local_reason", backendPromptMilliseconds = "prompt_eval_ms", backendDecodeMilliseconds = "eval_ms", backendLoadMilliseconds = "load_ms",
             upstreamTtftMilliseconds = "upstream_ttft_ms", upstreamMilliseconds = "upstream_ms", backendTotalMilliseconds = "total_ms"
    }
}

/// A 64-bit content hash (FNV-1a) that names a conversation or a prompt
/// prefix without carrying it. On the wire: a decimal string, because JSON
/// numbers are doubles.
public struct ContentHash: Hashable, Sendable, Codable, CustomStringConvertible {
    public let value: UInt64

    @inlinable
    public init(_ value: UInt64) { self.value = value }

    /// FNV-1a over `bytes`, continuing from `seed`.
    @inlinable
    public init(of bytes: some Sequence<UInt8>, seed: ContentHash? = nil) {
        var hash = seed?.value ?? 0xcbf2_9ce4_8422_2325
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            for byte in buffer { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        if done == nil {
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        value = hash
    }

    public init?(decimal text: String) {
        guard let value = UInt64(text) else { return nil }
        self.value = value
    }

    public var description: String { String(value) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = UInt64(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "must be a decimal string of an unsigned 64-bit integer"))
        }
        self.value = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}
