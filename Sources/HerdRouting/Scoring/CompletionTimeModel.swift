import HerdBounds
import HerdJSON
import HerdWire

/// # The completion-time model
///
/// herd sends a request to the candidate (a node and a model) expected to
/// *finish* it first. For each candidate:
///
///     ect = (wait + load + prefill + decode) × factor − affinity gain
///     rank by ect (+ crowd, for a candidate that must queue)
///
/// All terms are milliseconds. Each is a measurement where herd has one, and
/// the prior named here until it has:
///
/// - **wait** — 0 when the node:model has a free slot (in flight < its
///   concurrency limit). Else the time until its soonest in-flight request is
///   expected to end, plus one service time per `limit` requests queued ahead:
///   `wait = soonest_end + ahead × service ÷ limit`. *service*: the measured
///   mean time a request holds a slot there (sent → last byte); prior: this
///   request's own prefill + decode. A cold load that fits only once the
///   node's busy models finish (their memory freed) waits for that *drain*:
///   `wait` = when the last of them is expected to end; once it has waited
///   15 s (`holdAfterMilliseconds`) the node is held for it (other models
///   start nothing there while it waits first in line), and a node so held
///   makes every other model wait for the drain too. Busy memory: loaded
///   models with requests in flight, and models herd started loading there
///   that no heartbeat lists yet (their weights + the default context's KV).
/// - **load** — 0 when the model is hot (in the node's `/api/ps`). While a
///   load is under way (a request or a pre-warm started it): what is left of
///   it. Cold: the last measured load of this model on this node (the
///   backend's `load_duration`), else the node's measured ms per GB of weights
///   × the weights, else the prior `1 000 ms + 1 000 ms/GB`. Warm (unloaded
///   less than 30 minutes ago, weights still in the page cache): × 0.4.
/// - **prefill** — estimated prompt tokens (request body bytes ÷ 4) × ms per
///   prompt token, measured from `prompt_eval_duration ÷ prompt_eval_count`
///   (llama.cpp: `timings.prompt_ms ÷ prompt_n`; otherwise a stream's time to
///   first byte ÷ prompt tokens). Prior: the single-stream ms per token of
///   decode (the node's measured speed for these weights where it has one,
///   else the decode prior) ÷ 50 on a GPU that holds the model, ÷ 8 on a CPU.
/// - **decode** — expected output tokens × ms per token *at the batch the
///   request joins*: every request in flight on the node, all models (they
///   share its memory bandwidth and compute), + 1; the limit when it must
///   wait; 1 after a drain. The line
///   `ms(b) = a + c·(b − 1)` fitted to measured `eval_duration ÷ eval_count`
///   at the batch each request ran in — the node's mean in flight over the
///   request's time, those sent after it included (`DecodeCurve`) — the
///   backend's figure when believable (`BackendTimings`: not zero, not
///   faster than 10,000 tokens/s, not longer than the request), else herd's
///   own: a stream's time after its first byte (a backend queues before the
///   first token, so even a stream that waited for a slot), or a whole
///   answer's time less its expected prefill, from answers the concurrency
///   learner found did not wait inside the backend. The header names the
///   source (`rates=backend|herd|node|fleet|prior`). Prior: decoding is
///   memory-bound, so `a = weights ÷ bandwidth` with 300 GB/s on a GPU that
///   holds the model and 40 GB/s otherwise (33 ms when the size is unknown),
///   and `c = 0.25 a` on a GPU, `0.5 a` on a CPU (requests share its cores;
///   batching gains little there). Until requests ran at two batch sizes the
///   line keeps the node's measured shape (`c ÷ a` from slopes fitted on
///   its other models), else the prior's. Expected output tokens: the measured mean for the
///   model (fleet-wide), lowered to the client's own limit (`num_predict`,
///   `max_tokens`); prior 256, × 4 (a setting) for a thinking model until
///   measured; 0 for embeddings.
/// - **work** (speech-to-text, speech, images, embeddings, rerank: in place
///   of prefill and decode) — the job's size in its kind's unit, as the proxy
///   reads it from the request (seconds of a WAV upload, characters to speak,
///   images × megapixels, inputs, documents), × the ms per unit measured on
///   the node:model (backend time ÷ units, from jobs that did not wait inside
///   for a slot), else the fastest node's for the model, else the prior
///   (`priorMsPerUnit`: 100 ms per audio second, 15 per character, 20 000
///   per megapixel image, 20 per input, 10 per document). A job whose size
///   cannot be told (an mp3): the node:model's mean service time, else
///   `priorJobMs`. Image servers that serve one at a time get a limit of 1
///   from the same concurrency learner as chat. The header says `work=`.
/// - **factor** — penalties, multiplied: thermal state serious × 1.5,
///   critical × 3; CPU or GPU throttled × 1.5; memory pressure high × 1.5
///   (critical × 2, and a cold load there is eliminated); recent failures
///   × (1 + e), e counting failures that halve every minute; late heartbeats
///   (degraded) × 2; a camera or microphone in use (meeting policy `avoid`)
///   × 4; a loaded context shorter than the prompt × 4; a learned
///   availability a < 0.95 (the share of the machine its owner leaves free
///   at this hour of the week, from herd-node's capacity learning)
///   × (1 + 2(1 − a)); below 0.1 the node is paused.
/// - **crowd** (ranking only, not part of the request's own time) — a
///   request that must queue on a full node:model delays each request that
///   queues there after it by one slot's share of a service (`service ÷
///   limit`). While every slot is busy the node:model drains like one server
///   `limit`× as fast, so at its utilisation ρ — requests given to it
///   recently (a count halving every 20 s) × service ÷ limit, at most 0.9 —
///   about ρ ÷ (1 − ρ) come after it: `crowd = service ÷ limit × ρ ÷ (1 − ρ)`.
///   The crowd is at least the request's own `ect`: a queued request ranks
///   at twice its time, so a hot replica with room that finishes it within
///   twice the time of queueing takes it. The queue on the fastest machine
///   is what the median request waits in; a request sent elsewhere is
///   slower by at most its own time once. (Measured in virtual time on
///   heterogeneous fleets at load 0.65: median −5 to −9 %, mean −2 to −5 %;
///   at load 0.9 median −15 %.)
///   Candidates rank by `ect + crowd` where a hot replica can start now (the
///   crowd moves a request to another hot replica with room, never to a cold
///   load); the greedy choice, each request for itself, crowds the fastest
///   machine until everyone waits there.
/// - **affinity gain** — a node that served this session holds the
///   conversation in its KV cache and reads only the new part of the prompt:
///   it gains 80 % of the prefill; one that holds the same system prompt and
///   tools gains 50 %. The gain divides by (1 + in flight ÷ 2): a busy node
///   evicts caches.
///
/// A node:model not yet measured, on a node that measured other models, is
/// expected at the node's own measured speed: its weights ÷ the bandwidth the
/// node decodes at (weights ÷ single-stream ms per token of the models it
/// ran), in the node's line shape, with the node's prefill-to-decode ratio.
/// On a node measured for nothing it is assumed as fast as the fastest node
/// measured for that model (optimism: every node gets tried, and so
/// measured) — one request at a time: while that probe runs the priors
/// hold — and only without any measurement of the model are the priors used.
/// Such a node, while other nodes have answered for the model, takes one
/// request at a time until it answers (`Scorer`: its limit there is what it
/// has in flight): a guess five times too fast must not fill a slow machine
/// with long prompts while measured nodes could serve them. A fresh fleet,
/// where every node is a guess, is not held.
///
/// A candidate is *eliminated* (never chosen, listed with why) when its node
/// is offline, already tried for this request, unreachable, of a backend kind
/// the API cannot use, paused (a meeting under policy `pause`, or its
/// capacity), without the model, or — for a cold load — when the weights plus
/// the KV cache at the context the request needs exceed the memory it can
/// use (free memory + free VRAM + idle loaded models, capped by the learned
/// capacity ceiling) or memory pressure is critical.
///
/// Pure: `estimate` is a function of its inputs, tested term by term.
package enum CompletionTimeModel {
    /// The documented priors and constants.
    package enum Priors {
        /// Memory bandwidth (bytes/s) decoding reads the weights at.
        package static let gpuBandwidth = 300e9
        package static let cpuBandwidth = 40e9
        /// Single-stream ms per token when the model's size is unknown.
        package static let unknownMsPerToken = 33.0
        /// Each stream already running adds this share of the single-stream cost.
        package static let batchSlowdown = 0.25
        /// The same on a CPU (no GPU holds the model): requests share its cores, batching gains little.
        package static let cpuBatchSlowdown = 0.5
        package static func batchSlowdown(onGPU: Bool) -> Double { onGPU ? batchSlowdown : cpuBatchSlowdown }
        /// Prompt tokens read per generated token's time.
        package static let gpuPrefillSpeedup = 50.0
        package static let cpuPrefillSpeedup = 8.0
        /// Cold load: fixed ms + ms per GB of weights.
        package static let loadFixedMs = 1_000.0
        package static let loadMsPerGB = 1_000.0
        /// A warm load (weights in the page cache) takes this share of a cold one.
        package static let warmShare = 0.4
        /// How long after an unload the model counts as warm.
        package static let warmWindowMs: UInt64 = 30 * 60_000
        /// Output tokens of a generation before any is measured.
        package static let outputTokens = 256.0
        /// KV-cache bytes per context token, as a share of the weights, before `/api/ps` shows one.
        package static let kvShareOfWeightsPerToken = 1.0 / 32_768
        /// The context a cold load gets when the client names none (Ollama's default).
        package static let defaultContext = 4_096
        /// The utilisation the crowding term counts at most (ρ ÷ (1 − ρ) ≤ 9).
        package static let maxUtilisation = 0.9
    }

    /// Where the model is on the candidate.
    package enum Temperature: Equatable, Sendable {
        case hot
        /// A load is under way; this many ms of it are left.
        case loading(remainingMs: Double)
        /// Unloaded recently: weights in the page cache.
        case warm
        case cold

        package var label: String {
            switch self {
            case .hot: "hot"
            case .loading: "loading"
            case .warm: "warm"
            case .cold: "cold"
            }
        }
    }

    /// A session or prefix this node already holds in its KV cache.
    package enum Affinity: String, Equatable, Sendable {
        case session, prefix

        /// The share of the prefill a cache hit saves.
        var prefillSaved: Double { self == .session ? 0.8 : 0.5 }
    }

    /// One candidate's inputs.
    package struct Inputs: Equatable, Sendable {
        package var temperature: Temperature = .hot
        /// The model's weights in bytes (0: unknown).
        package var modelBytes = 0
        /// A GPU on the node has room for the weights.
        package var onGPU = false
        package var promptTokens = 0
        package var outputTokens = Priors.outputTokens
        package var inFlight = 0
        package var limit = 1
        /// Requests in flight on the node, all models (the batch decode shares).
        package var nodeInFlight = 0
        /// Set when it can start only after the node's other models drain: ms until then.
        package var drainMs: Double?
        /// ms until the soonest in-flight request is expected to end (when full).
        package var soonestEndMs = 0.0
        /// Requests queued ahead of this one for this node:model.
        package var queuedAhead = 0
        /// Requests the node:model has been given per ms, recently (when full).
        package var arrivalsPerMs = 0.0
        package var factor = 1.0
        package var affinity: Affinity?
        package var slot: SlotRates?
        package var node: NodeRates?
        /// The model's rates fleet-wide (the fastest node's, for a node not yet measured).
        package var model: ModelRates?
        /// The kind of work; for all but chat the time is its size × the rate per unit.
        package var work = WorkKind.chat
        package var workUnits = 0.0

        package init() {}
    }

    /// ms per unit of work before measurement (a CPU-class server; the first
    /// jobs measure the real rate): Whisper-class speech-to-text 0.1 s per
    /// audio second, speech 15 ms per character, 20 s per megapixel image,
    /// 20 ms per input embedded, 10 ms per document reranked.
    package static func priorMsPerUnit(_ work: WorkKind) -> Double {
        switch work {
        case .stt: 100
        case .tts: 15
        case .image: 20_000
        case .embed: 20
        case .rerank: 10
        case .chat: 0
        }
    }

    /// A job of unknown size before any is measured, ms.
    package static func priorJobMs(_ work: WorkKind) -> Double {
        switch work {
        case .stt: 3_000
        case .tts: 1_500
        case .image: 20_000
        case .embed: 50
        case .rerank: 100
        case .chat: 0
        }
    }

    /// The time of a speech, image, embedding or rerank job and where the
    /// figure came from: its units × the ms per unit measured on this
    /// node:model (`herd`), else the fastest node's for the model (`fleet`),
    /// else the prior; a job of unknown size: the node:model's mean service
    /// time, else the prior for a job.
    package static func workMs(_ inputs: Inputs) -> (ms: Double, source: RateSource) {
        if inputs.workUnits > 0 {
            if let measured = inputs.slot?.msPerUnit.value { return (inputs.workUnits * measured, .herd) }
            if inputs.inFlight == 0, let fastest = inputs.model?.fastestMsPerUnit { return (inputs.workUnits * fastest, .fleet) }
            return (inputs.workUnits * priorMsPerUnit(inputs.work), .prior)
        }
        if let service = inputs.slot?.serviceMs.value { return (service, .herd) }
        return (priorJobMs(inputs.work), .prior)
    }

    /// Single-stream ms per token before measurement.
    package static func priorMsPerToken(modelBytes: Int, onGPU: Bool) -> Double {
        guard modelBytes > 0 else { return Priors.unknownMsPerToken }
        return Double(modelBytes) / (onGPU ? Priors.gpuBandwidth : Priors.cpuBandwidth) * 1000
    }

    /// ms per generated token when joining `batch` requests.
    package static func decodeMsPerToken(_ inputs: Inputs, batch: Int) -> Double {
        decodeRate(inputs, batch: batch).ms
    }

    /// ms per generated token when joining `batch` requests, and where that figure came from.
    package static func decodeRate(_ inputs: Inputs, batch: Int) -> (ms: Double, source: RateSource) {
        if let slot = inputs.slot, let line = slot.decode.line(shape: inputs.node?.slopeRatio.value ?? Priors.batchSlowdown(onGPU: inputs.onGPU)) {
            return (line.msPerToken(batch: batch), slot.decodeSource)
        }
        if let line = nodeDecodeLine(inputs) { return (line.msPerToken(batch: batch), .node) }
        if inputs.inFlight == 0, let line = inputs.model?.fastestDecode { return (line.msPerToken(batch: batch), .fleet) }
        let a = priorMsPerToken(modelBytes: inputs.modelBytes, onGPU: inputs.onGPU)
        return (a * (1 + Priors.batchSlowdown(onGPU: inputs.onGPU) * Double(max(0, batch - 1))), .prior)
    }

    /// ms per prompt token: measured here; else the node's measured decode
    /// speed for these weights × its measured prefill share; else the
    /// fastest node's for the model; else that decode speed ÷ the prior's
    /// speedup (a node that decodes 7× faster than the prior says reads
    /// prompts faster too: a prior prefill beside a measured decode made a
    /// cold model on a fast machine look seconds dearer than it was); else the prior.
    package static func prefillMsPerToken(_ inputs: Inputs) -> Double {
        if let measured = inputs.slot?.prefillMsPerToken.value { return measured }
        let line = nodeDecodeLine(inputs)
        if let line, let share = inputs.node?.prefillShare.value { return line.intercept * share }
        if inputs.inFlight == 0, let fastest = inputs.model?.fastestPrefillMsPerToken { return fastest }
        let speedup = inputs.onGPU ? Priors.gpuPrefillSpeedup : Priors.cpuPrefillSpeedup
        if let line { return line.intercept / speedup }
        return priorMsPerToken(modelBytes: inputs.modelBytes, onGPU: inputs.onGPU) / speedup
    }

    /// The decode line of a model not measured on a node that measured others:
    /// its weights at the node's measured bandwidth, in the node's line shape.
    static func nodeDecodeLine(_ inputs: Inputs) -> DecodeLine? {
        guard inputs.modelBytes > 0, let node = inputs.node, let bytesPerMs = node.decodeBytesPerMs.value, bytesPerMs > 0 else { return nil }
        let a = Double(inputs.modelBytes) / bytesPerMs
        return DecodeLine(intercept: a, slope: a * (node.slopeRatio.value ?? Priors.batchSlowdown(onGPU: inputs.onGPU)))
    }

    /// ms to load the model cold.
    package static func coldLoadMs(_ inputs: Inputs) -> Double {
        if let last = inputs.slot?.lastLoadMs { return last }
        let gb = Double(inputs.modelBytes) / 1e9
        if let perGB = inputs.node?.loadMsPerGB.value { return perGB * gb }
        return Priors.loadFixedMs + Priors.loadMsPerGB * gb
    }

    /// The estimate for one candidate, term by term.
    package static func estimate(_ inputs: Inputs) -> ScoreBreakdown {
        let canStart = inputs.inFlight < inputs.limit && inputs.drainMs == nil
        let batch = inputs.drainMs != nil ? 1
            : canStart ? max(inputs.inFlight, inputs.nodeInFlight) + 1 : max(1, inputs.limit, inputs.nodeInFlight)
        var rate = decodeRate(inputs, batch: batch)
        var decode = inputs.outputTokens * rate.ms
        var prefill = Double(inputs.promptTokens) * prefillMsPerToken(inputs)
        if inputs.work != .chat {
            // Speech, images, embeddings, rerank: the job's size at its measured rate.
            let work = workMs(inputs)
            decode = work.ms
            prefill = 0
            rate = (work.ms, work.source)
        }
        let load: Double = switch inputs.temperature {
        case .hot: 0
        case let .loading(remaining): max(0, remaining)
        case .warm: coldLoadMs(inputs) * Priors.warmShare
        case .cold: coldLoadMs(inputs)
        }
        var wait = 0.0, crowd = 0.0
        if let drain = inputs.drainMs {
            wait = max(0, drain)
        } else if !canStart {
            let service = inputs.slot?.serviceMs.value ?? (prefill + decode)
            let perSlot = service / Double(max(1, inputs.limit))
            wait = max(0, inputs.soonestEndMs) + Double(inputs.queuedAhead) * perSlot
            crowd = crowdMs(perSlot: perSlot, utilisation: inputs.arrivalsPerMs * service / Double(max(1, inputs.limit)))
        }
        var gain = 0.0
        if let affinity = inputs.affinity {
            gain = prefill * affinity.prefillSaved / (1 + Double(inputs.inFlight) / 2)
        }
        var breakdown = ScoreBreakdown(wait: wait, load: load, prefill: prefill, decode: decode, factor: inputs.factor,
                                       affinityGain: gain, crowd: crowd, rates: rate.source, work: inputs.work)
        // A request that must queue costs those after it at least its own time.
        if !canStart, inputs.drainMs == nil { breakdown.crowd = max(crowd, breakdown.ectMs) }
        return breakdown
    }

    /// What one more request queued on a full node:model costs the requests
    /// after it: each that queues there behind it before the queue empties
    /// starts one slot's share of a service later. While every slot is busy
    /// the node:model drains like one server of `limit`× the speed, so at
    /// utilisation ρ (recent arrivals × service ÷ limit) about ρ ÷ (1 − ρ)
    /// come after it; ρ is capped at `maxUtilisation`.
    package static func crowdMs(perSlot: Double, utilisation: Double) -> Double {
        guard perSlot > 0, utilisation > 0 else { return 0 }
        let rho = min(utilisation, Priors.maxUtilisation)
        return perSlot * rho / (1 - rho)
    }
}

