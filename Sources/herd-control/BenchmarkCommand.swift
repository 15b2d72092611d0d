import ArgumentParser
import Glibc
import HerdBounds
import HerdHTTP
import HerdJSON
import HerdRouting
import HerdRuntime
import HerdWire

/// `herd-control benchmark` (`herd benchmark`): measured load through the
/// router at each node:model of the fleet, one at a time, stored as the
/// scheduler's priors.
struct BenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmark",
        abstract: "Measure each node:model's throughput through the router and keep it as routing's starting point.",
        discussion: """
            DESCRIPTION
              For each node:model the fleet serves (one at a time), herd benchmark sends
              requests through the router pinned to that node (X-Herd-Node), first one
              at a time, then 2, 4, 8, … at once, each step for a sixth of --duration,
              until throughput stops growing by 10 % (or a step has errors): that
              concurrency is the knee. It prints tokens per second (chat) or inputs per
              second (embeddings) at each step, the time to first byte and the knee, and
              stores the results in herd-control (POST /api/v1/benchmarks): each
              node:model's concurrency limit starts at its knee and its rates at the
              measured figures, now and after a restart, until real requests teach more.
              The dashboard's Models view shows them.

              It says what it will load before it loads anything, and unloads (Ollama:
              keep_alive 0) what was not loaded before it. It skips a node whose owner
              is in a call (camera or microphone in use) or whose learned availability
              at this hour is under half (a busy hour), unless --force. Speech, image
              and rerank servers are not benchmarked. Storing needs the fleet key or an
              admin key when either exists (--fleet-key, HERD_FLEET_KEY, HERD_ADMIN_KEY
              or <data-dir>/fleet.key).

            EXAMPLES
              herd benchmark
                  every node:model, about a minute each
              herd benchmark --models llama3.1:8b --duration 30s
              herd benchmark --nodes gpu-box --kinds chat --dry-run
                  what it would do
            """)

    @OptionGroup var connection: KeysCommand.Connection

    @Option(name: .customLong("router-port"), help: "The router's client port on the same host (HERD_PROXY_PORT).")
    var routerPort: Int = Environment.int("HERD_PROXY_PORT") ?? 11435

    @Option(help: "Only these models, comma-separated (default: every model the fleet serves).")
    var models: String?

    @Option(help: "Only these nodes, comma-separated.")
    var nodes: String?

    @Option(help: "Kinds of work: chat, embed (comma-separated).")
    var kinds: String = "chat,embed"

    @Option(help: "Time per node:model, split over its steps: 60s, 2m, 90 (seconds); 6 s–1 h.")
    var duration: String = "60s"

    @Option(name: .customLong("max-concurrency"), help: "The highest concurrency tried (1–256).")
    var maxConcurrency: Int = 32

    @Option(name: .customLong("max-tokens"), help: "Tokens each chat request generates (num_predict; 8–4096).")
    var maxTokens: Int = 128

    @Option(name: .customLong("prompt-tokens"), help: "About how many tokens each chat prompt has (8–32768).")
    var promptTokens: Int = 200

    @Flag(help: "Benchmark nodes whose owner is in a call or in a busy hour too.")
    var force = false

    @Flag(name: .customLong("dry-run"), help: "Say what would be benchmarked and loaded, and stop.")
    var dryRun = false

    @Flag(name: .customLong("no-store"), help: "Print the results without storing them in herd-control.")
    var noStore = false

    func validate() throws {
        guard (1...256).contains(maxConcurrency) else { throw ValidationError("--max-concurrency: 1–256") }
        guard (8...4096).contains(maxTokens) else { throw ValidationError("--max-tokens: 8–4096") }
        guard (8...32768).contains(promptTokens) else { throw ValidationError("--prompt-tokens: 8–32768") }
        guard let ms = BenchmarkCommand.milliseconds(duration), (6_000...3_600_000).contains(ms) else {
            throw ValidationError("--duration: 6s–1h (60s, 2m, 90)")
        }
        for kind in list(kinds) where BenchmarkPrior.Kind(rawValue: kind) == nil { throw ValidationError("--kinds: chat, embed; not '\(kind)'") }
    }

    func run() throws {
        let fleet = try connection.call("GET", "/api/fleet")
        let plan = BenchmarkPlan.make(fleet: fleet, models: models.map(list), nodes: nodes.map(list),
                                      kinds: Set(list(kinds).compactMap(BenchmarkPrior.Kind.init(rawValue:))), force: force)
        let stepMs = (BenchmarkCommand.milliseconds(duration) ?? 60_000) / 6
        let ladder = BenchmarkPlan.ladder(max: maxConcurrency)
        print(plan.describe(stepSeconds: Double(stepMs) / 1000, ladder: ladder))
        guard !dryRun else { return }
        guard !plan.targets.isEmpty else { throw ExitCode(plan.skipped.isEmpty ? 1 : 2) }

        let host = connection.host == "0.0.0.0" ? "127.0.0.1" : connection.host == "::" ? "::1" : connection.host
        let router: SocketAddress
        do { router = try SocketAddress(host: host, port: routerPort) } catch { throw ValidationError("--router-port: \(error)") }
        let driver = try BenchmarkDriver(router: router, maxTokens: maxTokens, promptTokens: promptTokens)
        defer { driver.close() }
        var results: [BenchmarkPrior] = []
        for target in plan.targets {
            print("\n\(target.node)  \(target.model)  (\(target.kind.rawValue)\(target.loaded ? "" : ", loading"))")
            if let problem = driver.warmUp(target) {
                print("  skipped: the first request failed: \(problem)")
                continue
            }
            print("  " + BenchmarkTable.header(target.kind))
            var steps: [BenchmarkPrior.Step] = []
            for concurrency in ladder {
                let (step, error) = driver.step(target, concurrency: concurrency, milliseconds: UInt64(clamping: stepMs))
                steps.append(step)
                print("  " + BenchmarkTable.row(step, kind: target.kind))
                if let error { print("    errors: \(error)") }
                if steps.count > 1, BenchmarkPrior.knee(steps) != concurrency { break }
            }
            let knee = BenchmarkPrior.knee(steps)
            let best = steps.first { $0.concurrency == knee }
            print("  knee: \(knee) at once (\(BenchmarkTable.rate(best?.perSecond ?? 0)) \(target.kind == .chat ? "tokens/s" : "inputs/s"); "
                  + "more at once did not add 10 %)")
            if !target.loaded, target.unloadable {
                print("  " + (driver.unload(target) ? "unloaded (it was not loaded before)" : "could not unload it: it stays until the server's keep_alive ends"))
            }
            if steps.contains(where: { $0.requests > $0.errors }) {
                results.append(BenchmarkPrior(node: target.node, model: ModelName.canonical(target.model), kind: target.kind, knee: knee,
                                              steps: steps, atMs: 0))
            }
        }
        guard !results.isEmpty else {
            print("\nnothing was measured")
            throw ExitCode(1)
        }
        if noStore {
            print("\nnot stored (--no-store)")
            return
        }
        let body = JSONValue.object([("results", .array(results.map(BenchmarkJSON.result)))])
        let answer = try connection.call("POST", "/api/v1/benchmarks", body: body)
        print("\nstored \(answer["stored"]?.intValue ?? 0) results: routing starts from them (see GET /api/v1/benchmarks, the dashboard's Models view)")
    }

    private func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String(String($0).trimmingSpaces) }.filter { !$0.isEmpty }
    }

    /// `60s`, `2m`, `1h`, `90` (seconds), `500ms` → milliseconds; nil when not a duration.
    static func milliseconds(_ text: String) -> Int? {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0, value <= 1e7 else { return nil }
            return Int(saturating: value * scale)
        }
        guard let value = Double(text), value.isFinite, value >= 0, value <= 1e7 else { return nil }
        return Int(saturating: value * 1000)
    }
}

