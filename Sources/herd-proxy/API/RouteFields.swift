import HerdHTTP
import HerdJSON
import HerdWire

/// What the proxy reads from a request body to route it: the top-level fields
/// only (the rest — messages, images — is validated and skipped, not decoded).
struct RouteFields: Equatable {
    var model: String
    var stream: Bool
    var fallbacks: [String]
    var tags: [String]
    var numCtx: Int?
    /// Whether the body names fallbacks that must be removed before the backend sees it.
    var hasFallbackField: Bool
    /// The client's output limit (`options.num_predict`, `max_tokens`, `max_completion_tokens`).
    var maxTokens: Int?
    /// The client's `think` flag.
    var think: Bool?
    /// Which conversation this is, and which system prompt + tools it starts
    /// with: where a KV cache can serve it (`ContentHash`es).
    var session: ContentHash?
    var prefix: ContentHash?

    static let keys: JSONKeys = ["model", "stream", "fallback_models", "options", "metadata", "user", "max_tokens",
                                    "max_completion_tokens", "think", "system"]
    /// Positions in `keys` (`JSONValue.Picked` is indexed, not hashed).
    private enum Key {
        static let model = 0, stream = 1, fallbacks = 2, options = 3, metadata = 4, user = 5, maxTokens = 6,
                   maxCompletionTokens = 7, think = 8, system = 9
    }
    /// Members hashed, not decoded (positions: messages 0, tools 1).
    static let spans: JSONKeys = ["messages", "tools"]

    /// Why a body cannot be routed (each a 400).
    struct Invalid: Error, Equatable {
        let message: String
    }

