import HerdJSON
import HerdRuntime
import HerdWire

/// One connected herd-proxy: its framed channel, after a valid hello.
final class ProxyLink: RouteReplyTarget {
    let channel: ControlChannel
    var proxyID = ""
    var greeted = false
    var lastSnapshotVersion = -1

    init(channel: ControlChannel) {
        self.channel = channel
    }

    func reply(_ type: ControlMessageType, _ body: JSONValue) { channel.send(type, body) }
}

/// The route service on the control Unix socket: accepts proxies, checks their
/// hello, dispatches ROUTE / RETRY / RESULT / CANCEL to the scheduler and pushes
/// routing snapshots. A proxy that sends garbage loses its own connection only.
/// Loop-thread only.
final class RouteServer {
    private let loop: EventLoop
    private let scheduler: Scheduler
    private var listener: StreamListener?
    private var links: [ObjectIdentifier: ProxyLink] = [:]
    /// The snapshot to send to new proxies and on changes.
    var currentSnapshot: () -> RoutingSnapshot
    let log: Logger

    init(loop: EventLoop, scheduler: Scheduler, log: Logger, snapshot: @escaping () -> RoutingSnapshot) {
        self.loop = loop
        self.scheduler = scheduler
        self.log = log
        self.currentSnapshot = snapshot
    }

    var proxyCount: Int { links.values.filter(\.greeted).count }

    func listen(path: String) throws {
        listener = try StreamListener(loop: loop, path: path) { [unowned self] stream in self.accept(stream) }
    }

    func close() {
        listener?.close()
        listener = nil
        for link in links.values { link.channel.close() }
    }

    private func accept(_ stream: StreamConnection) {
        let channel = ControlChannel(stream: stream)
        let link = ProxyLink(channel: channel)
        links[ObjectIdentifier(link)] = link
        channel.onMessage = { [unowned self, unowned link] type, body in self.message(link, type, body) }
        channel.onClose = { [unowned self, unowned link] error in
            if let error { self.log.warning("proxy \(link.proxyID.isEmpty ? "(no hello)" : link.proxyID) dropped: \(error.reason)") }
            self.scheduler.targetGone(link)
            self.links[ObjectIdentifier(link)] = nil
        }
        channel.start()
    }

    private func message(_ link: ProxyLink, _ type: ControlMessageType, _ body: JSONValue) {
        do {
            if !link.greeted {
                guard type == .hello else { throw JSONFieldError("the first frame must be a hello, not \(type)") }
                let hello = try ControlHello(json: body)
                guard hello.protocolVersion == ControlHello.protocolVersion else {
                    throw JSONFieldError("protocol \(hello.protocolVersion) is not supported (control speaks \(ControlHello.protocolVersion))")
                }
                link.proxyID = hello.proxyID
                link.greeted = true
                link.reply(.helloOK, ["protocol": .int(ControlHello.protocolVersion), "version": .string(HerdVersion.current)])
                push(to: link)
                log.info("proxy \(hello.proxyID) connected (herd \(hello.version))")
                return
            }
            switch type {
            case .route: scheduler.route(try RouteRequest(json: body), from: link)
            case .retry: scheduler.retry(try RouteRetry(json: body), from: link)
            case .result: scheduler.result(try RouteResult(json: body), from: link)
            case .cancel:
                let f = try JSONFields(body, context: "cancel")
                scheduler.cancel(id: UInt64(max(0, try f.int("id"))), from: link)
            case .hello, .helloOK, .routeOK, .routeError, .snapshot:
                throw JSONFieldError("a proxy does not send \(type)")
            }
        } catch {
            link.channel.close(ControlProtocolError("\(error)"))
        }
    }

    /// Sends the current snapshot to every proxy that has not seen it.
    func pushSnapshots() {
        for link in links.values where link.greeted { push(to: link) }
    }

    private func push(to link: ProxyLink) {
        let snapshot = currentSnapshot()
        guard snapshot.version != link.lastSnapshotVersion else { return }
        link.lastSnapshotVersion = snapshot.version
        link.reply(.snapshot, snapshot.json)
    }
}