/// What to benchmark, from `/api/fleet`, and what is left out and why.
struct BenchmarkPlan {
    struct Target {
        var node: String
        var model: String
        var kind: BenchmarkPrior.Kind
        /// Loaded on the node before the benchmark.
        var loaded: Bool
        /// An Ollama backend: the benchmark unloads what it loaded (keep_alive 0).
        var unloadable: Bool
    }

    var targets: [Target] = []
    var skipped: [(node: String, model: String?, reason: String)] = []

    static func make(fleet: JSONValue, models: [String]?, nodes: [String]?, kinds: Set<BenchmarkPrior.Kind>, force: Bool) -> BenchmarkPlan {
        var plan = BenchmarkPlan()
        for node in fleet["nodes"]?.arrayValue ?? [] {
            guard let id = node["id"]?.stringValue else { continue }
            if let nodes, !nodes.contains(id) { continue }
            let status = node["status"]?.stringValue ?? "?"
            guard status == "online" || status == "degraded" else {
                plan.skipped.append((id, nil, "it is \(status)"))
                continue
            }
            let telemetry = node["telemetry"]
            if !force, telemetry?["camera_in_use"]?.boolValue == true || telemetry?["microphone_in_use"]?.boolValue == true {
                plan.skipped.append((id, nil, "its owner is in a call (--force to run anyway)"))
                continue
            }
            if !force, let capacity = node["capacity"], capacity["hour_learned"]?.boolValue == true,
               let availability = capacity["availability"]?.doubleValue, availability < 0.5 {
                plan.skipped.append((id, nil, "a busy hour: its owner leaves \(Int(saturatingRounded: availability * 100)) % free (--force to run anyway)"))
                continue
            }
            var seen = Set<String>()
            for backend in node["backends"]?.arrayValue ?? [] {
                let backendKind = backend["kind"]?.stringValue ?? ""
                let loaded = (backend["loaded"]?.arrayValue ?? []).compactMap(\.stringValue)
                let names = (backend["models"]?.arrayValue ?? []).compactMap(\.stringValue) + loaded
                for name in names where !seen.contains(ModelName.canonical(name)) {
                    seen.insert(ModelName.canonical(name))
                    if let models, !models.contains(where: { ModelName.same($0, name) }) { continue }
                    let capabilities = backend["capabilities"]?[name]?.arrayValue?.compactMap(\.stringValue) ?? []
                    let kind: BenchmarkPrior.Kind
                    switch backendKind {
                    case "embed": kind = .embed
                    case "ollama", "openai":
                        kind = capabilities.contains("embedding") && !capabilities.contains("completion") ? .embed : .chat
                    default:
                        plan.skipped.append((id, name, "a \(backendKind) server: speech, image and rerank servers are not benchmarked"))
                        continue
                    }
                    guard kinds.contains(kind) else { continue }
                    plan.targets.append(Target(node: id, model: name, kind: kind, loaded: loaded.contains { ModelName.same($0, name) },
                                               unloadable: backendKind == "ollama"))
                }
            }
        }
        return plan
    }

