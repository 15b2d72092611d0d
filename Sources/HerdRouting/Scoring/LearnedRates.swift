import Glibc
import HerdWire

/// An exponentially weighted moving average: each sample moves the mean by
/// `weight` of the way toward it (0.2: the last ~5 samples dominate).
package struct MovingAverage: Equatable, Sendable {
    package private(set) var value: Double?
    package private(set) var samples = 0
    let weight: Double

    package init(weight: Double = 0.2) { self.weight = weight }

    package mutating func add(_ sample: Double) {
        guard sample.isFinite else { return }
        value = value.map { $0 + weight * (sample - $0) } ?? sample
        samples += 1
    }
}

/// Milliseconds per generated token as a line in the batch a request joins:
/// `ms(b) = a + c·(b − 1)` — `a` the single-stream cost, `c` what each stream
/// already running adds. A weighted least-squares fit with forgetting (each
/// sample scales the old ones by 0.97: the last ~30 dominate). Until two
/// different batch sizes have been seen the slope keeps the prior's ratio
/// `c/a`, so one measurement at batch 1 already scales the whole line.
package struct DecodeCurve: Equatable, Sendable {
    static let forgetting = 0.97
    private var sw = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0
    /// The prior's slope as a share of its intercept.
    let priorSlopeRatio: Double
    package private(set) var samples = 0

    package init(priorSlopeRatio: Double) { self.priorSlopeRatio = priorSlopeRatio }

    /// A request that generated at `msPerToken` while `batch` requests (itself
    /// included) were in flight on its node:model.
    package mutating func add(msPerToken: Double, batch: Int) {
        guard batch >= 1 else { return }
        add(msPerToken: msPerToken, meanBatch: Double(batch))
    }

    /// A request that generated at `msPerToken` while on average `meanBatch`
    /// requests (itself included) were in flight on its node over its time.
    package mutating func add(msPerToken: Double, meanBatch: Double) {
        guard msPerToken.isFinite, msPerToken > 0, meanBatch.isFinite, meanBatch >= 1 else { return }
        let x = min(meanBatch, 1e6) - 1
        let f = DecodeCurve.forgetting
        sw = sw * f + 1
        sx = sx * f + x
        sy = sy * f + msPerToken
        sxx = sxx * f + x * x
        sxy = sxy * f + x * msPerToken
        samples += 1
    }

    /// The line fitted over batch sizes, or nil while the samples do not
    /// spread over them enough (or the fit makes no sense).
    private var fitted: DecodeLine? {
        guard sw > 0 else { return nil }
        let meanX = sx / sw, meanY = sy / sw
        let spread = sxx / sw - meanX * meanX
        guard spread > 0.05 else { return nil }
        let slope = max(0, (sxy / sw - meanX * meanY) / spread)
        let intercept = meanY - slope * meanX
        return intercept > 0 ? DecodeLine(intercept: intercept, slope: slope) : nil
    }

    /// The slope is a fit, not the prior's shape kept through one batch size.
    package var slopeFitted: Bool { fitted != nil }

    /// The fitted line, or nil before any sample.
    package var line: DecodeLine? { line(shape: priorSlopeRatio) }

    /// The fitted line; with one batch size seen (or a fit that makes no
    /// sense), through the samples' mean in `shape` (slope ÷ intercept).
    package func line(shape: Double) -> DecodeLine? {
        guard sw > 0 else { return nil }
        if let fitted { return fitted }
        let intercept = (sy / sw) / (1 + shape * (sx / sw))
        return DecodeLine(intercept: intercept, slope: intercept * shape)
    }

    /// Milliseconds per token for a request joining `batch` requests (itself
    /// included), or nil before any sample.
    package func msPerToken(batch: Int) -> Double? {
        line?.msPerToken(batch: batch)
    }
}

/// `ms(b) = intercept + slope·(b − 1)`: ms per generated token in a batch of `b`.
package struct DecodeLine: Equatable, Sendable {
    package var intercept: Double
    package var slope: Double

    package init(intercept: Double, slope: Double) {
        self.intercept = intercept
        self.slope = slope
    }

    package func msPerToken(batch: Int) -> Double { intercept + slope * Double(max(0, batch - 1)) }
}

