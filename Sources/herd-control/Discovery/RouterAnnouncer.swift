import HerdBounds
import HerdRuntime
import HerdDiscovery

/// Publishes the router as `_herd._tcp` (port: the control port; TXT:
/// version, proxy port, fleet id) so that herd-node finds it with no flags.
/// Loop-thread only.
final class RouterAnnouncer {
    static let serviceType = "_herd._tcp"

    private var publisher: MDNSPublisher
    private let poll: AvahiLoopPoll
    private let makePublisher: () -> MDNSPublisher
    private let retryTimer: LoopTimer
    private var failures = 0

    init(loop: EventLoop, name: String, controlPort: Int, proxyPort: Int, fleetID: String, log: Logger) {
        let poll = AvahiLoopPoll(loop: loop)
        self.poll = poll
        retryTimer = LoopTimer(loop: loop)
        makePublisher = {
            MDNSPublisher(
                poll: poll, name: name, type: RouterAnnouncer.serviceType, port: UInt16(clamping: controlPort),
                txt: [("version", HerdVersion.current), ("port", String(controlPort)), ("proxy_port", String(proxyPort)), ("fleet", fleetID)]
            ) { event in
                switch event {
                case let .established(name): log.info("announced as '\(name)' (\(RouterAnnouncer.serviceType), fleet \(fleetID)) over mDNS")
                case let .failed(message): log.warning("mDNS announcement failed: \(message); nodes need --control")
                }
            }
        }
        publisher = makePublisher()
    }

    /// Publishes; with no D-Bus yet (control started first: boot order, a
    /// container) it says so once and tries again every 2 s until it can.
    func start(log: Logger) {
        do {
            try publisher.start()
            if failures > 0 { log.info("D-Bus is reachable after \(failures) attempt(s); announcing over mDNS") }
            failures = 0
        } catch {
            if failures == 0 {
                log.warning("mDNS unavailable (\(error)); retrying every 2 s — until then nodes must be started with --control http://THIS-HOST:PORT")
            }
            failures += 1
            publisher = makePublisher()
            retryTimer.start(after: 2_000) { [unowned self] in self.start(log: log) }
        }
    }

    func stop() {
        retryTimer.close()
        publisher.stop()
    }
}
