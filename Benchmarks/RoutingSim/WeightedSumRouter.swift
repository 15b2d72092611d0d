/// The Python router herd replaces (Ollama Herd), reimplemented from its
/// published description (`shared/notes/ollama-herd-anatomy.md` §2b, §2c):
/// hard eliminations, then a weighted sum of eight signals; the winner's
/// node:model queue takes the request (bound to it), served by
/// `clamp((free GB − model GB) ÷ 2, 1, 8)` workers capped by the node's
/// OLLAMA_NUM_PARALLEL; every 5 s a rebalancer pre-warms the runner-up of a
/// queue 3 deep and moves up to 3 pending requests of a queue 4 deep to a
/// node where the model is hot. Capacity learning is on (a meeting or
/// throttling pauses the node) and it is told each node's true bandwidth and,
/// when the machines report it (`--reports all`), their parallelism — the
/// description at its most favourable. When they do not, its workers are
/// capped at its documented default for an unset OLLAMA_NUM_PARALLEL: 1.
final class WeightedSumRouter: SimRouter {
    let name = "ollama-herd (weighted sum)"
    let backends: SimBackends

    private final class NodeModelQueue {
        var pending: [SimRequest] = []
        var inFlight = 0
        var depth: Int { pending.count + inFlight }
    }

    /// What the last heartbeat said.
    private struct View {
        var loaded: Set<String> = []
        var availableGB = 0.0
        var paused = false
        var unloadedAt: [String: Double] = [:]
    }

    private var queues: [String: NodeModelQueue] = [:]
    private var views: [String: View] = [:]
    /// Completion times (s) per node:model, for the p75 "wait" signal.
    private var latencies: [String: [Double]] = [:]
    private var sessions: [UInt64: String] = [:]
    private var prefixes: [String: Set<UInt64>] = [:]
    private var arrivedAt: [Int: Double] = [:]
    private var lastRebalance = 0.0

    /// Told each node's parallelism (else it assumes its default, 1).
    let knowsParallel: Bool

    init(_ backends: SimBackends, knowsParallel: Bool = true) {
        self.backends = backends
        self.knowsParallel = knowsParallel
        heartbeat(now: 0)
    }

    private func key(_ machine: SimMachine, _ model: String) -> String { machine.name + "/" + model }
    private func queue(_ machine: SimMachine, _ model: String) -> NodeModelQueue {
        if let q = queues[key(machine, model)] { return q }
        let q = NodeModelQueue()
        queues[key(machine, model)] = q
        return q
    }

    private var medianBandwidth: Double {
        let sorted = backends.machines.map(\.spec.value.bandwidth).sorted()
        return sorted[sorted.count / 2]
    }

    /// The score of `machine` for `request`, or nil when eliminated.
    private func score(_ request: SimRequest, _ machine: SimMachine, now: Double) -> Double? {
        guard let model = machine.has(request.model), let view = views[machine.name], !view.paused else { return nil }
        let hot = view.loaded.contains(model.name)
        let fit = model.residentGB
        if !hot, fit > view.availableGB { return nil }
        var score = 0.0
        // 1. Model temperature.
        let warm = view.unloadedAt[model.name].map { now - $0 < 30 * 60_000 } ?? false
        score += hot ? 50 : warm ? 30 : 10
        // 2. Memory fit.
        if hot {
            score += 20
        } else {
            let r = view.availableGB / fit
            score += r > 2 ? 20 : r > 1.5 ? 15 : r > 1.2 ? 8 : r >= 1 ? 3 : 0
        }
        // 3. Queue depth, normalised by bandwidth.
        let q = queue(machine, model.name)
        let bw = machine.spec.value.bandwidth
        let effective = Double(q.depth) / min(4, max(0.25, bw / medianBandwidth))
        score -= min(30, 6 * effective)
        // 4. Wait: depth × p75 latency (s) ÷ 10; without history, from bandwidth and size.
        let history = latencies[key(machine, model.name)] ?? []
        let p75 = history.isEmpty ? model.gigabytes / bw * 300 : history.sorted()[min(history.count - 1, history.count * 3 / 4)]
        score -= min(25, Double(q.depth) * p75 / 10)
        // 5. Role affinity by bandwidth and model size.
        let bonus = min(25, 5 + bw / 40)
        score += model.gigabytes > 20 ? bonus : model.gigabytes < 8 ? max(3, 18 - 0.6 * bonus) : 0.6 * bonus
        // 6. Availability (capacity learning; full availability outside a pause).
        score += 10
        // 7. Context fit (loaded context 8192).
        if hot {
            let ratio = 8192 / Double(max(1, request.promptTokens))
            score += ratio < 1 ? -15 : ratio < 1.5 ? 3 : ratio < 3 ? 7.5 : ratio < 8 ? 12 : 15
        }
        // 8. Session or prefix affinity, decaying with the queue.
        if let session = request.session, sessions[session] == key(machine, model.name) {
            score += 20 / (1 + Double(q.depth) / 2)
        } else if prefixes[key(machine, model.name)]?.contains(request.systemPrompt) == true {
            score += 10 / (1 + Double(q.depth) / 2)
        }
        return score
    }

