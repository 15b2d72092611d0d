import Glibc
import HerdShared

/// herd-node's settings.
struct NodeOptions: Sendable {
    /// `nil`: find the router by mDNS.
    var control: HTTPURL?
    /// With mDNS: the fleet whose router to use.
    var fleetID: String?
    var backends: [BackendTarget]
    var nodeID: String
    var intervalMilliseconds: UInt64 = 2_000
    /// Signs heartbeats when the fleet has a key.
    var fleetKey: FleetKey?
}

extension BackendTarget: @unchecked Sendable {}

/// The agent: every interval, reads the machine and its backends and sends a
/// heartbeat to herd-control. It never exits because control is away: it
/// keeps trying, saying so once per outage. Loop-thread only.
final class NodeAgent {
    private let loop: EventLoop
    private let options: NodeOptions
    private let client: HTTPClient
    private let log = Logger(label: "herd-node")
    private var sampler = SystemSampler()
    private var addresses: [Int: SocketAddress] = [:]
    private var controlAddress: SocketAddress?
    private var controlReachable: Bool?
    private var timer: LoopTimer?
    private var inFlight = false
    private var finder: RouterFinder?

    init(loop: EventLoop, options: NodeOptions) {
        self.loop = loop
        self.options = options
        var configuration = HTTPClientConfiguration()
        configuration.connectTimeoutMilliseconds = 1_000
        configuration.firstByteTimeoutMilliseconds = 5_000
        configuration.maxConnectionsPerUpstream = 8
        client = HTTPClient(loop: loop, configuration: configuration)
    }

    func run() throws {
        let timer = LoopTimer(loop: loop)
        self.timer = timer
        timer.start(after: 0, repeating: options.intervalMilliseconds) { [unowned self] in self.beat() }
        if options.control == nil {
            let finder = RouterFinder(loop: loop, fleetID: options.fleetID, log: log)
            self.finder = finder
            finder.start()
        }
        log.info("node \(options.nodeID) reporting \(options.backends.map { "\($0.kind.rawValue) \($0.url)" }.joined(separator: ", ")) to \(controlDescription)")
        let stop: (Int32) -> Void = { [unowned self] _ in
            self.timer?.close()
            self.finder?.stop()
            self.client.close()
            self.loop.stop()
        }
        let term = try SignalWatcher(loop: loop, signal: SIGTERM, stop)
        let interrupt = try SignalWatcher(loop: loop, signal: SIGINT, stop)
        loop.run()
        term.close()
        interrupt.close()
    }

    private var controlDescription: String {
        if let control = options.control { return control.description }
        return finder?.current.map { "http://\($0) (found by mDNS)" } ?? "(looking for it over mDNS)"
    }

    /// One cycle: resolve names (off the loop), probe, send.
    private func beat() {
        guard !inFlight else { return }
        inFlight = true
        let urls = options.backends.map(\.url) + (options.control.map { [$0] } ?? [])
        loop.offload({ urls.map { try? $0.resolve() } }, then: { [unowned self] result in
            let resolved = (try? result.get()) ?? []
            for (i, address) in resolved.prefix(self.options.backends.count).enumerated() { self.addresses[i] = address }
            self.controlAddress = self.options.control == nil ? self.finder?.current : resolved.last ?? nil
            self.probeAll()
        })
    }

    private func probeAll() {
        var reports = [Heartbeat.Backend?](repeating: nil, count: options.backends.count)
        var pending = options.backends.count
        if pending == 0 { return send([]) }
        for (i, target) in options.backends.enumerated() {
            BackendProbe.probe(target, address: addresses[i], client: client) { [unowned self] report in
                reports[i] = report
                pending -= 1
                if pending == 0 { self.send(reports.compactMap { $0 }) }
            }
        }
    }

    private func send(_ backends: [Heartbeat.Backend]) {
        let sample = sampler.sample()
        let heartbeat = Heartbeat(
            nodeID: options.nodeID, sentAtMilliseconds: Int(EventLoop.wallClockMilliseconds()), cpuCores: sample.cores,
            cpuUtilization: sample.cpuUtilization, memoryTotalBytes: sample.memoryTotalBytes,
            memoryAvailableBytes: sample.memoryAvailableBytes, backends: backends)
        guard let controlAddress else {
            noteControl(false, options.control.map { "cannot resolve \($0.host)" } ?? "no herd router found over mDNS yet")
            inFlight = false
            return
        }
        var body: [UInt8] = []
        heartbeat.json.write(to: &body)
        let path = (options.control?.path ?? "") + "/heartbeat"
        var headers: HTTPHeaders = ["Content-Type": "application/json"]
        if let key = options.fleetKey {
            for (name, value) in key.headers(method: "POST", path: "/heartbeat", body: body, now: Int(EventLoop.wallClockMilliseconds())) {
                headers.add(name, value)
            }
        }
        let request = HTTPClientRequest(method: "POST", target: path, headers: headers, body: body)
        client.collect(request, to: controlAddress, limit: 64 * 1024) { [unowned self] result in
            self.inFlight = false
            switch result {
            case let .success(response) where response.status == 200:
                self.noteControl(true, "")
            case let .success(response):
                self.noteControl(false, "heartbeat refused (\(response.status)): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
            case let .failure(error):
                self.finder?.currentFailed()
                self.noteControl(false, "\(error)")
            }
        }
    }

    /// Logs transitions only: one line when control goes away, one when it is back.
    private func noteControl(_ reachable: Bool, _ detail: String) {
        defer { controlReachable = reachable }
        if reachable, controlReachable != true {
            log.info("registered with herd-control at \(controlDescription)")
        } else if !reachable, controlReachable != false {
            log.warning("herd-control at \(controlDescription) not reachable (\(detail)); retrying every \(Double(options.intervalMilliseconds) / 1000) s")
        }
    }
}
