// herd-routesim: routing quality in virtual time (Benchmarks/routing/run.sh).
//
// The same seeded workload runs through each router over the same simulated
// fleet; each request's completion time (arrival → last token) is recorded.
// Usage: herd-routesim [--seed N] [--minutes M] [--rate conversations/min] [--verbose]
import Glibc
import HerdRuntime
import HerdRouting

// MARK: The fleet: very different machines, as a home lab's.

let llama3b = SimModel(name: "llama3.2:3b", gigabytes: 2.0, thinking: false)
let llama8b = SimModel(name: "llama3.1:8b", gigabytes: 4.9, thinking: false)
let qwen14b = SimModel(name: "qwen2.5:14b", gigabytes: 9.0, thinking: false)
let r1 = SimModel(name: "deepseek-r1:8b", gigabytes: 5.2, thinking: true)
let gemma27b = SimModel(name: "gemma3:27b", gigabytes: 17.0, thinking: false)

let homeLab: [MachineSpec] = [
    // A workstation with a 24 GB GPU: fast, batches well, holds a few models.
    MachineSpec(name: "workstation", memoryGB: 24, bandwidth: 900, prefillSpeedup: 60, batchSlowdown: 0.06, slots: 4, loadGBps: 2.5,
                hasGPU: true, models: [llama3b, llama8b, qwen14b, r1, gemma27b], loaded: [llama8b]),
    // A mini PC: CPU only, 64 GB, slow per token, batching barely helps.
    MachineSpec(name: "mini-pc", memoryGB: 64, bandwidth: 80, prefillSpeedup: 8, batchSlowdown: 0.7, slots: 2, loadGBps: 1.5,
                hasGPU: false, models: [llama3b, llama8b, qwen14b, r1, gemma27b], loaded: [llama3b, qwen14b]),
    // Two laptops: one with a small GPU (8 GB), one CPU-only with 16 GB.
    MachineSpec(name: "laptop-gpu", memoryGB: 8, bandwidth: 300, prefillSpeedup: 40, batchSlowdown: 0.15, slots: 2, loadGBps: 2,
                hasGPU: true, models: [llama3b, llama8b, r1], loaded: [llama3b]),
    MachineSpec(name: "laptop-cpu", memoryGB: 16, bandwidth: 60, prefillSpeedup: 6, batchSlowdown: 0.8, slots: 1, loadGBps: 1,
                hasGPU: false, models: [llama3b, llama8b], loaded: [llama8b]),
]
let homeMix: [(SimModel, Double)] = [(llama8b, 0.40), (llama3b, 0.25), (qwen14b, 0.15), (r1, 0.10), (gemma27b, 0.10)]

// The routing-real fleet (Benchmarks/routing-real, the issue's): three GPU
// servers of one model, 4, 2 and 1 slots at 80, 30 and 10 tokens/s, prefill
// 1,500 tokens/s, reporting no slots; the first reports every duration as
// 1 ns, the others none. One-shot chats, prompts 150–600 and answers 50–200
// tokens (log-uniform; `--prompt`, `--answer` and `--spread` change them), at
// LOAD of the fleet's decode capacity.
let oneGB = SimModel(name: "llama3.1:8b", gigabytes: 1.0, thinking: false)
func gpuServer(_ name: String, slots: Int, tokensPerSecond: Double, batchSlowdown: Double) -> MachineSpec {
    MachineSpec(name: name, memoryGB: 24, bandwidth: tokensPerSecond, prefillSpeedup: 1_500 / tokensPerSecond, batchSlowdown: batchSlowdown,
                slots: slots, loadGBps: 2, hasGPU: true, models: [oneGB], loaded: [oneGB])
}
var realFleet = [gpuServer("m0-4slot", slots: 4, tokensPerSecond: 80, batchSlowdown: 0.06),
                 gpuServer("m1-2slot", slots: 2, tokensPerSecond: 30, batchSlowdown: 0.15),
                 gpuServer("m2-1slot", slots: 1, tokensPerSecond: 10, batchSlowdown: 0.3)]
