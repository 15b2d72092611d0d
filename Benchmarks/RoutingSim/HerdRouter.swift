import Glibc
import HerdRouting
import HerdWire

/// herd's real `Scheduler` (scorer, queue, concurrency learning, learned
/// rates) driven as herd-control drives it: ROUTE on arrival, RESULT with the
/// backend's Ollama-style timings, the fleet as heartbeats describe it every
/// 2 s, `expire` at its deadlines.
final class HerdRouter: SimRouter {
    /// What the simulated backends tell herd about themselves.
    enum Reports: String {
        /// Their slots (parallelism) and Ollama's timings, as a configured Ollama or llama.cpp.
        case all
        /// Neither: no parallelism, no timings (most Ollama installs, vLLM, OpenAI-compatible servers).
        case nothing
        /// No parallelism, and every duration 1 ns (some servers).
        case absurd
    }

    let name = "herd"
    let reports: Reports
    /// Share of requests that stream (the rest: non-streaming, their first byte is their end).
    let streamShare: Double
    let backends: SimBackends
    private var scheduler: Scheduler
    private var fleet: [FleetNode] = []
    private var actions: [SchedulerAction] = []
    private let proxy = ProxyKey(raw: 1)
    private var queuedMs: [Int: Double] = [:]
    private var byNode: [String: SimMachine] = [:]

    /// Machines that report every duration as 1 ns whatever `reports` says.
    let absurd: Set<String>

    init(_ backends: SimBackends, reports: Reports = .all, streamShare: Double = 1, absurd: Set<String> = []) {
        self.backends = backends
        self.reports = reports
        self.absurd = absurd
        self.streamShare = streamShare
        var settings = Scheduler.Settings()
        settings.queueTimeoutMilliseconds = 600_000 // the comparison counts completion times, not refusals
        // Every request by ROUTE: the simulated proxy spends no tickets (a
        // ticket is the same scorer's decision, made ahead of the request).
        settings.maxTicketsPerModel = 0
        // HERD_SIM_INITIAL=N: herd's starting limit for machines that report none.
        if let v = getenv("HERD_SIM_INITIAL").flatMap({ Int(String(cString: $0)) }) { settings.initialConcurrency = min(1024, max(1, v)) }
        scheduler = Scheduler(settings: settings)
        for machine in backends.machines { byNode[machine.name] = machine }
        heartbeat(now: 0)
    }

    /// A machine as herd-node reports it.
    static func node(_ machine: SimMachine, now: Double, reportsSlots: Bool = true) -> FleetNode {
        let spec = machine.spec.value
        let gb = 1_000_000_000.0
        var telemetry = Telemetry()
        if spec.hasGPU {
            telemetry.gpus = [Telemetry.GPU(vendor: "nvidia", name: "gpu", memoryUsedBytes: Int(machine.usedGB * gb),
                                            memoryTotalBytes: Int(spec.memoryGB * gb), throttled: machine.throttled)]
        }
        if machine.throttled {
            telemetry.thermal = .serious
            telemetry.cpuThrottled = true
        }
        telemetry.cameraInUse = machine.inMeeting
        let backend = Heartbeat.Backend(
            kind: .ollama, url: "", address: "127.0.0.1:11434", reachable: true,
            models: spec.models.map { Heartbeat.Model(name: $0.name, sizeBytes: Int($0.gigabytes * gb),
                                                       capabilities: $0.thinking ? ["completion", "thinking"] : ["completion"]) },
            loaded: machine.loaded.keys.map { Heartbeat.LoadedModel(name: $0.name, sizeBytes: Int($0.residentGB * gb),
                                                                     vramBytes: spec.hasGPU ? Int($0.residentGB * gb) : 0, contextLength: 8192) },
            parallel: reportsSlots ? spec.slots : nil)
        // A GPU box's memory for models is its VRAM (reported as the GPU's); RAM is not offered.
        let available = spec.hasGPU ? 0 : Int((spec.memoryGB - machine.usedGB) * gb)
        var node = FleetNode(heartbeat: Heartbeat(nodeID: spec.name, memoryTotalBytes: Int(spec.memoryGB * gb), memoryAvailableBytes: available,
                                                  backends: [backend], telemetry: telemetry),
                             lastSeenMilliseconds: UInt64(now), firstSeenMilliseconds: 0, status: .online)
        for (model, at) in machine.unloadedAt where now - at < 30 * 60_000 { node.recentlyUnloaded[ModelName.canonical(model)] = UInt64(at) }
        return node
    }

