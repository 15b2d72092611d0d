import HerdJSON
import HerdRuntime
import HerdLink
import HerdWire

/// A request waiting for control's routing answer.
protocol ControlWaiter: AnyObject {
    func routed(_ answer: RouteAnswer)
    func refused(_ refusal: RouteRefusal)
    /// Control went away, or did not answer in time (`reason` says which): route locally.
    func controlLost(reason: String)
}

/// The proxy's end of the control socket (control's end is `ControlServer`):
/// one persistent, multiplexed connection to herd-control: hello,
/// ROUTE/RETRY/RESULT/CANCEL by request id, SNAPSHOTs. Reconnects with
/// backoff; while away, RESULTs are buffered (bounded) and the proxy routes
/// from its last snapshot (`RouteSource`).
///
/// Control that is connected but does not answer (stopped, wedged) is away
/// too: a ROUTE or RETRY not answered within the route timeout (QUEUED counts
/// as an answer, and extends it by the queue time) is cancelled and routed
/// locally, and so is every request after it until control sends a frame
/// again. Loop-thread only.
final class ControlClient: LoopFlushable {
    private let loop: EventLoop
    private let path: String
    private let proxyID: String
    private let log: Logger
    private var channel: ControlChannel?
    private var connected = false
    private var waiters: [UInt64: any ControlWaiter] = [:]
    private var bufferedResults: [ReportedResult] = []
    /// Results of this loop iteration: they leave as one RESULT frame.
    private var pendingResults: [ReportedResult] = []
    private var flushScheduled = false
    private(set) var tickets = TicketBook()
    private var ticketTimer: DeadlineTimer?
    private var droppedResults = 0
    private let maxBufferedResults = 10_000
    private var backoff: UInt64 = 50
    private let retryTimer: LoopTimer
    private var stopped = false
    private(set) var everConnected = false
    private var deadlines: RouteDeadlines
    private var deadlineTimer: DeadlineTimer?
    /// Connected, but a request's route timeout ran out since control last spoke.
    private var unresponsive = false
    /// The latest routing snapshot (kept across reconnects).
    private(set) var snapshot = RoutingSnapshot()
    /// The snapshot's version (read per request without copying the snapshot).
    var snapshotVersion: Int { snapshot.version }
    /// Client keys with limits: their requests ask control (which counts them), never spend a ticket.
    private var limitedKeys: Set<Int> = []
    /// SHA-256 (hex) of the fleet key, from control's hello (nil: no key set).
    private(set) var adminKeyHash: String?
    var onSnapshot: ((RoutingSnapshot) -> Void)?
    /// Pull claims waiting for control's answer: claim id → (deadline, what to do with it; nil: control away).
    private var pullWaiters: [UInt64: (deadline: UInt64, answer: (PullAnswer?) -> Void)] = [:]
    private var nextPullClaim: UInt64 = 0
    private var pullTimer: DeadlineTimer?
    /// A pull claim control has not answered in this long is decided by the proxy alone.
    static let pullClaimTimeoutMilliseconds: UInt64 = 2_000

    init(loop: EventLoop, path: String, proxyID: String, routeTimeoutMilliseconds: UInt64, log: Logger) {
        self.loop = loop
        self.path = path
        self.proxyID = proxyID
        self.log = log
        retryTimer = LoopTimer(loop: loop)
        deadlines = RouteDeadlines(routeTimeout: routeTimeoutMilliseconds, granularity: min(100, max(1, routeTimeoutMilliseconds / 4)))
        deadlineTimer = DeadlineTimer(clock: loop) { [unowned self] in self.checkDeadlines() }
        ticketTimer = DeadlineTimer(clock: loop) { [unowned self] in self.expireTickets() }
        pullTimer = DeadlineTimer(clock: loop) { [unowned self] in self.expirePullClaims() }
    }

    /// Connected and answering.
    var isConnected: Bool { connected && !unresponsive }

    /// Why requests are routed locally now.
    var awayReason: String {
        unresponsive ? "control did not answer within \(deadlines.routeTimeout) ms" : "control unreachable"
    }

