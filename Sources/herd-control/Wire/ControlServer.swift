import HerdJSON
import HerdRuntime
import HerdRouting
import HerdLink
import HerdWire

/// One connected herd-proxy: its framed channel, after a valid hello.
final class ProxyLink {
    let key: ProxyKey
    let channel: ControlChannel
    var proxyID = ""
    var greeted = false
    /// Its response cache, as it last reported it (CACHE_STATS).
    var cache: CacheStats?
    /// The last snapshot this proxy was sent (the next goes as a delta from it).
    var lastSnapshot: RoutingSnapshot?
    /// A snapshot is due but the proxy has not read the last writes: it gets
    /// the latest one when they drain (never one queued behind another).
    var snapshotWanted = false

    init(key: ProxyKey, channel: ControlChannel) {
        self.key = key
        self.channel = channel
    }
}

/// Control's end of the control socket (the proxy's end is `ControlClient`):
/// accepts proxies, checks their hello, feeds ROUTE / RETRY / RESULT / CANCEL
/// to the `Scheduler` and performs what it answers (frames to proxies, one
/// queue timer on the clock, finished requests to `onFinished`), and pushes
/// routing snapshots. A proxy that sends garbage loses its own connection
/// only. Loop-thread only.
final class ControlServer {
    private let loop: EventLoop
    private let clock: any LoopClock
    private let registry: NodeRegistry
    private(set) var scheduler: Scheduler
    private var listener: StreamListener?
    private var links: [ProxyKey: ProxyLink] = [:]
    private var nextKey = 0
    private var actions: [SchedulerAction] = []
    private var queueTimer: DeadlineTimer?
    /// Coalesced snapshot pushes: at most one per `snapshotInterval` ms.
    private var pushTimer: DeadlineTimer?
    private var pushDue = false
    private var lastPush: UInt64 = 0
    static let snapshotIntervalMilliseconds: UInt64 = 20
    private lazy var prewarmer = Prewarmer(loop: loop, log: log)
    /// The snapshot to send to new proxies and on changes.
    private let currentSnapshot: () -> RoutingSnapshot
    /// A request ended: trace, log line, metrics.
    var onFinished: ((FinishedRequest) -> Void)?
    /// `--num-ctx-policy fit`: each model's context sized by use, judged by time to first byte.
    private(set) var contextFitter = ContextFitter()
    let log: Logger

    /// Model pulls under way through every proxy and the dashboard: one model is not downloaded twice at once.
    var pulls = PullsUnderWay()

    /// SHA-256 (hex) of the fleet key, told to each proxy in its hello (model management needs the key).
    var adminKeyHash: String?
    /// The client keys: a keyed ROUTE is admitted here (its limits), its RESULT releases what it reserved.
    private let keys: KeyBook?
    /// Cloud providers a key made with `cloud` may overflow to (`--provider`).
    var providers: [CloudProvider] = []
    /// Requests sent to a provider, per proxy, until their RESULT: a RETRY of one is answered here
    /// (the next provider that maps one of its models, as a failed node's request goes to the next node).
    private struct CloudRequest {
        let request: RouteRequest
        var tried: Set<String>
        let queuedMs: Int
    }

    private var inCloud: [ProxyKey: [UInt64: CloudRequest]] = [:]

    init(loop: EventLoop, clock: any LoopClock, registry: NodeRegistry, settings: Scheduler.Settings, log: Logger, keys: KeyBook? = nil,
         snapshot: @escaping () -> RoutingSnapshot) {
        self.keys = keys
        self.loop = loop
        self.clock = clock
        self.registry = registry
        self.scheduler = Scheduler(settings: settings)
        self.log = log
        self.currentSnapshot = snapshot
        actions.reserveCapacity(8)
    }

    var proxyCount: Int { links.values.filter(\.greeted).count }

    /// Rates learned before a restart.
    func restore(_ observations: [LearnedRates.Observation]) {
        scheduler.restore(observations)
    }

    /// Limits learned before a restart: each node:model's learner starts there.
    func remember(_ limits: [(node: String, model: String, limit: Int)]) {
        guard !limits.isEmpty else { return }
        scheduler.remember(limits: limits)
        fleetChanged()
    }

    /// `herd benchmark` results: each node:model starts from its figures (and tickets follow the new limits).
    func benchmarked(_ priors: [BenchmarkPrior]) {
        guard !priors.isEmpty else { return }
        for prior in priors { scheduler.benchmarked(prior) }
        fleetChanged()
    }

