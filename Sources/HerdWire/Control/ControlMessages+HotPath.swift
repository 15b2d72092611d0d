import HerdJSON

// The per-request control messages (ROUTE, ROUTE_OK, ROUTE_ERROR, RETRY,
// CANCEL, RESULT) are coded by hand on the hot path: through `Codable` they
// cost about four times the instructions (callgrind, Benchmarks/router/
// callgrind.sh: 185k → 208k instructions per proxied request) and closed-loop
// throughput dropped 8–17 %. Their `Codable` conformance stays the
// specification: `ControlProtocolTests` holds both forms to the same JSON, the
// same defaults and the same field-naming errors.

extension RouteRequest {
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .int(Int(id))), ("api", .string(api.rawValue)), ("path", .string(path)), ("model", .string(model)),
            ("stream", .bool(stream)), ("fallbacks", .strings(fallbacks)), ("tags", .strings(tags)),
            ("est_tokens", .int(estimatedTokens)),
        ]
        if let numCtx { members.append(("num_ctx", .int(numCtx))) }
        members.append(("client", .string(client)))
        if let maxTokens { members.append(("max_tokens", .int(maxTokens))) }
        if let think { members.append(("think", .bool(think))) }
        // 64-bit hashes travel as decimal strings: JSON numbers are doubles.
        if let session { members.append(("session", .string(session.description))) }
        if let prefix { members.append(("prefix", .string(prefix.description))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteRequest.context)
        self.init(id: try f.id("id"), api: try f.enumeration("api"), path: try f.string("path"), model: try f.string("model"),
                  stream: try f.bool("stream", default: false), fallbacks: try f.strings("fallbacks"), tags: try f.strings("tags"),
                  estimatedTokens: try f.optionalInt("est_tokens") ?? 0, numCtx: try f.optionalInt("num_ctx"),
                  client: try f.optionalString("client") ?? "", maxTokens: try f.optionalInt("max_tokens"),
                  think: try f.optionalBool("think"), session: try f.optionalHash("session"), prefix: try f.optionalHash("prefix"))
    }
}

extension RouteAnswer {
    public var json: JSONValue {
        ["id": .int(Int(id)), "node": .string(node), "upstream": .string(upstream), "backend": .string(backend.rawValue),
         "model": .string(model), "queued_ms": .int(queuedMilliseconds), "reason": .string(reason), "retries": .int(retries),
         "score": .string(score), "strip_num_ctx": .bool(stripNumCtx), "report_start": .bool(reportStart)]
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteAnswer.context)
        self.init(id: try f.id("id"), node: try f.string("node"), upstream: try f.string("upstream"), backend: try f.enumeration("backend"),
                  model: try f.string("model"), queuedMilliseconds: try f.optionalInt("queued_ms") ?? 0,
                  reason: try f.optionalString("reason") ?? "", retries: try f.optionalInt("retries") ?? 0,
                  score: try f.optionalString("score") ?? "", stripNumCtx: try f.optionalBool("strip_num_ctx") ?? false,
                  reportStart: try f.optionalBool("report_start") ?? false)
    }
}

extension RouteRefusal {
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [("id", .int(Int(id))), ("code", .string(code.rawValue)), ("message", .string(message))]
        if let retryAfter { members.append(("retry_after", .int(retryAfter))) }
        members.append(("models", .strings(models)))
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteRefusal.context)
        self.init(id: try f.id("id"), code: try f.enumeration("code"), message: try f.string("message"),
                  retryAfter: try f.optionalInt("retry_after"), models: try f.strings("models"))
    }
}

extension RouteRetry {
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [("id", .int(Int(id))), ("node", .string(node)), ("reason", .string(reason))]
        if let upstreamStatus { members.append(("status", .int(upstreamStatus))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteRetry.context)
        self.init(id: try f.id("id"), node: try f.string("node"), reason: try f.optionalString("reason") ?? "",
                  upstreamStatus: try f.optionalInt("status"))
    }
}