/// Other fleets of the same kind (`--machines 4x80,2x30,1x10`: slots × single-stream
/// tokens/s each; batch slowdown by slots, as the routing-real fleet's).
func parseMachines(_ spec: String) -> [MachineSpec]? {
    var out: [MachineSpec] = []
    for (i, part) in spec.split(separator: ",").enumerated() {
        let fields = part.split(separator: "x")
        guard fields.count == 2, let slots = Int(fields[0]), (1...64).contains(slots),
              let speed = Double(fields[1]), speed >= 1, speed <= 10_000 else { return nil }
        let slowdown = slots >= 4 ? 0.06 : slots >= 2 ? 0.15 : 0.3
        out.append(gpuServer("m\(i)-\(slots)slot", slots: slots, tokensPerSecond: speed, batchSlowdown: slowdown))
    }
    return out.isEmpty || out.count > 16 ? nil : out
}

// MARK: Options

var seed: UInt64 = 42
var minutes = 10.0
var rate = 9.0
var verbose = false
var reports = HerdRouter.Reports.all
var streamShare = 1.0
var fleetName = "home"
var requestCount = 150
var load = 0.65
/// Prompts and answers vary log-uniformly over this (the longest this × the shortest), as routing-real's SPREAD.
var spread = 4.0
/// Each machine's speed over each second is 1 / (1 + jitter × an exponential draw of mean 1):
/// a machine sharing its cores or its GPU with other work (0: none).
var jitter = 0.0
/// The shortest prompt and answer of `--fleet real`'s one-shot chats, in tokens (routing-real's PROMPT and ANSWER).
var shortestPrompt = 150.0
var shortestAnswer = 50.0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let flag = arguments.next() {
    switch flag {
    case "--seed": seed = UInt64(arguments.next() ?? "") ?? seed
    case "--minutes": minutes = Double(arguments.next() ?? "") ?? minutes
    case "--rate": rate = Double(arguments.next() ?? "") ?? rate
    case "--verbose": verbose = true
    case "--reports": reports = HerdRouter.Reports(rawValue: arguments.next() ?? "") ?? reports
    case "--stream-share": streamShare = Double(arguments.next() ?? "") ?? streamShare
    case "--fleet": fleetName = arguments.next() ?? fleetName
    case "--requests": requestCount = max(1, min(100_000, Int(arguments.next() ?? "") ?? requestCount))
    case "--load": load = max(0.01, min(2, Double(arguments.next() ?? "") ?? load))
    case "--spread": spread = max(1, min(1_000, Double(arguments.next() ?? "") ?? spread))
    case "--jitter": jitter = max(0, min(10, Double(arguments.next() ?? "") ?? jitter))
    case "--prompt": shortestPrompt = max(1, min(100_000, Double(arguments.next() ?? "") ?? shortestPrompt))
    case "--answer": shortestAnswer = max(1, min(100_000, Double(arguments.next() ?? "") ?? shortestAnswer))
    case "--physics":
        guard let physics = SimMachine.Physics(rawValue: arguments.next() ?? "") else {
            print("--physics: batch (every stream on a machine slows every other by its batch slowdown) or timeshare (each model's runner waits for the others' steps)")
            exit(2)
        }
        SimMachine.physics = physics
    case "--machines":
        guard let fleet = parseMachines(arguments.next() ?? "") else {
            print("--machines: slots x tokens/s, comma-separated (e.g. 4x80,2x30,1x10), 1 to 16 machines")
            exit(2)
        }
        realFleet = fleet
        fleetName = "real"
    default:
        print("usage: herd-routesim [--seed N] [--minutes M] [--rate conversations-per-minute] [--reports all|nothing|absurd] [--stream-share S] [--physics batch|timeshare] [--verbose]")
        print("       herd-routesim --fleet real [--machines 4x80,2x30,1x10] [--seed N] [--requests 150] [--load 0.65] [--spread 4] [--prompt 150] [--answer 50] [--stream-share S] [--jitter J] [--verbose]")
        exit(2)
    }
}
guard fleetName == "home" || fleetName == "real" else {
    print("--fleet: home (the default) or real")
    exit(2)
}
let real = fleetName == "real"
let shake = jitter
let shakeSeed = seed &* 0x9E37_79B9_7F4A_7C15 &+ 7
let machines = real ? realFleet : homeLab
let mix = real ? [(oneGB, 1.0)] : homeMix
if real {
    // As routing-real/run.sh: the first machine reports 1 ns durations, the others nothing.
    reports = .nothing
    if streamShare == 1 && !CommandLine.arguments.contains("--stream-share") { streamShare = 0 }
}
/// Mean of a log-uniform length from `shortest` over `spread`.
func logUniformMean(_ shortest: Double, _ spread: Double) -> Double { spread > 1 ? shortest * (spread - 1) / log(spread) : shortest }
/// The mean speed under `--jitter` (E[1 / (1 + J·X)], X exponential of mean 1): `--load` stays a share of what the fleet serves.
let meanSpeed = stride(from: 0.0, to: 40, by: 0.001).reduce(0.0) { $0 + exp(-$1) / (1 + shake * $1) * 0.001 }
let realRate = load * meanSpeed * realFleet.reduce(0.0) { total, m in
    total + Double(m.slots) * m.bandwidth / (1 + m.batchSlowdown * Double(m.slots - 1))
} / logUniformMean(shortestAnswer, spread)
let conversations = real
    ? SimWorkload.oneShots(seed: seed, count: requestCount, perSecond: realRate, model: oneGB, prompt: shortestPrompt, answer: shortestAnswer, spread: spread)
    : SimWorkload.conversations(seed: seed, durationMs: minutes * 60_000, perMinute: rate, models: mix)
