import HerdWire

/// One request's routing as a value: events in, actions out, no I/O and no
/// clock (`RouteAttempt` performs the actions; control's silence reaches it
/// as `controlLost` from `ControlClient`'s deadlines on the loop clock).
///
/// Every route comes out of one path, `.deliver`: a ticket's and control's
/// ROUTE_OK alike, and the local policy's. A ticket the request spent is
/// carried until control hears of it exactly once: in the RETRY that reports
/// its node failed, in the RESULT, or, when neither can reach control (the
/// request went to the local policy), in a RETURN. The retry budget is
/// counted on one side: by control for what it routes, here (`retries`, which
/// the local policy checks) for what the local policy routes.
struct RouteMachine {
    /// Where its routes come from now.
    enum Phase: Equatable {
        /// Not started.
        case idle
        /// Asked control (ROUTE or RETRY), waiting for its answer.
        case askingControl
        /// Waiting for the local policy's answer (next tick).
        case askingLocally
        /// A route was delivered; the request is with a node.
        case routed
        /// Refused, cancelled or reported: nothing more is delivered.
        case finished
    }

    enum Action: Equatable {
        /// Send ROUTE.
        case sendRoute
        /// Send RETRY (with the ticket the request spent, if control has not heard of it).
        indirect case sendRetry(RouteRetry, ticket: TicketUse?)
        /// Send CANCEL.
        case sendCancel
        /// Send STARTED.
        indirect case sendStarted(RouteStarted)
        /// Send RESULT (with the spent ticket, if control has not heard of it).
        indirect case sendResult(RouteResult, ticket: TicketUse?)
        /// Give a spent ticket back: control will hear of it no other way.
        case returnTicket(UInt64)
        /// Ask the local policy (its answer comes back as `localAnswer`/`localRefusal`,
        /// on a later tick; past its retry budget it refuses).
        indirect case routeLocally(excluded: Set<String>, retries: Int)
        /// Hand the route to the request.
        case deliver(RouteAnswer)
        /// Refuse the request.
        indirect case refuse(RouteRefusal)
        /// The proxy's affinity memory: this conversation went to `node`.
        case remember(node: String)
    }

    let request: RouteRequest
    private(set) var phase = Phase.idle
    /// Routed by the local policy (control was away).
    private(set) var local = false
    /// Why: control unreachable, gone, or not answering in time.
    private(set) var localReason: String?
    /// Nodes that failed this request.
    private(set) var excluded: Set<String> = []
    /// Retries so far: control's count from its last answer, or the local count.
    private(set) var retries = 0
    /// The ticket it spent, until control hears of it.
    private(set) var ticket: TicketUse?
    /// Its first route came by a ticket.
    private(set) var byTicket = false

    init(request: RouteRequest) {
        self.request = request
    }

    /// Starts routing: by `ticket` when the proxy holds one, else by asking
    /// control, else (`controlAway`: why it is away) by the local policy.
    mutating func begin(ticket spent: RouteTicket?, controlAway: String?) -> Actions {
        guard phase == .idle else { return [] }
        if let spent {
            ticket = TicketUse(ticket: spent.ticket, request: request)
            byTicket = true
            phase = .routed
            return [.deliver(spent.answer(for: request.id))]
        }
        if let controlAway { return goLocal(controlAway) }
        phase = .askingControl
        return [.sendRoute]
    }

    /// Control's answer (ROUTE_OK).
    mutating func answered(_ answer: RouteAnswer) -> Actions {
        guard phase == .askingControl else { return [] }
        phase = .routed
        retries = answer.retries
        return [.remember(node: answer.node), .deliver(answer)]
    }

    /// Control refused (ROUTE_ERROR).
    mutating func refusedByControl(_ refusal: RouteRefusal) -> Actions {
        guard phase == .askingControl else { return [] }
        phase = .finished
        return [.refuse(refusal)]
    }

    /// Control went away or did not answer in time while it was asked.
    mutating func controlLost(reason: String) -> Actions {
        guard phase == .askingControl else { return [] }
        return goLocal(reason)
    }

    /// The local policy's answer.
    mutating func localAnswer(_ answer: RouteAnswer) -> Actions {
        guard phase == .askingLocally else { return [] }
        phase = .routed
        var answer = answer
        answer.retries = retries
        answer.reason = "local policy (\(localReason ?? "control unreachable"))"
        return [.deliver(answer)]
    }

    /// The local policy found no node.
    mutating func localRefusal(_ refusal: RouteRefusal) -> Actions {
        guard phase == .askingLocally else { return [] }
        phase = .finished
        return [.refuse(refusal)]
    }

    /// `node` failed before any byte reached the client: ask for another.
    /// `controlAway`: why control cannot be asked (nil: it can).
    mutating func failed(node: String, reason: String, status: Int?, controlAway: String?) -> Actions {
        guard phase == .routed else { return [] }
        excluded.insert(node)
        if !local, controlAway == nil {
            let spent = ticket
            ticket = nil
            phase = .askingControl
            return [.sendRetry(RouteRetry(id: request.id, node: node, reason: reason, upstreamStatus: status), ticket: spent)]
        }
        var actions = Actions()
        if let spent = ticket {
            // Control hears of the ticket here or nowhere: the local policy
            // routes the rest, and its RESULT carries no ticket.
            ticket = nil
            actions.append(.returnTicket(spent.ticket))
        }
        retries += 1
        actions.append(contentsOf: goLocal(localReason ?? controlAway ?? "control unreachable"))
        return actions
    }

    /// A RETRY could not be sent after all (control went away in between):
    /// the ticket it carried goes back, and the local policy takes over.
    mutating func retryNotSent(ticket unsent: TicketUse?, reason: String) -> Actions {
        guard phase == .askingControl else { return [] }
        retries += 1
        var actions: Actions = unsent.map { [.returnTicket($0.ticket)] } ?? []
        actions.append(contentsOf: goLocal(reason))
        return actions
    }

    /// The client left while the request was being routed or queued.
    mutating func cancel() -> Actions {
        guard phase != .finished else { return [] }
        phase = .finished
        return local ? [] : [.sendCancel]
    }

    /// The node's first byte came (reported only when control asked for it).
    func started(status: Int, upstreamTtftMilliseconds: Double) -> Actions {
        guard !local else { return [] }
        return [.sendStarted(RouteStarted(id: request.id, status: status, upstreamTtftMilliseconds: upstreamTtftMilliseconds))]
    }

    /// How the request ended (once), with the routing's side of it.
    mutating func finished(_ result: RouteResult) -> Actions {
        phase = .finished
        var result = result
        result.retries = retries
        result.local = local
        result.localReason = localReason
        let spent = ticket
        ticket = nil
        // A local request's RESULT carries no ticket: one it still held goes back.
        if local, let spent { return [.returnTicket(spent.ticket), .sendResult(result, ticket: nil)] }
        return [.sendResult(result, ticket: spent)]
    }

    private mutating func goLocal(_ reason: String) -> Actions {
        local = true
        localReason = reason
        phase = .askingLocally
        return [.routeLocally(excluded: excluded, retries: retries)]
    }
}

/// What one event asks the driver to do, in order.
typealias Actions = [RouteMachine.Action]