/// A candidate's expected time to complete, term by term (milliseconds).
package struct ScoreBreakdown: Equatable, Sendable {
    package var wait: Double
    package var load: Double
    package var prefill: Double
    package var decode: Double
    package var factor: Double
    package var affinityGain: Double = 0
    /// What queueing here costs the requests that come after (not part of
    /// this request's own time; `CompletionTimeModel.crowdMs`).
    package var crowd: Double = 0
    /// Where the decode rate came from (`rates=` in the header).
    package var rates = RateSource.prior
    /// A speech, image, embedding or rerank job: `decode` holds its work (`work=` in the header).
    package var work = WorkKind.chat

    /// The expected time to complete.
    package var ectMs: Double { max(0, (wait + load + prefill + decode) * factor - affinityGain) }
    /// What candidates are ranked by: the expected time to complete and, for
    /// one that must queue, what that costs the requests after it.
    package var costMs: Double { ectMs + crowd }

    /// `ect_ms=812 wait=300 load=0 prefill=12 decode=500` (+ `factor=1.5`,
    /// `affinity=-40` when they apply) + `rates=herd` (where the decode rate
    /// came from: `backend` figures believed, `herd`'s own measurement, the
    /// `node`'s other models, the `fleet`'s fastest node, or the `prior`):
    /// the `X-Herd-Score` header.
    package var header: String {
        var out: [UInt8] = []
        out.reserveCapacity(80)
        out.append(literal: "ect_ms=")
        out.append(rounded: ectMs)
        out.append(literal: " wait=")
        out.append(rounded: wait)
        out.append(literal: " load=")
        out.append(rounded: load)
        if work == .chat {
            out.append(literal: " prefill=")
            out.append(rounded: prefill)
            out.append(literal: " decode=")
            out.append(rounded: decode)
        } else {
            out.append(literal: " work=")
            out.append(rounded: decode)
        }
        if factor != 1 {
            let hundredths = Int(saturatingRounded: factor * 100)
            out.append(literal: " factor=")
            out.append(decimal: hundredths / 100)
            out.append(UInt8(ascii: "."))
            if hundredths % 100 < 10 { out.append(UInt8(ascii: "0")) }
            out.append(decimal: hundredths % 100)
        }
        if affinityGain > 0 {
            out.append(literal: " affinity=-")
            out.append(rounded: affinityGain)
        }
        if crowd > 0 {
            out.append(literal: " crowd=")
            out.append(rounded: crowd)
        }
        out.append(literal: " rates=")
        out.append(contentsOf: rates.rawValue.utf8)
        return String(decoding: out, as: UTF8.self)
    }
}
