import HerdBounds
import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdSecurity
import HerdWire

/// herd-control's settings, from flags and `HERD_*` variables.
struct ControlOptions: Sendable {
    var host = "127.0.0.1"
    var port = 11436
    var proxyPort = 11435
    var proxies = 1
    var dataDirectory = DataDirectory.resolve()
    var controlSocket: String?
    var fleetKey: String?
    var mdns = true
    /// Published in the mDNS TXT record; nodes with --fleet-id pick their router by it.
    var fleetID = "herd"
    var scheduler = Scheduler.Settings()
    /// Trace rows older than this are deleted (hourly); 0 keeps them all.
    var traceRetentionMilliseconds: UInt64 = 30 * 86_400_000
    var registry = NodeRegistry.Settings()
    var proxyArguments: [String] = []
    /// Host names the API answers to besides IP literals, localhost and the
    /// machine's own names (`--allowed-hosts`; `*`: any).
    var allowedHosts: [String] = []
    /// Requests without a valid client key are refused (`--require-key`; the proxies follow it).
    var requireKey = false
    /// Cloud providers keys made with `cloud` may overflow to.
    var providers: [CloudProvider] = []

    var socketPath: String { controlSocket ?? dataDirectory + "/control.sock" }
}

/// herd-control's process: builds its parts (`ControlParts`), starts them,
/// runs the loop until SIGTERM/SIGINT, then stops the proxies and flushes SQLite.
final class ControlApp {
    let options: ControlOptions
    let log = Logger(label: "herd-control")

    init(options: ControlOptions) {
        self.options = options
    }

    func run() throws {
        let loop = try EventLoop()
        try makeDirectories(options.dataDirectory)
        let parts = try ControlParts(options: options, loop: loop, log: log)
        let bound = try parts.listen()
        let timers = parts.startTimers()
        let supervisor = parts.startProxies()
        let announcer = parts.announce(on: bound)
        log.info("listening on \(bound) (heartbeats, API); control socket \(options.socketPath); data in \(options.dataDirectory)")

        var stopping = false
        let stop: (Int32) -> Void = { [log] signal in
            guard !stopping else { return }
            stopping = true
            log.info("signal \(signal): stopping proxies, then exiting")
            supervisor.stop(deadline: 15_000) {
                announcer?.stop()
                for timer in timers { timer.close() }
                parts.close()
                loop.stop()
            }
        }
        let term = try SignalWatcher(loop: loop, signal: SIGTERM, stop)
        let interrupt = try SignalWatcher(loop: loop, signal: SIGINT, stop)
        // SIGHUP (systemctl reload): re-reads the fleet key file (rotating or adding a key drops no request).
        let hangUp = try SignalWatcher(loop: loop, signal: SIGHUP) { _ in parts.reloadFleetKey() }
        loop.run()
        term.close()
        interrupt.close()
        hangUp.close()
        parts.flush()
        log.info("stopped")
    }
}

/// The composition root of herd-control: every part, built in order, each
/// given its collaborators in `init` (closures that point back up the graph
/// capture unowned: it stays acyclic, and every part lives until `run`
/// returns; LeakSanitizer checks at exit). Loop-thread only.
final class ControlParts {
    let options: ControlOptions
    let loop: EventLoop
    /// The loop's clock; a test's `ManualClock` in the in-process tests.
    let clock: any LoopClock
    let log: Logger
    let traces: TraceStore
    let keys: KeyBook
    let registry: NodeRegistry
    let requestLog: RequestLog
    let metrics = ControlMetrics()
    let stats = RequestStats()
    let health = HealthMonitor()
    let routes: ControlServer
    /// Learned limits kept across restarts (nil: the store could not be opened; herd learns afresh).
    let limitStore: LearnedLimitStore?
    let events: EventHub
    let finished: FinishedRequests
    let gate: FleetKeyGate
    let fleetAPI: FleetAPI
    let api: ControlAPI
    let http: HTTPServer
    private let startedAt: UInt64