/// Where a rate came from: what the score breakdown names (`rates=`).
package enum RateSource: String, Equatable, Sendable {
    /// The backend's own timings (Ollama's `*_duration`, llama.cpp's `timings`), believed.
    case backend
    /// herd's own measurement: the time it saw, divided by the tokens it counted.
    case herd
    /// Another model measured on the same node, scaled by weights.
    case node
    /// The fastest node measured for this model (a node not yet measured).
    case fleet
    /// Nothing measured: the documented priors.
    case prior
    /// `herd benchmark`'s figures, until requests teach more.
    case benchmark
}

/// The backend's own figures of one request, kept only where believable:
/// not zero or negative, not faster than any machine decodes (> 10,000
/// tokens/s) or reads a prompt (> 1,000,000 tokens/s), not longer than the
/// request took as herd measured it. A backend reporting nonsense (every
/// duration 1 ns, say) leaves herd to its own measurement.
package struct BackendTimings: Equatable, Sendable {
    package var promptMs: Double?
    package var decodeMs: Double?
    package var loadMs: Double?
    /// Time spent waiting inside the backend for a slot: its whole time less
    /// load, prompt and generation (only when all four are believable).
    package var queuedMs: Double?

    /// Fastest believable decoding and prompt reading, tokens per second.
    package static let maxDecodeTokensPerSecond = 10_000.0
    package static let maxPromptTokensPerSecond = 1_000_000.0

    package init(promptMs: Double? = nil, decodeMs: Double? = nil, loadMs: Double? = nil, queuedMs: Double? = nil) {
        self.promptMs = promptMs
        self.decodeMs = decodeMs
        self.loadMs = loadMs
        self.queuedMs = queuedMs
    }

    /// Sifts what the backend said against what herd measured (`durationMs`:
    /// the backend's time, sent → last byte, as the proxy saw it).
    package init(prompt: Double?, decode: Double?, load: Double?, total: Double?, promptTokens: Int, completionTokens: Int, durationMs: Double) {
        let bound = durationMs.isFinite && durationMs > 0 ? durationMs * 1.1 + 50 : Double.infinity
        func within(_ ms: Double?) -> Double? {
            guard let ms, ms.isFinite, ms > 0, ms <= bound else { return nil }
            return ms
        }
        if let ms = within(decode), completionTokens >= 1,
           Double(completionTokens) / (ms / 1000) <= BackendTimings.maxDecodeTokensPerSecond { decodeMs = ms }
        if let ms = within(prompt), promptTokens >= 1,
           Double(promptTokens) / (ms / 1000) <= BackendTimings.maxPromptTokensPerSecond { promptMs = ms }
        if let load, load.isFinite, load >= 0, load <= bound { loadMs = load }
        if let total = within(total), let promptMs, let decodeMs {
            let parts = promptMs + decodeMs + (loadMs ?? 0)
            if total >= parts - 50 { queuedMs = max(0, total - parts) }
        }
    }
}

/// What herd has measured about one node:model.
package struct SlotRates: Equatable, Sendable {
    package var decode = DecodeCurve(priorSlopeRatio: CompletionTimeModel.Priors.batchSlowdown)
    /// Who measured the decode line last: the backend's figures or herd's own.
    package var decodeSource = RateSource.herd
    /// Milliseconds per prompt token read.
    package var prefillMsPerToken = MovingAverage()
    /// Milliseconds a request held its slot (backend time: sent to last byte).
    package var serviceMs = MovingAverage()
    /// The last full load of this model on this node, in milliseconds.
    package var lastLoadMs: Double?
    /// Milliseconds per unit of work (an audio second, a character spoken, a
    /// megapixel image, an input embedded, a document reranked) for the
    /// speech, image, embedding and rerank jobs that said their size.
    package var msPerUnit = MovingAverage()
}

/// What herd has measured about one node.
package struct NodeRates: Equatable, Sendable {
    /// Milliseconds to load one GB of weights (cold loads of any model).
    package var loadMsPerGB = MovingAverage(weight: 0.3)
    /// Recent failures, decaying with a one-minute half-life.
    package var errors = DecayingCount(halfLifeMilliseconds: 60_000)
    /// The node's speed, from any model measured on it: decoding reads the
    /// weights once per token, so weights ÷ single-stream ms per token is the
    /// bandwidth it decodes at (bytes per ms); a model not yet measured there
    /// is expected at its weights ÷ this.
    package var decodeBytesPerMs = MovingAverage(weight: 0.3)
    /// The node's decode line shape (slope ÷ intercept) and its prefill cost
    /// as a share of a decoded token's, from the models measured on it.
    package var slopeRatio = MovingAverage(weight: 0.3)
    package var prefillShare = MovingAverage(weight: 0.3)
    /// The most requests (all models, mean over its time) an answer from it finished beside: what it has shown it runs at once.
    package var provenBatch = 0.0
}

