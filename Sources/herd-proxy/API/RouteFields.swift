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
    /// Members hashed, not decoded.
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
        let fields: [String: JSONValue]
        var spanRanges: [String: Range<Int>] = [:]
        do {
            fields = try body.withUnsafeBytes { raw throws(JSONParseError) in
                try JSONValue.parseTopLevel(raw, keys: keys, spans: spans, spanRanges: &spanRanges)
            }
        } catch {
            throw Invalid(message: "invalid JSON body: \(error)")
        }
        guard let modelValue = fields["model"] else { throw Invalid(message: "\"model\" is required") }
        guard let model = modelValue.stringValue, !model.isEmpty else { throw Invalid(message: "\"model\" must be a non-empty string") }
        var stream = endpoint.streamsByDefault
        if let value = fields["stream"], value != .null {
            guard let flag = value.boolValue else { throw Invalid(message: "\"stream\" must be true or false") }
            stream = flag
        }
        var fallbacks = headerFallbacks
        if let value = fields["fallback_models"], value != .null {
            guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw Invalid(message: "\"fallback_models\" must be an array of model names")
            }
            fallbacks = items.compactMap(\.stringValue) + fallbacks
        }
        var tags = headerTags
        if let items = fields["metadata"]?["tags"]?.arrayValue { tags += items.compactMap(\.stringValue) }
        if let user = fields["user"]?.stringValue { tags.append("user:" + user) }
        let numCtx = fields["options"]?["num_ctx"]?.intValue
        var result = RouteFields(model: model, stream: stream, fallbacks: fallbacks, tags: tags, numCtx: numCtx,
                                 hasFallbackField: fields["fallback_models"] != nil)
        result.maxTokens = (fields["options"]?["num_predict"] ?? fields["max_completion_tokens"] ?? fields["max_tokens"])?.intValue
            .flatMap { $0 > 0 ? $0 : nil }
        result.think = fields["think"]?.boolValue
        (result.session, result.prefix) = conversation(body, spanRanges, system: fields["system"]?.stringValue,
                                                      user: fields["user"]?.stringValue, header: headerSession)
        return result
    }

    /// The conversation's hashes. Session: `X-Herd-Session`, else OpenAI's
    /// `user`, else its first two messages (system + first question: the same
    /// on every turn of one conversation). Prefix: its system prompt (the first
    /// message when its role is `system`, or `/api/generate`'s `system`) and tools.
    static func conversation(_ body: [UInt8], _ spans: [String: Range<Int>], system: String?, user: String?,
                             header: String?) -> (session: ContentHash?, prefix: ContentHash?) {
        var session: ContentHash?
        if let header, !header.isEmpty {
            session = ContentHash(of: Array("session:".utf8) + Array(header.utf8))
        } else if let user, !user.isEmpty {
            session = ContentHash(of: Array("user:".utf8) + Array(user.utf8))
        }
        var prefixParts: [Range<Int>] = []
        if let messages = spans["messages"] {
            let first = body.withUnsafeBytes { JSONValue.arrayElementSpans($0, in: messages, limit: 2) }
            let startsWithSystem = first.first.map { isSystemMessage(body, $0) } ?? false
            // Up to the first question: the system prompt (if any) and the first user message.
            let opening = startsWithSystem ? first : Array(first.prefix(1))
            if session == nil, let start = opening.first?.lowerBound, let end = opening.last?.upperBound {
                session = ContentHash(of: body[start..<end])
            }
            if startsWithSystem { prefixParts.append(first[0]) }
        }
        if let tools = spans["tools"] { prefixParts.append(tools) }
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
