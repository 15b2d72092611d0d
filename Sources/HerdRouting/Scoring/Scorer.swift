import HerdBounds
import HerdJSON
import HerdWire

/// What the scorer knows about a request.
package struct ScoringRequest: Sendable {
    package var api: ClientAPI
    /// The model asked for, then its fallbacks in order.
    package var models: [String]
    /// A generation (chat, completion); false for embeddings and `/api/show`.
    package var generates = true
    /// Estimated prompt tokens.
    package var promptTokens = 0
    /// The client's own output limit (`num_predict`, `max_tokens`).
    package var maxOutputTokens: Int?
    /// The client's `num_ctx`.
    package var numCtx: Int?
    /// The client's `think` flag, when it sent one.
    package var think: Bool?
    /// Hashes of the conversation (session) and of its system prompt + tools (prefix).
    package var session: ContentHash?
    package var prefix: ContentHash?
    /// Nodes already tried for this request.
    package var excluded: Set<String> = []
    /// The request carries images: models known not to see are left out.
    package var vision = false
    /// The kind of work (from the path): only backends that do it are candidates.
    package var work = WorkKind.chat
    /// `X-Herd-Node`: only this node is a candidate, and its learned limit
    /// does not hold the request back (the client asked for that machine).
    package var pinned: String?
    /// The job's size in its kind's unit (0: not known).
    package var workUnits = 0.0

    package init(api: ClientAPI, models: [String]) {
        self.api = api
        self.models = models
    }
}

/// The live load the scorer reads (the scheduler's state), per node:model.
package protocol RoutingLoad {
    func inFlight(_ slot: SlotKey) -> Int
    func limit(_ slot: SlotKey) -> Int
    /// ms until the soonest in-flight request there is expected to end.
    func soonestEndMs(_ slot: SlotKey, now: UInt64) -> Double
    /// Requests queued for this node:model ahead of the one being scored.
    func queuedAhead(_ slot: SlotKey) -> Int
    /// Requests in flight on the node, all models.
    func nodeInFlight(_ node: String) -> Int
    /// ms until the last in-flight request on `node` (of any model but `model`) is expected to end.
    func drainMs(node: String, except model: String?, now: UInt64) -> Double
    /// The model a queued request holds `node` for while it drains, if any.
    func reservedModel(node: String) -> String?
    /// What is left of a load under way there, if one is.
    func loadingRemainingMs(_ slot: SlotKey, now: UInt64) -> Double?
    /// The models (canonical) herd started loading on `node` that no heartbeat shows loaded yet.
    func loadingModels(node: String) -> [String]
    /// When it last got a request (a counter; 0: never): equal candidates take turns.
    func lastRouted(_ slot: SlotKey) -> UInt64
    /// Requests it has been given per ms, recently (its crowding).
    func arrivalsPerMs(_ slot: SlotKey, now: UInt64) -> Double
    /// Whether the node holds this session's or prefix's KV cache.
    func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity?
    var rates: LearnedRates { get }
    /// ms until the soonest in-flight request on `node` (any model) is expected to end.
    func nodeSoonestEndMs(_ node: String, now: UInt64) -> Double
    /// The largest limit learned for a model on `node` (0: none learned).
    func largestLimit(node: String) -> Int
}

extension RoutingLoad {
    package func nodeSoonestEndMs(_ node: String, now: UInt64) -> Double { 0 }
    package func largestLimit(node: String) -> Int { 0 }
}

