import HerdRuntime
import HerdDiscovery

/// Finds herd-control by mDNS (`_herd._tcp`): picks the router of `fleetID`
/// (or the only / first one, saying so), orders its addresses loopback
/// first, and follows it when it moves or restarts. Loop-thread only.
final class RouterFinder {
    private let fleetID: String?
    private let log: Logger
    private let poll: AvahiLoopPoll
    private var browser: MDNSBrowser?
    private var services: [String: MDNSService] = [:]
    private var chosen: String?
    private(set) var candidates: [SocketAddress] = []
    private var attempt = 0
    private let retryTimer: LoopTimer
    private var lastWarning = ""

    init(loop: EventLoop, fleetID: String?, log: Logger) {
        self.fleetID = fleetID
        self.log = log
        poll = AvahiLoopPoll(loop: loop)
        retryTimer = LoopTimer(loop: loop)
    }

    /// The address to send the next heartbeat to, if a router is known.
    var current: SocketAddress? { candidates.isEmpty ? nil : candidates[attempt % candidates.count] }

    /// The last heartbeat to `current` failed: try the router's next address.
    func currentFailed() { attempt += 1 }

    func start() {
        let browser = MDNSBrowser(poll: poll, type: "_herd._tcp") { [unowned self] event in self.handle(event) }
        do {
            try browser.start()
            self.browser = browser
        } catch {
            warn("mDNS is unavailable (\(error)). Start avahi-daemon (apt-get install avahi-daemon; systemctl start avahi-daemon) or give --control http://ROUTER:11436")
            retryTimer.start(after: 5_000) { [unowned self] in self.start() }
        }
    }

    private func handle(_ event: MDNSBrowser.Event) {
        switch event {
        case let .resolved(service):
            services[service.name] = service
            choose()
        case let .removed(name):
            services[name] = nil
            if name == chosen {
                log.warning("router '\(name)' left the network; still trying its last address while looking for it")
                chosen = nil
                choose()
            }
        case let .failed(message):
            warn("mDNS: \(message)")
        }
    }

    private func choose() {
        let eligible = services.values.filter { fleetID == nil || $0.txt["fleet"] == fleetID }.sorted { $0.name < $1.name }
        guard let pick = eligible.first(where: { $0.name == chosen }) ?? eligible.first else {
            if !services.isEmpty, let fleetID {
                let fleets = Set(services.values.compactMap { $0.txt["fleet"] }).sorted().joined(separator: ", ")
                warn("found routers of fleet(s) \(fleets), none of fleet '\(fleetID)'")
            }
            return
        }
        let addresses = RouterFinder.order(pick.addresses.compactMap { try? SocketAddress(host: $0, port: pick.port) })
        guard !addresses.isEmpty else { return }
        if pick.name != chosen || addresses != candidates {
            if eligible.count > 1, pick.name != chosen {
                log.warning("found \(eligible.count) routers (\(eligible.map { "'\($0.name)'" }.joined(separator: ", "))); using '\(pick.name)' — pass --fleet-id to choose")
            }
            chosen = pick.name
            candidates = addresses
            attempt = 0
            log.info("found router '\(pick.name)' (fleet \(pick.txt["fleet"] ?? "?"), herd \(pick.txt["version"] ?? "?")) at \(addresses.map(\.description).joined(separator: ", "))")
        }
    }

    /// Loopback first (the router on this host), then IPv4, then IPv6.
    static func order(_ addresses: [SocketAddress]) -> [SocketAddress] {
        func rank(_ a: SocketAddress) -> Int {
            if a.host.hasPrefix("127.") || a.host == "::1" { return 0 }
            return a.isIPv6 ? 2 : 1
        }
        return addresses.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
    }

    private func warn(_ message: String) {
        guard message != lastWarning else { return }
        lastWarning = message
        log.warning(message)
    }

    func stop() {
        retryTimer.close()
        browser?.stop()
    }
}
