import HerdRuntime
import HerdDiscovery

/// Publishes the router as `_herd._tcp` (port: the control port; TXT:
/// version, proxy port, fleet id) so that herd-node finds it with no flags.
/// Loop-thread only.
final class RouterAnnouncer {
    static let serviceType = "_herd._tcp"

    private let publisher: MDNSPublisher
    private let poll: AvahiLoopPoll

    init(loop: EventLoop, name: String, controlPort: Int, proxyPort: Int, fleetID: String, log: Logger) {
        poll = AvahiLoopPoll(loop: loop)
        publisher = MDNSPublisher(
            poll: poll, name: name, type: RouterAnnouncer.serviceType, port: UInt16(controlPort),
            txt: [("version", HerdVersion.current), ("port", String(controlPort)), ("proxy_port", String(proxyPort)), ("fleet", fleetID)]
        ) { event in
            switch event {
            case let .established(name): log.info("announced as '\(name)' (\(RouterAnnouncer.serviceType), fleet \(fleetID)) over mDNS")
            case let .failed(message): log.warning("mDNS announcement failed: \(message); nodes need --control")
            }
        }
    }

    func start(log: Logger) {
        do {
            try publisher.start()
        } catch {
            log.warning("mDNS unavailable (\(error)); nodes must be started with --control http://THIS-HOST:PORT")
        }
    }

    func stop() { publisher.stop() }
}
