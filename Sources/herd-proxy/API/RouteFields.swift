import Glibc
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
    /// The request carries images (Ollama `images`, OpenAI `image_url` parts,
    /// Anthropic `image` blocks, Responses `input_image`): only a model that can see may take it.
    var vision = false
    /// A speech, image, embedding or rerank job's size in its kind's unit (`WorkUnits`).
    var workUnits = 0.0
    /// `X-Herd-Node`: the node the client asked for ("" none).
    var node = ""

    static let keys: JSONKeys = ["model", "stream", "fallback_models", "options", "metadata", "user", "max_tokens",
                                    "max_completion_tokens", "think", "system", "keep_alive", "images"]
    /// Positions in `keys` (`JSONValue.Picked` is indexed, not hashed).
    private enum Key {
        static let model = 0, stream = 1, fallbacks = 2, options = 3, metadata = 4, user = 5, maxTokens = 6,
                   maxCompletionTokens = 7, think = 8, system = 9, keepAlive = 10, images = 11
    }
    /// Members hashed or searched, not decoded (positions: messages 0, tools 1, input 2).
    static let spans: JSONKeys = ["messages", "tools", "input"]

    /// Why a body cannot be routed (each a 400 naming the field and its limit).
    struct Invalid: Error, Equatable {
        let message: String
    }

    /// Reads and checks the route fields of `body` for `endpoint`;
    /// `headerFallbacks` and `headerTags` come from `X-Herd-Fallback-Models` /
    /// `X-Herd-Tags`. Every field herd reads has a type, a range and a length
    /// (`RequestLimits`, documented in `RequestLimits.md`); outside them the
    /// request is refused here, before anything reaches control.
    static func read(_ body: [UInt8], endpoint: Endpoint, headerFallbacks: [String], headerTags: [String],
                     headerSession: String? = nil, headerNode: String? = nil) throws(Invalid) -> RouteFields {
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
        try checkModelName(model, field: "model")
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
        guard fallbacks.count <= RequestLimits.maxFallbacks else {
            throw Invalid(message: "\"fallback_models\" (with X-Herd-Fallback-Models): at most \(RequestLimits.maxFallbacks) models, got \(fallbacks.count)")
        }
        for name in fallbacks { try checkModelName(name, field: "fallback_models") }
        var tags = headerTags
        if let metadata = fields[Key.metadata], metadata != .null {
            guard metadata.objectValue != nil else { throw Invalid(message: "\"metadata\" must be an object") }
            if let value = metadata["tags"], value != .null {
                guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                    throw Invalid(message: "\"metadata.tags\" must be an array of strings")
                }
                tags += items.compactMap(\.stringValue)
            }
        }
        var user: String?
        if let value = fields[Key.user], value != .null {
            guard let text = value.stringValue else { throw Invalid(message: "\"user\" must be a string") }
            guard RequestLimits.userBytes.contains(text.utf8.count) else {
                throw Invalid(message: "\"user\" is \(text.utf8.count) bytes; at most \(RequestLimits.userBytes.upperBound)")
            }
            user = text
            if !text.isEmpty { tags.append("user:" + text) }
        }
        guard tags.count <= RequestLimits.maxTags else {
            throw Invalid(message: "tags (metadata.tags, X-Herd-Tags and user): at most \(RequestLimits.maxTags), got \(tags.count)")
        }
        for tag in tags where !RequestLimits.tagBytes.contains(tag.utf8.count) {
            throw Invalid(message: "each tag must be \(RequestLimits.tagBytes.lowerBound)–\(RequestLimits.tagBytes.upperBound) bytes; one is \(tag.utf8.count)")
        }
        if let headerSession, !RequestLimits.sessionBytes.contains(headerSession.utf8.count) {
            throw Invalid(message: "X-Herd-Session is \(headerSession.utf8.count) bytes; at most \(RequestLimits.sessionBytes.upperBound)")
        }
        if let headerNode, !RequestLimits.nodeBytes.contains(headerNode.utf8.count) || headerNode.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            throw Invalid(message: "X-Herd-Node: a node id of at most \(RequestLimits.nodeBytes.upperBound) bytes without control characters")
        }
        let options = fields[Key.options]
        if let options, options != .null, options.objectValue == nil { throw Invalid(message: "\"options\" must be an object") }
        let numCtx = try integer(options?["num_ctx"], field: "options.num_ctx", in: RequestLimits.numCtx)
        var result = RouteFields(model: model, stream: stream, fallbacks: fallbacks, tags: tags, numCtx: numCtx,
                                 hasFallbackField: fields[Key.fallbacks] != nil)
        let numPredict = try integer(options?["num_predict"], field: "options.num_predict", in: RequestLimits.numPredict)
        let maxCompletion = try integer(fields[Key.maxCompletionTokens], field: "max_completion_tokens", in: RequestLimits.maxTokens)
        let maxTokens = try integer(fields[Key.maxTokens], field: "max_tokens", in: RequestLimits.maxTokens)
        result.maxTokens = (numPredict ?? maxCompletion ?? maxTokens).flatMap { $0 > 0 ? $0 : nil }
        result.think = try think(fields[Key.think])
        try checkKeepAlive(fields[Key.keepAlive])
        if let images = fields[Key.images], images != .null {
            guard let items = images.arrayValue else { throw Invalid(message: "\"images\" must be an array") }
            guard items.count <= RequestLimits.maxImages else {
                throw Invalid(message: "\"images\": at most \(RequestLimits.maxImages), got \(items.count)")
            }
            result.vision = !items.isEmpty
        }
        if !result.vision {
            result.vision = carriesImages(body, fields.spans[0]) || carriesImages(body, fields.spans[2])
        }
        result.node = headerNode ?? ""
        (result.session, result.prefix) = conversation(body, messages: fields.spans[0], tools: fields.spans[1],
                                                      system: fields[Key.system]?.stringValue, user: user, header: headerSession)
        return result
    }

    /// Whether a messages (or Responses `input`) array carries an image. The
    /// bytes are searched for `image` first; only a body that has the word is
    /// parsed (a plain chat pays one scan).
    static func carriesImages(_ body: [UInt8], _ range: Range<Int>?) -> Bool {
        guard let range, range.count >= 7 else { return false }
        // memchr for each `i` (vectorised in libc), then the rest of the word.
        let found = body.withUnsafeBytes { raw -> Bool in
            guard let base = raw.baseAddress else { return false }
            var at = base + range.lowerBound
            let end = base + range.upperBound
            while end - at >= 5, let found = memchr(at, Int32(UInt8(ascii: "i")), end - at) {
                let hit = UnsafeRawPointer(found)
                if end - hit >= 5, memcmp(hit, "image", 5) == 0 { return true }
                at = hit + 1
            }
            return false
        }
        guard found, let items = (try? JSONValue.parse(Array(body[range])))?.arrayValue else { return false }
        let imageParts: Set<String> = ["image_url", "image", "input_image"]
        return items.contains { message in
            if let images = message["images"]?.arrayValue, !images.isEmpty { return true }
            if imageParts.contains(message["type"]?.stringValue ?? "") { return true }
            return message["content"]?.arrayValue?.contains { imageParts.contains($0["type"]?.stringValue ?? "") } ?? false
        }
    }

    /// A model name within `RequestLimits.modelBytes`, without control characters.
    static func checkModelName(_ name: String, field: String) throws(Invalid) {
        let count = name.utf8.count
        guard RequestLimits.modelBytes.contains(count) else {
            throw Invalid(message: "\"\(field)\": a model name is \(RequestLimits.modelBytes.lowerBound)–\(RequestLimits.modelBytes.upperBound) bytes; got \(count)")
        }
        guard RequestLimits.isModelName(name) else { throw Invalid(message: "\"\(field)\": a model name has no control characters") }
    }

    /// An optional integer field within `range` (`null` and absent: none).
    static func integer(_ value: JSONValue?, field: String, in range: ClosedRange<Int>) throws(Invalid) -> Int? {
        guard let value, value != .null else { return nil }
        guard let n = value.intValue, range.contains(n) else {
            throw Invalid(message: "\"\(field)\" must be an integer from \(range.lowerBound) to \(range.upperBound)\(got(value))")
        }
        return n
    }

    /// `think`: a boolean, or a level (`low`, `medium`, `high`: thinking on).
    static func think(_ value: JSONValue?) throws(Invalid) -> Bool? {
        guard let value, value != .null else { return nil }
        if let flag = value.boolValue { return flag }
        if let level = value.stringValue, RequestLimits.thinkLevels.contains(level) { return true }
        throw Invalid(message: "\"think\" must be true, false or one of \(RequestLimits.thinkLevels.joined(separator: ", "))")
    }

    /// `keep_alive`: seconds as a number, or a duration string (`"5m"`, `"-1"`, `"1h30m"`).
    static func checkKeepAlive(_ value: JSONValue?) throws(Invalid) {
        guard let value, value != .null else { return }
        if let seconds = value.doubleValue {
            guard RequestLimits.keepAliveSeconds.contains(seconds) else {
                throw Invalid(message: "\"keep_alive\" in seconds must be from -1e10 to 1e10\(got(value))")
            }
            return
        }
        guard let text = value.stringValue else { throw Invalid(message: "\"keep_alive\" must be a number of seconds or a duration like \"5m\"") }
        let durationBytes = Array("0123456789.-+hmsuµn".utf8)
        guard RequestLimits.keepAliveBytes.contains(text.utf8.count), text.utf8.allSatisfy({ durationBytes.contains($0) }) else {
            throw Invalid(message: "\"keep_alive\" must be a duration like \"5m\" or \"-1\" (at most \(RequestLimits.keepAliveBytes.upperBound) bytes)")
        }
    }

    /// ` (got …)` for a number; nothing for other values (a client's string is not echoed).
    private static func got(_ value: JSONValue) -> String {
        guard let n = value.doubleValue else { return "" }
        var out: [UInt8] = []
        JSONValue.number(n).write(to: &out)
        return " (got \(String(decoding: out, as: UTF8.self)))"
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

    /// Reads the route fields of a `multipart/form-data` upload: the small
    /// fields `model` and `stream` wherever they are in the form (before or
    /// after the file). The form is scanned, not copied: each part's headers
    /// (at most 8 KiB), then a search for the next boundary; at most 256 parts.
    ///
    /// `partial`: `body` is the start of a form still arriving. The fields are
    /// returned once a whole `model` part has been read; nil while the form
    /// may still bring it (the caller bounds how long it waits).
    static func readForm(_ body: [UInt8], contentType: String?, headerFallbacks: [String], headerTags: [String],
                         partial: Bool = false, modelRequired: Bool = true) throws(Invalid) -> RouteFields? {
        guard let contentType, let boundary = formBoundary(contentType) else {
            throw Invalid(message: "expected a multipart/form-data body with a boundary (Content-Type: multipart/form-data; boundary=…)")
        }
        let delimiter = Array("--".utf8) + boundary
        let scanned = body.withUnsafeBytes { scanForm($0, delimiter: delimiter, partial: partial) }
        guard case let .success((model, stream, complete)) = scanned else {
            if case let .failure(error) = scanned { throw error }
            throw Invalid(message: "the form cannot be read")
        }
        if partial, !complete, model == nil { return nil }
        let named = model ?? ""
        if modelRequired || !named.isEmpty {
            guard !named.isEmpty else { throw Invalid(message: "the form has no \"model\" field") }
            try checkModelName(named, field: "model")
        }
        for name in headerFallbacks { try checkModelName(name, field: "X-Herd-Fallback-Models") }
        guard headerFallbacks.count <= RequestLimits.maxFallbacks, headerTags.count <= RequestLimits.maxTags else {
            throw Invalid(message: "at most \(RequestLimits.maxFallbacks) fallbacks and \(RequestLimits.maxTags) tags")
        }
        for tag in headerTags where !RequestLimits.tagBytes.contains(tag.utf8.count) {
            throw Invalid(message: "each tag must be \(RequestLimits.tagBytes.lowerBound)–\(RequestLimits.tagBytes.upperBound) bytes; one is \(tag.utf8.count)")
        }
        return RouteFields(model: named, stream: stream, fallbacks: headerFallbacks, tags: headerTags, numCtx: nil, hasFallbackField: false)
    }

    /// Ollama Herd's `/api/transcribe` form as OpenAI's transcription form: the
    /// part named `audio` renamed `file`, and a `model` part first when the
    /// form has none. Nil when the form has no `audio` part.
    static func transcriptionForm(fromLegacy body: [UInt8], contentType: String?, model: String) -> [UInt8]? {
        guard let contentType, let boundary = formBoundary(contentType) else { return nil }
        let delimiter = Array("--".utf8) + boundary
        var audioHeaders: Range<Int>?
        var hasModel = false
        let scanned = body.withUnsafeBytes { raw in
            scanForm(raw, delimiter: delimiter) { name, headers in
                if name == "audio", audioHeaders == nil { audioHeaders = headers }
                if name == "model" { hasModel = true }
            }
        }
        guard case .success = scanned, let audioHeaders else { return nil }
        let headers = String(decoding: body[audioHeaders], as: UTF8.self)
        let renamed = headers.replacingFirst(#"name="audio""#, with: #"name="file""#) ?? headers.replacingFirst("name=audio", with: "name=file")
        guard let renamed else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(body.count + 128)
        if !hasModel {
            out += delimiter
            out += Array("\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\(model)\r\n".utf8)
        }
        out += body[..<audioHeaders.lowerBound]
        out += Array(renamed.utf8)
        out += body[audioHeaders.upperBound...]
        return out
    }

    /// The `model` and `stream` fields of a form whose parts begin with
    /// `delimiter`. `partial`: the form may be cut short; `complete` says
    /// whether it was read to its closing boundary.
    static func scanForm(_ raw: UnsafeRawBufferPointer, delimiter: [UInt8], partial: Bool = false,
                         visit: ((Substring?, Range<Int>) -> Void)? = nil) -> Result<(model: String?, stream: Bool, complete: Bool), Invalid> {
        var model: String?
        var stream = false
        guard var at = find(delimiter, in: raw, from: 0) else {
            if partial { return .success((nil, false, false)) }
            return .failure(Invalid(message: "the form has no part (no boundary line)"))
        }
        let crlf2: [UInt8] = [13, 10, 13, 10]
        let next = [13, 10] + delimiter
        var parts = 0
        while true {
            at += delimiter.count
            // "--" after a boundary ends the form.
            if at + 2 <= raw.count, raw[at] == 0x2D, raw[at + 1] == 0x2D { break }
            parts += 1
            guard parts <= 256 else { return .failure(Invalid(message: "the form has more than 256 parts")) }
            if partial, at + 2 > raw.count { return .success((model, stream, false)) }
            guard let headersEnd = find(crlf2, in: raw, from: at), headersEnd - at <= 8192 else {
                if partial, raw.count - at <= 8192 { return .success((model, stream, false)) }
                return .failure(Invalid(message: "a form part's headers are missing their end or over 8 KiB"))
            }
            let headers = String(decoding: UnsafeRawBufferPointer(rebasing: raw[at..<headersEnd]), as: UTF8.self)
            let valueStart = headersEnd + 4
            let name = formFieldName(headers)
            visit?(name, at..<headersEnd)
            guard let end = find(next, in: raw, from: valueStart) else {
                if partial { return .success((model, stream, false)) }
                return .failure(Invalid(message: "the form ends without its closing boundary"))
            }
            switch name {
            case "model":
                guard end - valueStart <= RequestLimits.modelBytes.upperBound else {
                    return .failure(Invalid(message: "\"model\" is \(end - valueStart) bytes; at most \(RequestLimits.modelBytes.upperBound)"))
                }
                model = String(decoding: UnsafeRawBufferPointer(rebasing: raw[valueStart..<end]), as: UTF8.self)
            case "stream":
                stream = String(decoding: UnsafeRawBufferPointer(rebasing: raw[valueStart..<min(end, valueStart + 8)]), as: UTF8.self)
                    .trimmingSpaces.lowercased() == "true"
            default: break
            }
            at = end + 2
        }
        return .success((model, stream, true))
    }

    /// Where `needle` first occurs in `raw` at or after `start`: memchr for its
    /// first byte, then a compare (linear in the form).
    static func find(_ needle: [UInt8], in raw: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = raw.baseAddress, !needle.isEmpty, start >= 0 else { return nil }
        var at = start
        while at + needle.count <= raw.count {
            guard let hit = memchr(base + at, Int32(needle[0]), raw.count - needle.count + 1 - at) else { return nil }
            let i = base.distance(to: UnsafeRawPointer(hit))
            let same = needle.withUnsafeBytes { n in memcmp(base + i, n.baseAddress!, n.count) == 0 }
            if same { return i }
            at = i + 1
        }
        return nil
    }

    /// The `boundary` parameter of a `multipart/form-data` Content-Type (1–70 bytes, RFC 2046), quoted or not.
    static func formBoundary(_ contentType: String) -> [UInt8]? {
        let parts = contentType.split(separator: ";").map { $0.trimmingSpaces }
        guard let first = parts.first, first.lowercased() == "multipart/form-data" else { return nil }
        for part in parts.dropFirst() {
            guard let eq = part.firstIndex(of: "="), part[..<eq].trimmingSpaces.lowercased() == "boundary" else { continue }
            var value = part[part.index(after: eq)...].trimmingSpaces
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
            guard (1...70).contains(value.utf8.count) else { return nil }
            return Array(value.utf8)
        }
        return nil
    }

    /// The `name` of a form part, from its `Content-Disposition: form-data; name="…"` header.
    static func formFieldName(_ headers: String) -> Substring? {
        for line in headers.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":"), line[..<colon].trimmingSpaces.lowercased() == "content-disposition" else { continue }
            for parameter in line[line.index(after: colon)...].split(separator: ";") {
                let p = parameter.trimmingSpaces
                guard let eq = p.firstIndex(of: "="), p[..<eq].trimmingSpaces.lowercased() == "name" else { continue }
                var value = p[p.index(after: eq)...].trimmingSpaces
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
                return value
            }
        }
        return nil
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
    /// herd's own request headers, found in one pass over the head's kinds
    /// (most requests carry none of them).
    struct HerdHeaders {
        var fallbacks: String?
        var tags: String?
        var session: String?
        var node: String?
    }

    static func herdHeaders(_ headers: HTTPHeaders) -> HerdHeaders {
        var found = HerdHeaders()
        for (i, kind) in headers.kinds.enumerated() {
            switch kind {
            case .xHerdFallbackModels?: if found.fallbacks == nil { found.fallbacks = headers.fields[i].value }
            case .xHerdTags?: if found.tags == nil { found.tags = headers.fields[i].value }
            case .xHerdSession?: if found.session == nil { found.session = headers.fields[i].value }
            case .xHerdNode?: if found.node == nil { found.node = headers.fields[i].value }
            default: continue
            }
        }
        return found
    }

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
    /// OpenAI Responses, stateless (passed through).
    case openAIResponses = "/v1/responses"
    /// Anthropic Messages and its token count (passed through; a backend
    /// without `count_tokens` gets herd's estimate).
    case anthropicMessages = "/v1/messages"
    case anthropicCountTokens = "/v1/messages/count_tokens"
    /// Rerank, by model, under the three names servers use (llama.cpp, vLLM, Jina/Cohere style).
    case rerank = "/v1/rerank"
    case rerankBare = "/rerank"
    case reranking = "/v1/reranking"
    /// Speech and images, on OpenAI's paths (to backends of kind stt, tts, image,
    /// or an OpenAI-compatible server with the model). Transcriptions,
    /// translations and image edits are multipart forms.
    case transcriptions = "/v1/audio/transcriptions"
    case translations = "/v1/audio/translations"
    case speech = "/v1/audio/speech"
    case imageGenerations = "/v1/images/generations"
    case imageEdits = "/v1/images/edits"
    /// Ollama Herd's own paths, so that its users' clients work unchanged: a
    /// form with the audio in `audio` (`model` optional: the fleet's
    /// speech-to-text model), sent on as `/v1/audio/transcriptions`; and
    /// `{"model","prompt","width","height"}` answered with the PNG's bytes,
    /// sent on as `/v1/images/generations`.
    case legacyTranscribe = "/api/transcribe"
    case legacyGenerateImage = "/api/generate-image"

    /// The endpoint at `path`: by length, then bytes (a string switch over
    /// this many cases becomes a hashed lookup, ~500 instructions a request).
    static func at(_ path: Substring) -> Endpoint? {
        var path = path
        return path.withUTF8 { bytes -> Endpoint? in
            guard bytes.count < byLength.count, let base = bytes.baseAddress else { return nil }
            for (candidate, endpoint) in byLength[bytes.count]
                where candidate.withUnsafeBufferPointer({ memcmp($0.baseAddress!, base, bytes.count) == 0 }) {
                return endpoint
            }
            return nil
        }
    }

    private static let byLength: [[([UInt8], Endpoint)]] = {
        var table = [[([UInt8], Endpoint)]](repeating: [], count: 1 + Endpoint.allCases.map(\.rawValue.utf8.count).max()!)
        for endpoint in Endpoint.allCases { table[endpoint.rawValue.utf8.count].append((Array(endpoint.rawValue.utf8), endpoint)) }
        return table
    }()

    var api: ClientAPI {
        switch self {
        case .chat, .generate, .embed, .embeddings, .show, .legacyTranscribe, .legacyGenerateImage: .ollama
        case .anthropicMessages, .anthropicCountTokens: .anthropic
        case .openAIChat, .openAICompletions, .openAIEmbeddings, .openAIResponses, .rerank, .rerankBare, .reranking,
             .transcriptions, .translations, .speech, .imageGenerations, .imageEdits: .openai
        }
    }

    /// The body is a `multipart/form-data` upload, not JSON.
    var isForm: Bool {
        switch self {
        case .transcriptions, .translations, .imageEdits, .legacyTranscribe: true
        default: false
        }
    }

    /// The path the request goes to on its backend (the legacy paths are sent on as OpenAI's).
    var upstreamPath: String? {
        switch self {
        case .legacyTranscribe: "/v1/audio/transcriptions"
        case .legacyGenerateImage: "/v1/images/generations"
        default: nil
        }
    }

    /// The body is text the model reads (its size estimates prompt tokens); not
    /// for audio, images or the text a voice reads.
    var bodyIsPrompt: Bool {
        switch self {
        case .transcriptions, .translations, .imageEdits, .legacyTranscribe, .speech, .imageGenerations, .legacyGenerateImage: false
        default: true
        }
    }

    /// Ollama streams chat and generate unless told not to; OpenAI does not.
    var streamsByDefault: Bool { self == .chat || self == .generate }
}

extension String {
    /// `self` with the first occurrence of `target` replaced; nil when it has none.
    func replacingFirst(_ target: String, with replacement: String) -> String? {
        let bytes = Array(utf8), needle = Array(target.utf8)
        guard let at = bytes.withUnsafeBytes({ RouteFields.find(needle, in: $0, from: 0) }) else { return nil }
        return String(decoding: bytes[..<at] + Array(replacement.utf8) + bytes[(at + needle.count)...], as: UTF8.self)
    }
}
