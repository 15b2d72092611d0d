import HerdBounds
import HerdRuntime
import HerdRouting
import HerdWire

/// How bad a firing check is.
enum HealthSeverity: String, Sendable, CaseIterable {
    case info, warning, critical
}

/// What the health checks read: the fleet, the last minutes of requests and
/// herd's own state, gathered by the caller at one instant. Pure data: the
/// checks are functions of it (tests build one by hand).
struct HealthInput {
    /// Loop clock (ms) and wall clock (ms since the epoch).
    var now: UInt64
    var wallNow: Int
    var nodes: [FleetNode] = []
    var degradedAfterMilliseconds: UInt64 = 6_000
    var offlineAfterMilliseconds: UInt64 = 15_000
    var clockSkew: [String: Int] = [:]
    var modelChanges: [(node: String, model: String, loaded: Bool, at: UInt64)] = []
    /// Per node:model over the last 5 and 60 minutes.
    var recent: [SlotKey: RequestTally] = [:]
    var hour: [SlotKey: RequestTally] = [:]
    /// Per kind of work over the last 5 minutes.
    var recentByWork: [WorkKind: RequestTally] = [:]
    var queueLength = 0
    var queueTimeoutMilliseconds: UInt64 = 30_000
    var proxiesExpected = 1
    var proxiesConnected = 1
    var fleetKeySet = false
    /// The addresses herd listens on (control's and the proxies').
    var listenHosts: [String] = ["127.0.0.1"]
    var traceProblem: String?
    var dataDirectory = ""
    var diskFreeBytes: Int?
    var diskTotalBytes: Int?
    var routerVersion = HerdVersion.current
}

/// One health check: a stated condition with its threshold, a severity and
/// advice; `evaluate` answers a message when it fires, nil when it is fine.
struct HealthCheck: Sendable {
    let id: String
    let title: String
    let severity: HealthSeverity
    let condition: String
    let threshold: String
    let advice: String
    let evaluate: @Sendable (HealthInput) -> String?
}

/// The checks' state over time: when each started firing or cleared, and a
/// change list for the event stream. Loop-thread only.
final class HealthMonitor {
    struct State: Equatable {
        var firing: Bool
        /// Wall ms of the last change (or of the first evaluation).
        var since: Int
        var message: String
    }

    let checks: [HealthCheck]
    private(set) var states: [String: State] = [:]

    init(checks: [HealthCheck] = HealthChecks.all) {
        self.checks = checks
    }

    /// Evaluates every check; answers those whose state changed.
    @discardableResult
    func evaluate(_ input: HealthInput) -> [(check: HealthCheck, state: State)] {
        var changed: [(HealthCheck, State)] = []
        for check in checks {
            let message = check.evaluate(input)
            let firing = message != nil
            if let old = states[check.id], old.firing == firing {
                if let message, message != old.message { states[check.id]?.message = message }
                continue
            }
            let state = State(firing: firing, since: input.wallNow, message: message ?? "")
            let first = states[check.id] == nil
            states[check.id] = state
            if !first || firing { changed.append((check, state)) }
        }
        return changed
    }

    var firing: [(check: HealthCheck, state: State)] {
        checks.compactMap { check in states[check.id].flatMap { $0.firing ? (check, $0) : nil } }
    }
}

/// herd's health checks. Each names what it reads, its threshold and what to do.
enum HealthChecks {
    /// `a, b, c and 2 more`: subjects in a message, bounded.
    static func list(_ items: [String], limit: Int = 4) -> String {
        let sorted = items.sorted()
        if sorted.count <= limit { return sorted.joined(separator: ", ") }
        return sorted.prefix(limit).joined(separator: ", ") + " and \(sorted.count - limit) more"
    }

    static func isLoopback(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "::1" || host == "localhost" || host == "[::1]"
    }

