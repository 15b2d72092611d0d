import HerdBounds

/// The range of every number a RESULT carries. Most come from a backend's
/// answer (`eval_count`, `prompt_eval_count`, durations in ns up to 9e15,
/// llama.cpp `timings`): control clamps them when it reads the frame, so no
/// sum, mean or histogram downstream can overflow or learn from NaN.
public enum ResultLimits {
    /// Tokens of one request (prompt or completion).
    public static let tokens = 0...1_000_000_000
    /// Milliseconds of one request (30 days).
    public static let maxMilliseconds = 2_592_000_000.0
    /// Retries of one request.
    public static let retries = 0...1_000

    /// `value` finite and within 0…`maxMilliseconds` (NaN: 0).
    @inlinable
    public static func milliseconds(_ value: Double) -> Double { value.clamped(to: 0...maxMilliseconds) }

    @inlinable
    public static func milliseconds(_ value: Double?) -> Double? { value.map { milliseconds($0) } }
}

extension RouteResult {
    /// This result with every number within `ResultLimits`.
    public var sanitized: RouteResult {
        var r = self
        r.status = status.clamped(to: 0...999)
        r.ttftMilliseconds = ResultLimits.milliseconds(ttftMilliseconds)
        r.durationMilliseconds = ResultLimits.milliseconds(durationMilliseconds)
        r.promptTokens = promptTokens.clamped(to: ResultLimits.tokens)
        r.completionTokens = completionTokens.clamped(to: ResultLimits.tokens)
        r.bytes = max(0, bytes)
        r.retries = retries.clamped(to: ResultLimits.retries)
        r.backendPromptMilliseconds = ResultLimits.milliseconds(backendPromptMilliseconds)
        r.backendDecodeMilliseconds = ResultLimits.milliseconds(backendDecodeMilliseconds)
        r.backendLoadMilliseconds = ResultLimits.milliseconds(backendLoadMilliseconds)
        r.upstreamTtftMilliseconds = ResultLimits.milliseconds(upstreamTtftMilliseconds)
        r.upstreamMilliseconds = ResultLimits.milliseconds(upstreamMilliseconds)
        r.backendTotalMilliseconds = ResultLimits.milliseconds(backendTotalMilliseconds)
        if node.utf8.count > 128 { r.node = node.truncated(toBytes: 128) }
        if model.utf8.count > RequestLimits.modelBytes.upperBound { r.model = model.truncated(toBytes: RequestLimits.modelBytes.upperBound) }
        if let error, error.utf8.count > 1_024 { r.error = error.truncated(toBytes: 1_024) }
        if let reason = localReason, reason.utf8.count > 1_024 { r.localReason = reason.truncated(toBytes: 1_024) }
        return r
    }
}
