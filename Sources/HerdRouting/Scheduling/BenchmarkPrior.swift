import HerdBounds

/// What `herd benchmark` measured of one node:model: its throughput at each
/// concurrency it was driven at, one at a time, through the router, and the
/// knee (the concurrency past which throughput stopped growing). herd keeps
/// the last one per node:model (`herd.db`, table `benchmarks`) and starts
/// from it: the concurrency learner at the knee, out of slow start (a
/// reported parallelism stays the ceiling); the scorer's rates from the
/// measured figures (`rates=benchmark` in `X-Herd-Score` until requests
/// teach it more). Real requests then move both, as they would any prior.
package struct BenchmarkPrior: Equatable, Sendable {
    package var node: String
    /// The model's canonical name.
    package var model: String
    /// `chat` (tokens per second) or `embed` (inputs per second).
    package var kind: Kind
    package var knee: Int
    /// Concurrency ascending.
    package var steps: [Step]
    /// Wall-clock ms when it was measured.
    package var atMs: Int

    package enum Kind: String, Sendable, CaseIterable {
        case chat, embed
    }

    package struct Step: Equatable, Sendable {
        package var concurrency: Int
        package var requests: Int
        package var errors: Int
        /// Output tokens (chat) or inputs (embed) per second, all streams together.
        package var perSecond: Double
        /// Median time to first byte, ms.
        package var ttftMs: Double
        /// Mean time a request took, ms.
        package var durationMs: Double
        /// Mean prompt tokens and output tokens per request (chat).
        package var promptTokens: Double
        package var outputTokens: Double

        package init(concurrency: Int, requests: Int, errors: Int = 0, perSecond: Double, ttftMs: Double, durationMs: Double,
                     promptTokens: Double = 0, outputTokens: Double = 0) {
            self.concurrency = concurrency
            self.requests = requests
            self.errors = errors
            self.perSecond = perSecond
            self.ttftMs = ttftMs
            self.durationMs = durationMs
            self.promptTokens = promptTokens
            self.outputTokens = outputTokens
        }
    }

    package init(node: String, model: String, kind: Kind, knee: Int, steps: [Step], atMs: Int) {
        self.node = node
        self.model = model
        self.kind = kind
        self.knee = knee
        self.steps = steps
        self.atMs = atMs
    }

    /// Bounds on what is believed (a posted result is outside input).
    package static let concurrency = 1...1024
    package static let maxSteps = 32
    package static let maxPerSecond = 10_000_000.0
    package static let maxMs = 86_400_000.0

    /// Why this result cannot be a prior (nil: it can).
    package var problem: String? {
        if node.isEmpty || node.utf8.count > 256 { return "node: 1–256 bytes" }
        if model.isEmpty || model.utf8.count > 256 { return "model: 1–256 bytes" }
        if !BenchmarkPrior.concurrency.contains(knee) { return "knee: 1–1024" }
        if steps.isEmpty || steps.count > BenchmarkPrior.maxSteps { return "steps: 1–\(BenchmarkPrior.maxSteps)" }
        for step in steps {
            if !BenchmarkPrior.concurrency.contains(step.concurrency) { return "steps[].concurrency: 1–1024" }
            if !(0...1_000_000).contains(step.requests) || !(0...1_000_000).contains(step.errors) { return "steps[].requests, errors: 0–1,000,000" }
            for value in [step.perSecond, step.promptTokens, step.outputTokens] where !(value >= 0 && value <= BenchmarkPrior.maxPerSecond) {
                return "steps[]: rates and token counts 0–10,000,000"
            }
            for value in [step.ttftMs, step.durationMs] where !(value >= 0 && value <= BenchmarkPrior.maxMs) {
                return "steps[]: times 0–86,400,000 ms"
            }
        }
        return nil
    }

    /// The knee of measured steps: the last concurrency whose throughput grew
    /// by at least `gain` (10 %) over the step before it, with no errors.
    package static func knee(_ steps: [Step], gain: Double = 0.1) -> Int {
        var knee = steps.first?.concurrency ?? 1
        var best = steps.first?.perSecond ?? 0
        for step in steps.dropFirst() {
            guard step.errors == 0, step.perSecond >= best * (1 + gain) else { break }
            knee = step.concurrency
            best = step.perSecond
        }
        return max(1, knee)
    }
}