    init(options: ControlOptions, loop: EventLoop, log: Logger, clock: (any LoopClock)? = nil) throws {
        self.options = options
        self.loop = loop
        let clock = clock ?? loop
        self.clock = clock
        self.log = log
        startedAt = clock.now
        let traces = try TraceStore(path: options.dataDirectory + "/herd.db", log: log)
        self.traces = traces
        let registry = NodeRegistry(settings: options.registry)
        self.registry = registry
        registry.restoreHolds(HoldFile.read(options.dataDirectory + "/holds"))
        requestLog = RequestLog(loop: loop)

        let keys = try KeyBook(store: KeyStore(path: traces.path), traces: traces, required: options.requireKey,
                               wallNow: Int(clamping: EventLoop.wallClockMilliseconds()))
        self.keys = keys
        if options.requireKey, keys.live.isEmpty {
            log.warning("--require-key with no client keys: every request is refused until one is made (herd-control keys create NAME)")
        }

        // The snapshot's version is the fleet's plus the keys': both only grow, so it does too.
        var snapshot = RoutingSnapshot()
        let routes = ControlServer(loop: loop, clock: clock, registry: registry, settings: options.scheduler, log: log, keys: keys) {
            let version = registry.version &+ keys.version
            if snapshot.version != version {
                snapshot = SnapshotBuilder.build(version: version, nodes: registry.list)
                snapshot.keys = keys.wire
            }
            return snapshot
        }
        keys.onChange = { [unowned routes] in routes.pushSnapshots() }
        routes.providers = options.providers
        self.routes = routes
        // What the last run learned: rates come back from the trace rows of the last week.
        let learned = try TraceStore.recentObservations(path: traces.path, since: Int(clamping: EventLoop.wallClockMilliseconds()) - 7 * 86_400_000,
                                                        limit: 20_000)
        // What `herd benchmark` measured is the starting point; the traces' rates refine it.
        let benchmarkStore = try BenchmarkStore(path: traces.path)
        var priors: [BenchmarkPrior] = []
        do {
            priors = try benchmarkStore.latest()
            routes.benchmarked(priors)
            if !priors.isEmpty { log.info("benchmark figures restored for \(priors.count) node:models") }
        } catch {
            log.error("benchmark results could not be read: \(error); routing starts from its priors")
        }
        routes.restore(learned)
        if !learned.isEmpty { log.info("learned rates restored from \(learned.count) traced requests") }
        // What the last run learned of each node:model's concurrency: its
        // learners start there, out of slow start (a newer benchmark wins).
        var limitStore: LearnedLimitStore?
        do {
            let store = try LearnedLimitStore(path: traces.path)
            limitStore = store
            let wallNow = Int(clamping: EventLoop.wallClockMilliseconds())
            let benchmarkedAt = Dictionary(priors.map { ("\($0.node)\u{0}\($0.model)", $0.atMs) }, uniquingKeysWith: max)
            let rows = try store.load(sinceMs: wallNow.subtractingSaturated(LearnedLimitStore.maxAgeMilliseconds))
                .filter { $0.atMs > benchmarkedAt["\($0.node)\u{0}\($0.model)", default: Int.min] }
            routes.remember(rows.map { ($0.node, $0.model, $0.limit) })
            if !rows.isEmpty { log.info("learned concurrency restored for \(rows.count) node:models") }
        } catch {
            log.error("learned limits could not be read: \(error); each node:model's limit is learned afresh")
        }
        self.limitStore = limitStore

        let (stats, health) = (self.stats, self.health)
        let events = EventHub(loop: loop, log: log, decisions: { [unowned routes] in routes.scheduler.feed },
                              stats: { [unowned routes] in FleetAPI.statsEvent(stats: stats, routes: routes, health: health, now: clock.now) })
        self.events = events
        finished = FinishedRequests(clock: clock, events: events, traces: traces, requestLog: requestLog, metrics: metrics, stats: stats,
                                     keys: keys)

        let fleetKey = try options.fleetKey ?? FleetKeyFile.read(options.dataDirectory + "/fleet.key")
        var verifier: FleetKeyVerifier?
        if let fleetKey {
            guard let key = FleetKey(fleetKey) else { throw ControlError("the fleet key must be at least 16 characters") }
            verifier = FleetKeyVerifier(key: key)
            routes.adminKeyHash = SHA256.hex(SHA256.hash(Array(fleetKey.utf8)))
        } else {
            log.warning("no fleet key: any machine that can reach \(options.host):\(options.port) can join the fleet (set --fleet-key or HERD_FLEET_KEY)")
        }
        let gate = FleetKeyGate(verifier: verifier)
        self.gate = gate

        let holdPath = options.dataDirectory + "/holds"
        let fleetAPI = FleetAPI(loop: loop, clock: clock, registry: registry, routes: routes, stats: stats, health: health, options: options,
                                tracePath: traces.path, gate: gate, events: events, log: log) { [unowned routes, unowned events, log] id, hold in
            routes.fleetChanged()
            do { try HoldFile.write(registry.holds, to: holdPath) } catch { log.error("\(error); the hold lasts until herd-control restarts") }
            events.publish("fleet", ["node": .string(id), "hold": hold.map { .string($0.rawValue) } ?? .null, "change": "hold"])
        }
        self.fleetAPI = fleetAPI
        let keysAPI = KeysAPI(keys: keys, gate: gate, clock: clock, log: log)
        let api = ControlAPI(loop: loop, clock: clock, registry: registry, routes: routes, log: log, metrics: metrics,
                             requestGuard: RequestGuard(names: RequestGuard.ownNames(extra: options.allowedHosts)), gate: gate, traces: traces,
                             fleetAPI: fleetAPI, keysAPI: keysAPI, onFleetChange: { [unowned routes] in routes.fleetChanged() },
                             onHeartbeat: { [unowned events, unowned fleetAPI] id, joined in
                                 guard events.clientCount > 0 else { return }
                                 if joined, let node = registry.nodes[id] {
                                     events.publish("fleet", ["node": .string(id), "status": .string(node.status.rawValue), "change": "joined"])
                                 }
                                 if let event = fleetAPI.nodeEvent(id) { events.publish("node", event) }
                             })
        self.api = api
        let benchmarks = BenchmarksAPI(store: benchmarkStore, routes: routes, log: log) { [unowned keysAPI] exchange, body in
            keysAPI.refusal(exchange, body: body, doing: "storing benchmark results")
        }
        api.benchmarksAPI = benchmarks
        var httpConfiguration = HTTPServerConfiguration()
        httpConfiguration.maxBodyBytes = 4 * 1024 * 1024
        http = HTTPServer(loop: loop, configuration: httpConfiguration) { [unowned api] in api.handle($0) }
        routes.onFinished = { [unowned finished] in finished.record($0) }
    }