    private func ranked(_ request: SimRequest, now: Double) -> [(SimMachine, Double)] {
        backends.machines.compactMap { m in score(request, m, now: now).map { (m, $0) } }.sorted { $0.1 > $1.1 }
    }

    /// Workers of a node:model queue.
    private func concurrency(_ machine: SimMachine, _ model: String) -> Int {
        guard let m = machine.has(model) else { return 1 }
        let free = views[machine.name]?.availableGB ?? 0
        return min(knowsParallel ? machine.spec.value.slots : 1, max(1, min(8, Int((free - m.gigabytes) / 2))))
    }

    func arrive(_ request: SimRequest, now: Double) {
        arrivedAt[request.id] = now
        // No candidate (every node paused or full): wait for the next heartbeat's view.
        guard let (best, _) = ranked(request, now: now).first ?? backends.withModel(request.model).first.map({ ($0, 0) }) else { return }
        queue(best, request.model).pending.append(request)
        drain(best, request.model, now: now)
    }

    private func drain(_ machine: SimMachine, _ model: String, now: Double) {
        let q = queue(machine, model)
        while q.inFlight < concurrency(machine, model), !q.pending.isEmpty {
            let request = q.pending.removeFirst()
            q.inFlight += 1
            if let session = request.session { sessions[session] = key(machine, model) }
            prefixes[key(machine, model), default: []].insert(request.systemPrompt)
            backends.dispatch(request, to: machine, now: now)
        }
    }

    func finished(_ job: SimJob, machine: SimMachine, now: Double) {
        guard job.request.id >= 0 else { return } // a pre-warm
        let q = queue(machine, job.model.name)
        q.inFlight -= 1
        var history = latencies[key(machine, job.model.name)] ?? []
        history.append((now - (arrivedAt.removeValue(forKey: job.request.id) ?? now)) / 1000)
        if history.count > 200 { history.removeFirst(history.count - 200) }
        latencies[key(machine, job.model.name)] = history
        drain(machine, job.model.name, now: now)
    }

    func heartbeat(now: Double) {
        for machine in backends.machines {
            views[machine.name] = View(
                loaded: Set(machine.loaded.keys.map(\.name)), availableGB: machine.spec.value.memoryGB - machine.usedGB,
                paused: machine.inMeeting || machine.throttled, unloadedAt: machine.unloadedAt)
        }
        // Requests stranded while every node was paused or full.
        for (k, q) in queues where !q.pending.isEmpty {
            let parts = k.split(separator: "/", maxSplits: 1)
            if let machine = backends.machines.first(where: { $0.name == parts[0] }) { drain(machine, String(parts[1]), now: now) }
        }
    }

    func tick(now: Double) {
        guard now - lastRebalance >= 5_000 else { return }
        lastRebalance = now
        for (k, q) in queues {
            let parts = k.split(separator: "/", maxSplits: 1)
            let model = String(parts[1])
            guard let head = q.pending.first else { continue }
            // Pre-warm the runner-up.
            if q.depth >= 3 {
                let ranking = ranked(head, now: now)
                if ranking.count > 1, let m = ranking[1].0.has(model), !ranking[1].0.isHot(m), ranking[1].0.loading[m] == nil {
                    backends.send(SimRequest(id: -1, conversation: -1, turnIndex: 0, model: model, promptTokens: 0, newPromptTokens: 0, outputTokens: 0,
                                             session: nil, systemPrompt: 0), ranking[1].0, m, now)
                }
            }
            // Move pending requests to a node where the model is hot and the queue short.
            if q.pending.count >= 4 {
                let count = min(q.pending.count / 2, 3)
                if let target = backends.machines.first(where: { m in
                    m.name != parts[0] && views[m.name]?.loaded.contains(model) == true && !(views[m.name]?.paused ?? true)
                        && queue(m, model).depth < 4
                }) {
                    let moved = q.pending.suffix(count)
                    q.pending.removeLast(count)
                    queue(target, model).pending.append(contentsOf: moved)
                    drain(target, model, now: now)
                }
            }
        }
    }
}
