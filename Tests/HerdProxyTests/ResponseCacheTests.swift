import HerdJSON
import HerdTestSupport
import Testing
@testable import herd_proxy

/// The exact response cache: what may be kept, its key, its bounds.
@Suite struct ResponseCacheTests {
    func key(_ body: String, path: String = "/api/embed", digest: String = "sha256:a") -> ResponseCache.Key? {
        ResponseCache.key(path: path, body: Array(body.utf8), modelDigest: digest)
    }

    @Test func theKeyIsTheCanonicalBodyThePathAndTheModelDigest() {
        let a = key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#)
        #expect(a != nil)
        #expect(a == key(#" { "input" : ["x","y"], "options":{"a":2,"b":1}, "model":"e" } "#), "key order and spacing do not matter")
        #expect(a != key(#"{"model":"e","input":["y","x"],"options":{"b":1,"a":2}}"#), "array order does")
        #expect(a != key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#, digest: "sha256:b"), "a re-pulled model misses")
        #expect(a != key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#, path: "/v1/embeddings"))
        #expect(key("not json") == nil)
    }

    @Test func onlyDeterministicRequestsUnlessAsked() {
        func det(_ endpoint: Endpoint, _ body: String) -> Bool { ResponseCache.deterministic(endpoint, body: Array(body.utf8)) }
        #expect(det(.embed, #"{"model":"e","input":"x"}"#))
        #expect(det(.openAIEmbeddings, #"{"model":"e","input":"x"}"#))
        #expect(det(.openAIChat, #"{"model":"m","temperature":0,"messages":[]}"#))
        #expect(det(.openAIChat, #"{"model":"m","seed":42,"messages":[]}"#))
        #expect(det(.chat, #"{"model":"m","options":{"temperature":0},"messages":[]}"#))
        #expect(det(.generate, #"{"model":"m","options":{"seed":7},"prompt":"p"}"#))
        #expect(!det(.openAIChat, #"{"model":"m","temperature":0.7,"messages":[]}"#))
        #expect(!det(.chat, #"{"model":"m","messages":[]}"#), "Ollama samples by default")
        #expect(!det(.speech, #"{"model":"v","input":"x"}"#))
        #expect(ResponseCache.ask("on") == .on && ResponseCache.ask("OFF") == .off && ResponseCache.ask(nil) == .unsaid && ResponseCache.ask("x") == .unsaid)
    }

    @Test func boundedLeastRecentlyUsedAndFresh() {
        let cache = ResponseCache(capacityBytes: 16 * 1024, ttlMilliseconds: 1_000)
        let k = (0..<12).map { key(#"{"model":"e","input":"\#($0)"}"#)! }
        let body = [UInt8](repeating: 1, count: 1_700) // ~1.8 KiB each with its overhead: 8 fit
        for i in 0..<10 { cache.store(k[i], contentType: "application/json", body: body, node: "n", model: "e", now: 100) }
        #expect(cache.bytes <= 16 * 1024 && cache.count == 8, "past the capacity the oldest went: \(cache.count) kept")
        #expect(cache.lookup(k[0], now: 200) == nil && cache.lookup(k[1], now: 200) == nil, "the least recently used are out")
        #expect(cache.lookup(k[9], now: 200)?.body == body)
        // Used: k2 (the oldest) is read, so the next store evicts k3 instead.
        #expect(cache.lookup(k[2], now: 300) != nil)
        cache.store(k[10], contentType: "application/json", body: body, node: "n", model: "e", now: 300)
        #expect(cache.count == 8 && cache.lookup(k[2], now: 300) != nil && cache.lookup(k[3], now: 300) == nil)
        // Stale after its time; too large never kept.
        #expect(cache.lookup(k[10], now: 1_301) == nil)
        cache.store(k[11], contentType: "application/json", body: [UInt8](repeating: 0, count: 3_000), node: "n", model: "e", now: 300)
        #expect(cache.lookup(k[11], now: 301) == nil, "over an eighth of the capacity")
        #expect(cache.hits == 3 && cache.misses == 5 && cache.evictions == 3)
    }
}

/// Through the real proxy: a repeated deterministic request is answered from
/// the cache (the backend hears it once), streams replay as streams, and the
/// rest goes to the backend every time.
@Suite(.serialized) struct ResponseCacheFleetTests {
    @Test func repeatedDeterministicRequestsAreHits() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        fleet.controlEnvironment = ["HERD_CACHE_MB": "16"]
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,nomic-embed-text", "--loaded", "llama3:8b,nomic-embed-text", "--tokens", "6"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)

        let embed = fleet.post("/api/embed", #"{"model":"nomic-embed-text","input":["a","b"]}"#)
        #expect(embed.status == 200 && embed.header("X-Herd-Cache") == "miss", "\(embed.status) \(embed.header("X-Herd-Cache") ?? "-")")
        let again = fleet.post("/api/embed", #"{ "input": ["a","b"], "model": "nomic-embed-text" }"#)
        #expect(again.status == 200 && again.header("X-Herd-Cache") == "hit" && again.body == embed.body)
        #expect(again.header("X-Herd-Node") == "node-a")
        #expect(fleet.backendRequests("A", path: "/api/embed") == 1, "the backend heard it once")
        let off = fleet.post("/api/embed", #"{"model":"nomic-embed-text","input":["a","b"]}"#, headers: ["X-Herd-Cache": "off"])
        #expect(off.header("X-Herd-Cache") == "bypass" && fleet.backendRequests("A", path: "/api/embed") == 2)

        // A stream at temperature 0 replays as the same stream.
        let stream = #"{"model":"llama3:8b","options":{"temperature":0},"messages":[{"role":"user","content":"hi"}]}"#
        let first = fleet.post("/api/chat", stream)
        let second = fleet.post("/api/chat", stream)
        #expect(first.status == 200 && first.header("X-Herd-Cache") == "miss")
        #expect(second.header("X-Herd-Cache") == "hit" && second.body == first.body && second.header("Content-Type") == first.header("Content-Type"))
        #expect(second.text.split(separator: "\n").count > 3, "NDJSON lines, as streamed")

        // Sampling: every request goes to the backend, unless the client asks.
        let sampled = #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#
        let before = fleet.backendRequests("A", path: "/api/chat")
        #expect(fleet.post("/api/chat", sampled).header("X-Herd-Cache") == "bypass")
        #expect(fleet.post("/api/chat", sampled).header("X-Herd-Cache") == "bypass")
        #expect(fleet.backendRequests("A", path: "/api/chat") == before + 2)
        #expect(fleet.post("/api/chat", sampled, headers: ["X-Herd-Cache": "on"]).header("X-Herd-Cache") == "miss")
        #expect(fleet.post("/api/chat", sampled, headers: ["X-Herd-Cache": "on"]).header("X-Herd-Cache") == "hit")
        // The proxy reports its cache to control (CACHE_STATS), which shows it in /metrics.
        var metrics = ""
        let reported = waitUntil(seconds: 10) {
            metrics = fleet.getControl("/metrics").text
            return metrics.split(separator: "\n").contains { $0.hasPrefix("herd_cache_hits_total{proxy=") && $0.hasSuffix(" 3") }
        }
        #expect(reported, "\(metrics.split(separator: "\n").filter { $0.hasPrefix("herd_cache") })")
        #expect(metrics.contains("herd_cache_entries{proxy="))
    }
}