    /// Opens the control socket (proxies) and the HTTP port (nodes, API, dashboard).
    func listen() throws -> SocketAddress {
        try routes.listen(path: options.socketPath)
        return try http.listen(host: options.host, port: options.port)
    }

    /// Every second: the registry's sweep (late and gone nodes; their
    /// events), every 5 s the health checks, every minute the learned limits
    /// saved. Hourly: trace retention.
    func startTimers() -> [LoopTimer] {
        let sweep = LoopTimer(loop: loop)
        var ticks = 0
        sweep.start(after: 1_000, repeating: 1_000) { [unowned self] in
            sweepNodes()
            ticks += 1
            if ticks % 5 == 1 { evaluateHealth() }
            if ticks % 60 == 0 { saveLimits() }
        }
        let retention = LoopTimer(loop: loop)
        if options.traceRetentionMilliseconds > 0 {
            let keep = Int(clamping: options.traceRetentionMilliseconds)
            retention.start(after: 0, repeating: 3_600_000) { [unowned traces] in
                traces.prune(before: Int(clamping: EventLoop.wallClockMilliseconds()).subtractingSaturated(keep))
            }
        }
        return [sweep, retention]
    }

    /// Late and gone nodes: their status moves on (routing and the event stream hear of it).
    func sweepNodes() {
        let before = events.clientCount > 0 ? registry.nodes.mapValues(\.status) : [:]
        guard registry.sweep(now: clock.now) else { return }
        routes.fleetChanged()
        for (id, status) in before where registry.nodes[id]?.status != status {
            events.publish("fleet", ["node": .string(id), "status": .string(registry.nodes[id]?.status.rawValue ?? "forgotten"),
                                     "change": "status"])
        }
    }