    /// Reads the route fields of `body` for `endpoint`; `headerFallbacks` and
    /// `headerTags` come from `X-Herd-Fallback-Models` / `X-Herd-Tags`.
    static func read(_ body: [UInt8], endpoint: Endpoint, headerFallbacks: [String], headerTags: [String],
                     headerSession: String? = nil) throws(Invalid) -> RouteFields {
        if body.isEmpty { throw Invalid(message: "the request body is empty: expected a JSON object with a \"model\"") }
        let fields: JSONValue.Picked
        do {
            fields = try body.withUnsafeBytes { raw throws(JSONParseError) in
                try JSONValue.pickTopLevel(raw, keys: keys, spans: spans)
            }
        } catch {
            throw Invalid(message: "invalid JSON body: \(error)")
        }
        guard let modelValue = fields[Key.model] else { throw Invalid(message: "\"model\" is required") }
        guard let model = modelValue.stringValue, !model.isEmpty else { throw Invalid(message: "\"model\" must be a non-empty string") }
        var stream = endpoint.streamsByDefault
        if let value = fields[Key.stream], value != .null {
            guard let flag = value.boolValue else { throw Invalid(message: "\"stream\" must be true or false") }
            stream = flag
        }
        var fallbacks = headerFallbacks
        if let value = fields[Key.fallbacks], value != .null {
            guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw Invalid(message: "\"fallback_models\" must be an array of model names")
            }
            fallbacks = items.compactMap(\.stringValue) + fallbacks
        }
        var tags = headerTags
        if let items = fields[Key.metadata]?["tags"]?.arrayValue { tags += items.compactMap(\.stringValue) }
        let user = fields[Key.user]?.stringValue
        if let user { tags.append("user:" + user) }
        let options = fields[Key.options]
        let numCtx = options?["num_ctx"]?.intValue
        var result = RouteFields(model: model, stream: stream, fallbacks: fallbacks, tags: tags, numCtx: numCtx,
                                 hasFallbackField: fields[Key.fallbacks] != nil)
        result.maxTokens = (options?["num_predict"] ?? fields[Key.maxCompletionTokens] ?? fields[Key.maxTokens])?.intValue
            .flatMap { $0 > 0 ? $0 : nil }
        result.think = fields[Key.think]?.boolValue
        (result.session, result.prefix) = conversation(body, messages: fields.spans[0], tools: fields.spans[1],
                                                      system: fields[Key.system]?.stringValue, user: user, header: headerSession)
        return result
    }

    /// The conversation's hashes. Session: `X-Herd-Session`, else OpenAI's
    /// `user`, else its first two messages (system + first question: the same
    /// on every turn of one conversation). Prefix: its system prompt (the first
    /// message when its role is `system`, or `/api/generate`'s `system`) and tools.
    static func conversation(_ body: [UInt8], messages: Range<Int>?, tools: Range<Int>?, system: String?, user: String?,
                             header: String?) -> (session: ContentHash?, prefix: ContentHash?) {
        var session: ContentHash?
        if let header, !header.isEmpty {
            session = ContentHash(of: Array("session:".utf8) + Array(header.utf8))
        } else if let user, !user.isEmpty {
            session = ContentHash(of: Array("user:".utf8) + Array(user.utf8))
        }
        var prefixParts: [Range<Int>] = []
        if let messages {
            let first = body.withUnsafeBytes { JSONValue.arrayElementSpans($0, in: messages, limit: 2) }
            let startsWithSystem = first.first.map { isSystemMessage(body, $0) } ?? false
            // Up to the first question: the system prompt (if any) and the first user message.
            let opening = startsWithSystem ? first : Array(first.prefix(1))
            if session == nil, let start = opening.first?.lowerBound, let end = opening.last?.upperBound {
                session = ContentHash(of: body[start..<end])
            }
            if startsWithSystem { prefixParts.append(first[0]) }
        }
        if let tools { prefixParts.append(tools) }
        if prefixParts.isEmpty, system == nil { return (session, nil) }
        var prefix = ContentHash(of: (system ?? "").utf8)
        for part in prefixParts { prefix = ContentHash(of: body[part], seed: prefix) }
        return (session, prefix)
    }

    /// Whether a message object's `role` is `system`: a scan of its bytes for
    /// the key `"role"` (an unescaped quote pair can only be a key or a whole
    /// string value) followed by `:` and `"system"`.
    static func isSystemMessage(_ body: [UInt8], _ range: Range<Int>) -> Bool {
        let role = Array(#""role""#.utf8), system = Array(#""system""#.utf8)
        var i = range.lowerBound
        while i + role.count <= range.upperBound {
            if body[i] == role[0], body[i..<i + role.count].elementsEqual(role) {
                var j = i + role.count
                while j < range.upperBound, body[j] == 0x20 || body[j] == 0x09 || body[j] == 0x0A || body[j] == 0x0D { j += 1 }
                if j < range.upperBound, body[j] == UInt8(ascii: ":") {
                    j += 1
                    while j < range.upperBound, body[j] == 0x20 || body[j] == 0x09 || body[j] == 0x0A || body[j] == 0x0D { j += 1 }
                    return j + system.count <= range.upperBound && body[j..<j + system.count].elementsEqual(system)
                }
            }
            i += 1
        }
        return false
    }

    /// Splits a comma-separated header value.
    static func list(_ header: String?) -> [String] {
        guard let header else { return [] }
        return header.split(separator: ",").map { String($0.trimmingSpaces) }.filter { !$0.isEmpty }
    }
}

/// The inference endpoints the proxy routes.
enum Endpoint: String, CaseIterable {
    case chat = "/api/chat"
    case generate = "/api/generate"
    case embed = "/api/embed"
    case embeddings = "/api/embeddings"
    case show = "/api/show"
    case openAIChat = "/v1/chat/completions"
    case openAICompletions = "/v1/completions"
    case openAIEmbeddings = "/v1/embeddings"

    var api: ClientAPI { rawValue.hasPrefix("/v1/") ? .openai : .ollama }

    /// Ollama streams chat and generate unless told not to; OpenAI does not.
    var streamsByDefault: Bool { self == .chat || self == .generate }
}
