/// The range of every field herd reads from a client's request: the proxy's
/// validator refuses a request outside them (400 naming the field and the
/// limit), and control's reader refuses a ROUTE outside them, so the encoder
/// can never build a frame the reader refuses. The table in
/// `Sources/herd-proxy/API/RequestLimits.md` is this type, in words.
public enum RequestLimits {
    /// `model` and each fallback: bytes of UTF-8, no control characters.
    public static let modelBytes = 1...256
    /// `fallback_models` and `X-Herd-Fallback-Models` together.
    public static let maxFallbacks = 8
    /// `metadata.tags`, `X-Herd-Tags` and the `user:` tag together.
    public static let maxTags = 16
    /// Each tag (the `user:` tag included), bytes.
    public static let tagBytes = 1...256
    /// `user` (OpenAI), bytes; it becomes the tag `user:<value>`.
    public static let userBytes = 0...251
    /// `X-Herd-Session`, bytes.
    public static let sessionBytes = 0...256
    /// `options.num_ctx`, tokens.
    public static let numCtx = 1...16_777_216
    /// `options.num_predict` (Ollama: −1 no limit, −2 fill the context).
    public static let numPredict = -2...16_777_216
    /// `max_tokens`, `max_completion_tokens`.
    public static let maxTokens = 0...16_777_216
    /// `keep_alive` as a number of seconds (negative: keep loaded).
    public static let keepAliveSeconds = -1e10...1e10
    /// `keep_alive` as a duration string (`"5m"`, `"-1"`, `"1h30m"`), bytes.
    public static let keepAliveBytes = 1...32
    /// `images` of `/api/generate`.
    public static let maxImages = 64
    /// `think`: a boolean, or one of these levels.
    public static let thinkLevels = ["low", "medium", "high"]
    /// The client's identity as the proxy reports it (`c:<name>`, `c#<hash>`, `key:<hash>`, an address), bytes.
    public static let clientBytes = 0...128
    /// The request path on the wire, bytes.
    public static let pathBytes = 1...128
    /// `X-Herd-Node` on an inference request (a node id), bytes; empty: none.
    public static let nodeBytes = 0...256
    /// Estimated prompt tokens (body bytes / 4 of a body at most 1 GiB).
    public static let estimatedTokens = 0...(1 << 28)
    /// A job's size in its kind's unit (hours of audio, a book to speak, a batch of inputs).
    public static let maxWorkUnits = 10_000_000.0

    /// Whether `name` may be a model name: 1–256 bytes, no control characters.
    public static func isModelName(_ name: String) -> Bool {
        let count = name.utf8.count
        return modelBytes.contains(count) && !name.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }

    /// Whether a ROUTE's fields are within these limits (control's reader).
    /// Client key ids (SQLite row ids, 1…; 0: no key).
    public static let maxKeyID = Int(Int32.max)

    public static func check(_ r: RouteRequest) -> String? {
        if !isModelName(r.model) { return "model must be 1–\(modelBytes.upperBound) bytes without control characters" }
        if r.fallbacks.count > maxFallbacks || !r.fallbacks.allSatisfy(isModelName) { return "fallbacks: at most \(maxFallbacks) model names" }
        if r.tags.count > maxTags || !r.tags.allSatisfy({ tagBytes.contains($0.utf8.count) }) {
            return "tags: at most \(maxTags), each 1–\(tagBytes.upperBound) bytes"
        }
        if let n = r.numCtx, !numCtx.contains(n) { return "num_ctx must be \(numCtx.lowerBound)–\(numCtx.upperBound)" }
        if let n = r.maxTokens, !(1...maxTokens.upperBound).contains(n) { return "max_tokens must be 1–\(maxTokens.upperBound)" }
        if !estimatedTokens.contains(r.estimatedTokens) { return "est_tokens out of range" }
        if !(r.workUnits >= 0 && r.workUnits <= maxWorkUnits) { return "work_units must be 0–10,000,000" }
        if !(0...maxKeyID).contains(r.key) { return "key must be 0–\(maxKeyID)" }
        if !clientBytes.contains(r.client.utf8.count) { return "client: at most \(clientBytes.upperBound) bytes" }
        if !pathBytes.contains(r.path.utf8.count) { return "path: 1–\(pathBytes.upperBound) bytes" }
        return nil
    }
}