    func arrive(_ request: SimRequest, now: Double) {
        let route = RouteRequest(id: UInt64(request.id), api: .ollama, path: "/api/chat", model: request.model, stream: streams(request.id),
                                 estimatedTokens: request.promptTokens, session: request.session.map(ContentHash.init),
                                 prefix: request.systemPrompt == .max ? nil : ContentHash(request.systemPrompt)) // .max: no system prompt
        pending[request.id] = request
        scheduler.route(route, from: proxy, fleet: fleet, now: UInt64(now), into: &actions)
        perform(now: now)
    }

    private var pending: [Int: SimRequest] = [:]
    /// Queued requests: the wait expected when each queued, then (expected, actual).
    private var expectedWait: [Int: Double] = [:]
    private(set) var waits: [(Double, Double)] = []
    /// With `debug`: each request's routing decision (where, why, the candidates).
    private(set) var decisions: [Int: String] = [:]
    var lastAnswer: RouteAnswer?
    /// Prints each learned-limit change (HERD_SIM_TRACE_LIMITS=1).
    let traceLimits = getenv("HERD_SIM_TRACE_LIMITS") != nil
    /// Machines report their slots whatever `reports` says (HERD_SIM_ORACLE=1): what perfect discovery would give.
    let oracle = getenv("HERD_SIM_ORACLE") != nil
    var debug: Bool = false {
        didSet {
            guard debug else { return }
            backends.onNeedless = { [unowned self] request, machine, now in
                let hot = self.backends.machines.filter { m in m.has(request.model).map { m.isHot($0) } ?? false }
                    .map { m in "\(m.name)(\(m.has(request.model).map { m.inFlight($0) } ?? 0)/\(m.spec.value.slots) limit \(self.scheduler.limit(node: m.name, model: request.model)))" }
                print("  needless t=\(Int(now / 1000))s \(request.model) → \(machine.name); hot: \(hot.joined(separator: ", ")); \(self.lastAnswer?.reason ?? "") | \(self.lastAnswer?.score ?? "")")
            }
        }
    }

    private func perform(now: Double) {
        let todo = actions
        actions.removeAll()
        for action in todo {
            switch action {
            case let .routed(_, answer):
                guard let request = pending.removeValue(forKey: Int(answer.id)), let machine = byNode[answer.node] else { continue }
                queuedMs[request.id] = Double(answer.queuedMilliseconds)
                if let expected = expectedWait.removeValue(forKey: request.id) { waits.append((expected, Double(answer.queuedMilliseconds))) }
                lastAnswer = answer
                if debug, let d = scheduler.feed.decisions.last(where: { $0.requestID == answer.id }) {
                    decisions[request.id] = "\(answer.node): \(answer.reason) | " + String(decoding: d.card.jsonText, as: UTF8.self)
                }
                backends.dispatch(request, to: machine, now: now)
            case let .refused(_, refusal):
                pending[Int(refusal.id)] = nil
            case .queued:
                if let d = scheduler.feed.decisions.last, d.action == "queued", let best = d.card.candidates.first {
                    expectedWait[Int(d.requestID)] = best.breakdown.wait
                }
                if debug, let d = scheduler.feed.decisions.last, d.action == "queued" {
                    print("  queued t=\(Int(now / 100) / 10)s for \(d.node): \(d.reason) | " + String(decoding: d.card.jsonText, as: UTF8.self))
                }
            case .finished, .granted, .revoked:
                break
            case let .prewarm(prewarm):
                // herd-control's empty generate: the machine loads the model if it fits without evicting.
                guard let machine = byNode[prewarm.node], let model = machine.has(prewarm.model),
                      let doneAt = machine.prewarm(model, now: now) else {
                    warming.append((prewarm.node, prewarm.model, now, false))
                    continue
                }
                warming.append((prewarm.node, prewarm.model, doneAt, true))
            }
        }
    }