    func listen(path: String) throws {
        listener = try StreamListener(loop: loop, path: path) { [unowned self] stream in self.accept(stream) }
        queueTimer = DeadlineTimer(clock: clock) { [unowned self] in
            self.scheduler.expire(now: self.clock.now, fleet: self.registry.list, into: &self.actions)
            self.performActions()
        }
        pushTimer = DeadlineTimer(clock: clock) { [unowned self] in self.pushNow() }
    }

    func close() {
        listener?.close()
        listener = nil
        queueTimer?.close()
        pushTimer?.close()
        prewarmer.close()
        for link in links.values { link.channel.close() }
    }

    /// The fleet changed: queued requests may now find a node.
    /// A heartbeat carried a backend's queue gauges: the learners read them.
    func gauges(_ heartbeat: Heartbeat) {
        guard heartbeat.backends.contains(where: { $0.queue != nil }) else { return }
        scheduler.gauges(node: heartbeat.nodeID, backends: heartbeat.backends, fleet: registry.list, now: clock.now, into: &actions)
        if !actions.isEmpty { performActions() }
        // A limit may have moved: the proxies' tickets follow it.
        pushSnapshots()
    }

    func fleetChanged() {
        scheduler.fleetChanged(fleet: registry.list, now: clock.now, into: &actions)
        performActions()
        pushSnapshots()
    }

    /// Each connected proxy's response cache, as it last reported it.
    var cacheStats: [(proxy: String, stats: CacheStats)] {
        links.values.compactMap { link in link.cache.map { (link.proxyID, $0) } }.sorted { $0.proxy < $1.proxy }
    }

    private func accept(_ stream: StreamConnection) {
        nextKey += 1
        let channel = ControlChannel(stream: stream)
        let link = ProxyLink(key: ProxyKey(raw: nextKey), channel: channel)
        links[link.key] = link
        channel.onMessage = { [unowned self, unowned link] frame throws(ControlProtocolError) in try self.message(link, frame) }
        channel.onDrain = { [unowned self, unowned link] in
            if link.snapshotWanted { self.push(to: link) }
        }
        let key = link.key
        channel.onClose = { [unowned self, unowned link] error in
            if let error { self.log.warning("proxy \(link.proxyID.isEmpty ? "(no hello)" : link.proxyID) dropped: \(error.reason)") }
            self.links[key] = nil // releases the link
            self.keys?.dropProxy(key)
            self.inCloud[key] = nil
            self.pulls.release(proxy: key)
            self.scheduler.proxyGone(key, fleet: self.registry.list, now: self.clock.now, into: &self.actions)
            self.performActions()
        }
        channel.start()
    }