    func start() { connect() }

    func stop() {
        stopped = true
        retryTimer.close()
        deadlineTimer?.close()
        deadlineTimer = nil
        ticketTimer?.close()
        ticketTimer = nil
        pullTimer?.close()
        pullTimer = nil
        channel?.close()
    }

    private func connect() {
        guard !stopped else { return }
        let stream = StreamConnection(loop: loop, kind: .pipe)
        stream.connect(toPath: path) { [weak self] error in
            guard let self else { return stream.close() }
            if let error {
                stream.close()
                if !self.everConnected || self.backoff >= 1_000 {
                    self.log.debug("control at \(self.path) not reachable (\(error.name)); retrying")
                }
                self.scheduleReconnect()
                return
            }
            self.attach(ControlChannel(stream: stream))
        }
    }

    private func attach(_ channel: ControlChannel) {
        self.channel = channel
        channel.onMessage = { [unowned self] frame throws(ControlProtocolError) in try self.message(frame) }
        channel.onClose = { [unowned self] error in self.lost(error) }
        channel.start()
        channel.send(.hello, ControlHello(proxyID: proxyID).json)
    }

    private func scheduleReconnect() {
        guard !stopped else { return }
        let delay = backoff
        backoff = min(backoff * 2, 2_000)
        retryTimer.start(after: delay) { [unowned self] in self.connect() }
    }

    private func lost(_ error: ControlProtocolError?) {
        let wasConnected = connected
        connected = false
        unresponsive = false
        channel = nil
        if wasConnected { log.warning("lost herd-control\(error.map { ": \($0.reason)" } ?? ""); routing from the last snapshot until it is back") }
        let orphans = waiters
        waiters.removeAll()
        deadlines.removeAll()
        tickets.removeAll()
        for waiter in orphans.values { waiter.controlLost(reason: "control went away") }
        answerPullClaims(nil)
        scheduleReconnect()
    }

    /// Routes locally the requests control left unanswered past their deadline.
    private func checkDeadlines() {
        let now = loop.now
        let expired = deadlines.expire(now: now)
        if !expired.isEmpty, let channel {
            if !unresponsive {
                unresponsive = true
                log.warning("herd-control has not answered for \(deadlines.routeTimeout) ms; routing from the last snapshot until it does")
            }
            let reason = awayReason
            for id in expired {
                guard let waiter = waiters.removeValue(forKey: id) else { continue }
                // Frees whatever control holds for it once it reads again.
                channel.send(.cancel, RouteCancel(id: id))
                waiter.controlLost(reason: reason)
            }
        }
        deadlineTimer?.follow(deadlines.nextCheck(now: now))
    }

