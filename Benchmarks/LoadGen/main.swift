import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdLink
import HerdWire

// herd-loadgen: an open-loop load generator for herd's benchmarks (Benchmarks/README.md).
//
//   herd-loadgen rate   --url URL --body JSON --rate R --duration S
//       sends R requests/s on a fixed schedule (not waiting for answers); latency
//       counts from the scheduled send time, so a slow server cannot hide its queue.
//   herd-loadgen stream --url URL --body JSON --streams N
//       N concurrent streams; per chunk: receive time − the backend's `created_at`.
//   herd-loadgen route  --socket PATH --control URL --rate R --duration S
//       ROUTE → ROUTE_OK round trips on herd-control's socket (a RESULT frees each slot).
//
// Prints one JSON line of results.

var arguments = Array(CommandLine.arguments.dropFirst())
guard let mode = arguments.first else {
    print("usage: herd-loadgen rate|stream|route [--url U] [--body B] [--rate R] [--duration S] [--streams N] [--socket P] [--control U]")
    exit(2)
}
arguments.removeFirst()
var options: [String: String] = [:]
while arguments.count >= 2 {
    options[String(arguments.removeFirst().drop { $0 == "-" })] = arguments.removeFirst()
}

let loop = try EventLoop()
var configuration = HTTPClientConfiguration()
configuration.maxConnectionsPerUpstream = 2048
configuration.firstByteTimeoutMilliseconds = 60_000
configuration.connectTimeoutMilliseconds = 5_000
let client = HTTPClient(loop: loop, configuration: configuration)

/// Latency samples in microseconds.
final class Samples {
    var values: [Int] = []
    var errors = 0
    var errorKinds: [String: Int] = [:]

    func percentile(_ p: Double) -> Int {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
    }

    func json(_ extra: [(String, JSONValue)]) -> String {
        var members = extra
        members += [("ok", .int(values.count)), ("errors", .int(errors)), ("p50_us", .int(percentile(0.5))), ("p90_us", .int(percentile(0.9))),
                    ("p99_us", .int(percentile(0.99))), ("max_us", .int(values.max() ?? 0))]
        if !errorKinds.isEmpty { members.append(("error_kinds", .object(errorKinds.map { ($0.key, .int($0.value)) }))) }
        return JSONValue.object(members).serialized()
    }
}

/// One request whose latency is measured from the moment it was sent (the
/// generator sends on schedule whatever the answers do, so it stays open-loop;
/// the timer's own lag, ≤ 1–2 ms, is reported separately as `send_lag`).
final class TimedRequest: HTTPClientResponseDelegate {
    let scheduled: UInt64
    let samples: Samples
    let done: () -> Void
    var status = 0
    var holder: TimedRequest?

    init(scheduled: UInt64, samples: Samples, done: @escaping () -> Void) {
        self.scheduled = scheduled
        self.samples = samples
        self.done = done
        holder = self
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) { status = head.status }
    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {}
    func taskDidFinish(_ task: HTTPClientTask) {
        if status == 200 {
            samples.values.append(Int((EventLoop.monotonicNanoseconds() - scheduled) / 1000))
        } else {
            samples.errors += 1
            samples.errorKinds["status \(status)", default: 0] += 1
        }
        holder = nil
        done()
    }
    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        samples.errors += 1
        samples.errorKinds["\(error)", default: 0] += 1
        holder = nil
        done()
    }
}

/// Wall-clock nanoseconds within the current UTC day.
func nanosOfDay() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec % 86_400) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// `…T12:34:56.123456789Z` → nanoseconds within its day.
func parseStamp(_ line: ArraySlice<UInt8>) -> Int64? {
    let key = Array("\"created_at\":\"".utf8)
    guard let start = line.firstRange(of: key)?.upperBound, line.distance(from: start, to: line.endIndex) >= 30 else { return nil }
    let t = Array(line[start..<line.index(start, offsetBy: 30)])
    func num(_ a: Int, _ b: Int) -> Int64 { t[a..<b].reduce(0) { $0 * 10 + Int64($1 - 48) } }
    guard t[10] == UInt8(ascii: "T"), t[19] == UInt8(ascii: ".") else { return nil }
    return ((num(11, 13) * 60 + num(14, 16)) * 60 + num(17, 19)) * 1_000_000_000 + num(20, 29)
}

