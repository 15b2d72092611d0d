import HerdRuntime
import HerdWire

/// A request waiting for its route (a proxy session).
protocol RouteWaiter: AnyObject {
    func routed(_ answer: RouteAnswer)
    func refused(_ refusal: RouteRefusal)
}

/// Where a proxy session gets its routes: herd-control while it is connected,
/// the local policy over control's last snapshot while it is not (and for a
/// request whose control connection dropped mid-way). One `RouteAttempt` per
/// request carries its routing to the end. Loop-thread only.
final class RouteSource {
    let control: ControlClient
    private let loop: EventLoop
    /// Other nodes tried after a failure, when routing locally (control
    /// counts its own).
    let maxLocalRetries: Int
    /// This proxy's requests in flight per upstream (the local policy's load).
    private let inFlight: (String) -> Int

    init(loop: EventLoop, control: ControlClient, maxLocalRetries: Int, inFlight: @escaping (String) -> Int) {
        self.loop = loop
        self.control = control
        self.maxLocalRetries = maxLocalRetries
        self.inFlight = inFlight
    }

    /// A route attempt for `request`, its answers for `waiter`: `start` it
    /// once the caller holds it (a ticket's route is delivered inside `start`).
    func attempt(_ request: RouteRequest, pin: String = "", waiter: any RouteWaiter) -> RouteAttempt {
        RouteAttempt(source: self, request: request, pin: pin, waiter: waiter)
    }

    /// The local policy's answer for `attempt`, delivered on the next tick.
    fileprivate func routeLocally(_ attempt: RouteAttempt, excluded: Set<String>, retries: Int) {
        let snapshot = control.snapshot
        let request = attempt.request
        let pin = attempt.pin
        let models = [request.model] + request.fallbacks
        let outcome: RouteAttempt.LocalOutcome
        if retries > maxLocalRetries {
            outcome = .refused(RouteRefusal(id: request.id, code: .retriesExhausted, message: "every node tried failed"))
        } else if let answer = LocalPolicy.choose(snapshot: snapshot, api: request.api, models: models,
                                                  excluded: pin.isEmpty ? excluded : excluded.union(snapshot.nodes.lazy.map(\.id).filter { $0 != pin }),
                                                  inFlight: inFlight, id: request.id, work: WorkKind(path: request.path)) {
            outcome = .routed(answer)
        } else {
            outcome = .refused(LocalPolicy.refusal(snapshot: snapshot, api: request.api, models: models, id: request.id))
        }
        loop.deferToNextTick { [weak attempt] in attempt?.deliver(outcome) }
    }
}

/// One request's routing: the driver of a `RouteMachine`, performing its
/// actions on the control client, the local policy and the waiting session.
final class RouteAttempt: ControlWaiter {
    private unowned let source: RouteSource
    private weak var waiter: (any RouteWaiter)?
    private var machine: RouteMachine

    var request: RouteRequest { machine.request }
    /// `X-Herd-Node` ("" none): control places it there; it never spends a ticket.
    let pin: String
    /// Retries so far (control's count, or the local one).
    var retries: Int { machine.retries }
    /// Routed by the local policy.
    var local: Bool { machine.local }
    /// Its first route came by a ticket.
    var byTicket: Bool { machine.byTicket }

    fileprivate init(source: RouteSource, request: RouteRequest, pin: String, waiter: any RouteWaiter) {
        self.source = source
        self.pin = pin
        self.waiter = waiter
        machine = RouteMachine(request: request)
    }

    /// Starts routing: a ticket when the proxy holds one, else control, else the local policy.
    func start() {
        let control = source.control
        let ticket = pin.isEmpty ? control.spendTicket(for: machine.request) : nil
        perform(machine.begin(ticket: ticket, controlAway: ticket == nil && !control.isConnected ? control.awayReason : nil))
    }

    /// `node` failed before any byte reached the client: ask for another.
    func retry(failedNode node: String, reason: String, status: Int?) {
        let control = source.control
        perform(machine.failed(node: node, reason: reason, status: status, controlAway: control.isConnected ? nil : control.awayReason))
    }

    /// The client left while the request was being routed or queued.
    func cancel() { perform(machine.cancel()) }

    /// The node's first byte came (sent only when control asked for it).
    func started(status: Int, upstreamTtftMilliseconds: Double) {
        perform(machine.started(status: status, upstreamTtftMilliseconds: upstreamTtftMilliseconds))
    }

    /// Reports how the request ended (exactly once), with the routing's side of it.
    func report(_ result: RouteResult) { perform(machine.finished(result)) }

    /// The local policy's answer.
    enum LocalOutcome {
        case routed(RouteAnswer)
        case refused(RouteRefusal)
    }

    fileprivate func deliver(_ outcome: LocalOutcome) {
        switch outcome {
        case let .routed(answer): perform(machine.localAnswer(answer))
        case let .refused(refusal): perform(machine.localRefusal(refusal))
        }
    }

    private func perform(_ actions: Actions) {
        let control = source.control
        for action in actions {
            switch action {
            case .sendRoute:
                // Control can still turn out to be away: then the machine hears it lost.
                if !control.route(machine.request, pin: pin, waiter: self) { perform(machine.controlLost(reason: control.awayReason)) }
            case let .sendRetry(retry, ticket):
                if !control.retry(retry, ticket: ticket, waiter: self) { perform(machine.retryNotSent(ticket: ticket, reason: control.awayReason)) }
            case .sendCancel: control.cancel(id: machine.request.id)
            case let .sendStarted(started): control.started(started)
            case let .sendResult(result, ticket): control.result(result, ticket: ticket)
            case let .returnTicket(ticket): control.returnSpentTicket(ticket)
            case let .routeLocally(excluded, retries): source.routeLocally(self, excluded: excluded, retries: retries)
            case let .deliver(answer): waiter?.routed(answer)
            case let .refuse(refusal): waiter?.refused(refusal)
            case let .remember(node): control.remember(machine.request, routedTo: node)
            }
        }
    }

    // MARK: ControlWaiter

    func routed(_ answer: RouteAnswer) { perform(machine.answered(answer)) }

    func refused(_ refusal: RouteRefusal) { perform(machine.refusedByControl(refusal)) }

    func controlLost(reason: String) { perform(machine.controlLost(reason: reason)) }
}
