/// The simulated fleet: machines that load models into memory, run requests
/// in a limited number of slots per model (more wait inside the backend, in
/// order, like Ollama's OLLAMA_NUM_PARALLEL), read prompts and generate
/// tokens at speeds that fall as the batch grows, and report back what
/// Ollama would (`eval_count`, `eval_duration`, `load_duration`, …).
/// Virtual time in milliseconds, advanced in fixed steps.

/// A model file.
struct SimModel: Hashable {
    let name: String
    let gigabytes: Double
    /// Thinks before answering (long outputs).
    let thinking: Bool
    /// Resident size with its KV cache (what memory holds).
    var residentGB: Double { gigabytes * 1.15 }
}

/// A machine's hardware and what it holds.
struct MachineSpec {
    let name: String
    /// Memory models can occupy (VRAM on a GPU box, RAM otherwise).
    let memoryGB: Double
    /// Memory bandwidth decoding reads weights at (GB/s).
    let bandwidth: Double
    /// Prompt tokens read in the time of one generated token.
    let prefillSpeedup: Double
    /// Each other request running on the machine adds this share to a token's time.
    let batchSlowdown: Double
    /// Requests per model served at once (OLLAMA_NUM_PARALLEL).
    let slots: Int
    /// Disk → memory, GB/s.
    let loadGBps: Double
    let hasGPU: Bool
    let models: [SimModel]
    let loaded: [SimModel]
}

/// One request as the backend runs it.
final class SimJob {
    let request: SimRequest
    let model: SimModel
    let sentAt: Double
    var startedAt: Double?
    /// Prompt tokens still to read (after a cache hit: only the new part).
    var prefillLeft: Double = 0
    var promptTokens = 0
    var tokensLeft: Double
    var firstTokenAt: Double?
    /// How long it waited for its model to load (Ollama's `load_duration`).
    var loadMs: Double = 0
    /// Requests of its model in the machine when it arrived, itself included.
    var concurrencyAtSend = 0
    var prefillMs: Double = 0
    var decodeMs: Double = 0
    let onDone: (SimJob, Double) -> Void

    init(request: SimRequest, model: SimModel, sentAt: Double, onDone: @escaping (SimJob, Double) -> Void) {
        self.request = request
        self.model = model
        self.sentAt = sentAt
        tokensLeft = Double(request.outputTokens)
        self.onDone = onDone
    }
}

/// A machine running its backend.
final class SimMachine {
    /// How streams of different models on one machine share it.
    enum Physics: String {
        /// Every stream slows every other by the machine's batch slowdown, whatever model it runs (the default).
        case batch
        /// Only a model's own streams batch; different models' runners take turns (two processes sharing a GPU's
        /// memory bandwidth or a CPU's cores): a token of one waits for a step of each other model running.
        case timeshare
    }
    nonisolated(unsafe) static var physics = Physics.batch

    let spec: SimSpecHolder
    var name: String { spec.value.name }
    /// Loaded models and when each was last used.
    var loaded: [SimModel: Double] = [:]
    /// Loads under way: model → when done.
    var loading: [SimModel: Double] = [:]
    var unloadedAt: [String: Double] = [:]
    var running: [SimModel: [SimJob]] = [:]
    var waiting: [SimModel: [SimJob]] = [:]
    /// Speed multiplier (< 1 while throttled or in a meeting).
    var speed = 1.0
    var throttled = false
    var inMeeting = false
    var coldLoads = 0
    /// Of those, loads a router asked for ahead of demand.
    var prewarms = 0
    /// Each load's duration (Ollama's `load_duration` for a pre-warm).
    var lastLoadMs: [SimModel: Double] = [:]
    /// KV caches: per model, the sessions whose context a slot still holds (most recent last).
    var caches: [SimModel: [UInt64]] = [:]

    init(_ spec: MachineSpec, now: Double) {
        self.spec = SimSpecHolder(spec)
        for model in spec.loaded { loaded[model] = now }
    }

    var activeCount: Int { running.values.reduce(0) { $0 + $1.count } }
    var usedGB: Double { loaded.keys.reduce(0) { $0 + $1.residentGB } + loading.keys.reduce(0) { $0 + $1.residentGB } }
    func has(_ model: String) -> SimModel? { spec.value.models.first { $0.name == model } }
    func isHot(_ model: SimModel) -> Bool { loaded[model] != nil }
    func inFlight(_ model: SimModel) -> Int { (running[model]?.count ?? 0) + (waiting[model]?.count ?? 0) }

    /// What the request would take here if sent now (the simulator's own
    /// arithmetic, not a router's estimate): a load if the model is not in
    /// memory, its prefill and decode at the batch it would join.
    func oracleMs(_ request: SimRequest, _ model: SimModel, now: Double) -> Double {
        var load = 0.0
        if let until = loading[model] {
            load = until - now
        } else if loaded[model] == nil {
            let warm = unloadedAt[model.name].map { now - $0 < 30 * 60_000 } ?? false
            load = 500 + model.gigabytes / spec.value.loadGBps * 1000 * (warm ? 0.4 : 1)
        }
        let perToken = msPerToken(model, joining: true)
        let cached = request.session.map { caches[model]?.contains($0) ?? false } ?? false
        let prompt = Double(cached ? request.newPromptTokens : request.promptTokens)
        return load + prompt * perToken / spec.value.prefillSpeedup + Double(request.outputTokens) * perToken
    }

