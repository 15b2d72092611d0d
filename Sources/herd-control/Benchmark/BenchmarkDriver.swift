import HerdBounds
import HerdHTTP
import HerdJSON
import HerdRouting
import HerdRuntime

/// Drives `herd benchmark`'s load: requests through the router pinned to one
/// node (`X-Herd-Node`), `concurrency` at a time (closed loop: each answer
/// sends the next) until the step's time is up; a blocking API over a loop
/// of its own (a command-line tool).
final class BenchmarkDriver {
    private let loop: EventLoop
    private let client: HTTPClient
    private let router: SocketAddress
    private let maxTokens: Int
    private let prompt: String
    private var sequence = 0

    init(router: SocketAddress, maxTokens: Int, promptTokens: Int) throws {
        loop = try EventLoop()
        var configuration = HTTPClientConfiguration()
        configuration.firstByteTimeoutMilliseconds = 600_000
        configuration.maxConnectionsPerUpstream = 512
        client = HTTPClient(loop: loop, configuration: configuration)
        self.router = router
        self.maxTokens = maxTokens
        // About 4 bytes a token: varied words, so no two prompts are alike past their first line.
        let words = ["fleet", "router", "model", "token", "machine", "memory", "queue", "stream", "answer", "prompt", "batch", "slot"]
        var text = "Write a long story about these words, one paragraph each:"
        var i = 0
        while text.utf8.count < promptTokens * 4 {
            text += " " + words[i % words.count] + String(i)
            i += 1
        }
        prompt = text
    }

    func close() {
        client.close()
        loop.close()
    }

    /// One request, unmeasured (a cold model loads here); nil when it went well, else what failed.
    func warmUp(_ target: BenchmarkPlan.Target) -> String? {
        let (step, error) = run(target, concurrency: 1, milliseconds: 0)
        return step.errors > 0 ? (error ?? "no answer") : nil
    }

    /// One step: `concurrency` at once for `milliseconds` (requests under way at the end finish and count).
    func step(_ target: BenchmarkPlan.Target, concurrency: Int, milliseconds: UInt64) -> (BenchmarkPrior.Step, String?) {
        run(target, concurrency: concurrency, milliseconds: milliseconds)
    }

    /// Unloads `target`'s model from its node (Ollama: a generate without a prompt, keep_alive 0).
    func unload(_ target: BenchmarkPlan.Target) -> Bool {
        var body: [UInt8] = []
        JSONValue.object([("model", .string(target.model)), ("keep_alive", .int(0))]).write(to: &body)
        var ok = false
        client.collect(HTTPClientRequest(method: "POST", target: "/api/generate", headers: headers(target), body: body), to: router) { [loop] result in
            if case let .success(response) = result { ok = response.status == 200 }
            loop.stop()
        }
        loop.run()
        return ok
    }

    private func headers(_ target: BenchmarkPlan.Target) -> HTTPHeaders {
        ["Host": "\(router)", "Content-Type": "application/json", "X-Herd-Node": target.node, "X-Herd-Client": "herd-benchmark"]
    }

    private func request(_ target: BenchmarkPlan.Target) -> HTTPClientRequest {
        sequence += 1
        var body: [UInt8] = []
        switch target.kind {
        case .chat:
            JSONValue.object([
                ("model", .string(target.model)),
                ("messages", .array([.object([("role", "user"), ("content", .string("Request \(sequence). " + prompt))])])),
                ("stream", .bool(true)),
                ("options", .object([("num_predict", .int(maxTokens)), ("temperature", .number(0.7))])),
            ]).write(to: &body)
            return HTTPClientRequest(method: "POST", target: "/api/chat", headers: headers(target), body: body)
        case .embed:
            JSONValue.object([("model", .string(target.model)), ("input", .string("Request \(sequence). " + prompt))]).write(to: &body)
            return HTTPClientRequest(method: "POST", target: "/api/embed", headers: headers(target), body: body)
        }
    }