    /// What the health checks read, gathered at one instant.
    func healthInput() -> HealthInput {
        let now = clock.now
        var input = HealthInput(now: now, wallNow: Int(clamping: EventLoop.wallClockMilliseconds()))
        input.nodes = registry.list
        input.degradedAfterMilliseconds = options.registry.degradedAfterMilliseconds
        input.offlineAfterMilliseconds = options.registry.offlineAfterMilliseconds
        input.clockSkew = registry.clockSkew
        input.modelChanges = registry.modelChanges
        input.recent = stats.bySlot(minutes: 5, now: now)
        input.hour = stats.bySlot(minutes: 60, now: now)
        input.recentByWork = stats.byWork(minutes: 5, now: now)
        input.queueLength = routes.scheduler.queueLength
        input.queueTimeoutMilliseconds = options.scheduler.queueTimeoutMilliseconds
        // Proxies get a few seconds to connect after a start.
        input.proxiesExpected = now - startedAt > 10_000 ? max(options.proxies, 1) : 0
        input.proxiesConnected = routes.proxyCount
        input.fleetKeySet = gate.isSet
        input.listenHosts = [options.host]
        input.traceProblem = traces.problem(now: input.wallNow)
        input.dataDirectory = options.dataDirectory
        (input.diskFreeBytes, input.diskTotalBytes) = DiskSpace.of(options.dataDirectory)
        return input
    }

    /// Runs the health checks; a check that starts or stops firing is published and logged.
    func evaluateHealth() {
        for (check, state) in health.evaluate(healthInput()) {
            events.publish("health", ["id": .string(check.id), "state": .string(state.firing ? "firing" : "ok"),
                                      "severity": .string(check.severity.rawValue), "message": .string(state.message),
                                      "since_ms": .int(state.since)])
            if state.firing {
                log.warning("health: \(check.id) (\(check.severity.rawValue)): \(state.message)")
            } else {
                log.info("health: \(check.id) cleared")
            }
        }
    }

    /// The proxies, as child processes (restarted alone when one dies).
    func startProxies() -> ProxySupervisor {
        let supervisor = ProxySupervisor(loop: loop, settings: ProxySupervisor.Settings(
            count: options.proxies, executable: executableDirectory() + "/herd-proxy", host: options.host,
            port: options.proxyPort, controlSocket: options.socketPath, extraArguments: options.proxyArguments), log: log)
        supervisor.start()
        return supervisor
    }

    /// The router on mDNS, unless `--no-mdns`.
    func announce(on bound: SocketAddress) -> RouterAnnouncer? {
        guard options.mdns else { return nil }
        let name = "herd on \(Hostname.current())" + (options.port == 11436 ? "" : " :\(bound.port)")
        let announcer = RouterAnnouncer(loop: loop, name: name, controlPort: bound.port, proxyPort: options.proxyPort,
                                        fleetID: options.fleetID, log: log)
        announcer.start(log: log)
        return announcer
    }

    /// SIGHUP: the fleet key file again (a key given by flag or variable stays).
    func reloadFleetKey() {
        let keyPath = options.dataDirectory + "/fleet.key"
        guard options.fleetKey == nil else {
            log.info("SIGHUP: the fleet key comes from --fleet-key/HERD_FLEET_KEY; nothing else to reload")
            return
        }
        do {
            guard let text = try FleetKeyFile.read(keyPath) else {
                gate.verifier = nil
                log.warning("SIGHUP: no \(keyPath): heartbeats need no key now")
                return
            }
            guard let key = FleetKey(text) else {
                log.error("SIGHUP: \(keyPath) holds a key shorter than 16 characters; the previous key stays")
                return
            }
            gate.verifier = FleetKeyVerifier(key: key)
            log.info("SIGHUP: fleet key reloaded from \(keyPath)")
        } catch {
            log.error("SIGHUP: cannot read \(keyPath) (\(error)); the previous key stays")
        }
    }

    /// Keeps what routing learned of each node:model's concurrency for the next start.
    func saveLimits() {
        guard let limitStore else { return }
        let limits = routes.scheduler.settledLimits
        do {
            try limitStore.save(limits, atMs: Int(clamping: EventLoop.wallClockMilliseconds()))
        } catch {
            log.error("learned limits could not be saved: \(error)")
        }
    }

    func close() {
        saveLimits()
        events.close()
        routes.close()
        http.close()
    }

    func flush() {
        requestLog.flushOutput()
        traces.close()
    }
}