    /// Sums per node, or per model, of the tallies.
    static func byNode(_ tallies: [SlotKey: RequestTally]) -> [String: RequestTally] {
        var out: [String: RequestTally] = [:]
        for (key, tally) in tallies where key.node != "none" && key.node != "other" { out[key.node, default: RequestTally()].merge(tally) }
        return out
    }

    static func total(_ tallies: [SlotKey: RequestTally]) -> RequestTally {
        var out = RequestTally()
        for tally in tallies.values { out.merge(tally) }
        return out
    }

    static func online(_ input: HealthInput) -> [FleetNode] { input.nodes.filter { $0.status != .offline } }

    static func pct(_ part: Int, _ whole: Int) -> String {
        whole > 0 ? "\(Int(saturatingRounded: Double(part) * 100 / Double(whole))) %" : "0 %"
    }

    static func gib(_ bytes: Int) -> String {
        let g = Double(bytes) / 1_073_741_824
        return g >= 10 ? "\(Int(saturatingRounded: g)) GiB" : "\(Double(Int(saturating: g * 10)) / 10) GiB"
    }

    /// A share over a minimum count: fires when `part / whole > limit` with `whole ≥ minimum`.
    static func rate(_ part: Int, _ whole: Int, above limit: Double, minimum: Int) -> Bool {
        whole >= minimum && Double(part) > limit * Double(whole)
    }

    static let all: [HealthCheck] = fleet + resources + models + traffic + herd

    // MARK: The fleet's nodes