let durationMs = real ? (conversations.last?.start ?? 0) + 1 : minutes * 60_000

// MARK: One run

struct RunResult {
    var name: String
    var completions: [Double] = []
    /// (model, machine, completion ms) of every request, for --verbose.
    var detail: [(String, String, Double, String)] = []
    /// Per request: machine, ms waiting in the router, ms waiting inside the backend, ms running.
    var phases: [(String, Double, Double, Double)] = []
    var coldLoads = 0
    var prewarms = 0
    var needlessColdLoads = 0
    var loadsWhileHotElsewhere = 0
    var failures = 0
    var requests = 0
}

func run(_ makeRouter: (SimBackends) -> SimRouter) -> RunResult {
    let step = 5.0
    let fleet = machines.map { SimMachine($0, now: 0) }
    let backends = SimBackends(machines: fleet)
    let router = makeRouter(backends)
    var result = RunResult(name: router.name)
    var arrivals: [Int: Double] = [:]
    // Next turn of each conversation: (time, conversation, turn).
    var agenda: [(Double, Int, Int)] = conversations.map { ($0.start, $0.index, 0) }
    var contextSoFar: [Int: Int] = [:]
    var nextID = 0
    var outstanding = 0
    backends.send = { request, machine, model, now in
        machine.submit(SimJob(request: request, model: model, sentAt: now) { job, done in
            router.finished(job, machine: machine, now: done)
            guard job.request.id >= 0, let arrived = arrivals.removeValue(forKey: job.request.id) else { return }
            result.completions.append(done - arrived)
            result.phases.append((machine.name, job.sentAt - arrived, (job.startedAt ?? job.sentAt) - job.sentAt, done - (job.startedAt ?? job.sentAt)))
            result.detail.append((job.model.name, machine.name, done - arrived, "#\(job.request.id) prompt \(job.request.promptTokens) arrived \(Int(arrived / 1000)) sent \(Int(job.sentAt / 1000)) started \(Int((job.startedAt ?? 0) / 1000)) load \(Int(job.loadMs)) prefill \(Int(job.prefillMs)) decode \(Int(job.decodeMs)) tokens \(job.request.outputTokens)"))
            outstanding -= 1
            let conversation = conversations[job.request.conversation]
            let turn = job.request.turnIndex + 1
            if turn < conversation.turns.count { agenda.append((done + conversation.thinkMs, conversation.index, turn)) }
        }, now: now)
    }
    var now = 0.0
    var nextBeat = 0.0
    // The same jitter for every router: its own seeded sequence.
    var shaking = SeededRandom(seed: shakeSeed)
    let end = durationMs + 20 * 60_000 // time to drain
    while now < end {
        // Events: a machine throttles a third of the way in; another's owner has a meeting.
        if !real {
            fleet[1].throttled = now >= durationMs * 0.3
            fleet[1].speed = fleet[1].throttled ? 0.4 : 1
            fleet[2].inMeeting = now >= durationMs * 0.5 && now < durationMs * 0.8
            fleet[2].speed = fleet[2].inMeeting ? 0.6 : 1
        } else if shake > 0, Int(now) % 1_000 == 0 {
            for machine in fleet { machine.speed = 1 / (1 + shake * shaking.exponential(mean: 1)) }
        }
        if now >= nextBeat {
            router.heartbeat(now: now)
            nextBeat += 2_000
        }
        agenda.sort { $0.0 < $1.0 }
        while let first = agenda.first, first.0 <= now {
            agenda.removeFirst()
            let conversation = conversations[first.1]
            let (newTokens, output) = conversation.turns[first.2]
            let context = (contextSoFar[conversation.index] ?? 0) + newTokens
            contextSoFar[conversation.index] = context + output
            let request = SimRequest(id: nextID, conversation: conversation.index, turnIndex: first.2, model: conversation.model,
                                     promptTokens: context, newPromptTokens: newTokens, outputTokens: output,
                                     session: conversation.turns.count > 1 ? UInt64(conversation.index) + 1 : nil,
                                     systemPrompt: conversation.systemPrompt)
            nextID += 1
            arrivals[request.id] = now
            outstanding += 1
            result.requests += 1
            router.arrive(request, now: now)
        }
        router.tick(now: now)
        for machine in fleet { machine.step(now: now, dt: step) }
        now += step
        if now > durationMs, agenda.isEmpty, outstanding == 0 { break }
    }
    result.failures = outstanding
    result.coldLoads = fleet.reduce(0) { $0 + $1.coldLoads }
    result.prewarms = fleet.reduce(0) { $0 + $1.prewarms }
    result.needlessColdLoads = backends.needlessColdLoads
    result.loadsWhileHotElsewhere = backends.loadsWhileHotElsewhere
    return result
}