/// What herd has measured about one model, fleet-wide.
package struct ModelRates: Equatable, Sendable {
    /// Tokens a generation request produced (finished, not cut short).
    package var outputTokens = MovingAverage(weight: 0.1)
    /// KV-cache bytes per context token, from `/api/ps` (loaded size − weights) ÷ context.
    package var kvBytesPerToken: Double?
    /// The fastest node's measured decode line and prefill rate for this
    /// model: what a node not yet measured is assumed to do (optimism makes
    /// every node get tried, and so measured).
    package var fastestDecode: DecodeLine?
    package var fastestPrefillMsPerToken: Double?
    /// The fastest node's ms per unit of work (speech, images, embeddings, rerank).
    package var fastestMsPerUnit: Double?
}

/// A count of events that halves every `halfLife`: recent failures weigh, old ones fade.
package struct DecayingCount: Equatable, Sendable {
    let halfLifeMilliseconds: Double
    private var value = 0.0
    private var at: UInt64 = 0

    package init(halfLifeMilliseconds: Double) { self.halfLifeMilliseconds = halfLifeMilliseconds }

    package func value(at now: UInt64) -> Double {
        guard value > 0 else { return 0 }
        let age = Double(now > at ? now - at : 0)
        return value * pow(2, -age / halfLifeMilliseconds)
    }

    package mutating func add(_ amount: Double = 1, at now: UInt64) {
        value = value(at: now) + amount
        at = max(at, now)
    }
}