/// A node that could serve the request, with its estimate.
package struct ScoredCandidate: Equatable, Sendable {
    package var node: String
    package var address: String
    package var backend: BackendKind
    /// The model name as that backend knows it.
    package var model: String
    package var canonicalModel: String
    package var temperature: CompletionTimeModel.Temperature
    package var inFlight: Int
    package var limit: Int
    package var breakdown: ScoreBreakdown
    /// Why the factor is not 1 (`thermal`, `errors`, `meeting`, …).
    package var penalties: [String] = []
    package var affinity: CompletionTimeModel.Affinity?
    package var lastRouted: UInt64 = 0
    package var memoryAvailableBytes = 0
    /// The model's weights (0: unknown).
    package var modelBytes = 0

    /// It waits for the node's other models to drain (memory, or the node held for another model).
    package var drains = false
    /// A load that must evict (or wait out) models loaded there.
    package var evicts = false
    /// The context the model is loaded with there (0: not loaded or unknown).
    package var loadedContext = 0

    package var canStart: Bool { inFlight < limit && !drains }
    package var hot: Bool { temperature == .hot }
    /// Can start now and carries no last-resort penalty.
    package var available: Bool { canStart && breakdown.factor < 2 }
    package var ectMs: Double { breakdown.ectMs }
}

/// A node:model that cannot take the request, and why.
package struct Elimination: Equatable, Sendable {
    package var node: String
    package var model: String
    package var reason: String
}

/// Every candidate of a decision, ranked, and every elimination: what the
/// trace row keeps.
package struct ScoreCard: Equatable, Sendable {
    package var candidates: [ScoredCandidate] = []
    package var eliminated: [Elimination] = []

    package init() {}
}

/// What to do with a request.
package enum RouteDecision: Equatable, Sendable {
    /// Send it to this candidate now.
    case route(ScoredCandidate)
    /// Its best candidate is busy: wait for it (re-scored when a slot frees,
    /// the fleet changes or time passes: it goes wherever is best then).
    case queue(ScoredCandidate)
    /// No node has the model nor any fallback; `known` lists the models that exist.
    case notFound(known: [String])
    /// Nodes have the model but none can take it (offline, excluded, eliminated).
    case noNode
    /// The request carries images and every model it names is known not to see.
    case cannotSee
    /// Every backend with the model does another kind of work (a chat sent to a speech model).
    case wrongWork
}