    /// 1, 2, 4, … up to `max` (and `max` itself).
    static func ladder(max: Int) -> [Int] {
        var steps: [Int] = []
        var c = 1
        while c < max {
            steps.append(c)
            c *= 2
        }
        steps.append(max)
        return steps
    }

    func describe(stepSeconds: Double, ladder: [Int]) -> String {
        var lines = ["herd benchmark: \(targets.count) node:model\(targets.count == 1 ? "" : "s"), one at a time; steps of "
                     + "\(BenchmarkTable.rate(stepSeconds)) s at \(ladder.prefix(4).map(String.init).joined(separator: ", "))"
                     + "\(ladder.count > 4 ? ", … \(ladder.last!)" : "") at once, until throughput stops growing"]
        for target in targets {
            let state = target.loaded ? "loaded" : target.unloadable ? "will be LOADED, and unloaded after" : "will be loaded by its server"
            lines.append("  \(target.node)  \(target.model)  \(target.kind.rawValue)  \(state)")
        }
        for skip in skipped {
            lines.append("  \(skip.node)\(skip.model.map { "  \($0)" } ?? "")  skipped: \(skip.reason)")
        }
        if targets.isEmpty { lines.append("  nothing to benchmark") }
        return lines.joined(separator: "\n")
    }
}

/// The printed table.
enum BenchmarkTable {
    static func header(_ kind: BenchmarkPrior.Kind) -> String {
        kind == .chat
            ? "at once  requests  errors    tokens/s  per stream  first byte p50"
            : "at once  requests  errors    inputs/s  per request  first byte p50"
    }

    static func row(_ s: BenchmarkPrior.Step, kind: BenchmarkPrior.Kind) -> String {
        pad(String(s.concurrency), 7) + pad(String(s.requests), 10) + pad(String(s.errors), 8) + pad(rate(s.perSecond), 12)
            + pad(rate(s.perSecond / Double(max(1, s.concurrency))), 12) + pad(rate(s.ttftMs) + " ms", 16)
    }

    static func rate(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let tenths = Int(saturatingRounded: value * 10)
        return tenths >= 1000 ? String(tenths / 10) : "\(tenths / 10).\(tenths % 10)"
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
