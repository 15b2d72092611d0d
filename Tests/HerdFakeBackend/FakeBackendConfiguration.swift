
/// A model the fake backend serves.
public struct FakeModel: Sendable, Equatable {
    public var name: String
    public var sizeBytes: Int
    public var family: String
    public var parameterSize: String
    public var quantization: String
    /// Loaded (listed in `/api/ps`).
    public var loaded: Bool
    public var contextLength: Int
    public var capabilities: [String]
    /// Embedding width for embedding requests.
    public var embeddingDimensions: Int

    public init(
        name: String, sizeBytes: Int = 4_000_000_000, family: String = "llama", parameterSize: String = "8B",
        quantization: String = "Q4_K_M", loaded: Bool = true, contextLength: Int = 8192,
        capabilities: [String] = ["completion", "tools"], embeddingDimensions: Int = 64
    ) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.family = family
        self.parameterSize = parameterSize
        self.quantization = quantization
        self.loaded = loaded
        self.contextLength = contextLength
        self.capabilities = capabilities
        self.embeddingDimensions = embeddingDimensions
    }
}

/// How the fake backend misbehaves, to exercise failover.
public enum FakeFailure: Sendable, Equatable {
    case none
    /// Not listening: connections are refused.
    case refuse
    /// Every inference request is answered `500`.
    case status500
    /// Every inference request is answered `501`, as llama.cpp answers
    /// embeddings when not started with `--embeddings`.
    case status501
    /// Requests are read and never answered.
    case hang
    /// Streams `n` chunks, then resets the connection.
    case resetAfterChunks(Int)
    /// Streams `n` chunks, then sends nothing more (the connection stays open).
    case stallAfterChunks(Int)

    /// Parses `none`, `refuse`, `500`, `501`, `hang`, `reset:N`, `stall:N`.
    public init?(_ text: String) {
        switch text {
        case "none": self = .none
        case "refuse": self = .refuse
        case "500": self = .status500
        case "501": self = .status501
        case "hang": self = .hang
        default:
            if text.hasPrefix("stall:"), let n = Int(text.dropFirst(6)) {
                self = .stallAfterChunks(n)
                return
            }
            guard text.hasPrefix("reset:"), let n = Int(text.dropFirst(6)) else { return nil }
            self = .resetAfterChunks(n)
        }
    }
}

/// The fake backend's script: models, pacing and failure mode.
public struct FakeBackendConfiguration: Sendable {
    /// Stamped on every response as `X-Fake-Backend` (tests tell backends apart).
    public var name = "fake"
    public var version = "0.12.0"
    public var models: [FakeModel] = [FakeModel(name: "llama3:8b")]
    /// Tokens per generated answer.
    public var tokens = 8
    /// Delay between streamed tokens.
    public var tokenDelayMilliseconds: UInt64 = 0
    /// Delay before the response starts.
    public var firstByteDelayMilliseconds: UInt64 = 0
    public var failure = FakeFailure.none
    /// Extra bytes in each streamed token (to make large streams).
    public var tokenPadding = 0
    /// Inference requests served at once, like Ollama's `OLLAMA_NUM_PARALLEL`
    /// (0: no limit); more wait inside the backend, in order.
    public var slots = 0
    /// Like vLLM (Starlette's `StreamingResponse`): a stream's response head goes
    /// out as the request arrives, its first token only when a slot is free and
    /// the first-byte delay has passed (an error after that point cannot change the status).
    public var headsEarly = false
    /// Says its slots at `/props` (llama.cpp's server); off: it reports nothing of its parallelism.
    public var props = true
    /// Like a one-slot CPU server (llama-cpp-python, a whisper server): answers
    /// nothing else — `/health`, `/api/tags`, `/api/ps` — while it serves an
    /// inference request (needs `slots`); they are answered when it is done.
    public var deafWhileBusy = false
    /// Serves its queue at `/metrics` under this server's names (`vllm`, `llamacpp`); nil: no `/metrics`.
    public var metrics: String?
    /// Serves Anthropic Messages (`/v1/messages`) as Ollama ≥ 0.14 does; off: 404, as older servers.
    public var anthropic = true
    /// Serves OpenAI Responses (`/v1/responses`) as Ollama ≥ 0.13.3 does; off: 404.
    public var responses = true
    /// Like Ollama, a chat or generate loads its model at the context it asks
    /// (`options.num_ctx`, else the model's own): a different one reloads it
    /// (`load_duration` 400 ms, counted in `/_fake/stats` `reloads`).
    public var contextReloads = false
    /// With `contextReloads`: the first byte takes `firstByteDelay × own context ÷
    /// loaded context` when loaded smaller (a prompt that no longer fits costs).
    public var ttftGrowsAsContextShrinks = false

    public init() {}

    func model(named name: String) -> FakeModel? {
        models.first { $0.name == name || $0.name == name + ":latest" || $0.name + ":latest" == name }
    }
}