/// Every rate herd has learned, keyed by node:model, node and model. Fed by
/// finished requests (`observe`) and by the fleet's `/api/ps` reports
/// (`observeLoaded`); read by the scorer. Pure.
package struct LearnedRates: Equatable, Sendable {
    package private(set) var slots: [SlotKey: SlotRates] = [:]
    package private(set) var nodes: [String: NodeRates] = [:]
    package private(set) var models: [String: ModelRates] = [:]

    package init() {}

    /// Keys of each kind learned at most (node:model, node, model).
    package static let maxEntries = 16_384
    /// A KV cache per token larger than this is not believed (64 MiB; real models: KiB to a few MiB).
    package static let maxKVBytesPerToken = 67_108_864.0

    package func slot(_ key: SlotKey) -> SlotRates? { slots[key] }
    package func node(_ id: String) -> NodeRates? { nodes[id] }
    package func model(_ canonical: String) -> ModelRates? { models[canonical] }

    /// What one finished request teaches, as measured by the proxy and the backend.
    package struct Observation: Sendable {
        package var slot: SlotKey
        package var ok: Bool
        package var generates: Bool
        /// Requests in flight on its node when it was sent, itself included.
        package var batch: Int
        /// Requests in flight on the node on average over its time, itself
        /// included (the batch its decode shared), when known; else `batch`.
        package var meanBatch: Double?
        package var promptTokens: Int
        package var completionTokens: Int
        /// The backend's time to first byte and its whole time (herd's queue excluded), ms.
        package var ttftMs: Double
        package var durationMs: Double
        package var streamed: Bool
        /// The backend's own figures, when it gave them.
        package var backendPromptMs: Double?
        package var backendDecodeMs: Double?
        package var backendLoadMs: Double?
        /// The model's weights when it was loaded for this request (for load time per GB), else 0.
        package var modelBytes: Int
        /// The model's weights, when known (for the node's speed), else 0.
        package var weightBytes = 0
        /// The concurrency learner found it waited inside the backend for a
        /// slot: its time is not a measure of its work.
        package var waitedInside = false
        /// A speech, image, embedding or rerank job's size in its kind's unit (0: not known).
        package var workUnits = 0.0

        package init(slot: SlotKey, ok: Bool, generates: Bool, batch: Int, promptTokens: Int, completionTokens: Int, ttftMs: Double,
                     durationMs: Double, streamed: Bool, backendPromptMs: Double? = nil, backendDecodeMs: Double? = nil,
                     backendLoadMs: Double? = nil, modelBytes: Int = 0, weightBytes: Int = 0) {
            self.slot = slot
            self.ok = ok
            self.generates = generates
            self.batch = batch
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
            self.ttftMs = ttftMs
            self.durationMs = durationMs
            self.streamed = streamed
            self.backendPromptMs = backendPromptMs
            self.backendDecodeMs = backendDecodeMs
            self.backendLoadMs = backendLoadMs
            self.modelBytes = modelBytes
            self.weightBytes = weightBytes
        }
    }

    /// A load shorter than this was the model already in memory (Ollama
    /// reports a few ms of `load_duration` for a hot model).
    static let realLoadMs = 250.0

    /// Learns from a finished request. Failed requests teach only their
    /// failure (`failed`); a measurement needs a request that finished.
    /// A load the backend reported (`load_duration`), of `modelBytes` of weights read from disk (0: unknown).
    package mutating func observeLoad(_ key: SlotKey, loadMs: Double, modelBytes: Int) {
        guard loadMs >= LearnedRates.realLoadMs else { return }
        slots[key, default: SlotRates()].lastLoadMs = loadMs
        if modelBytes > 0 {
            nodes[key.node, default: NodeRates()].loadMsPerGB.add(loadMs / (Double(modelBytes) / 1e9))
        }
    }

    package mutating func observe(_ o: Observation) {
        guard o.ok else { return }
        // Bounded: past `maxEntries` keys of a kind, new keys are not learned.
        guard slots[o.slot] != nil || slots.count < Self.maxEntries,
              nodes[o.slot.node] != nil || nodes.count < Self.maxEntries,
              models[o.slot.model] != nil || models.count < Self.maxEntries else { return }
        let loadMs = o.backendLoadMs ?? 0
        observeLoad(o.slot, loadMs: loadMs, modelBytes: o.modelBytes)
        var slot = slots[o.slot] ?? SlotRates()
        if o.durationMs > 0 { slot.serviceMs.add(o.durationMs) }
        // Work measured in units: its time per unit (not one that waited inside for a slot).
        if o.workUnits > 0, o.durationMs > 0, !o.waitedInside {
            let perUnit = max(0, o.durationMs - loadMs) / o.workUnits
            slot.msPerUnit.add(perUnit)
        }
        // Prefill: the backend's figure, else the time to the first byte of a
        // stream (minus a load) that did not wait inside.
        if o.promptTokens >= 8 {
            if let ms = o.backendPromptMs, ms > 0 {
                slot.prefillMsPerToken.add(ms / Double(o.promptTokens))
            } else if o.streamed, o.ttftMs > 0, !o.waitedInside {
                slot.prefillMsPerToken.add(max(0, o.ttftMs - loadMs) / Double(o.promptTokens))
            }
        }
        // Decode: the backend's figure, else herd's own: a stream's time
        // after its first byte, or a whole answer's time less its expected
        // prefill (and load) — when it did not wait inside the backend.
        if o.generates, o.completionTokens >= 2 {
            if let ms = o.backendDecodeMs, ms > 0 {
                slot.decode.add(msPerToken: ms / Double(o.completionTokens), meanBatch: o.meanBatch ?? Double(o.batch))
                slot.decodeSource = .backend
            } else if o.streamed, o.durationMs > o.ttftMs {
                slot.decode.add(msPerToken: (o.durationMs - o.ttftMs) / Double(o.completionTokens - 1), meanBatch: o.meanBatch ?? Double(o.batch))
                slot.decodeSource = .herd
            } else if !o.waitedInside, !o.streamed {
                let prefill = Double(o.promptTokens) * (slot.prefillMsPerToken.value ?? 0)
                let decodeMs = o.durationMs - loadMs - prefill
                if decodeMs > 0 {
                    slot.decode.add(msPerToken: decodeMs / Double(o.completionTokens), meanBatch: o.meanBatch ?? Double(o.batch))
                    slot.decodeSource = .herd
                }
            }
        }
        slots[o.slot] = slot
        let weights = o.weightBytes > 0 ? o.weightBytes : o.modelBytes
        if weights > 0, let line = slot.decode.line, line.intercept > 0 {
            var node = nodes[o.slot.node] ?? NodeRates()
            node.decodeBytesPerMs.add(Double(weights) / line.intercept)
            // The node's line shape only from a slope fitted (not the prior's kept through one batch size).
            if slot.decode.slopeFitted { node.slopeRatio.add(line.slope / line.intercept) }
            if let prefill = slot.prefillMsPerToken.value { node.prefillShare.add(prefill / line.intercept) }
            nodes[o.slot.node] = node
        }
        if o.generates, o.completionTokens > 0 {
            models[o.slot.model, default: ModelRates()].outputTokens.add(Double(o.completionTokens))
            let shared = min(o.meanBatch ?? Double(o.batch), 1e6)
            if shared > nodes[o.slot.node]?.provenBatch ?? 0 { nodes[o.slot.node, default: NodeRates()].provenBatch = shared }
        }
        refreshFastest(o.slot.model)
    }

    /// The fastest measured node for `canonical` (a handful of nodes: a scan is cheap).
    mutating func refreshFastest(_ canonical: String) {
        var model = models[canonical] ?? ModelRates()
        var fastestDecode: DecodeLine?
        var fastestPrefill: Double?
        var fastestPerUnit: Double?
        for (key, rates) in slots where key.model == canonical {
            if let line = rates.decode.line, line.intercept < fastestDecode?.intercept ?? .infinity { fastestDecode = line }
            if let prefill = rates.prefillMsPerToken.value, prefill < fastestPrefill ?? .infinity { fastestPrefill = prefill }
            if let perUnit = rates.msPerUnit.value, perUnit < fastestPerUnit ?? .infinity { fastestPerUnit = perUnit }
        }
        model.fastestDecode = fastestDecode
        model.fastestPrefillMsPerToken = fastestPrefill
        model.fastestMsPerUnit = fastestPerUnit
        models[canonical] = model
    }

    /// A node failed a request (connection error, 5xx, timeout).
    package mutating func failed(node: String, at now: UInt64) {
        nodes[node, default: NodeRates()].errors.add(at: now)
    }

    /// A model is loaded somewhere with `contextLength` tokens of context in
    /// `loadedBytes`, of which `weightBytes` are weights: the rest is its KV cache.
    package mutating func observeLoaded(model canonical: String, loadedBytes: Int, weightBytes: Int, contextLength: Int) {
        guard contextLength > 0, weightBytes > 0, loadedBytes > weightBytes, models[canonical] != nil || models.count < Self.maxEntries else { return }
        let perToken = Double(loadedBytes) / Double(contextLength) - Double(weightBytes) / Double(contextLength)
        guard perToken.isFinite, perToken > 0, perToken <= Self.maxKVBytesPerToken else { return }
        models[canonical, default: ModelRates()].kvBytesPerToken = perToken
    }
}

