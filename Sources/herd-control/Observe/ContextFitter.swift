import HerdBounds
import HerdJSON
import HerdRouting
import HerdWire

/// `--num-ctx-policy fit`: each model's context sized by use, judged by what
/// it does to time to first byte, and undone when that gets worse.
///
/// Per model (served on Ollama nodes to Ollama-API requests, as Ollama is the
/// server that loads a model at the `num_ctx` a request asks):
/// 1. **learning** — the context each successful generation used (prompt +
///    output tokens; the last 512) and, as the baseline, the time to first
///    byte of streamed requests to the model hot at its own context (the
///    backend's time as herd measured it; requests that loaded the model are
///    left out). With 20 uses and 10 first bytes:
/// 2. **trying** — the fit is p99 of use × 1.5, rounded up to 256 tokens, at
///    least 2,048; the scheduler sends it as `num_ctx` on cold loads (never
///    below what a request needs) and the loaded context to a hot model (no
///    reload). First bytes of requests to the model hot at the fit are the
///    "after". With 10 of them:
/// 3. **kept** while the median first byte after is at most 1.25 × the one
///    before + 25 ms (judged again every 10 requests); else **undone**: no
///    `num_ctx` is set any more, so the next request reloads the model at its
///    own context, and the model is not fitted again until herd-control
///    restarts. The log and `/api/v1/models` (`context_fit`) say which, with
///    both medians.
///
/// A value, fed finished requests; at most 4,096 models.
struct ContextFitter {
    enum Phase: String, Sendable {
        case learning, trying, kept, undone
    }

    struct Model: Sendable {
        var phase = Phase.learning
        var uses: [Int] = []
        var nextUse = 0
        var before: [Double] = []
        var after: [Double] = []
        var sinceJudged = 0
        var fit: Int?
        var ttftBefore: Double?
        var ttftAfter: Double?
    }

    static let minUses = 20
    static let minFirstBytes = 10
    static let keptUses = 512
    static let keptFirstBytes = 64
    static let minimumContext = 2_048
    static let maxModels = 4_096

    private(set) var models: [String: Model] = [:]

    /// The contexts the scheduler sends (models trying or kept).
    var fits: [String: Int] {
        models.compactMapValues { $0.phase == .trying || $0.phase == .kept ? $0.fit : nil }
    }

    /// What changed, for the log.
    enum Change: Equatable {
        case trying(model: String, fit: Int, p99: Int, ttftBefore: Double)
        case kept(model: String, fit: Int, ttftBefore: Double, ttftAfter: Double)
        case undone(model: String, fit: Int, ttftBefore: Double, ttftAfter: Double)
    }

    /// Learns from one finished request; a change of phase when there is one.
    mutating func observe(_ finished: FinishedRequest) -> Change? {
        let r = finished.result
        guard r.outcome == .ok, let request = finished.request, let decision = finished.decision, decision.backend == .ollama,
              request.api == .ollama, Scheduler.generates(path: request.path) else { return nil }
        let name = ModelName.canonical(r.model)
        guard models[name] != nil || models.count < Self.maxModels else { return nil }
        var model = models[name] ?? Model()
        defer { models[name] = model }
        if r.promptTokens > 0 {
            let use = r.promptTokens.addingSaturated(r.completionTokens)
            if model.uses.count < Self.keptUses { model.uses.append(use) } else { model.uses[model.nextUse] = use }
            model.nextUse = (model.nextUse + 1) % Self.keptUses
        }
        // The first byte: a stream's, the backend's time, not one that loaded the model, not a client's own context.
        guard request.stream, request.numCtx == nil, let ttft = r.upstreamTtftMilliseconds, ttft.isFinite, ttft >= 0,
              (r.backendLoadMilliseconds ?? 0) < 250 else { return nil }
        switch model.phase {
        case .learning:
            guard decision.numCtx == nil else { return nil }
            Self.keep(ttft, in: &model.before)
            guard model.uses.count >= Self.minUses, model.before.count >= Self.minFirstBytes else { return nil }
            let p99 = Self.quantile(model.uses.map(Double.init), 0.99)
            let fit = max(Self.minimumContext, (Int(saturating: (p99 * 1.5).rounded(.up)) + 255) / 256 * 256)
            let before = Self.median(model.before)
            (model.phase, model.fit, model.ttftBefore) = (.trying, min(fit, RequestLimits.numCtx.upperBound), before)
            return .trying(model: name, fit: model.fit ?? fit, p99: Int(saturating: p99), ttftBefore: before)
        case .trying, .kept:
            guard let fit = model.fit, decision.numCtx == fit, let before = model.ttftBefore else { return nil }
            Self.keep(ttft, in: &model.after)
            model.sinceJudged += 1
            guard model.after.count >= Self.minFirstBytes, model.sinceJudged >= Self.minFirstBytes else { return nil }
            model.sinceJudged = 0
            let after = Self.median(model.after.suffix(Self.minFirstBytes * 2))
            model.ttftAfter = after
            if after > before * 1.25 + 25 {
                model.phase = .undone
                return .undone(model: name, fit: fit, ttftBefore: before, ttftAfter: after)
            }
            guard model.phase == .trying else { return nil }
            model.phase = .kept
            return .kept(model: name, fit: fit, ttftBefore: before, ttftAfter: after)
        case .undone:
            return nil
        }
    }

    private static func keep(_ value: Double, in list: inout [Double]) {
        list.append(value)
        if list.count > keptFirstBytes { list.removeFirst(list.count - keptFirstBytes) }
    }

    static func median<C: Collection>(_ values: C) -> Double where C.Element == Double {
        quantile(Array(values), 0.5)
    }

    static func quantile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = min(sorted.count - 1, max(0, Int(saturating: (q * Double(sorted.count)).rounded(.up)) - 1))
        return sorted[rank]
    }

    /// `/api/v1/models`' `context_fit` of a model (nil before it has any sample).
    func json(_ model: String) -> JSONValue? {
        guard let m = models[ModelName.canonical(model)] else { return nil }
        let p99 = m.uses.isEmpty ? nil : Self.quantile(m.uses.map(Double.init), 0.99)
        return .object([("phase", .string(m.phase.rawValue)), ("num_ctx", m.fit.map { .int($0) } ?? .null),
                        ("use_p99_tokens", p99.map { .number($0) } ?? .null), ("uses", .int(m.uses.count)),
                        ("ttft_before_ms", m.ttftBefore.map { .number(($0 * 10).rounded() / 10) } ?? .null),
                        ("ttft_after_ms", m.ttftAfter.map { .number(($0 * 10).rounded() / 10) } ?? .null),
                        ("first_bytes_before", .int(m.before.count)), ("first_bytes_after", .int(m.after.count))])
    }
}