    private func run(_ target: BenchmarkPlan.Target, concurrency: Int, milliseconds: UInt64) -> (BenchmarkPrior.Step, String?) {
        let tally = Tally()
        let started = EventLoop.monotonicNanoseconds()
        let deadline = started + milliseconds * 1_000_000
        var running = 0
        func launch() {
            running += 1
            let reader = BenchmarkRequest(kind: target.kind, sent: EventLoop.monotonicNanoseconds()) { [loop] outcome in
                running -= 1
                tally.add(outcome)
                if EventLoop.monotonicNanoseconds() < deadline {
                    launch()
                } else if running == 0 {
                    loop.stop()
                }
            }
            _ = client.execute(request(target), to: router, delegate: reader)
        }
        for _ in 0..<concurrency { launch() }
        loop.run()
        let elapsedMs = Double(max(1, tally.lastEnd > started ? tally.lastEnd - started : 1)) / 1e6
        let ok = tally.outcomes.filter { $0.error == nil }
        let units = target.kind == .chat ? ok.reduce(0.0) { $0 + Double($1.tokens) } : Double(ok.count)
        let ttfts = ok.map(\.ttftMs).sorted()
        let step = BenchmarkPrior.Step(
            concurrency: concurrency, requests: tally.outcomes.count, errors: tally.outcomes.count - ok.count,
            perSecond: units / (elapsedMs / 1000), ttftMs: ttfts.isEmpty ? 0 : ttfts[ttfts.count / 2],
            durationMs: ok.isEmpty ? 0 : ok.reduce(0.0) { $0 + $1.durationMs } / Double(ok.count),
            promptTokens: ok.isEmpty ? 0 : ok.reduce(0.0) { $0 + Double($1.promptTokens) } / Double(ok.count),
            outputTokens: ok.isEmpty ? 0 : units / Double(ok.count))
        return (step, tally.outcomes.lazy.compactMap(\.error).first)
    }

    /// What one request came to.
    struct Outcome {
        var ttftMs = 0.0
        var durationMs = 0.0
        var tokens = 0
        var promptTokens = 0
        var error: String?
        var ended: UInt64 = 0
    }

    final class Tally {
        var outcomes: [Outcome] = []
        var lastEnd: UInt64 = 0
        func add(_ outcome: Outcome) {
            outcomes.append(outcome)
            lastEnd = max(lastEnd, outcome.ended)
        }
    }
}

/// One request's answer, read as it comes: the first byte's time, an
/// Ollama stream's chunks and its final counts (`eval_count`,
/// `prompt_eval_count`), or a whole answer.
final class BenchmarkRequest: HTTPClientResponseDelegate {
    private let kind: BenchmarkPrior.Kind
    private let sent: UInt64
    private let done: (BenchmarkDriver.Outcome) -> Void
    private var outcome = BenchmarkDriver.Outcome()
    private var status = 0
    private var firstByte: UInt64?
    private var line: [UInt8] = []
    private var body: [UInt8] = []
    private var chunks = 0
    private var holder: BenchmarkRequest?

    init(kind: BenchmarkPrior.Kind, sent: UInt64, done: @escaping (BenchmarkDriver.Outcome) -> Void) {
        self.kind = kind
        self.sent = sent
        self.done = done
        holder = self
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) { status = head.status }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        if firstByte == nil { firstByte = EventLoop.monotonicNanoseconds() }
        guard status == 200, kind == .chat else {
            if body.count < 4096 { body.append(contentsOf: bytes.prefix(4096 - body.count)) }
            return
        }
        for byte in bytes {
            if byte == 0x0A {
                readLine()
                line.removeAll(keepingCapacity: true)
            } else if line.count < 1 << 20 {
                line.append(byte)
            }
        }
    }

    private func readLine() {
        guard !line.isEmpty, let json = try? JSONValue.parse(line) else { return }
        if json["done"]?.boolValue == true {
            if let count = json["eval_count"]?.intValue, count > 0 { outcome.tokens = count }
            if let count = json["prompt_eval_count"]?.intValue, count > 0 { outcome.promptTokens = count }
        } else if let content = json["message"]?["content"]?.stringValue, !content.isEmpty {
            chunks += 1
        } else if let error = json["error"]?.stringValue {
            outcome.error = String(error.prefix(300))
        }
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        if !line.isEmpty { readLine() }
        if status != 200 {
            let message = (try? JSONValue.parse(body)).flatMap { $0["error"]?.stringValue ?? $0["error"]?["message"]?.stringValue }
            outcome.error = "\(status): " + (message ?? String(decoding: body.prefix(300), as: UTF8.self))
        } else if kind == .chat, outcome.tokens == 0 {
            outcome.tokens = chunks
        }
        finish()
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        outcome.error = "\(error)"
        finish()
    }

    private func finish() {
        let now = EventLoop.monotonicNanoseconds()
        outcome.ended = now
        outcome.durationMs = Double(now - sent) / 1e6
        outcome.ttftMs = Double((firstByte ?? now) - sent) / 1e6
        holder = nil
        done(outcome)
    }
}