extension RouteCancel {
    public var json: JSONValue { ["id": .int(Int(id))] }

    public init(json: JSONValue) throws(JSONFieldError) {
        self.init(id: try JSONFields(json, context: RouteCancel.context).id("id"))
    }
}

extension RouteStarted {
    public var json: JSONValue {
        ["id": .int(Int(id)), "status": .int(status), "upstream_ttft_ms": .number(upstreamTtftMilliseconds)]
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteStarted.context)
        self.init(id: try f.id("id"), status: try f.int("status"), upstreamTtftMilliseconds: try f.double("upstream_ttft_ms", default: 0))
    }
}

extension RouteResult {
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .int(Int(id))), ("node", .string(node)), ("model", .string(model)), ("outcome", .string(outcome.rawValue)),
            ("status", .int(status)), ("ttft_ms", .number(ttftMilliseconds)), ("duration_ms", .number(durationMilliseconds)),
            ("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)), ("bytes", .int(bytes)),
            ("retries", .int(retries)),
        ]
        if let error { members.append(("error", .string(error))) }
        members.append(("local", .bool(local)))
        if let localReason { members.append(("local_reason", .string(localReason))) }
        if let backendPromptMilliseconds { members.append(("prompt_eval_ms", .number(backendPromptMilliseconds))) }
        if let backendDecodeMilliseconds { members.append(("eval_ms", .number(backendDecodeMilliseconds))) }
        if let backendLoadMilliseconds { members.append(("load_ms", .number(backendLoadMilliseconds))) }
        if let upstreamTtftMilliseconds { members.append(("upstream_ttft_ms", .number(upstreamTtftMilliseconds))) }
        if let upstreamMilliseconds { members.append(("upstream_ms", .number(upstreamMilliseconds))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: RouteResult.context)
        self.init(id: try f.id("id"), node: try f.string("node"), model: try f.string("model"), outcome: try f.enumeration("outcome"),
                  status: try f.int("status"), ttftMilliseconds: try f.double("ttft_ms", default: 0),
                  durationMilliseconds: try f.double("duration_ms", default: 0), promptTokens: try f.optionalInt("prompt_tokens") ?? 0,
                  completionTokens: try f.optionalInt("completion_tokens") ?? 0, bytes: try f.optionalInt("bytes") ?? 0,
                  retries: try f.optionalInt("retries") ?? 0, error: try f.optionalString("error"), local: try f.bool("local", default: false),
                  localReason: try f.optionalString("local_reason"),
                  backendPromptMilliseconds: try f.optionalDouble("prompt_eval_ms"), backendDecodeMilliseconds: try f.optionalDouble("eval_ms"),
                  backendLoadMilliseconds: try f.optionalDouble("load_ms"), upstreamTtftMilliseconds: try f.optionalDouble("upstream_ttft_ms"),
                  upstreamMilliseconds: try f.optionalDouble("upstream_ms"))
    }
}

extension JSONFields {
    /// A 64-bit hash, sent as a decimal string (JSON numbers are doubles).
    func optionalHash(_ key: String) throws(JSONFieldError) -> ContentHash? {
        guard let text = try optionalString(key) else { return nil }
        guard let n = ContentHash(decimal: text) else { throw JSONFieldError("\(context).\(key) must be a decimal string of an unsigned 64-bit integer") }
        return n
    }

    /// A request id: a non-negative integer.
    func id(_ key: String) throws(JSONFieldError) -> UInt64 {
        let n = try int(key)
        guard n >= 0 else { throw JSONFieldError("\(context).\(key) must be an integer from 0 to \(UInt64.max)") }
        return UInt64(n)
    }

    /// A string enum's value, refused with the values allowed.
    func enumeration<T: RawRepresentable & CaseIterable>(_ key: String) throws(JSONFieldError) -> T where T.RawValue == String {
        let raw = try string(key)
        guard let value = T(rawValue: raw) else { throw JSONFieldError.unknown(raw, for: T.self, at: "\(context).\(key)") }
        return value
    }
}