    private func message(_ frame: ControlFrameBody) throws(ControlProtocolError) {
        if unresponsive, connected {
            unresponsive = false
            log.info("herd-control answers again")
            flushResults()
        }
        do {
            switch frame.type {
            case .helloOK:
                let hello = try ControlHelloOK(json: frame.json())
                guard hello.protocolVersion == ControlHello.protocolVersion else {
                    throw ControlProtocolError("control speaks protocol \(hello.protocolVersion), this proxy \(ControlHello.protocolVersion)")
                }
                adminKeyHash = hello.adminKeyHash
                connected = true
                everConnected = true
                backoff = 50
                log.info("connected to herd-control at \(path)")
                flushResults()
            case .snapshot:
                snapshot = try RoutingSnapshot(json: frame.json())
                limitedKeys = Set(snapshot.keys.keys.lazy.filter(\.limited).map(\.id))
                onSnapshot?(snapshot)
            case .snapshotDelta:
                let delta = try SnapshotDelta(json: frame.json())
                snapshot = try snapshot.applying(delta)
                if delta.keys != nil { limitedKeys = Set(snapshot.keys.keys.lazy.filter(\.limited).map(\.id)) }
                onSnapshot?(snapshot)
            case .routeOK:
                let answer = try frame.decode(RouteAnswer.self)
                deadlines.done(answer.id)
                waiters.removeValue(forKey: answer.id)?.routed(answer)
            case .routeError:
                let refusal = try frame.decode(RouteRefusal.self)
                deadlines.done(refusal.id)
                waiters.removeValue(forKey: refusal.id)?.refused(refusal)
            case .queued:
                let queued = try frame.decode(RouteQueued.self)
                deadlines.queued(queued.id, timeout: queued.timeoutMilliseconds, now: loop.now)
            case .grant:
                let grant = try frame.decode(TicketGrant.self)
                let now = loop.now
                tickets.grant(grant.tickets, now: now)
                ticketTimer?.follow(tickets.nextExpiry)
            case .revoke:
                let returned = tickets.revoke(try frame.decode(TicketList.self).tickets)
                if !returned.isEmpty { channel?.send(.ticketReturn, TicketList(tickets: returned)) }
            case .pullAnswer:
                let answer = try frame.decode(PullAnswer.self)
                pullWaiters.removeValue(forKey: answer.id)?.answer(answer)
            case .hello, .route, .retry, .result, .cancel, .started, .ticketReturn, .cacheStats, .pullClaim, .pullDone:
                throw ControlProtocolError("control does not send \(frame.type)")
            }
        } catch let error as JSONFieldError {
            throw ControlProtocolError(error.message)
        } catch let error as ControlProtocolError {
            throw error
        } catch {
            throw ControlProtocolError("\(error)")
        }
    }

    /// Asks control for a route; false when control is away (route locally).
    func route(_ request: RouteRequest, pin: String, waiter: any ControlWaiter) -> Bool {
        guard connected, !unresponsive, let channel else { return false }
        waiters[request.id] = waiter
        channel.send(.route, RouteAsk(request: request, node: pin))
        awaitAnswer(request.id)
        return true
    }

    /// A ticket `request` may spend (no round trip), when control is here and one fits.
    func spendTicket(for request: RouteRequest) -> RouteTicket? {
        // A ticket is for any request to its model; one with images needs control's
        // choice among the models that can see.
        // Tickets are granted by api, model and kind of work: an embedding spends only an embedding's.
        guard connected, !unresponsive, tickets.count > 0, !request.vision else { return nil }
        if request.key != 0, limitedKeys.contains(request.key) { return nil }
        let ticket = tickets.spend(for: request, now: loop.now)
        if let ticket { tickets.routed(request, to: ticket.node) }
        return ticket
    }

    /// Control's answer for `request` (the proxy's affinity memory follows it).
    func remember(_ request: RouteRequest, routedTo node: String) {
        tickets.routed(request, to: node)
    }

    /// Returns the tickets whose time ran out.
    private func expireTickets() {
        let expired = tickets.expire(now: loop.now)
        if !expired.isEmpty, connected, let channel { channel.send(.ticketReturn, TicketList(tickets: expired)) }
        ticketTimer?.follow(tickets.nextExpiry)
    }

    /// Gives back a ticket the proxy spent but will not report in a RESULT or
    /// a RETRY (its request went to the local policy): control frees its slot
    /// when it reads this, however late. With no connection there is nothing
    /// to give back: control freed this proxy's tickets when the link dropped,
    /// and the ticket's number means nothing to the next connection.
    func returnSpentTicket(_ ticket: UInt64) {
        guard let channel else { return }
        channel.send(.ticketReturn, TicketList(tickets: [ticket]))
    }

    /// Asks control whether this proxy may pull `model` to `node` (`named`:
    /// the client chose the node) — control counts pulls across every proxy
    /// and the dashboard. `answer` gets control's verdict, or nil when control
    /// is away or does not answer within `pullClaimTimeoutMilliseconds` (the
    /// proxy's own count decides then). Returns the claim's id when asked.
    @discardableResult
    func claimPull(model: String, node: String, named: Bool, answer: @escaping (PullAnswer?) -> Void) -> UInt64? {
        guard connected, !unresponsive, let channel else {
            answer(nil)
            return nil
        }
        nextPullClaim &+= 1
        let id = nextPullClaim
        let deadline = loop.now &+ Self.pullClaimTimeoutMilliseconds
        pullWaiters[id] = (deadline, answer)
        channel.send(.pullClaim, PullClaim(id: id, model: model, node: node, named: named))
        pullTimer?.follow(deadline)
        return id
    }

