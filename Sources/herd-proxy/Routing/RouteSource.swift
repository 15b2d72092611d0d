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

    /// Starts routing `request`: by a ticket at once (`RouteAttempt.ticketAnswer`,
    /// for the caller to act on), else the answer goes to `waiter`, never inside this call.
    func begin(_ request: RouteRequest, waiter: any RouteWaiter) -> RouteAttempt {
        let attempt = RouteAttempt(source: self, request: request, waiter: waiter)
        if let ticket = control.spendTicket(for: request) {
            attempt.spent(ticket)
        } else {
            attempt.ask()
        }
        return attempt
    }

    /// The local policy's answer for `attempt`, delivered on the next tick.
    fileprivate func routeLocally(_ attempt: RouteAttempt) {
        let snapshot = control.snapshot
        let request = attempt.request
        let models = [request.model] + request.fallbacks
        let outcome: RouteAttempt.Outcome
        if attempt.retries > maxLocalRetries {
            outcome = .refused(RouteRefusal(id: request.id, code: .retriesExhausted, message: "every node tried failed"))
        } else if var answer = LocalPolicy.choose(snapshot: snapshot, api: request.api, models: models, excluded: attempt.excluded,
                                                  inFlight: inFlight, id: request.id) {
            answer.retries = attempt.retries
            answer.reason = "local policy (\(attempt.localReason ?? "control unreachable"))"
            outcome = .routed(answer)
        } else {
            outcome = .refused(LocalPolicy.refusal(snapshot: snapshot, api: request.api, models: models, id: request.id))
        }
        loop.deferToNextTick { [weak attempt] in attempt?.deliver(outcome) }
    }
}

/// One request's routing: control's (ROUTE, RETRY, CANCEL, RESULT by id) or,
/// once control is away, the local policy's. The retry budget is counted on
/// one side: by control for what it routes (its answers say how many retries
/// came before), here for what the local policy routes.
final class RouteAttempt: ControlWaiter {
    private unowned let source: RouteSource
    let request: RouteRequest
    private weak var waiter: (any RouteWaiter)?
    /// Routed by the local policy (control was away).
    private(set) var local = false
    /// Why: control unreachable, gone, or not answering in time.
    private(set) var localReason: String?
    /// Nodes that failed this request.
    private(set) var excluded: Set<String> = []
    /// Retries so far: control's count from its last answer, or the local count.
    private(set) var retries = 0
    private var finished = false
    /// The ticket it spent, until control hears of it (its RETRY or RESULT).
    private(set) var ticket: TicketUse?
    /// Its route, when a ticket gave it at once.
    private(set) var ticketAnswer: RouteAnswer?
    /// Its route came by a ticket.
    private(set) var byTicket = false

    fileprivate init(source: RouteSource, request: RouteRequest, waiter: any RouteWaiter) {
        self.source = source
        self.request = request
        self.waiter = waiter
    }

    fileprivate func ask() {
        if !source.control.route(request, waiter: self) { goLocal(reason: source.control.awayReason) }
    }

    fileprivate func spent(_ ticket: RouteTicket) {
        self.ticket = TicketUse(ticket: ticket.ticket, request: request)
        ticketAnswer = ticket.answer(for: request.id)
        byTicket = true
    }

    /// `node` failed before any byte reached the client: ask for another.
    func retry(failedNode node: String, reason: String, status: Int?) {
        excluded.insert(node)
        let use = ticket
        ticket = nil
        if local || !source.control.retry(RouteRetry(id: request.id, node: node, reason: reason, upstreamStatus: status), ticket: use, waiter: self) {
            // Control hears of the ticket here or nowhere: the local policy
            // routes the rest, and its RESULT carries no ticket.
            if let use { source.control.returnSpentTicket(use.ticket) }
            retries += 1
            goLocal(reason: localReason ?? source.control.awayReason)
        }
    }

    /// The client left while the request was being routed or queued.
    func cancel() {
        finished = true
        if !local { source.control.cancel(id: request.id) }
    }

    /// The node's first byte came (sent only when control asked for it).
    func started(status: Int, upstreamTtftMilliseconds: Double) {
        guard !local else { return }
        source.control.started(RouteStarted(id: request.id, status: status, upstreamTtftMilliseconds: upstreamTtftMilliseconds))
    }

    /// Reports how the request ended (exactly once), with the routing's side of it.
    func report(_ result: RouteResult) {
        finished = true
        var result = result
        result.retries = retries
        result.local = local
        result.localReason = localReason
        source.control.result(result, ticket: local ? nil : ticket)
    }

    private func goLocal(reason: String) {
        local = true
        localReason = reason
        source.routeLocally(self)
    }

    /// The local policy's answer.
    enum Outcome {
        case routed(RouteAnswer)
        case refused(RouteRefusal)
    }

    fileprivate func deliver(_ outcome: Outcome) {
        guard !finished else { return }
        switch outcome {
        case let .routed(answer): routed(answer)
        case let .refused(refusal): refused(refusal)
        }
    }

    // MARK: ControlWaiter

    func routed(_ answer: RouteAnswer) {
        if !local {
            retries = answer.retries
            source.control.remember(request, routedTo: answer.node)
        }
        waiter?.routed(answer)
    }

    func refused(_ refusal: RouteRefusal) { waiter?.refused(refusal) }

    func controlLost(reason: String) {
        guard !finished else { return }
        goLocal(reason: reason)
    }
}