    private func message(_ link: ProxyLink, _ frame: ControlFrameBody) throws(ControlProtocolError) {
        do {
            if !link.greeted {
                guard frame.type == .hello else { throw ControlProtocolError("the first frame must be a hello, not \(frame.type)") }
                let hello = try ControlHello(json: frame.json())
                guard hello.protocolVersion == ControlHello.protocolVersion else {
                    throw ControlProtocolError("protocol \(hello.protocolVersion) is not supported (control speaks \(ControlHello.protocolVersion))")
                }
                link.proxyID = hello.proxyID
                link.greeted = true
                link.channel.send(.helloOK, ControlHelloOK(adminKeyHash: adminKeyHash).json)
                push(to: link)
                log.info("proxy \(hello.proxyID) connected (herd \(hello.version))")
                return
            }
            let now = clock.now
            switch frame.type {
            case .route:
                let ask = try frame.decode(RouteAsk.self)
                let request = ask.request
                if request.key != 0, let keys {
                    let admission = keys.admit(request, proxy: link.key, now: now, wallNow: keys.wallClock())
                    if let refusal = admission.refusal {
                        scheduler.reject(request, from: link.key, now: now, refusal: refusal, into: &actions)
                    } else if !providers.isEmpty, keys.allowsCloud(request.key), !fleetHas(request.model),
                              let (provider, model) = provider(for: request) {
                        // The model exists only at a provider.
                        scheduler.routedElsewhere(request, from: link.key, now: now)
                        sendToCloud(CloudRequest(request: request, tried: [], queuedMs: 0), provider, model: model, proxy: link.key,
                                    why: "'\(request.model)' is served only by cloud provider \(provider.name)")
                    } else {
                        scheduler.route(request, from: link.key, fleet: registry.list, now: now, queueTimeout: admission.queueTimeout,
                                        pinned: ask.node, into: &actions)
                    }
                } else {
                    scheduler.route(request, from: link.key, fleet: registry.list, now: now, pinned: ask.node, into: &actions)
                }
            case .retry:
                let message = try frame.decode(RetryMessage.self)
                if var failed = inCloud[link.key]?.removeValue(forKey: message.retry.id) {
                    // A provider failed before any byte: like a dead node, the next provider that maps one of its models, else 502.
                    failed.tried.insert(message.retry.node)
                    if failed.tried.count <= scheduler.settings.maxRetries, let (provider, model) = provider(for: failed.request, excluding: failed.tried) {
                        sendToCloud(failed, provider, model: model, proxy: link.key,
                                    why: "\(message.retry.node) failed (\(message.retry.reason))", retries: failed.tried.count)
                    } else {
                        link.channel.send(.routeError, RouteRefusal(id: message.retry.id, code: .retriesExhausted,
                                                                    message: "cloud provider \(message.retry.node) failed: \(message.retry.reason)"))
                    }
                    return
                }
                if let use = message.ticket {
                    scheduler.ticketRetry(use, message.retry, from: link.key, fleet: registry.list, now: now, into: &actions)
                } else {
                    scheduler.retry(message.retry, from: link.key, fleet: registry.list, now: now, into: &actions)
                }
            case .result:
                let fleet = registry.list
                for reported in try frame.decode(ResultBatch.self).results {
                    keys?.release(proxy: link.key, id: reported.result.id)
                    if !inCloud.isEmpty { inCloud[link.key]?.removeValue(forKey: reported.result.id) }
                    if let use = reported.ticket {
                        scheduler.ticketResult(use, reported.result, from: link.key, fleet: fleet, now: now, into: &actions)
                    } else {
                        scheduler.result(reported.result, from: link.key, fleet: fleet, now: now, into: &actions)
                    }
                }
            case .ticketReturn:
                scheduler.ticketsReturned(try frame.decode(TicketList.self).tickets, from: link.key, fleet: registry.list, now: now, into: &actions)
            case .started: scheduler.started(try frame.decode(RouteStarted.self), from: link.key, fleet: registry.list, now: now, into: &actions)
            case .cancel:
                scheduler.cancel(id: try frame.decode(RouteCancel.self).id, from: link.key, fleet: registry.list, now: now, into: &actions)
            case .cacheStats:
                link.cache = try frame.decode(CacheStats.self)
                return
            case .pullClaim:
                let claim = try frame.decode(PullClaim.self)
                let answer: PullAnswer = switch pulls.claim(model: claim.model, node: claim.node, named: claim.named,
                                                            owner: .proxy(link.key, claim: claim.id), now: now) {
                case .granted: PullAnswer(id: claim.id, granted: true)
                case let .underWay(node): PullAnswer(id: claim.id, granted: false, node: node)
                case .full: PullAnswer(id: claim.id, granted: false)
                }
                link.channel.send(.pullAnswer, answer)
                return
            case .pullDone:
                pulls.release(.proxy(link.key, claim: try frame.decode(PullDone.self).id))
                return
            case .hello, .helloOK, .routeOK, .routeError, .snapshot, .snapshotDelta, .queued, .grant, .revoke, .pullAnswer:
                throw ControlProtocolError("a proxy does not send \(frame.type)")
            }
            performActions()
        } catch let error as JSONFieldError {
            throw ControlProtocolError(error.message)
        } catch let error as ControlProtocolError {
            throw error
        } catch {
            throw ControlProtocolError("\(error)")
        }
    }

    // MARK: Cloud overflow

    /// The first provider (not yet tried) that maps the request's model, or else one of its fallbacks, and speaks its API.
    private func provider(for request: RouteRequest, excluding tried: Set<String> = []) -> (CloudProvider, model: String)? {
        for model in [request.model] + request.fallbacks {
            if let provider = providers.first(where: { p in
                !tried.contains(p.node) && p.serves(request.api) && (p.models[model] != nil || p.models[ModelName.canonical(model)] != nil)
            }) { return (provider, model) }
        }
        return nil
    }

    /// Whether any node of the fleet lists `model`.
    private func fleetHas(_ model: String) -> Bool {
        registry.list.contains { node in node.heartbeat.backends.contains { $0.models.contains { ModelName.same($0.name, model) } } }
    }

    /// A refusal for want of a node (the queue wait ran out, no node online,
    /// the model nowhere in the fleet) of a request whose key may use the
    /// cloud and whose model a provider maps: sent to the provider instead.
    private func overflow(_ refusal: RouteRefusal, proxy: ProxyKey) -> Bool {
        guard refusal.code == .queueTimeout || refusal.code == .noNode || refusal.code == .modelNotFound,
              let (request, arrivedAt) = scheduler.refusedRequest(proxy: proxy, id: refusal.id), let keys, keys.allowsCloud(request.key),
              let (provider, model) = provider(for: request) else { return false }
        let waited = Int(clamping: clock.now > arrivedAt ? clock.now - arrivedAt : 0)
        sendToCloud(CloudRequest(request: request, tried: [], queuedMs: waited), provider, model: model, proxy: proxy,
                    why: "no node could start it in time (\(refusal.message))")
        return true
    }