    /// Whether request `id` streams: the first `streamShare` of every hundred.
    func streams(_ id: Int) -> Bool { Double(id % 100) < streamShare * 100 }

    func finished(_ job: SimJob, machine: SimMachine, now: Double) {
        let queued = queuedMs.removeValue(forKey: job.request.id) ?? 0
        let upstreamTtft = streams(job.request.id) ? (job.firstTokenAt ?? now) - job.sentAt : now - job.sentAt
        var result = RouteResult(
            id: UInt64(job.request.id), node: machine.name, model: job.model.name, outcome: .ok, status: 200,
            ttftMilliseconds: queued + upstreamTtft, durationMilliseconds: queued + (now - job.sentAt),
            promptTokens: job.promptTokens, completionTokens: job.request.outputTokens,
            backendPromptMilliseconds: job.prefillMs, backendDecodeMilliseconds: job.decodeMs, backendLoadMilliseconds: job.loadMs,
            upstreamTtftMilliseconds: upstreamTtft, upstreamMilliseconds: now - job.sentAt)
        switch absurd.contains(machine.name) ? .absurd : reports {
        case .all: break
        case .nothing:
            result.backendPromptMilliseconds = nil
            result.backendDecodeMilliseconds = nil
            result.backendLoadMilliseconds = nil
        case .absurd:
            result.backendPromptMilliseconds = 1e-6
            result.backendDecodeMilliseconds = 1e-6
            result.backendLoadMilliseconds = 1e-6
            result.backendTotalMilliseconds = 1e-6
        }
        let before = scheduler.limit(node: machine.name, model: job.model.name)
        scheduler.result(result, from: proxy, fleet: fleet, now: UInt64(now), into: &actions)
        if traceLimits {
            let after = scheduler.limit(node: machine.name, model: job.model.name)
            print("  limit t=\(Int(now)) \(machine.name) k=\(job.concurrencyAtSend) took \(Int(now - job.sentAt)) ms (\(job.promptTokens)+\(job.request.outputTokens) tokens, speed \(machine.speed)): \(before) -> \(after)")
        }
        perform(now: now)
    }

    func heartbeat(now: Double) {
        fleet = backends.machines.map { HerdRouter.node($0, now: now, reportsSlots: reports == .all || oracle) }
        if debug, Int(now) % 10_000 == 0, now > 0, !pending.isEmpty || backends.machines.contains(where: { $0.activeCount > 0 }) {
            // The learned limit and the load per machine (first model), every 10 s.
            let rows = backends.machines.map { m in
                let model = m.spec.value.models[0]
                return "\(m.name) \(m.inFlight(model))/\(scheduler.limit(node: m.name, model: model.name))"
            }
            print("  t=\(Int(now / 1000))s waiting in herd \(pending.count): \(rows.joined(separator: ", "))")
        }
        scheduler.fleetChanged(fleet: fleet, now: UInt64(now), into: &actions)
        perform(now: now)
    }

    /// Pre-warms under way: node, model, when the answer comes, whether it loaded.
    private var warming: [(String, String, Double, Bool)] = []

    /// While requests wait in herd: steps counted, and per machine the requests it was running (summed).
    private(set) var waitingSteps = 0
    private(set) var busyWhileWaiting: [String: Int] = [:]

    func tick(now: Double) {
        if !pending.isEmpty {
            waitingSteps += 1
            for m in backends.machines { busyWhileWaiting[m.name, default: 0] += m.activeCount }
        }
        if warming.contains(where: { $0.2 <= now }) {
            let done = warming.filter { $0.2 <= now }
            warming.removeAll { $0.2 <= now }
            for (node, model, _, ok) in done {
                let loadMs = ok ? byNode[node]?.has(model).flatMap { byNode[node]?.lastLoadMs[$0] } : nil
                scheduler.prewarmFinished(node: node, model: model, ok: ok, loadMs: loadMs, fleet: fleet, now: UInt64(now), into: &actions)
            }
            perform(now: now)
        }
        guard let deadline = scheduler.nextDeadline, Double(deadline) <= now else { return }
        scheduler.expire(now: UInt64(now), fleet: fleet, into: &actions)
        perform(now: now)
    }
}