/// A streaming request: samples each line's delivery delay.
final class StreamReader: HTTPClientResponseDelegate {
    let samples: Samples
    let done: () -> Void
    var partial: [UInt8] = []
    var chunks = 0
    var holder: StreamReader?
    init(samples: Samples, done: @escaping () -> Void) {
        self.samples = samples
        self.done = done
        holder = self
    }
    var failed = false
    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) {
        // A refusal (e.g. 503 after the queue timeout) is an error, not a stream without chunks.
        if head.status != 200 {
            failed = true
            samples.errors += 1
            samples.errorKinds["status \(head.status)", default: 0] += 1
        }
    }
    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        guard !failed else { return }
        let now = nanosOfDay()
        partial.append(contentsOf: bytes)
        var start = partial.startIndex
        while let newline = partial[start...].firstIndex(of: 10) {
            if let stamp = parseStamp(partial[start..<newline]) {
                var delta = now - stamp
                if delta < -43_200_000_000_000 { delta += 86_400_000_000_000 }
                samples.values.append(Int(delta / 1000))
                chunks += 1
            }
            start = newline + 1
        }
        partial.removeFirst(start - partial.startIndex)
    }
    func taskDidFinish(_ task: HTTPClientTask) { holder = nil; done() }
    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        samples.errors += 1
        samples.errorKinds["\(error)", default: 0] += 1
        holder = nil
        done()
    }
}

let samples = Samples()
let lag = Samples()
let started = EventLoop.monotonicNanoseconds()
var output = ""