/// A startup failure with a message for the user.
struct ControlError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The optional `<data-dir>/fleet.key` file (its first line is the key).
enum FleetKeyFile {
    static func read(_ path: String) throws -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 1024)
        guard fgets(&buffer, Int32(clamping: buffer.count), file) != nil else { return nil }
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let key = line.trimmingCharacters(in: [" ", "\n", "\r", "\t"])
        return key.isEmpty ? nil : key
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}

/// One line per finished request at info (`request id=… model=… node=…`),
/// written once per loop iteration so that thousands per second cost a
/// handful of writes.
final class RequestLog: LoopFlushable {
    private let loop: EventLoop
    private var buffer: [UInt8] = []
    private var scheduled = false

    init(loop: EventLoop) { self.loop = loop }

    /// The second `stamp` was made for, and its bytes (`2026-11-22T10:00:00Z `):
    /// formatted once a second, not once a line.
    private var stampSecond = -1
    private var stamp: [UInt8] = []

    /// One logfmt line per finished request, written as bytes into the
    /// buffer (no interpolated `String`s: this runs for every request).
    func record(_ result: RouteResult, request: RouteRequest?) {
        let second = time(nil)
        if second != stampSecond {
            stampSecond = second
            stamp = Array(Logger.timestamp().utf8)
        }
        buffer.append(contentsOf: stamp)
        buffer.append(literal: " herd-control info request_id=")
        if let id = Int(exactly: result.id) { buffer.append(decimal: id) } else { buffer.append(contentsOf: String(result.id).utf8) }
        buffer.append(literal: " model=")
        RequestLog.append(value: request?.model ?? result.model, to: &buffer)
        buffer.append(literal: " served=")
        RequestLog.append(value: result.model, to: &buffer)
        buffer.append(literal: " node=")
        if result.node.isEmpty { buffer.append(UInt8(ascii: "-")) } else { RequestLog.append(value: result.node, to: &buffer) }
        buffer.append(literal: " outcome=")
        var outcome = result.outcome.rawValue
        outcome.withUTF8 { buffer.append(contentsOf: $0) }
        buffer.append(literal: " status=")
        buffer.append(decimal: result.status)
        buffer.append(literal: " retries=")
        buffer.append(decimal: result.retries)
        buffer.append(literal: " ttft_ms=")
        buffer.append(decimal: RequestLog.whole(result.ttftMilliseconds))
        buffer.append(literal: " duration_ms=")
        buffer.append(decimal: RequestLog.whole(result.durationMilliseconds))
        buffer.append(literal: " tokens=")
        buffer.append(decimal: result.completionTokens)
        if let error = result.error {
            buffer.append(literal: " error=\"")
            buffer.append(contentsOf: Logger.escape(error, limit: 400).utf8)
            buffer.append(UInt8(ascii: "\""))
        }
        buffer.append(UInt8(ascii: "\n"))
        if !scheduled {
            scheduled = true
            loop.scheduleFlush(self)
        }
    }

    /// A duration in whole milliseconds (truncated, as `Int(_:)` did; 0 when not finite).
    private static func whole(_ value: Double) -> Int {
        Int(saturating: value)
    }

    /// Appends `text` as a logfmt value (see `value(_:)`).
    static func append(value text: String, to buffer: inout [UInt8]) {
        if isPlain(text) {
            var text = text
            text.withUTF8 { buffer.append(contentsOf: $0) }
        } else {
            buffer.append(UInt8(ascii: "\""))
            buffer.append(contentsOf: Logger.escape(text).utf8)
            buffer.append(UInt8(ascii: "\""))
        }
    }

    /// Plain values (letters, digits, `.:/@+_-`) go as they are; anything
    /// else is quoted and escaped (`Logger.escape`): a client's model name
    /// cannot forge a line or a field.
    private static func isPlain(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 200 else { return false }
        var text = text
        return text.withUTF8 { bytes in
            for c in bytes {
                let plain = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x3A
                    || c == 0x2F || c == 0x40 || c == 0x2B || c == 0x5F || c == 0x2D
                if !plain { return false }
            }
            return true
        }
    }

    func flushOutput() {
        scheduled = false
        guard !buffer.isEmpty else { return }
        _ = buffer.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        buffer.removeAll(keepingCapacity: true)
    }
}
