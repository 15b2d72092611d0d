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

    static let keys: Set<String> = ["model", "stream", "fallback_models", "options", "metadata", "user"]

    /// Why a body cannot be routed (each a 400).
    struct Invalid: Error, Equatable {
        let message: String
    }

    /// Reads the route fields of `body` for `endpoint`; `headerFallbacks` and
    /// `headerTags` come from `X-Herd-Fallback-Models` / `X-Herd-Tags`.
    static func read(_ body: [UInt8], endpoint: Endpoint, headerFallbacks: [String], headerTags: [String]) throws(Invalid) -> RouteFields {
        if body.isEmpty { throw Invalid(message: "the request body is empty: expected a JSON object with a \"model\"") }
        let fields: [String: JSONValue]
        do {
            fields = try body.withUnsafeBytes { raw throws(JSONParseError) in try JSONValue.parseTopLevel(raw, keys: keys) }
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
        return RouteFields(model: model, stream: stream, fallbacks: fallbacks, tags: tags, numCtx: numCtx,
                           hasFallbackField: fields["fallback_models"] != nil)
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