    static let fleet: [HealthCheck] = [
        HealthCheck(
            id: "no_nodes", title: "No node online", severity: .critical,
            condition: "no node is online or degraded", threshold: "0 nodes",
            advice: "Start herd-node on each machine (it finds the router by mDNS), or check that the machines can reach the router's port 11436."
        ) { input in online(input).isEmpty ? "no node is serving: every request is refused" : nil },
        HealthCheck(
            id: "node_offline", title: "Node offline", severity: .critical,
            condition: "a known node's heartbeats stopped", threshold: "no heartbeat for --offline-after (15 s)",
            advice: "Check that the machine is up and herd-node runs there (`systemctl status herd-node`); it comes back by itself when heartbeats resume."
        ) { input in
            let gone = input.nodes.filter { $0.status == .offline }.map(\.id)
            return gone.isEmpty ? nil : "offline: \(list(gone)); requests go to the other nodes"
        },
        HealthCheck(
            id: "node_held", title: "Node held by an operator", severity: .info,
            condition: "a node is drained or paused from the dashboard or API", threshold: "any",
            advice: "It takes no new request until resumed (Settings → Resume, or POST /api/v1/nodes/<id>/resume)."
        ) { input in
            let held = input.nodes.compactMap { n in n.hold.map { "\(n.id) (\($0.label))" } }
            return held.isEmpty ? nil : "held: \(list(held))"
        },
        HealthCheck(
            id: "node_degraded", title: "Node degraded", severity: .warning,
            condition: "a node's heartbeats are late", threshold: "no heartbeat for --degraded-after (6 s)",
            advice: "The machine is slow to report (overloaded, asleep, or on a lossy network); herd prefers other nodes meanwhile."
        ) { input in
            let late = input.nodes.filter { $0.status == .degraded }.map(\.id)
            return late.isEmpty ? nil : "degraded: \(list(late))"
        },
        HealthCheck(
            id: "heartbeats_late", title: "Heartbeats arrive late", severity: .info,
            condition: "an online node's last heartbeat is older than twice its interval", threshold: "> 2 × the node's interval (2 s by default)",
            advice: "A busy or sleeping machine, or Wi-Fi power saving; if it persists the node turns degraded."
        ) { input in
            let late = input.nodes.filter {
                $0.status == .online && input.now >= $0.lastSeenMilliseconds && input.now - $0.lastSeenMilliseconds > 2 * $0.intervalMilliseconds
            }.map(\.id)
            return late.isEmpty ? nil : "late heartbeats from \(list(late))"
        },
        HealthCheck(
            id: "clock_skew", title: "Clock skew", severity: .warning,
            condition: "a node's clock differs from the router's", threshold: "> 5 s",
            advice: "Enable time sync on that machine (`timedatectl set-ntp true`); signed heartbeats are refused past 5 minutes of skew."
        ) { input in
            let skewed = input.clockSkew.filter { abs($0.value) > 5_000 }
                .map { "\($0.key) (\($0.value > 0 ? "+" : "")\($0.value / 1000) s)" }
            return skewed.isEmpty ? nil : "clock off: \(list(skewed))"
        },
        HealthCheck(
            id: "version_mismatch", title: "Version mismatch", severity: .warning,
            condition: "a node's herd-node version differs from the router's", threshold: "any difference",
            advice: "Upgrade herd on every machine to the same release (deploy/install.sh), the router first."
        ) { input in
            let other = online(input).filter { !$0.heartbeat.agentVersion.isEmpty && $0.heartbeat.agentVersion != input.routerVersion }
                .map { "\($0.id) (\(Logger.escape($0.heartbeat.agentVersion, limit: 32)))" }
            return other.isEmpty ? nil : "router \(input.routerVersion); nodes: \(list(other))"
        },
        HealthCheck(
            id: "backend_unreachable", title: "Backend unreachable", severity: .warning,
            condition: "a node reports its Ollama / OpenAI server does not answer", threshold: "any",
            advice: "Start the server on that machine (`systemctl status ollama`), or fix the URL given to herd-node."
        ) { input in
            let down = online(input).flatMap { node in node.heartbeat.backends.filter { !$0.reachable && !$0.localOnly }.map { "\(node.id) \($0.address)" } }
            return down.isEmpty ? nil : "not answering: \(list(down))"
        },
        HealthCheck(
            id: "ollama_local_only", title: "Ollama listens only on localhost", severity: .warning,
            condition: "a node's backend answers on its loopback only, so the router cannot reach it", threshold: "any",
            advice: "Start Ollama with OLLAMA_HOST=0.0.0.0:11434 (systemd: `systemctl edit ollama`, Environment=OLLAMA_HOST=0.0.0.0:11434), then restart it."
        ) { input in
            let local = online(input).filter { $0.heartbeat.backends.contains { $0.localOnly } }.map(\.id)
            return local.isEmpty ? nil : "loopback only on \(list(local))"
        },
        HealthCheck(
            id: "direct_clients", title: "Clients bypass the router", severity: .info,
            condition: "a node sees connections to its backend from hosts other than the router", threshold: "any",
            advice: "Point those clients at the router (port 11435) so their requests are scheduled, queued and traced; or firewall the backend to the router only."
        ) { input in
            let direct = online(input).flatMap { node in
                node.heartbeat.backends.flatMap { b in b.directClients.map { "\($0) → \(node.id)" } }
            }
            return direct.isEmpty ? nil : "direct clients: \(list(direct))"
        },
    ]

    // MARK: Machines' resources