extension LearnedRates {
    /// Starts `slot`'s rates from a benchmark: per stream, ms per token at
    /// each concurrency is `1000 × concurrency ÷ tokens per second` (the
    /// decode line through them), prefill from the single stream's time to
    /// first byte, the service time from its mean duration; an embedding
    /// model's ms per input the same way. Samples already learned stay.
    package mutating func seed(_ prior: BenchmarkPrior) {
        let key = SlotKey(prior.node, prior.model)
        guard slots[key] != nil || slots.count < Self.maxEntries, models[prior.model] != nil || models.count < Self.maxEntries else { return }
        var slot = slots[key] ?? SlotRates()
        for step in prior.steps where step.perSecond > 0 && step.requests > 0 {
            let perUnit = 1000 * Double(step.concurrency) / step.perSecond
            switch prior.kind {
            case .chat:
                // A stream's time per token includes its share of prefill: take the first byte out.
                let decodeMs = step.outputTokens >= 2 ? max(0, step.durationMs - step.ttftMs) / (step.outputTokens - 1) : perUnit
                slot.decode.add(msPerToken: decodeMs > 0 ? decodeMs : perUnit, batch: step.concurrency)
                slot.decodeSource = .benchmark
                if step.concurrency == 1, step.promptTokens >= 8, step.ttftMs > 0 {
                    slot.prefillMsPerToken.add(step.ttftMs / step.promptTokens)
                }
            case .embed:
                if step.concurrency == 1 { slot.msPerUnit.add(perUnit) }
            }
            if step.concurrency == 1, step.durationMs > 0 { slot.serviceMs.add(step.durationMs) }
        }
        slots[key] = slot
        refreshFastest(prior.model)
    }
}