    /// The granted pull `id` ended (control forgets claims of a connection that closed on its own).
    func pullDone(_ id: UInt64) {
        guard connected, let channel else { return }
        channel.send(.pullDone, PullDone(id: id))
    }

    private func expirePullClaims() {
        let now = loop.now
        let overdue = pullWaiters.filter { $0.value.deadline <= now }
        for (id, waiter) in overdue {
            pullWaiters[id] = nil
            waiter.answer(nil)
        }
        pullTimer?.follow(pullWaiters.values.map(\.deadline).min())
    }

    private func answerPullClaims(_ answer: PullAnswer?) {
        let waiting = pullWaiters
        pullWaiters.removeAll()
        for waiter in waiting.values { waiter.answer(answer) }
    }

    /// The response cache's counts, for control's `/metrics` (dropped while control is away).
    func reportCache(_ stats: CacheStats) {
        guard connected, let channel else { return }
        channel.send(.cacheStats, stats)
    }

    /// Reports a failed node and asks for another; false when control is away.
    /// `ticket`: the request spent a ticket (control has not heard of it).
    func retry(_ retry: RouteRetry, ticket: TicketUse?, waiter: any ControlWaiter) -> Bool {
        guard connected, !unresponsive, let channel else { return false }
        waiters[retry.id] = waiter
        channel.send(.retry, RetryMessage(retry, ticket: ticket))
        awaitAnswer(retry.id)
        return true
    }

    private func awaitAnswer(_ id: UInt64) {
        let now = loop.now
        let wasEmpty = deadlines.isEmpty
        deadlines.asked(id, now: now)
        if wasEmpty { deadlineTimer?.follow(deadlines.nextCheck(now: now)) }
    }

    /// Abandons a request control is routing or queuing.
    func cancel(id: UInt64) {
        waiters[id] = nil
        deadlines.done(id)
        guard connected, let channel else { return }
        channel.send(.cancel, RouteCancel(id: id))
    }

    /// Reports a node's first byte, when control asked (dropped while control is away: only learning reads it).
    func started(_ started: RouteStarted) {
        guard connected, !unresponsive, let channel else { return }
        channel.send(.started, started)
    }

    /// Reports an outcome, with the ticket it spent: the results of one loop
    /// iteration leave in one frame (buffered while control is away or not
    /// answering; oldest dropped past the bound).
    func result(_ result: RouteResult, ticket: TicketUse?) {
        if connected, !unresponsive, channel != nil {
            pendingResults.append(ReportedResult(result, ticket: ticket))
            if !flushScheduled {
                flushScheduled = true
                loop.scheduleFlush(self)
            }
            return
        }
        if bufferedResults.count >= maxBufferedResults {
            bufferedResults.removeFirst(bufferedResults.count / 10)
            droppedResults += maxBufferedResults / 10
        }
        bufferedResults.append(ReportedResult(result, ticket: ticket))
    }

    func flushOutput() {
        flushScheduled = false
        guard !pendingResults.isEmpty else { return }
        if let channel, connected {
            channel.send(.result, ResultBatch(pendingResults))
        } else {
            bufferedResults += pendingResults
        }
        pendingResults.removeAll(keepingCapacity: true)
    }

    private func flushResults() {
        guard let channel else { return }
        if droppedResults > 0 {
            log.warning("\(droppedResults) results were dropped while control was away")
            droppedResults = 0
        }
        var start = 0
        while start < bufferedResults.count {
            let end = min(bufferedResults.count, start + 1_000)
            channel.send(.result, ResultBatch(Array(bufferedResults[start..<end])))
            start = end
        }
        bufferedResults.removeAll()
    }
}