    static let resources: [HealthCheck] = [
        HealthCheck(
            id: "memory_pressure", title: "Memory pressure", severity: .warning,
            condition: "a node reports high or critical memory pressure", threshold: "pressure ≥ high (PSI some avg10 ≥ 20 %, or < 10 % available)",
            advice: "Unload models there (`ollama stop <model>`), lower OLLAMA_MAX_LOADED_MODELS, or move big models to a machine with more memory."
        ) { input in
            let pressed = online(input).filter { $0.heartbeat.telemetry.pressure >= .high }.map { "\($0.id) (\($0.heartbeat.telemetry.pressure.rawValue))" }
            return pressed.isEmpty ? nil : "memory pressure on \(list(pressed))"
        },
        HealthCheck(
            id: "swap_in_use", title: "Swapping", severity: .warning,
            condition: "a node uses much of its swap", threshold: "> 25 % of swap used",
            advice: "Models paged to swap generate many times slower: unload a model there or add memory."
        ) { input in
            let swapping = online(input).filter { n in
                let t = n.heartbeat.telemetry
                return t.swapTotalBytes > 0 && Double(t.swapTotalBytes - min(t.swapFreeBytes, t.swapTotalBytes)) > 0.25 * Double(t.swapTotalBytes)
            }.map { "\($0.id) (\(gib($0.heartbeat.telemetry.swapTotalBytes - $0.heartbeat.telemetry.swapFreeBytes)))" }
            return swapping.isEmpty ? nil : "swap in use on \(list(swapping))"
        },
        HealthCheck(
            id: "thermal_throttling", title: "Thermal throttling", severity: .warning,
            condition: "a node's CPU or GPU is throttled, or its thermal state is serious or critical", threshold: "throttled, or thermal ≥ serious",
            advice: "Clean the fans, raise the laptop, or cap the GPU's power; herd sends that node less meanwhile."
        ) { input in
            let hot = online(input).filter { n in
                let t = n.heartbeat.telemetry
                return t.thermal >= .serious || t.cpuThrottled || t.gpus.contains { $0.throttled }
            }.map(\.id)
            return hot.isEmpty ? nil : "throttling on \(list(hot))"
        },
        HealthCheck(
            id: "vram_nearly_full", title: "VRAM nearly full", severity: .warning,
            condition: "a GPU's memory is nearly full", threshold: "≥ 95 % used",
            advice: "Another model loaded there will spill to the CPU: unload one, or lower num_ctx."
        ) { input in
            let full = online(input).flatMap { n in
                n.heartbeat.telemetry.gpus.filter { $0.memoryTotalBytes > 0 && Double($0.memoryUsedBytes) >= 0.95 * Double($0.memoryTotalBytes) }
                    .map { _ in n.id }
            }
            return full.isEmpty ? nil : "VRAM ≥ 95 % on \(list(Array(Set(full))))"
        },
        HealthCheck(
            id: "data_disk_space", title: "Data disk nearly full", severity: .warning,
            condition: "the router's data directory is on a nearly full disk", threshold: "< 1 GiB or < 5 % free",
            advice: "Free space on that disk, or shorten --trace-retention; when it is full, trace rows are lost (requests are still served)."
        ) { input in
            guard let free = input.diskFreeBytes, let total = input.diskTotalBytes, total > 0 else { return nil }
            return free < 1_073_741_824 || Double(free) < 0.05 * Double(total)
                ? "\(gib(free)) free of \(gib(total)) under \(input.dataDirectory)" : nil
        },
    ]

    // MARK: Models

