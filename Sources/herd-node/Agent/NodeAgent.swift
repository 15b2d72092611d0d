import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdWire

/// herd-node's settings.
struct NodeOptions: Sendable {
    /// `nil`: find the router by mDNS.
    var control: HTTPURL?
    /// With mDNS: the fleet whose router to use.
    var fleetID: String?
    var backends: [BackendTarget]
    var nodeID: String
    var intervalMilliseconds: UInt64 = 2_000
    /// How often an OpenAI-compatible backend's models are asked for (`--model-probe-interval`).
    var modelProbeMilliseconds: UInt64 = 30_000
    /// Signs heartbeats when the fleet has a key.
    var fleetKey: FleetKey?
    var telemetry = TelemetryReader()
    /// Learn the owner's week (`--learn-capacity`), persisted at this path (nil: in memory only).
    var learnCapacity = true
    var capacityDatabase: String?
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
    private var cpu: SystemSampler.Sample?
    private var addresses: [Int: SocketAddress] = [:]
    private var controlAddress: SocketAddress?
    private var controlReachable: Bool?
    private var timer: LoopTimer?
    private var inFlight = false
    private var finder: RouterFinder?
    private var telemetry: TelemetryReader.Reading?
    private var beats = 0
    private var capabilities: [String: [String]] = [:]
    /// `OLLAMA_NUM_PARALLEL` of the Ollama servers on this machine, by port (read every fifth beat).
    private var ollamaParallel: [Int: OllamaParallel] = [:]
    private var warnedLocalOnly: Set<String> = []
    private var lastKnown = LastKnownModels()
    /// Backends that took the last probe and did not answer while the router had requests on this node.
    private var busyBackends: Set<Int> = []
    /// Backends whose probe is still out; each backend's last finished report (its `reachable`: it answered that probe); which round of probes is current.
    private var probesOut: Set<Int> = []
    private var lastReports: [Int: Heartbeat.Backend] = [:]
    private var probeRound = 0
    /// Sends a beat whose probes are not all back by its interval (at least a second).
    private lazy var probeDeadline = LoopTimer(loop: loop)
    /// When each OpenAI-compatible backend's models were last asked for.
    private var modelSchedule = ModelProbeSchedule()
    /// Requests the router has in flight on this node (its answer to the last heartbeat).
    private var routerInFlight = 0
    /// OpenAI-compatible backends whose `/metrics` has queue gauges (found at a full probe), by index.
    private var gaugeBackends: Set<Int> = []
    /// The owner's week, and the model servers' CPU ticks at the last sample (to tell their use from the owner's).
    private var capacity = CapacityModel()
    private var capacityStore: CapacityStore?
    private var lastBackendTicks: (ticks: UInt64, atMilliseconds: UInt64)?
    private var ownerMemoryNow = 0.0

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
        if options.learnCapacity, let path = options.capacityDatabase {
            do {
                let store = try CapacityStore(path: path)
                capacity = CapacityModel(learned: try store.load())
                capacityStore = store
                log.info("capacity learning: \(capacity.learnedHours) of 168 hours of the week known (\(path))")
            } catch {
                log.warning("capacity learning without persistence: cannot open \(path): \(error)")
            }
        }
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
            self.probeDeadline.close()
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
        let sample = sampler.sample()
        beats += 1
        let slow = beats % 5 == 1
        let reader = options.telemetry
        let previous = telemetry?.telemetry
        let localOllama = options.backends.contains { $0.kind == .ollama && Self.isLocal($0.url.host) }
        let learn = options.learnCapacity
        loop.offload({ () -> ([SocketAddress?], TelemetryReader.Reading, [Int: OllamaParallel]?, (ticks: UInt64, residentBytes: Int)?) in
            (urls.map { try? $0.resolve() }, reader.read(cpuBusy: sample.cpuUtilization, slow: slow, previous: previous),
             slow && localOllama ? reader.ollamaParallelism() : nil, slow && learn ? reader.backendProcessUsage() : nil)
        }, then: { [unowned self] result in
            guard case let .success((resolved, reading, parallel, usage)) = result else { return self.finishBeat() }
            self.telemetry = reading
            if let parallel { self.ollamaParallel = parallel }
            if let usage { self.learnCapacity(usage, sample: sample, reading: reading) }
            self.cpu = sample
            self.controlAddress = self.options.control == nil ? self.finder?.current : resolved.last ?? nil
            for (i, address) in resolved.prefix(self.options.backends.count).enumerated() {
                self.addresses[i] = address.map { self.reachableAddress(for: $0) }
            }
            self.probeAll()
        })
    }

    private func probeAll() {
        var reports = [Heartbeat.Backend?](repeating: nil, count: options.backends.count)
        var pending = options.backends.count
        if pending == 0 { return send([]) }
        probeRound &+= 1
        let round = probeRound
        var sent = false
        // The beat goes out at its time: a backend whose probe is still out
        // (a one-slot server busy with a long job answers nothing for seconds)
        // is reported as its last probe found it, and its probe's report goes
        // with the next beat. A beat that waited for it came seconds late, and
        // the node looked "degraded" (heartbeats late) for as long.
        let deliver = { [unowned self] in
            guard !sent else { return }
            sent = true
            self.probeDeadline.stop()
            self.send(reports.indices.map { i in
                reports[i] ?? self.lastReports[i] ?? BackendProbe.unprobed(self.options.backends[i], address: self.addresses[i], error: "first probe under way")
            })
        }
        let now = loop.nowMilliseconds
        for (i, target) in options.backends.enumerated() {
            // One probe at a time per backend: while one is out, its last report stands.
            guard !probesOut.contains(i) else {
                pending -= 1
                continue
            }
            probesOut.insert(i)
            let full = target.kind == .ollama || !target.models.isEmpty
                || modelSchedule.due(index: i, now: now, interval: options.modelProbeMilliseconds, routerInFlight: routerInFlight)
            BackendProbe.probe(target, address: addresses[i], client: client, models: full) { [unowned self] report, unanswered in
                var report = report
                // Taken and not answered while the router has requests here, or
                // on the first probe after it answered (the router's count may be
                // a beat old): busy, not gone.
                let answeredBefore = self.lastReports[i]?.reachable == true
                if unanswered, !report.reachable, self.routerInFlight > 0 || answeredBefore { self.busyBackends.insert(i) } else { self.busyBackends.remove(i) }
                if target.kind.speaksOpenAIOnly, target.models.isEmpty { self.modelSchedule.probed(index: i, full: full, report: &report, now: self.loop.nowMilliseconds) }
                let finish = { (report: Heartbeat.Backend) in
                    self.probesOut.remove(i)
                    self.lastReports[i] = report
                    guard round == self.probeRound, !sent else { return }
                    reports[i] = report
                    pending -= 1
                    if pending == 0 { deliver() }
                }
                // Queue gauges: looked for at each full probe (the router idle
                // here), then read on every beat while the router has requests
                // on the node — when they teach something.
                guard target.kind.speaksOpenAIOnly, report.reachable, let address = self.addresses[i],
                      full || (self.gaugeBackends.contains(i) && self.routerInFlight > 0) else { return finish(report) }
                BackendProbe.queueGauges(target, address: address, client: self.client) { gauges in
                    if full {
                        if gauges == nil { self.gaugeBackends.remove(i) } else { self.gaugeBackends.insert(i) }
                    }
                    report.queue = gauges
                    finish(report)
                }
            }
        }
        if pending == 0 { return deliver() }
        probeDeadline.start(after: max(1_000, options.intervalMilliseconds)) { deliver() }
    }

    private func finishBeat() { inFlight = false }

    /// One capacity sample: the owner's CPU is the machine's minus the model
    /// servers'; their memory is what is used minus the servers' resident set.
    private func learnCapacity(_ usage: (ticks: UInt64, residentBytes: Int), sample: SystemSampler.Sample, reading: TelemetryReader.Reading) {
        let now = loop.nowMilliseconds
        defer { lastBackendTicks = (usage.ticks, now) }
        guard let last = lastBackendTicks, now > last.atMilliseconds, usage.ticks >= last.ticks, sample.cores > 0 else { return }
        let ticksPerSecond = Double(sysconf(Int32(clamping: _SC_CLK_TCK)))
        let seconds = Double(now - last.atMilliseconds) / 1000
        let serversShare = Double(usage.ticks - last.ticks) / (seconds * ticksPerSecond * Double(sample.cores))
        let ownerCPU = max(0, sample.cpuUtilization - serversShare)
        let total = reading.memoryTotal > 0 ? reading.memoryTotal : sample.memoryTotalBytes
        let available = reading.memoryTotal > 0 ? reading.memoryAvailable : sample.memoryAvailableBytes
        ownerMemoryNow = Double(max(0, total - available - usage.residentBytes))
        let (slot, _) = Self.hourOfWeek()
        if let folded = capacity.add(slot: slot, ownerCPU: ownerCPU, ownerMemoryBytes: ownerMemoryNow, inMeeting: reading.telemetry.inMeeting),
           let store = capacityStore, let value = capacity.learned[folded] {
            let at = Int(clamping: EventLoop.wallClockMilliseconds())
            loop.offload({ try store.save(slot: folded, value, at: at) }, then: { [log] result in
                if case let .failure(error) = result { log.warning("capacity: cannot save hour \(folded): \(error)") }
            })
        }
    }

    /// The hour of the week now (local time) and the minute within the hour.
    static func hourOfWeek() -> (slot: Int, minute: Int) {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return (CapacityModel.slot(weekday: Int(parts.tm_wday), hour: Int(parts.tm_hour)), Int(parts.tm_min))
    }

    /// What the heartbeat says of capacity, once anything is known.
    private func capacityReport(total: Int, available: Int) -> Heartbeat.Capacity? {
        guard options.learnCapacity else { return nil }
        let (slot, minute) = Self.hourOfWeek()
        guard let availability = capacity.availability(slot: slot, minuteOfHour: minute) else { return nil }
        return Heartbeat.Capacity(availability: availability,
                                  memoryCeilingBytes: capacity.memoryCeiling(slot: slot, totalBytes: total, ownerNowBytes: ownerMemoryNow, freeNow: available),
                                  learnedHours: capacity.learnedHours, hourLearned: capacity.learned[slot] != nil,
                                  week: capacity.learned.map { $0.map { (min(1, max(0, 1 - $0.cpu)) * 100).rounded() / 100 } ?? -1 })
    }

    /// Hosts other than the router connected to this machine's backend on
    /// `port` (from /proc/net/tcp*): clients that bypass the router.
    private func directClients(port: Int) -> [String] {
        let peers = LinuxParsers.establishedPeers(SystemSampler.read("/proc/net/tcp"), localPort: port)
            + LinuxParsers.establishedPeers(SystemSampler.read("/proc/net/tcp6"), localPort: port)
        let router = controlAddress?.host
        return Array(peers.filter { !$0.hasPrefix("127.") && $0 != "::1" && $0 != router }.prefix(Heartbeat.Backend.maxDirectClients))
    }

    /// A backend on this machine (its server's environment is readable here).
    static func isLocal(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "localhost" || host == "::1" || host == "[::1]" || host == "0.0.0.0"
    }

    /// A backend on this host's loopback, seen from a router on another host:
    /// the address of this host that faces the router (no packet is sent to find it).
    private func reachableAddress(for backend: SocketAddress) -> SocketAddress {
        guard backend.host.hasPrefix("127.") || backend.host == "::1", let control = controlAddress,
              !(control.host.hasPrefix("127.") || control.host == "::1"),
              let local = SocketAddress.local(towards: control), let moved = try? SocketAddress(host: local.host, port: backend.port) else { return backend }
        return moved
    }

    private func send(_ backends: [Heartbeat.Backend]) {
        let sample = cpu ?? sampler.sample()
        var backends = backends
        let now = loop.nowMilliseconds
        for i in backends.indices {
            lastKnown.fill(&backends[i], index: i, now: now, busy: busyBackends.contains(i))
            for j in backends[i].models.indices {
                let model = backends[i].models[j]
                // Ollama's from /api/show; an OpenAI-compatible server's as its probe read them.
                if let known = capabilities[model.name + "@" + model.digest] { backends[i].models[j].capabilities = known }
            }
            if backends[i].kind == .ollama, backends[i].parallel == nil, options.backends.indices.contains(i),
               Self.isLocal(options.backends[i].url.host) {
                switch ollamaParallel[options.backends[i].url.port] {
                case let .set(n)?: backends[i].parallel = n
                // Unset: what this Ollama version picks by itself (a ceiling to the router, not a promise).
                case .unset?: backends[i].parallel = LinuxParsers.ollamaDefaultParallel(version: backends[i].version)
                case nil: break
                }
            }
            if options.backends.indices.contains(i), Self.isLocal(options.backends[i].url.host) {
                backends[i].directClients = directClients(port: options.backends[i].url.port)
            }
            if !backends[i].reachable, options.backends.indices.contains(i),
               options.backends[i].url.host.hasPrefix("127.") || options.backends[i].url.host == "localhost",
               !backends[i].address.hasPrefix("127.") {
                backends[i].localOnly = true
            }
            if backends[i].localOnly, !warnedLocalOnly.contains(backends[i].url) {
                warnedLocalOnly.insert(backends[i].url)
                log.warning("\(backends[i].url) answers only on this machine's loopback, so the router at \(controlDescription) cannot reach it: start Ollama with OLLAMA_HOST=0.0.0.0:11434 (or pass --ollama with an address the router can reach)")
            }
        }
        let reading = telemetry
        var heartbeat = Heartbeat(
            nodeID: options.nodeID, sentAtMilliseconds: Int(clamping: EventLoop.wallClockMilliseconds()), cpuCores: sample.cores,
            cpuUtilization: sample.cpuUtilization, memoryTotalBytes: reading?.memoryTotal ?? sample.memoryTotalBytes,
            memoryAvailableBytes: reading?.memoryAvailable ?? sample.memoryAvailableBytes, backends: backends,
            telemetry: reading?.telemetry ?? Telemetry())
        heartbeat.intervalMilliseconds = Int(clamping: options.intervalMilliseconds)
        heartbeat.capacity = capacityReport(total: heartbeat.memoryTotalBytes, available: heartbeat.memoryAvailableBytes)
        fetchCapabilities(backends)
        guard let controlAddress else {
            noteControl(false, options.control.map { "cannot resolve \($0.host)" } ?? "no herd router found over mDNS yet")
            inFlight = false
            return
        }
        var body: [UInt8] = []
        // What a backend or a sensor reported, within the ranges control
        // accepts: nonsense costs a value, not the node's place in the fleet.
        heartbeat.fittedToRanges().json.write(to: &body)
        let path = (options.control?.path ?? "") + "/heartbeat"
        var headers: HTTPHeaders = ["Content-Type": "application/json"]
        if let key = options.fleetKey {
            for (name, value) in key.headers(method: "POST", path: "/heartbeat", body: body, now: Int(clamping: EventLoop.wallClockMilliseconds())) {
                headers.add(name, value)
            }
        }
        let request = HTTPClientRequest(method: "POST", target: path, headers: headers, body: body)
        client.collect(request, to: controlAddress, limit: 64 * 1024) { [unowned self] result in
            self.inFlight = false
            switch result {
            case let .success(response) where response.status == 200:
                self.noteControl(true, "")
                let reply = try? JSONValue.parse(response.body)
                self.routerInFlight = min(max(reply?["in_flight"]?.intValue ?? 0, 0), 1_000_000)
            case let .success(response):
                self.noteControl(false, "heartbeat refused (\(response.status)): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
            case let .failure(error):
                self.finder?.currentFailed()
                self.noteControl(false, "\(error)")
            }
        }
    }

    /// `/api/show` once per model, for its capabilities (vision, tools, embedding…).
    private func fetchCapabilities(_ backends: [Heartbeat.Backend]) {
        for (i, backend) in backends.enumerated() where backend.kind == .ollama && backend.reachable {
            guard let address = addresses[i] else { continue }
            // Keyed by digest too: a model pulled anew is asked again.
            for model in backend.models where capabilities[model.name + "@" + model.digest] == nil {
                let key = model.name + "@" + model.digest
                capabilities[key] = []
                var body: [UInt8] = []
                JSONValue.object([("model", .string(model.name))]).write(to: &body)
                let request = HTTPClientRequest(method: "POST", target: options.backends[i].url.path + "/api/show",
                                                headers: ["Content-Type": "application/json"], body: body)
                client.collect(request, to: address, limit: 4 * 1024 * 1024) { [unowned self] result in
                    guard case let .success(response) = result, response.status == 200,
                          let json = try? JSONValue.parse(response.body) else {
                        self.capabilities[key] = nil // try again next beat
                        return
                    }
                    self.capabilities[key] = (json["capabilities"]?.arrayValue ?? []).prefix(32).compactMap(\.stringValue)
                }
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