    /// An empty generate (a pre-warm): loads `model` if it is not in memory
    /// and fits without evicting another; nil if it does not fit. When the answer comes.
    func prewarm(_ model: SimModel, now: Double) -> Double? {
        if loaded[model] != nil { return now }
        if let until = loading[model] { return until }
        guard usedGB + model.residentGB <= spec.value.memoryGB else { return nil }
        let warm = unloadedAt[model.name].map { now - $0 < 30 * 60_000 } ?? false
        let ms = 500 + model.gigabytes / spec.value.loadGBps * 1000 * (warm ? 0.4 : 1)
        loading[model] = now + ms
        lastLoadMs[model] = ms
        coldLoads += 1
        prewarms += 1
        return now + ms
    }

    /// A request arrives at the backend.
    func submit(_ job: SimJob, now: Double) {
        job.concurrencyAtSend = inFlight(job.model) + 1
        waiting[job.model, default: []].append(job)
        admit(now: now)
        // Ollama's load_duration: the part of the wait that was the model loading.
        if let until = loading[job.model] { job.loadMs = until - now }
    }

    /// Starts loads and jobs that can start.
    func admit(now: Double) {
        for (model, queue) in waiting where !queue.isEmpty {
            if loaded[model] == nil, loading[model] == nil {
                // Evict idle models (least recently used first) until it fits.
                while usedGB + model.residentGB > spec.value.memoryGB,
                      let victim = loaded.filter({ (self.running[$0.key]?.isEmpty ?? true) && (self.waiting[$0.key]?.isEmpty ?? true) })
                          .min(by: { $0.value < $1.value })?.key {
                    loaded[victim] = nil
                    unloadedAt[victim.name] = now
                    caches[victim] = nil
                }
                guard usedGB + model.residentGB <= spec.value.memoryGB else { continue }
                let warm = unloadedAt[model.name].map { now - $0 < 30 * 60_000 } ?? false
                let ms = 500 + model.gigabytes / spec.value.loadGBps * 1000 * (warm ? 0.4 : 1)
                loading[model] = now + ms
                lastLoadMs[model] = ms
                coldLoads += 1
                continue
            }
            guard loaded[model] != nil else { continue }
            var running = self.running[model] ?? []
            var queue = queue
            while running.count < spec.value.slots, !queue.isEmpty {
                let job = queue.removeFirst()
                job.startedAt = now
                let cached = job.request.session.map { caches[model]?.contains($0) ?? false } ?? false
                // Prompt tokens actually read (Ollama's prompt_eval_count): a cached conversation reads only its new part.
                job.promptTokens = cached ? job.request.newPromptTokens : job.request.promptTokens
                job.prefillLeft = Double(job.promptTokens)
                running.append(job)
                loaded[model] = now
            }
            self.running[model] = running
            waiting[model] = queue
        }
    }

    /// Milliseconds per generated token for one stream right now (`joining`: for one more of `model`).
    func msPerToken(_ model: SimModel, joining: Bool = false) -> Double {
        let extra = joining ? 1 : 0
        let single = model.gigabytes / spec.value.bandwidth * 1000
        guard SimMachine.physics == .timeshare else {
            return single * (1 + spec.value.batchSlowdown * Double(max(0, activeCount + extra - 1))) / speed
        }
        // One step of each model's runner: its single-stream cost, batched over its own streams.
        var step = 0.0
        for (other, jobs) in running where other != model && !jobs.isEmpty {
            step += other.gigabytes / spec.value.bandwidth * 1000 * (1 + spec.value.batchSlowdown * Double(jobs.count - 1))
        }
        let own = (running[model]?.count ?? 0) + extra
        return (step + single * (1 + spec.value.batchSlowdown * Double(max(0, own - 1)))) / speed
    }

    /// Advances `dt` ms.
    func step(now: Double, dt: Double) {
        for (model, until) in loading where until <= now {
            loading[model] = nil
            loaded[model] = now
        }
        var finished: [SimJob] = []
        for (model, jobs) in running {
            let perToken = msPerToken(model)
            for job in jobs {
                var budget = dt
                if job.prefillLeft > 0 {
                    let perPrompt = perToken / spec.value.prefillSpeedup
                    let need = job.prefillLeft * perPrompt
                    let used = min(budget, need)
                    job.prefillLeft -= used / perPrompt
                    job.prefillMs += used
                    budget -= used
                    if job.prefillLeft > 1e-9 { continue }
                    job.prefillLeft = 0
                }
                if job.firstTokenAt == nil { job.firstTokenAt = now + (dt - budget) }
                let tokens = budget / perToken
                job.decodeMs += min(budget, job.tokensLeft * perToken)
                job.tokensLeft -= tokens
                if job.tokensLeft <= 0 { finished.append(job) }
            }
        }
        for job in finished {
            running[job.model]?.removeAll { $0 === job }
            if let session = job.request.session {
                var cache = caches[job.model] ?? []
                cache.removeAll { $0 == session }
                cache.append(session)
                if cache.count > spec.value.slots { cache.removeFirst(cache.count - spec.value.slots) }
                caches[job.model] = cache
            }
            job.onDone(job, now + dt)
        }
        admit(now: now + dt)
    }
}

/// The spec behind a reference (machines share it with the routers' views).
final class SimSpecHolder {
    let value: MachineSpec
    init(_ value: MachineSpec) { self.value = value }
}
