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