// MARK: Report

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
}

func seconds(_ ms: Double) -> String {
    let tenths = Int((ms / 100).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

var herdRouter: HerdRouter?
let results = [run { backends in
    let herd = HerdRouter(backends, reports: reports, streamShare: streamShare, absurd: real ? [realFleet[0].name] : [])
    herd.debug = verbose
    herdRouter = herd
    return herd
}, run(RoundRobinRouter.init), run(LeastConnectionsRouter.init), run { WeightedSumRouter($0, knowsParallel: reports == .all) }]
if real {
    let described = realFleet.map { "\($0.slots)×\(Int($0.bandwidth))" }.joined(separator: ", ")
    print("routing quality, the routing-real fleet: seed \(seed), \(results[0].requests) one-shot chats (prompts \(Int(shortestPrompt))–\(Int(shortestPrompt * spread)), answers \(Int(shortestAnswer))–\(Int(shortestAnswer * spread)) tokens) at \(Int(realRate * 100)) per 100 s (load \(load)), \(realFleet.count) machines (slots × tokens/s: \(described)) reporting no slots, m0 1 ns durations, the others none; \(Int(streamShare * 100)) % of requests stream")
} else {
    print("routing quality: seed \(seed), \(Int(minutes)) min, \(conversations.count) conversations, \(results[0].requests) requests, 4 machines; machines report \(reports.rawValue), \(Int(streamShare * 100)) % of requests stream")
}
print("completion time (arrival → last token), seconds")
print(padded("router", 28) + padded("mean", 8) + padded("p50", 8) + padded("p95", 8) + padded("p99", 8)
      + padded("loads", 7) + padded("pre-warms", 11) + padded("hot elsewhere", 15) + padded("needless", 10) + "failures")
for r in results {
    let sorted = r.completions.sorted()
    let mean = sorted.reduce(0, +) / Double(max(1, sorted.count))
    print(padded(r.name, 28) + padded(seconds(mean), 8) + padded(seconds(percentile(sorted, 0.5)), 8)
          + padded(seconds(percentile(sorted, 0.95)), 8) + padded(seconds(percentile(sorted, 0.99)), 8)
          + padded(String(r.coldLoads), 7) + padded(String(r.prewarms), 11) + padded(String(r.loadsWhileHotElsewhere), 15) + padded(String(r.needlessColdLoads), 10)
          + String(r.failures))
}
print("loads: cold and warm loads, pre-warms included; pre-warms: loads herd started ahead of demand (no request waiting on them);")
print("hot elsewhere: loads started while another machine had the model hot with a free slot;")
print("needless: of those, loads where that hot machine would have finished the request sooner (the simulator's own arithmetic)")
if verbose {
    for r in results {
        print("\n\(r.name)")
        for model in mix.map(\.0.name) {
            let times = r.detail.filter { $0.0 == model }.map(\.2).sorted()
            let machines = Dictionary(grouping: r.detail.filter { $0.0 == model }, by: \.1).mapValues(\.count).sorted { $0.key < $1.key }
            _ = 0
            for machine in Set(r.detail.map(\.1)).sorted() {
                let here = r.detail.filter { $0.0 == model && $0.1 == machine }.map(\.2).sorted()
                let phases = r.phases.filter { $0.0 == machine }
                func average(_ f: ((String, Double, Double, Double)) -> Double) -> String { seconds(phases.map(f).reduce(0, +) / Double(max(1, phases.count))) }
                if !here.isEmpty {
                    print("    \(padded(machine, 14)) n=\(padded(String(here.count), 5)) p50 \(padded(seconds(percentile(here, 0.5)), 7)) mean \(padded(seconds(here.reduce(0, +) / Double(here.count)), 7))"
                          + "waits in the router \(average(\.1)), inside \(average(\.2)), runs \(average(\.3))")
                }
            }
            print("  \(padded(model, 16)) n=\(padded(String(times.count), 5)) p50 \(padded(seconds(percentile(times, 0.5)), 7)) p95 \(padded(seconds(percentile(times, 0.95)), 7)) \(machines.map { "\($0.key):\($0.value)" }.joined(separator: " "))")
        }
    }
}
if verbose, let waits = herdRouter?.waits, !waits.isEmpty {
    let under = waits.filter { $0.1 > $0.0 }.count
    if let herd = herdRouter, herd.waitingSteps > 0 {
        let rows = machines.map { m in "\(m.name) \(Double(herd.busyWhileWaiting[m.name, default: 0] * 10 / herd.waitingSteps) / 10) of \(m.slots) slots" }
        print("\nwhile requests waited in herd (\(herd.waitingSteps * 5 / 1000) s), machines ran on average: \(rows.joined(separator: ", "))")
    }
    print("herd's queue: \(waits.count) requests queued; wait expected when queued \(seconds(waits.map(\.0).reduce(0, +) / Double(waits.count))) s on average, actual \(seconds(waits.map(\.1).reduce(0, +) / Double(waits.count))) s; \(under) waited longer than expected")
}
if verbose {
    print("\nherd's slowest")
    for d in results[0].detail.sorted(by: { $0.2 > $1.2 }).prefix(25) { print("  \(d.0) \(d.1) \(seconds(d.2)) s \(d.3)") }
    print("\nherd's decisions for its five slowest")
    for d in results[0].detail.sorted(by: { $0.2 > $1.2 }).prefix(5) {
        let id = d.3.dropFirst().prefix { $0 != " " }
        print("  #\(id): \(herdRouter?.decisions[Int(id) ?? -1] ?? "?")")
    }
}
func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(max(1, values.count)) }
func ratioLine(_ name: String, _ measure: ([Double]) -> Double) {
    let herd = measure(results[0].completions.sorted())
    let best = results.dropFirst().map { measure($0.completions.sorted()) }.min() ?? .nan
    let ratio = Int((herd / best * 100).rounded())
    print("herd \(name) / best baseline \(name) = \(ratio / 100).\(ratio % 100 < 10 ? "0" : "")\(ratio % 100)")
}
// The p95 line is the headline (last line before the others were added; scripts read it).
ratioLine("p95") { percentile($0, 0.95) }
ratioLine("p50") { percentile($0, 0.5) }
ratioLine("mean", mean)
// HERD_SIM_DUMP=file: every request of every router, tab-separated (router, machine, ms, ms waiting in the router, detail).
if let path = getenv("HERD_SIM_DUMP").map({ String(cString: $0) }) {
    var out = ""
    for r in results { for (i, d) in r.detail.enumerated() { out += "\(r.name)\t\(d.1)\t\(d.2)\t\(r.phases[i].1)\t\(d.3)\n" } }
    if let f = fopen(path, "w") { fputs(out, f); fclose(f) }
}
