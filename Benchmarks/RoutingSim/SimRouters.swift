/// The routers compared, behind one interface: each is told of arrivals,
/// completions, heartbeats and the passing of time, and sends requests to
/// machines through `send`.
protocol SimRouter: AnyObject {
    var name: String { get }
    /// A request arrives at the router.
    func arrive(_ request: SimRequest, now: Double)
    /// A request the router sent finished on `machine`.
    func finished(_ job: SimJob, machine: SimMachine, now: Double)
    /// Every heartbeat interval (2 s): what the nodes report.
    func heartbeat(now: Double)
    /// Every simulation step.
    func tick(now: Double)
}

/// What routers share: the machines and a way to send a request to one.
final class SimBackends {
    let machines: [SimMachine]
    /// Set by the simulation: starts `request` on `machine` for `model`, then calls back.
    var send: (SimRequest, SimMachine, SimModel, Double) -> Void = { _, _, _, _ in }
    /// Loads started while another machine had the model hot with a free slot …
    var loadsWhileHotElsewhere = 0
    /// … of which the hot machine would have finished the request sooner (the simulator's arithmetic).
    var needlessColdLoads = 0
    /// Debugging: told of each needless cold load.
    var onNeedless: ((SimRequest, SimMachine, Double) -> Void)?

    init(machines: [SimMachine]) { self.machines = machines }

    func withModel(_ name: String) -> [SimMachine] { machines.filter { $0.has(name) != nil } }

    /// Sends, counting a cold load that a hot replica with room would have avoided.
    func dispatch(_ request: SimRequest, to machine: SimMachine, now: Double) {
        guard let model = machine.has(request.model) else { return }
        if !machine.isHot(model), machine.loading[model] == nil {
            let hotWithRoom = machines.filter { other in
                other !== machine && other.has(request.model).map { other.isHot($0) && other.inFlight($0) < other.spec.value.slots } ?? false
            }
            if !hotWithRoom.isEmpty {
                loadsWhileHotElsewhere += 1
                let here = machine.oracleMs(request, model, now: now)
                if hotWithRoom.contains(where: { $0.oracleMs(request, model, now: now) < here }) {
                    needlessColdLoads += 1
                    onNeedless?(request, machine, now)
                }
            }
        }
        send(request, machine, model, now)
    }
}

/// Round robin over the machines that have the model; the backends queue.
final class RoundRobinRouter: SimRouter {
    let name = "round-robin"
    let backends: SimBackends
    private var next: [String: Int] = [:]

    init(_ backends: SimBackends) { self.backends = backends }

    func arrive(_ request: SimRequest, now: Double) {
        let candidates = backends.withModel(request.model)
        let i = next[request.model, default: 0]
        next[request.model] = i + 1
        backends.dispatch(request, to: candidates[i % candidates.count], now: now)
    }

    func finished(_ job: SimJob, machine: SimMachine, now: Double) {}
    func heartbeat(now: Double) {}
    func tick(now: Double) {}
}

/// The machine with the model and the fewest requests in flight (all models).
final class LeastConnectionsRouter: SimRouter {
    let name = "least-connections"
    let backends: SimBackends
    private var inFlight: [String: Int] = [:]

    init(_ backends: SimBackends) { self.backends = backends }

    func arrive(_ request: SimRequest, now: Double) {
        let candidates = backends.withModel(request.model)
        guard let best = candidates.min(by: { inFlight[$0.name, default: 0] < inFlight[$1.name, default: 0] }) else { return }
        inFlight[best.name, default: 0] += 1
        backends.dispatch(request, to: best, now: now)
    }

    func finished(_ job: SimJob, machine: SimMachine, now: Double) { inFlight[machine.name, default: 1] -= 1 }
    func heartbeat(now: Double) {}
    func tick(now: Double) {}
}