    private func sendToCloud(_ cloud: CloudRequest, _ provider: CloudProvider, model: String, proxy: ProxyKey, why: String, retries: Int = 0) {
        let remote = provider.models[model] ?? provider.models[ModelName.canonical(model)] ?? model
        inCloud[proxy, default: [:]][cloud.request.id] = cloud
        links[proxy]?.channel.send(.routeOK, RouteAnswer(
            id: cloud.request.id, node: provider.node, upstream: provider.node, backend: .openai, model: remote, queuedMilliseconds: cloud.queuedMs,
            reason: "cloud overflow to \(provider.name): \(why)", retries: retries, score: "cloud=\(provider.name)"))
    }

    /// Feeds the context fitter; a change of phase reaches the scheduler (and the log).
    private func fitContext(_ finished: FinishedRequest) {
        guard let change = contextFitter.observe(finished) else { return }
        scheduler.setContextFit(contextFitter.fits)
        switch change {
        case let .trying(model, fit, p99, before):
            log.info("context fit: \(model) loads with num_ctx \(fit) from its next cold load (p99 of use \(p99) tokens × 1.5; "
                     + "first byte before: \(Int(saturatingRounded: before)) ms)")
        case let .kept(model, fit, before, after):
            log.info("context fit: \(model) at num_ctx \(fit) kept: first byte \(Int(saturatingRounded: before)) ms before, "
                     + "\(Int(saturatingRounded: after)) ms after")
        case let .undone(model, fit, before, after):
            log.warning("context fit: \(model) at num_ctx \(fit) undone: first byte got worse (\(Int(saturatingRounded: before)) ms before, "
                        + "\(Int(saturatingRounded: after)) ms after); its next request reloads it at its own context")
        }
    }

    /// Sends what the scheduler decided and re-arms the queue timer.
    private func performActions() {
        var prewarms: [Prewarm] = []
        for action in actions {
            switch action {
            case let .routed(proxy, answer): links[proxy]?.channel.send(.routeOK, answer)
            case let .refused(proxy, refusal):
                if !providers.isEmpty, overflow(refusal, proxy: proxy) { continue }
                links[proxy]?.channel.send(.routeError, refusal)
            case let .queued(proxy, queued): links[proxy]?.channel.send(.queued, queued)
            case let .granted(proxy, tickets): links[proxy]?.channel.send(.grant, TicketGrant(tickets: tickets))
            case let .revoked(proxy, tickets): links[proxy]?.channel.send(.revoke, TicketList(tickets: tickets))
            case let .finished(finished):
                if scheduler.settings.numCtxPolicy == .fit { fitContext(finished) }
                onFinished?(finished)
            case let .prewarm(prewarm): prewarms.append(prewarm)
            }
        }
        actions.removeAll(keepingCapacity: true)
        queueTimer?.follow(scheduler.nextDeadline)
        // After the batch: a pre-warm that fails at once reports back re-entrantly.
        for prewarm in prewarms {
            prewarmer.send(prewarm) { [weak self] ok, loadMs in
                guard let self else { return }
                self.scheduler.prewarmFinished(node: prewarm.node, model: prewarm.model, ok: ok, loadMs: loadMs,
                                               fleet: self.registry.list, now: self.clock.now, into: &self.actions)
                self.performActions()
            }
        }
    }

    /// Sends the current snapshot to every proxy that has not seen it, soon:
    /// changes that come together (a burst of heartbeats) leave as one
    /// snapshot, at most one per `snapshotIntervalMilliseconds`.
    func pushSnapshots() {
        guard !pushDue else { return }
        pushDue = true
        pushTimer?.follow(max(clock.now, lastPush + Self.snapshotIntervalMilliseconds))
    }

    private func pushNow() {
        guard pushDue else { return }
        pushDue = false
        lastPush = clock.now
        for link in links.values where link.greeted { push(to: link) }
    }

    private func push(to link: ProxyLink) {
        guard !link.channel.isBacklogged else {
            link.snapshotWanted = true
            return
        }
        link.snapshotWanted = false
        let snapshot = currentSnapshot()
        if let last = link.lastSnapshot {
            guard snapshot.version != last.version else { return }
            link.channel.send(.snapshotDelta, SnapshotDelta(from: last, to: snapshot).json)
        } else {
            link.channel.send(.snapshot, snapshot.json)
        }
        link.lastSnapshot = snapshot
    }
}