switch mode {
case "rate", "stream":
    let url = try HTTPURL(options["url"] ?? "http://127.0.0.1:11435/api/chat")
    let address = try url.resolve()
    let body = Array((options["body"] ?? #"{"model":"llama3:8b","stream":false}"#).utf8)
    let request = HTTPClientRequest(method: "POST", target: url.path.isEmpty ? "/" : url.path, headers: ["Content-Type": "application/json"], body: body)
    if mode == "rate" {
        let rate = Double(options["rate"] ?? "1000")!
        let duration = Double(options["duration"] ?? "10")!
        let total = Int(rate * duration)
        var sent = 0
        var finished = 0
        let ticker = LoopTimer(loop: loop)
        ticker.start(after: 1, repeating: 1) {
            let elapsed = Double(EventLoop.monotonicNanoseconds() - started) / 1e9
            let due = min(total, Int(elapsed * rate))
            while sent < due {
                // Scheduled time of this request, not now: open loop.
                let scheduled = started + UInt64(Double(sent) / rate * 1e9)
                let now = EventLoop.monotonicNanoseconds()
                lag.values.append(Int((now - min(now, scheduled)) / 1000))
                sent += 1
                client.execute(request, to: address, delegate: TimedRequest(scheduled: now, samples: samples) {
                    finished += 1
                    if finished == total { loop.stop() }
                })
            }
            if sent == total { ticker.stop() }
        }
        loop.run()
        let wall = Double(EventLoop.monotonicNanoseconds() - started) / 1e9
        output = samples.json([("mode", "rate"), ("target_rate", .number(rate)), ("send_lag_p50_us", .int(lag.percentile(0.5))),
                               ("send_lag_p99_us", .int(lag.percentile(0.99))), ("achieved_rate", .number((Double(samples.values.count) / max(duration, wall - 1) * 10).rounded() / 10))])
    } else {
        let streams = Int(options["streams"] ?? "100")!
        var finished = 0
        var readers: [StreamReader] = []
        for _ in 0..<streams {
            let reader = StreamReader(samples: samples) {
                finished += 1
                if finished == streams { loop.stop() }
            }
            readers.append(reader)
            client.execute(request, to: address, delegate: reader)
        }
        loop.run()
        output = samples.json([("mode", "stream"), ("streams", .int(streams)), ("chunks", .int(readers.reduce(0) { $0 + $1.chunks }))])
    }
case "route":
    let control = try HTTPURL(options["control"] ?? "http://127.0.0.1:11436")
    let socketPath = options["socket"] ?? DataDirectory.resolve() + "/control.sock"
    let rate = Double(options["rate"] ?? "5000")!
    let duration = Double(options["duration"] ?? "10")!
    // A node with the model the routes ask for.
    let heartbeat = Heartbeat(nodeID: "bench-node", backends: [.init(kind: .ollama, url: "", address: "127.0.0.1:9", reachable: true,
                                                                      models: [.init(name: "bench:1b")], loaded: [.init(name: "bench:1b")])])
    var hb: [UInt8] = []
    heartbeat.json.write(to: &hb)
    let total = Int(rate * duration)
    var sentTimes: [UInt64: UInt64] = [:]
    var answered = 0
    client.collect(HTTPClientRequest(method: "POST", target: "/heartbeat", headers: ["Content-Type": "application/json"], body: hb), to: try control.resolve()) { result in
        guard case .success(let response) = result, response.status == 200 else {
            print("heartbeat failed: \(result)")
            exit(1)
        }
        let stream = StreamConnection(loop: loop, kind: .pipe)
        stream.connect(toPath: socketPath) { error in
            if let error { print("control socket: \(error)"); exit(1) }
            let channel = ControlChannel(stream: stream)
            var begun: UInt64 = 0
            var sent = 0
            let ticker = LoopTimer(loop: loop)
            channel.onMessage = { frame in
                switch frame.type {
                case .helloOK:
                    begun = EventLoop.monotonicNanoseconds()
                    ticker.start(after: 1, repeating: 1) {
                        let elapsed = Double(EventLoop.monotonicNanoseconds() - begun) / 1e9
                        let due = min(total, Int(elapsed * rate))
                        while sent < due {
                            let id = UInt64(sent + 1)
                            sentTimes[id] = EventLoop.monotonicNanoseconds()
                            sent += 1
                            // num_ctx set: a request tickets do not serve, so every one is a ROUTE → ROUTE_OK round trip.
                            channel.send(.route, RouteAsk(request: RouteRequest(id: id, api: .ollama, path: "/api/chat", model: "bench:1b", stream: false, numCtx: 2048)))
                        }
                        if sent == total { ticker.stop() }
                    }
                case .routeOK, .routeError:
                    let id = frame.type == .routeOK ? (try? frame.decode(RouteAnswer.self))?.id ?? 0 : (try? frame.decode(RouteRefusal.self))?.id ?? 0
                    if frame.type == .routeOK, let at = sentTimes.removeValue(forKey: id) {
                        samples.values.append(Int((EventLoop.monotonicNanoseconds() - at) / 1000))
                        channel.send(.result, ResultBatch([ReportedResult(RouteResult(id: id, node: "bench-node", model: "bench:1b", outcome: .ok, status: 200))]))
                    } else {
                        samples.errors += 1
                    }
                    answered += 1
                    if answered == total { loop.stop() }
                case .grant:
                    // This measures the ROUTE round trip: tickets go straight back.
                    if let grant = try? frame.decode(TicketGrant.self) {
                        channel.send(.ticketReturn, TicketList(tickets: grant.tickets.map(\.ticket)))
                    }
                default:
                    break
                }
            }
            channel.onClose = { error in print("control closed: \(String(describing: error))"); exit(1) }
            channel.start()
            channel.send(.hello, ControlHello(proxyID: "loadgen").json)
        }
    }
    loop.run()
    output = samples.json([("mode", "route"), ("target_rate", .number(rate))])
default:
    print("unknown mode \(mode)")
    exit(2)
}
print(output)