    static let models: [HealthCheck] = [
        HealthCheck(
            id: "model_thrashing", title: "Model thrashing", severity: .warning,
            condition: "a node loads and unloads models over and over", threshold: "≥ 6 loads or unloads in 10 minutes",
            advice: "The node's memory holds fewer models than its traffic needs: raise OLLAMA_MAX_LOADED_MODELS if memory allows, or send some models elsewhere (tags, fallbacks)."
        ) { input in
            var counts: [String: Int] = [:]
            for change in input.modelChanges where input.now - min(input.now, change.at) <= 600_000 { counts[change.node, default: 0] += 1 }
            let churning = counts.filter { $0.value >= 6 }.map { "\($0.key) (\($0.value))" }
            return churning.isEmpty ? nil : "loads/unloads in 10 min: \(list(churning))"
        },
        HealthCheck(
            id: "work_served_nowhere", title: "Work no node does", severity: .warning,
            condition: "speech-to-text, speech, images, embeddings or rerank were asked for and refused, and no online node has a backend that does that work",
            threshold: "≥ 1 refused request in 5 minutes",
            advice: "Start a node with a backend of that kind (herd-node --backend stt=URL, tts=URL, image=URL, embed=URL, rerank=URL, or an OpenAI-compatible server with the model; Ollama transcribes with audio-capable models)."
        ) { input in
            let online = input.nodes.filter { $0.status != .offline }
            let missing = input.recentByWork.filter { work, tally in
                work != .chat && tally.rejected > 0 && !online.contains { node in
                    node.heartbeat.backends.contains { backend in
                        backend.kind.serves(work) && (work != .stt || backend.kind != .ollama
                            || backend.models.contains { $0.capabilities.contains("audio") })
                    }
                }
            }
            let named = missing.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.label) (\($0.value.rejected) refused)" }
            return named.isEmpty ? nil : "asked for, and no node does it: \(list(named))"
        },
        HealthCheck(
            id: "model_loaded_nowhere", title: "Requested model loaded nowhere", severity: .warning,
            condition: "a model was requested in the last 5 minutes and no node has it loaded", threshold: "≥ 3 requests",
            advice: "Each request waits for a load: keep it loaded (keep_alive -1) on a node with room, or pre-warm it."
        ) { input in
            let loaded = Set(input.nodes.filter { $0.status != .offline }.flatMap { $0.heartbeat.backends.flatMap { $0.loaded.map { ModelName.canonical($0.name) } } })
            var asked: [String: Int] = [:]
            for (key, tally) in input.recent where key.model != RequestStats.otherModel { asked[key.model, default: 0] += tally.requests }
            let cold = asked.filter { $0.value >= 3 && !loaded.contains($0.key) }.map(\.key)
            return cold.isEmpty ? nil : "not loaded anywhere: \(list(cold))"
        },
        HealthCheck(
            id: "cold_loads", title: "Cold loads on the hot path", severity: .warning,
            condition: "requests waited for their model to load", threshold: "≥ 3 in 5 minutes (load > 1 s)",
            advice: "Keep busy models loaded (OLLAMA_KEEP_ALIVE, keep_alive), or give them a node of their own."
        ) { input in
            let cold = input.recent.filter { $0.value.coldLoads >= 1 }
            let total = cold.values.reduce(0) { $0 + $1.coldLoads }
            return total >= 3 ? "\(total) requests waited for a load: \(list(cold.keys.map(\.description)))" : nil
        },
        HealthCheck(
            id: "slow_decode", title: "Decoding slower than usual", severity: .warning,
            condition: "a node:model generates slower than its own last hour", threshold: "< 60 % of its hourly tokens/s (≥ 5 requests each)",
            advice: "Something else uses that GPU/CPU, it is throttling, or the model spilled out of VRAM: check the node's card."
        ) { input in
            let slow = input.recent.compactMap { key, tally -> String? in
                guard tally.ok >= 5, let now = tally.decodeRate, let hour = input.hour[key], hour.ok >= 10, let usual = hour.decodeRate,
                      now < 0.6 * usual else { return nil }
                return "\(key) (\(Int(saturating: now)) vs \(Int(saturating: usual)) tok/s)"
            }
            return slow.isEmpty ? nil : "slow: \(list(slow))"
        },
        HealthCheck(
            id: "context_too_small", title: "Prompts longer than the loaded context", severity: .warning,
            condition: "a model's requests need more context (prompt + output, p99 of the last hour) than it is loaded with there",
            threshold: "p99 > the loaded context, ≥ 20 requests",
            advice: "The backend cuts what does not fit (Ollama drops the start of the prompt): load the model with a larger num_ctx (OLLAMA_CONTEXT_LENGTH, or the client's options.num_ctx with --num-ctx-policy keep)."
        ) { input in
            let short = contextFit(input).filter { $0.p99 > Double($0.loaded) }
                .map { "\($0.model) on \($0.node) (needs ~\(Int(saturating: $0.p99)), loaded with \($0.loaded))" }
            return short.isEmpty ? nil : "context too small: \(list(short))"
        },
        HealthCheck(
            id: "context_oversized", title: "Context far larger than used", severity: .info,
            condition: "a model is loaded with a context over 4 times what 99 % of its requests use (p99 × 1.5), and over 8,192 tokens",
            threshold: "loaded > 4 × p99 × 1.5, ≥ 20 requests",
            advice: "The KV cache is sized by the loaded context: a smaller num_ctx (p99 × 1.5) frees memory for another model or more parallel requests."
        ) { input in
            let big = contextFit(input).filter { $0.loaded > 8_192 && Double($0.loaded) > 4 * 1.5 * $0.p99 }
                .map { "\($0.model) on \($0.node) (loaded with \($0.loaded), 99 % need ≤ \(Int(saturating: $0.p99)))" }
            return big.isEmpty ? nil : "context larger than used: \(list(big))"
        },
        HealthCheck(
            id: "num_ctx_reloads", title: "num_ctx reloads", severity: .info,
            condition: "requests set a num_ctx other than the loaded one, so the backend reloads the model", threshold: "≥ 3 in 5 minutes",
            advice: "Use --num-ctx-policy strip (the default), or have clients send the num_ctx the model is loaded with."
        ) { input in
            let n = total(input.recent).numCtxReloads
            return n >= 3 ? "\(n) requests forced a reload" : nil
        },
    ]

    /// Each loaded node:model with a known context and ≥ 20 generations in the last hour: its loaded context and the p99 its requests used.
    static func contextFit(_ input: HealthInput) -> [(node: String, model: String, loaded: Int, p99: Double)] {
        var out: [(node: String, model: String, loaded: Int, p99: Double)] = []
        for node in online(input) {
            for backend in node.heartbeat.backends {
                for model in backend.loaded where model.contextLength > 0 {
                    guard let tally = input.hour.first(where: { $0.key.node == node.id && ModelName.same($0.key.model, model.name) })?.value,
                          tally.contextUse.count >= 20, let p99 = tally.contextUse.quantile(0.99) else { continue }
                    out.append((node.id, model.name, model.contextLength, p99))
                }
            }
        }
        return out.sorted { ($0.node, $0.model) < ($1.node, $1.model) }
    }

    // MARK: Traffic

    static let traffic: [HealthCheck] = [
        HealthCheck(
            id: "error_rate", title: "High error rate", severity: .critical,
            condition: "requests failed at the backend or timed out", threshold: "> 5 % of ≥ 20 requests in 5 minutes",
            advice: "See the Requests view filtered by outcome; a single node with most errors is named in the message."
        ) { input in
            let t = total(input.recent)
            guard rate(t.errors, t.requests, above: 0.05, minimum: 20) else { return nil }
            let worst = byNode(input.recent).max { $0.value.errors < $1.value.errors }
            return "\(pct(t.errors, t.requests)) of \(t.requests) requests failed" + (worst.map { "; most on \($0.key) (\($0.value.errors))" } ?? "")
        },
        HealthCheck(
            id: "retry_rate", title: "High retry rate", severity: .warning,
            condition: "requests had to be sent to another node", threshold: "> 10 % of ≥ 20 requests in 5 minutes",
            advice: "A node refuses or drops requests before answering: check its backend's log and its learned concurrency."
        ) { input in
            let t = total(input.recent)
            return rate(t.retried, t.requests, above: 0.10, minimum: 20) ? "\(pct(t.retried, t.requests)) of \(t.requests) requests were retried" : nil
        },
        HealthCheck(
            id: "empty_generations", title: "Empty generations", severity: .warning,
            condition: "generations that succeeded with no token", threshold: "> 5 % of ≥ 20 in 5 minutes",
            advice: "Usually a template or stop-sequence problem in the model, or num_predict 0: try the model directly."
        ) { input in
            let t = total(input.recent)
            return rate(t.emptyGenerations, t.ok, above: 0.05, minimum: 20) ? "\(t.emptyGenerations) of \(t.ok) generations were empty" : nil
        },
        HealthCheck(
            id: "incomplete_streams", title: "Incomplete streams", severity: .warning,
            condition: "responses that broke after they began", threshold: "≥ 3 in 5 minutes",
            advice: "The backend crashed or was killed mid-answer (out of memory?): check its log and the node's memory."
        ) { input in
            let t = total(input.recent)
            return t.incompleteStreams >= 3 ? "\(t.incompleteStreams) streams broke mid-response" : nil
        },
        HealthCheck(
            id: "client_disconnects", title: "Clients leave early", severity: .info,
            condition: "clients closed the connection before the answer ended", threshold: "> 10 % of ≥ 20 requests in 5 minutes",
            advice: "Clients time out before the fleet answers: raise their timeout, or add capacity for the models they wait on."
        ) { input in
            let t = total(input.recent)
            return rate(t.clientGone, t.requests, above: 0.10, minimum: 20) ? "\(pct(t.clientGone, t.requests)) of \(t.requests) clients left early" : nil
        },
        HealthCheck(
            id: "queue_wait", title: "Queue wait above target", severity: .warning,
            condition: "requests waited in herd's queue for a free node", threshold: "p95 > 5 s in 5 minutes, or queued now > 50",
            advice: "The fleet is short of capacity for these models: add a node, load the model on another node, or lower clients' parallelism."
        ) { input in
            var waits = Histogram(bounds: Histogram.latencyBounds)
            for tally in input.recent.values { waits.merge(tally.queueWait) }
            if let p95 = waits.quantile(0.95), waits.count >= 5, p95 > 5_000 {
                return "p95 queue wait \(Double(Int(saturating: p95 / 100)) / 10) s over \(waits.count) queued requests"
            }
            return input.queueLength > 50 ? "\(input.queueLength) requests queued now" : nil
        },
    ]

    // MARK: herd itself

    static let herd: [HealthCheck] = [
        HealthCheck(
            id: "open_without_key", title: "Serving the LAN without a fleet key", severity: .warning,
            condition: "herd listens beyond loopback and no fleet key is set", threshold: "any non-loopback address",
            advice: "Set a fleet key (`herd-control --fleet-key …` or <data-dir>/fleet.key, and the same on every node): without it any machine on the network can join the fleet."
        ) { input in
            let open = input.listenHosts.filter { !isLoopback($0) }
            return !input.fleetKeySet && !open.isEmpty ? "listening on \(list(open)) with no fleet key" : nil
        },
        HealthCheck(
            id: "trace_write_failures", title: "Trace writes failing", severity: .warning,
            condition: "writing request traces to SQLite failed in the last minute", threshold: "any failure",
            advice: "Check the disk holding <data-dir>/herd.db (full? read-only?); requests are served, their traces are lost."
        ) { input in input.traceProblem },
        HealthCheck(
            id: "proxy_link_down", title: "Control ↔ proxy link down", severity: .critical,
            condition: "fewer herd-proxy processes are connected to control than it runs", threshold: "connected < --proxies",
            advice: "A proxy is restarting or cannot reach <data-dir>/control.sock: `journalctl -u 'herd-proxy@*'`; the others keep serving."
        ) { input in
            input.proxiesConnected < input.proxiesExpected ? "\(input.proxiesConnected) of \(input.proxiesExpected) proxies connected" : nil
        },
        HealthCheck(
            id: "proxy_on_snapshot", title: "A proxy routes from its snapshot", severity: .warning,
            condition: "a proxy routed requests on its own because control did not answer in time", threshold: "any in 5 minutes",
            advice: "herd-control was down, stopped or overloaded: its log says why; routing quality is reduced meanwhile (no queue, no learning)."
        ) { input in
            let n = total(input.recent).local
            return n > 0 ? "\(n) requests routed without control in the last 5 minutes" : nil
        },
    ]
}
