import Glibc

/// A request's time alone as `P·prompt + D·completion` (ms), fitted by
/// weighted least squares with forgetting (a sample of weight w scales the
/// old ones by 0.95^w). While the two cannot be told apart (prompts and
/// answers in one ratio, or a fit with a negative term), `P` is taken as
/// 1/20 of `D` — prefill reads tokens 8–50× faster than decoding makes them.
struct WorkFit: Equatable, Sendable {
    static let forgetting = 0.95
    static let priorPromptShare = 0.05
    private var spp = 0.0, spc = 0.0, scc = 0.0, spy = 0.0, scy = 0.0
    /// The samples' weight, forgotten as they are.
    private var weights = 0.0
    private(set) var samples = 0

    var ready: Bool { samples >= ConcurrencyLearner.fitSamples }

    mutating func add(prompt: Int, completion: Int, ms: Double, weight: Double = 1) {
        guard ms.isFinite, ms > 0, prompt >= 0, completion >= 0, prompt + completion > 0, weight > 0 else { return }
        let p = Double(prompt), c = Double(completion), f = pow(WorkFit.forgetting, weight), w = weight
        spp = spp * f + w * p * p
        spc = spc * f + w * p * c
        scc = scc * f + w * c * c
        spy = spy * f + w * p * ms
        scy = scy * f + w * c * ms
        weights = weights * f + w
        samples += 1
    }

    /// (ms per prompt token, ms per output token), or nil before the fit is ready.
    var coefficients: (prompt: Double, completion: Double)? { ready ? solved : nil }

    /// The fit of whatever samples it has (one is enough), for what a first
    /// guess serves: telling a request that waited for the one ahead from
    /// one served alongside it (`linedUp`), where being wrong costs one slot.
    var provisional: (prompt: Double, completion: Double)? { samples > 0 ? solved : nil }

    private var solved: (prompt: Double, completion: Double)? {
        // Least squares pulled toward the prior share by one sample's worth
        // (λ(P − share·C)², λ the samples' mean squared prompt): two answers
        // with long prompts and short answers solve exactly to nonsense (a
        // prompt token dearer than an output token), and the lined-up test
        // then reads an answer served alongside as one that waited.
        let share = WorkFit.priorPromptShare
        let lambda = weights > 0 ? spp / weights : 0
        let a = spp + lambda, b = spc - lambda * share, d = scc + lambda * share * share
        let det = a * d - b * b
        if det > 1e-9 * max(1, a * d) {
            let p = (spy * d - scy * b) / det
            let c = (scy * a - spy * b) / det
            if p >= 0, c > 0, p.isFinite, c.isFinite { return (p, c) }
        }
        // One ratio only: the prior share of prompt to output cost.
        let denominator = share * share * spp + 2 * share * spc + scc
        guard denominator > 0 else { return nil }
        let c = (share * spy + scy) / denominator
        guard c.isFinite, c > 0 else { return nil }
        return (share * c, c)
    }

    /// The least time alone a request of these tokens may take by the
    /// samples so far, whatever a prompt token costs from nothing up to an
    /// output token's cost (prefill is never slower per token than
    /// decoding): the smaller of the two fits at those extremes. From the
    /// first sample on; nil before. From one answer it can only err short
    /// (from a few, nearly so): an answer that finished well inside it after
    /// the one ahead ended was served alongside it, however its prompt was priced.
    func leastMs(prompt: Int, completion: Int) -> Double? {
        guard samples > 0 else { return nil }
        let both = spp + 2 * spc + scc
        let outputOnly = scc > 0 ? scy / scc * Double(max(0, completion)) : 0
        let alike = both > 0 ? (spy + scy) / both * Double(max(0, prompt) + max(0, completion)) : 0
        let least = min(outputOnly, alike)
        return least.isFinite && least > 0 ? least : nil
    }

    /// The expected time alone of a request of these tokens (`provisional`:
    /// from the first sample on), a prompt token at no less than the prior
    /// share of an output token: prompts and answers of varied length leave
    /// the prompt's share poorly told, often near zero, and an answer whose
    /// prompt is underrated looks long — like a wait.
    func expectedMs(prompt: Int, completion: Int, provisional: Bool = false) -> Double? {
        guard let (p, c) = provisional ? self.provisional : coefficients else { return nil }
        return max(p, c * WorkFit.priorPromptShare) * Double(max(0, prompt)) + c * Double(max(0, completion))
    }
}