/// The scoring engine: a pure function of the fleet, the live load, the
/// learned rates and the request, returning the decision and the ranked
/// candidates with every term (`CompletionTimeModel` is the model).
///
/// Choosing, in order:
/// 1. The first model (asked, then fallbacks) with a hot candidate that can
///    start now without a last-resort penalty: its hot candidates compete,
///    and a cold one only if expected to finish in under half the time of the
///    best hot one (`loadMustWin`; a quarter if the load must evict loaded
///    models, which then reload for their next requests) — no load while a
///    hot replica with room would do about as well; a far faster machine is
///    still worth a load.
/// 2. Else the first model with any candidate that can start now: its
///    candidates compete, hot ones that must wait included (waiting for a hot
///    node can beat loading a cold one).
/// 3. Else the request queues for the first model with candidates.
/// Competing candidates rank by expected time to complete; within 2 % the
/// one routed to least recently goes (turns), then the one with more free
/// memory. If the winner must wait, the request queues.
package struct Scorer: Sendable {
    package enum MeetingPolicy: String, Sendable, CaseIterable {
        /// A node in a meeting is used only when it is 4× better.
        case avoid
        /// Never routed to while in a meeting.
        case pause
        /// Meetings do not matter.
        case ignore
    }

    package struct Settings: Sendable {
        package var meetingPolicy = MeetingPolicy.avoid
        /// Expected output of a thinking model before measurement, × the prior.
        package var thinkingMultiplier = 4.0
        /// A node runs at most twice the requests (all models together) it has
        /// shown it runs at once (`NodeRates.provenBatch`); off where the limits are fixed.
        package var capsNodes = true

        package init() {}
    }

    package var settings: Settings
    /// A node whose owner leaves less than this share of it (learned capacity,
    /// for an hour learned in an earlier week: one busy minute never pauses a node) is paused.
    package static let pausedBelowAvailability = 0.1
    /// Why a model that cannot see is left out of a request with images.
    package static let blind = "cannot see images (no vision capability)"
    /// Why a backend is left out of a kind of work it does not do.
    package static func doesNot(_ work: WorkKind, _ kind: BackendKind) -> String {
        "does not do \(work.label) (a backend of kind \(kind.rawValue))"
    }
    static let doesNotPrefix = "does not do "
    /// A load competes with a hot replica that has room only when expected to finish this many times sooner.
    package static let loadMustWin = 2.0

    package init(settings: Settings = Settings()) {
        self.settings = settings
    }

    package func decide(_ request: ScoringRequest, fleet: [FleetNode], load: some RoutingLoad, now: UInt64) -> (RouteDecision, ScoreCard) {
        var card = ScoreCard()
        var perModel: [(model: String, candidates: [ScoredCandidate])] = []
        var anyoneHasIt = false
        for model in request.models {
            let (candidates, found) = score(model: model, request, fleet: fleet, load: load, now: now, card: &card)
            anyoneHasIt = anyoneHasIt || found
            perModel.append((model, candidates))
        }
        card.candidates = perModel.flatMap(\.candidates)
        if !anyoneHasIt { return (.notFound(known: Scorer.knownModels(fleet, api: request.api)), card) }
        if request.vision, card.candidates.isEmpty, !card.eliminated.isEmpty, card.eliminated.allSatisfy({ $0.reason == Scorer.blind }) {
            return (.cannotSee, card)
        }
        if card.candidates.isEmpty, !card.eliminated.isEmpty, card.eliminated.allSatisfy({ $0.reason.hasPrefix(Scorer.doesNotPrefix) }) {
            return (.wrongWork, card)
        }

        var competing: [ScoredCandidate]?
        // Crowding counts only where a hot replica can start now: it moves a
        // request off a crowded queue to another hot replica, never to a load.
        var crowding = false
        if let index = perModel.firstIndex(where: { $0.candidates.contains { $0.hot && $0.available } }) {
            let all = perModel[index].candidates
            let bestHot = all.lazy.filter { $0.hot && $0.available }.map(\.ectMs).min() ?? .infinity
            competing = all.filter { $0.hot || $0.ectMs * Scorer.loadMustWin * ($0.evicts ? 2 : 1) < bestHot }
            crowding = true
        } else if let index = perModel.firstIndex(where: { $0.candidates.contains(where: \.canStart) }) {
            competing = perModel[index].candidates
        }
        if var competing {
            competing.sort { Scorer.better($0, $1, crowding: crowding) }
            card.candidates = competing + card.candidates.filter { c in !competing.contains { $0.node == c.node && $0.model == c.model } }
            let best = competing[0]
            return (best.canStart ? .route(best) : .queue(best), card)
        }
        if var first = perModel.first(where: { !$0.candidates.isEmpty })?.candidates {
            first.sort { Scorer.better($0, $1, crowding: false) }
            card.candidates = first + card.candidates.filter { c in !first.contains { $0.node == c.node && $0.model == c.model } }
            return (.queue(first[0]), card)
        }
        return (.noNode, card)
    }

    /// Ranking: expected time to complete (+ the crowding a queued one
    /// causes, when `crowding`); within 2 % (or 5 ms: measurement noise on a
    /// backend that answers in milliseconds), turns, then free memory.
    package static func better(_ a: ScoredCandidate, _ b: ScoredCandidate, crowding: Bool = true) -> Bool {
        let ea = crowding ? a.breakdown.costMs : a.ectMs, eb = crowding ? b.breakdown.costMs : b.ectMs
        if abs(ea - eb) > max(5, 0.02 * max(ea, eb)) { return ea < eb }
        if a.canStart != b.canStart { return a.canStart }
        if a.lastRouted != b.lastRouted { return a.lastRouted < b.lastRouted }
        if a.memoryAvailableBytes != b.memoryAvailableBytes { return a.memoryAvailableBytes > b.memoryAvailableBytes }
        return a.node < b.node
    }

    /// Candidates for one model across the fleet (eliminations into `card`);
    /// `found`: some node has it at all.
    private func score(model: String, _ request: ScoringRequest, fleet: [FleetNode], load: some RoutingLoad, now: UInt64,
                       card: inout ScoreCard) -> ([ScoredCandidate], Bool) {
        var candidates: [ScoredCandidate] = []
        var found = false
        let canonical = ModelName.canonical(model)
        let modelRates = load.rates.model(canonical)
        for node in fleet where request.pinned == nil || node.id == request.pinned {
            backends: for backend in node.heartbeat.backends where backend.kind.serves(request.api) {
                let onDisk = backend.models.first { ModelName.same($0.name, model) }
                let loaded = backend.loaded.first { ModelName.same($0.name, model) }
                guard let name = onDisk?.name ?? loaded?.name else { continue }
                found = true
                func eliminate(_ reason: String) { card.eliminated.append(Elimination(node: node.id, model: name, reason: reason)) }
                // Images go only to a model that can see. What a backend does not
                // say (an OpenAI-compatible server, capabilities not yet read) is not a no.
                if request.vision, let capabilities = onDisk?.capabilities, !capabilities.isEmpty, !capabilities.contains("vision") {
                    eliminate(Scorer.blind)
                    continue
                }
                // The work goes only to a backend that does it (a speech server's
                // model is not a chat model); Ollama transcribes with audio models only.
                let capabilities = onDisk?.capabilities ?? []
                if !backend.kind.serves(request.work)
                    || (request.work == .stt && backend.kind == .ollama && !capabilities.isEmpty && !capabilities.contains("audio")) {
                    eliminate(Scorer.doesNot(request.work, backend.kind))
                    continue
                }
                // A model that says what it can and cannot complete text (an embedding model) takes no generation.
                if request.work == .chat, request.generates, !capabilities.isEmpty, !capabilities.contains("completion") {
                    eliminate(Scorer.doesNotPrefix + "\(WorkKind.chat.label) (the model can: \(capabilities.prefix(4).joined(separator: ", ")))")
                    continue
                }
                if let (reason, otherBackends) = unavailable(node, reachable: backend.reachable, request) {
                    eliminate(reason)
                    if otherBackends { continue } else { break }
                }

                let slot = SlotKey(node.id, canonical)
                var inputs = CompletionTimeModel.Inputs()
                let weights = onDisk?.sizeBytes ?? loaded?.sizeBytes ?? 0
                inputs.modelBytes = weights
                inputs.slot = load.rates.slot(slot)
                inputs.node = load.rates.node(node.id)
                inputs.model = modelRates
                inputs.inFlight = load.inFlight(slot)
                inputs.limit = load.limit(slot)
                inputs.nodeInFlight = load.nodeInFlight(node.id)
                // A node runs at most twice the requests it has shown it runs at
                // once, all models together, or the largest limit one of its
                // models has learned (each model's own limit does not bound
                // the sum): a slow CPU box given one request of each of five
                // models ran them all five to ten times slower than expected,
                // while they could have waited here for a faster node.
                var nodeFull = false
                if settings.capsNodes, let proven = inputs.node?.provenBatch, proven > 0, inputs.inFlight < inputs.limit,
                   Double(inputs.nodeInFlight) >= max(2, (2 * proven).rounded(.down), Double(load.largestLimit(node: node.id))) {
                    inputs.limit = inputs.inFlight
                    nodeFull = true
                }
                // A node that has answered nothing yet, where other nodes have
                // answered for the model, takes one request at a time: its speed
                // is a guess (the fastest node's figures, or a prior), and a
                // guess five times too fast must not fill it while measured
                // nodes could serve. (A fresh fleet, all guesses, is not held.)
                if inputs.nodeInFlight > 0, inputs.slot?.serviceMs.value == nil, inputs.node?.decodeBytesPerMs.value == nil,
                   modelRates?.fastestDecode != nil || modelRates?.fastestMsPerUnit != nil {
                    inputs.limit = min(inputs.limit, inputs.inFlight)
                }
                if request.pinned != nil { inputs.limit = max(inputs.limit, inputs.inFlight + 1) }
                inputs.promptTokens = request.promptTokens
                inputs.outputTokens = expectedOutputTokens(request, model: onDisk, rates: modelRates, name: name)
                inputs.work = request.work
                inputs.workUnits = request.workUnits

                let (temperature, contextPenalty) = Scorer.temperature(node, slot: slot, loaded: loaded, request, load: load, now: now)
                let usable = Scorer.usableBytes(node, forLoading: canonical, load: load)
                var evicts = false
                if temperature == .cold || temperature == .warm {
                    switch Scorer.coldLoad(node, canonical: canonical, weights: weights, usable: usable, rates: modelRates, request, load: load, now: now) {
                    case let .eliminated(reason): eliminate(reason); break backends
                    case let .fits(evicting, drainMs):
                        evicts = evicting
                        inputs.drainMs = drainMs
                    }
                }
                if let reserved = load.reservedModel(node: node.id), reserved != canonical {
                    // Held for another model's load: wait for the node to drain too.
                    inputs.drainMs = max(inputs.drainMs ?? 0, load.drainMs(node: node.id, except: nil, now: now))
                }
                inputs.temperature = temperature
                inputs.onGPU = Scorer.gpuHolds(node, weights: weights, loaded: loaded)
                var (factor, penalties) = penaltyFactor(node, errors: inputs.node?.errors.value(at: now) ?? 0)
                if let contextPenalty {
                    factor *= 4
                    penalties.insert(contextPenalty, at: 0)
                }
                inputs.factor = factor

                // The wait, if it must.
                if inputs.inFlight >= inputs.limit, inputs.drainMs == nil {
                    inputs.soonestEndMs = nodeFull ? load.nodeSoonestEndMs(node.id, now: now) : load.soonestEndMs(slot, now: now)
                    inputs.queuedAhead = load.queuedAhead(slot)
                    inputs.arrivalsPerMs = load.arrivalsPerMs(slot, now: now)
                }
                inputs.affinity = load.affinity(node: node.id, model: canonical, session: request.session, prefix: request.prefix)

                candidates.append(ScoredCandidate(
                    node: node.id, address: backend.address, backend: backend.kind, model: name, canonicalModel: canonical,
                    temperature: temperature, inFlight: inputs.inFlight, limit: inputs.limit,
                    breakdown: CompletionTimeModel.estimate(inputs), penalties: penalties, affinity: inputs.affinity,
                    lastRouted: load.lastRouted(slot), memoryAvailableBytes: usable, modelBytes: weights, drains: inputs.drainMs != nil, evicts: evicts, loadedContext: loaded?.contextLength ?? 0))
                break // one backend per node and model
            }
        }
        return (candidates, found)
    }

    /// Why `node` cannot take the request at all, if it cannot;
    /// `otherBackends`: another backend of the node still may.
    func unavailable(_ node: FleetNode, reachable: Bool, _ request: ScoringRequest) -> (reason: String, otherBackends: Bool)? {
        if node.status == .offline { return ("offline", false) }
        if let hold = node.hold { return ("\(hold.label) by the operator", false) }
        if request.excluded.contains(node.id) { return ("already tried", false) }
        if !reachable { return ("backend unreachable", true) }
        if node.heartbeat.telemetry.inMeeting, settings.meetingPolicy == .pause { return ("paused: in a meeting", false) }
        if let capacity = node.heartbeat.capacity, capacity.hourLearned, capacity.availability < Scorer.pausedBelowAvailability {
            return ("paused: its owner is using it (availability \(Int(saturatingRounded: capacity.availability * 100)) %)", false)
        }
        return nil
    }

    /// Where the model is on `node`: hot (in its `/api/ps`), loading (a load
    /// under way), warm (unloaded within the warm window: weights in the page
    /// cache) or cold; and, for a hot model loaded with a context shorter
    /// than the prompt, the penalty's label (× 4) — unless the client asked
    /// for a larger `num_ctx`, when Ollama reloads it: cold.
    static func temperature(_ node: FleetNode, slot: SlotKey, loaded: Heartbeat.LoadedModel?, _ request: ScoringRequest,
                            load: some RoutingLoad, now: UInt64) -> (CompletionTimeModel.Temperature, contextPenalty: String?) {
        if let loaded {
            guard loaded.contextLength > 0, request.promptTokens > loaded.contextLength else { return (.hot, nil) }
            if let numCtx = request.numCtx, numCtx > loaded.contextLength { return (.cold, nil) }
            return (.hot, "context \(loaded.contextLength) < prompt \(request.promptTokens)")
        }
        if let remaining = load.loadingRemainingMs(slot, now: now) { return (.loading(remainingMs: remaining), nil) }
        if let at = node.recentlyUnloaded[slot.model], now >= at, now - at < CompletionTimeModel.Priors.warmWindowMs { return (.warm, nil) }
        return (.cold, nil)
    }

    /// Whether a cold or warm load can happen on a node.
    enum ColdLoad: Equatable {
        case eliminated(String)
        /// It fits; `evicts`: only by evicting loaded models; `drainMs`: only
        /// once the node's busy models finish (their memory freed), this long from now.
        case fits(evicts: Bool, drainMs: Double?)
    }

    /// A load needs the weights plus the KV cache at the context the request
    /// asks (else Ollama's default) within the memory it can use; with memory
    /// pressure critical, none starts.
    static func coldLoad(_ node: FleetNode, canonical: String, weights: Int, usable: Int, rates: ModelRates?, _ request: ScoringRequest,
                         load: some RoutingLoad, now: UInt64) -> ColdLoad {
        if node.heartbeat.telemetry.pressure == .critical { return .eliminated("memory pressure critical: no cold load") }
        let context = request.numCtx ?? CompletionTimeModel.Priors.defaultContext
        let kvPerToken = rates?.kvBytesPerToken ?? Double(weights) * CompletionTimeModel.Priors.kvShareOfWeightsPerToken
        let needed = Double(weights) + kvPerToken * Double(context)
        let evicts = needed > Double(Scorer.freeBytes(node))
        guard weights > 0, needed > Double(usable) else { return .fits(evicts: evicts, drainMs: nil) }
        let busy = Scorer.busyBytes(node, except: canonical, load: load)
        if needed > Double(usable + busy) {
            return .eliminated("does not fit: needs \(Scorer.gigabytes(Int(saturating: needed))) GB at \(context) context, \(Scorer.gigabytes(usable + busy)) GB usable")
        }
        // Fits once the busy models there finish.
        return .fits(evicts: evicts, drainMs: load.drainMs(node: node.id, except: canonical, now: now))
    }

    /// The penalties (`CompletionTimeModel`'s factor term), multiplied, and their labels.
    func penaltyFactor(_ node: FleetNode, errors: Double) -> (Double, [String]) {
        let telemetry = node.heartbeat.telemetry
        var factor = 1.0
        var penalties: [String] = []
        switch telemetry.thermal {
        case .serious: factor *= 1.5; penalties.append("thermal serious")
        case .critical: factor *= 3; penalties.append("thermal critical")
        default: break
        }
        if telemetry.cpuThrottled || telemetry.gpus.contains(where: \.throttled) { factor *= 1.5; penalties.append("throttled") }
        if telemetry.pressure == .high { factor *= 1.5; penalties.append("memory pressure high") }
        if telemetry.pressure == .critical { factor *= 2; penalties.append("memory pressure critical") }
        if errors > 0.05 { factor *= 1 + errors; penalties.append("recent errors \(Int(saturatingRounded: errors * 10) / 10)") }
        if node.status == .degraded { factor *= 2; penalties.append("heartbeats late") }
        if telemetry.inMeeting, settings.meetingPolicy == .avoid { factor *= 4; penalties.append("in a meeting") }
        if let a = node.heartbeat.capacity?.availability, a < 0.95 {
            factor *= 1 + 2 * (1 - a)
            penalties.append("availability \(Int(saturatingRounded: a * 100)) %")
        }
        return (factor, penalties)
    }

    /// Expected output tokens: measured mean (fleet-wide) or the prior
    /// (× the thinking multiplier for a thinking model), capped by the client's limit.
    func expectedOutputTokens(_ request: ScoringRequest, model: Heartbeat.Model?, rates: ModelRates?, name: String) -> Double {
        guard request.generates else { return 0 }
        var expected = rates?.outputTokens.value ?? CompletionTimeModel.Priors.outputTokens
        if rates?.outputTokens.value == nil, request.think ?? Scorer.isThinking(name: name, capabilities: model?.capabilities ?? []) {
            expected *= settings.thinkingMultiplier
        }
        if let limit = request.maxOutputTokens, limit > 0 { expected = min(expected, Double(limit)) }
        return expected
    }

    /// A model that thinks before it answers: `/api/show` says `thinking`, or its name is a known reasoning family.
    package static func isThinking(name: String, capabilities: [String]) -> Bool {
        if capabilities.contains("thinking") { return true }
        let lower = name.lowercased()
        return ["deepseek-r1", "qwq", "qwen3", "gpt-oss", "magistral", "phi4-reasoning", "exaone-deep", "openthinker", "cogito", "-thinking", "-reasoning"]
            .contains { lower.contains($0) }
    }

    /// Memory a new load could use on `node`: free memory, free VRAM, and what
    /// idle loaded models (other than this one) would give back when evicted.
    /// On a machine without GPUs, capped by the learned capacity's memory
    /// ceiling (what the owner leaves at this hour of the week) less what
    /// loaded models already hold.
    static func usableBytes(_ node: FleetNode, forLoading canonical: String, load: some RoutingLoad) -> Int {
        var bytes = freeBytes(node)
        var idle = 0, loadedTotal = 0
        for backend in node.heartbeat.backends {
            for model in backend.loaded {
                loadedTotal += max(0, model.sizeBytes)
                if ModelName.canonical(model.name) != canonical, load.inFlight(SlotKey(node.id, model.name)) == 0 { idle += max(0, model.sizeBytes) }
            }
        }
        bytes += idle
        if let ceiling = node.heartbeat.capacity?.memoryCeilingBytes, node.heartbeat.telemetry.gpus.isEmpty {
            bytes = min(bytes, max(0, ceiling - loadedTotal) + idle)
        }
        return bytes
    }

    /// Free memory and free VRAM: what a load can take without evicting.
    static func freeBytes(_ node: FleetNode) -> Int {
        var bytes = max(0, node.heartbeat.memoryAvailableBytes)
        for gpu in node.heartbeat.telemetry.gpus { bytes += max(0, gpu.memoryTotalBytes - gpu.memoryUsedBytes) }
        return bytes
    }

    /// Memory that loaded models busy on `node` (other than this one) hold:
    /// freed once they drain. A model herd started loading there that no
    /// heartbeat lists yet holds memory the same way (its requests wait on
    /// it): its weights and the KV cache of the default context.
    static func busyBytes(_ node: FleetNode, except canonical: String, load: some RoutingLoad) -> Int {
        var bytes = 0
        for backend in node.heartbeat.backends {
            for model in backend.loaded where ModelName.canonical(model.name) != canonical {
                if load.inFlight(SlotKey(node.id, model.name)) > 0 { bytes += max(0, model.sizeBytes) }
            }
        }
        for loading in load.loadingModels(node: node.id) where loading != canonical {
            guard !node.heartbeat.backends.contains(where: { $0.loaded.contains { ModelName.canonical($0.name) == loading } }),
                  let weights = node.heartbeat.backends.lazy.compactMap({ $0.models.first { ModelName.canonical($0.name) == loading }?.sizeBytes }).first
            else { continue }
            let kv = Double(max(0, weights)) * CompletionTimeModel.Priors.kvShareOfWeightsPerToken * Double(CompletionTimeModel.Priors.defaultContext)
            bytes = bytes.addingSaturated(Int(saturating: Double(max(0, weights)) + kv))
        }
        return bytes
    }

    /// The model runs from VRAM: loaded mostly in VRAM, or a GPU has room for it.
    static func gpuHolds(_ node: FleetNode, weights: Int, loaded: Heartbeat.LoadedModel?) -> Bool {
        if let loaded, loaded.sizeBytes > 0 { return Double(loaded.vramBytes) >= 0.9 * Double(loaded.sizeBytes) }
        guard weights > 0 else { return !node.heartbeat.telemetry.gpus.isEmpty }
        return node.heartbeat.telemetry.gpus.contains { $0.memoryTotalBytes - $0.memoryUsedBytes >= weights }
    }

    static func gigabytes(_ bytes: Int) -> String {
        let tenths = Int(saturatingRounded: Double(bytes) / 1e8)
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// Every model name the fleet has for this API (for 404 answers).
    package static func knownModels(_ nodes: [FleetNode], api: ClientAPI) -> [String] {
        var names = Set<String>()
        for node in nodes where node.status != .offline {
            for backend in node.heartbeat.backends where backend.kind.serves(api) {
                for model in backend.models { names.insert(model.name) }
            }
        }
        return names.sorted()
    }
}

extension ScoreCard {
    /// Every candidate with its terms (whole milliseconds), then every
    /// elimination with its reason, as JSON text: the trace row's `candidates`
    /// column and the decisions feed. Written directly (it is on every
    /// request's path).
    package var jsonText: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(200 * (candidates.count + eliminated.count) + 2)
        out.append(UInt8(ascii: "["))
        for (i, c) in candidates.enumerated() {
            out.append(literal: i == 0 ? #"{"node":"# : #",{"node":"#)
            JSONValue.writeString(c.node, to: &out)
            out.append(literal: #","model":"#)
            JSONValue.writeString(c.model, to: &out)
            out.append(literal: #","state":""#)
            out.append(contentsOf: c.temperature.label.utf8)
            out.append(literal: #"","ect_ms":"#)
            out.append(rounded: c.ectMs)
            out.append(literal: #","wait":"#)
            out.append(rounded: c.breakdown.wait)
            out.append(literal: #","load":"#)
            out.append(rounded: c.breakdown.load)
            out.append(literal: #","prefill":"#)
            out.append(rounded: c.breakdown.prefill)
            out.append(literal: #","decode":"#)
            out.append(rounded: c.breakdown.decode)
            if c.breakdown.factor != 1 {
                out.append(literal: #","factor":"#)
                JSONValue.number(c.breakdown.factor).write(to: &out)
            }
            if c.breakdown.crowd > 0 {
                out.append(literal: #","crowd":"#)
                out.append(rounded: c.breakdown.crowd)
            }
            if c.drains { out.append(literal: #","drains":true"#) }
            out.append(literal: #","in_flight":"#)
            out.append(decimal: c.inFlight)
            out.append(literal: #","limit":"#)
            out.append(decimal: c.limit)
            if let affinity = c.affinity {
                out.append(literal: #","affinity":""#)
                out.append(contentsOf: affinity.rawValue.utf8)
                out.append(literal: #"","affinity_gain":"#)
                out.append(rounded: c.breakdown.affinityGain)
            }
            if !c.penalties.isEmpty {
                out.append(literal: #","penalties":"#)
                JSONValue.array(c.penalties.map { .string($0) }).write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        for (i, e) in eliminated.enumerated() {
            out.append(literal: i + candidates.count == 0 ? #"{"node":"# : #",{"node":"#)
            JSONValue.writeString(e.node, to: &out)
            out.append(literal: #","model":"#)
            JSONValue.writeString(e.model, to: &out)
            out.append(literal: #","eliminated":"#)
            JSONValue.writeString(e.reason, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// `jsonText` parsed (tests, the decisions feed).
    package var json: JSONValue { (try? JSONValue.parse(jsonText)) ?? .array([]) }
}
