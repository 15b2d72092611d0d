import HerdJSON
import HerdTestSupport
import Testing

/// `ollama pull`, `rm`, `cp`, `create` through the router: to the node named,
/// else the one that should have it; progress relayed; a second pull of the
/// same model refused; the fleet key needed when one is set.
@Suite(.serialized) struct ModelAdminTests {
    static func fleet(control: [String] = [], nodeExtra: [String] = []) throws -> TestFleet {
        let fleet = TestFleet(controlArguments: control)
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.addBackend("B", arguments: ["--models", "mistral:7b", "--token-delay-ms", "150"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A", extra: nodeExtra)
        try fleet.addNode("node-b", backend: "B", extra: nodeExtra)
        try fleet.waitForNodes(2)
        return fleet
    }

    static func listed(_ fleet: TestFleet, _ model: String) -> Bool {
        ((try? JSONValue.parse(fleet.get("/api/tags").body))?["models"]?.arrayValue ?? []).contains { $0["name"]?.stringValue == model }
    }

    @Test func pullGoesWhereTheModelIsMissingAndStreamsItsProgress() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        // node-a has llama3:8b; the pull goes to node-b (B answers a line every 150 ms).
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 20)
        let body = #"{"model":"llama3:8b"}"#
        client.send("POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("B", path: "/api/pull") == 1 })
        let second = fleet.post("/api/pull", body)
        #expect(second.status == 409, "a second pull of the same model is refused: \(second.text)")
        let answer = try client.readResponse()
        #expect(answer.status == 200 && answer.header("X-Herd-Node") == "node-b")
        let lines = answer.text.split(separator: "\n").compactMap { try? JSONValue.parse(Array($0.utf8)) }
        #expect(lines.first?["status"]?.stringValue == "pulling manifest" && lines.last?["status"]?.stringValue == "success", "\(answer.text)")
        #expect(fleet.backendRequests("A", path: "/api/pull") == 0)
        // The pull is over: the same model may be pulled again (to node-b, named).
        #expect(fleet.post("/api/pull", #"{"model":"llama3:8b","stream":false}"#, headers: ["X-Herd-Node": "node-b"]).status == 200)
        #expect(fleet.post("/api/pull", body, headers: ["X-Herd-Node": "nope"]).status == 404)
    }

    /// Control counts pulls across the whole router: one the dashboard
    /// started stops a client's pull of the same model through the proxy, and
    /// the other way round; a pull that names another node is the operator
    /// wanting it on both, and goes.
    @Test func aPullUnderWayFromTheDashboardOrAProxyIsNotStartedTwice() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let body = #"{"model":"llama3:8b"}"#
        // The dashboard pulls llama3:8b to node-b (B streams a line every 150 ms).
        let dashboard = try RawClient(port: fleet.controlPort, timeoutSeconds: 20)
        dashboard.send("POST /api/v1/nodes/node-b/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("B", path: "/api/pull") == 1 })
        // A client's pull of the same model through the proxy, to node-b or unnamed: refused by control's count.
        let unnamed = fleet.post("/api/pull", body)
        #expect(unnamed.status == 409 && unnamed.text.contains("node-b"), "\(unnamed.status) \(unnamed.text)")
        let same = fleet.post("/api/pull", body, headers: ["X-Herd-Node": "node-b"])
        #expect(same.status == 409, "\(same.status) \(same.text)")
        // Named to the other node: allowed while the first runs.
        let other = fleet.post("/api/pull", #"{"model":"llama3:8b","stream":false}"#, headers: ["X-Herd-Node": "node-a"])
        #expect(other.status == 200, "\(other.status) \(other.text)")
        #expect(fleet.backendRequests("B", path: "/api/pull") == 1)
        #expect(try dashboard.readResponse().status == 200)
        // Over: the claim is gone, and now the proxy's pull holds it against the dashboard.
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 20)
        client.send("POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Herd-Node: node-b\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("B", path: "/api/pull") == 2 })
        let fromDashboard = fleet.request("POST", "/api/v1/nodes/node-b/pull", body: body, headers: ["Content-Type": "application/json"], port: fleet.controlPort)
        #expect(fromDashboard.status == 409 && fromDashboard.text.contains("already under way"), "\(fromDashboard.status) \(fromDashboard.text)")
        #expect(try client.readResponse().status == 200)
        #expect(waitUntil(seconds: 5) {
            fleet.request("POST", "/api/v1/nodes/node-b/pull", body: #"{"model":"llama3:8b"}"#, headers: [:], port: fleet.controlPort).status == 200
        }, "the proxy's claim ends with its pull")
    }

    @Test func deleteCopyAndCreateReachTheNodeThatHasTheModel() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let copy = fleet.post("/api/copy", #"{"source":"mistral:7b","destination":"my-mistral"}"#)
        #expect(copy.status == 200 && copy.header("X-Herd-Node") == "node-b", "\(copy.status) \(copy.text)")
        #expect(waitUntil(seconds: 10) { Self.listed(fleet, "my-mistral") }, "the copy is in the fleet after the next heartbeat")
        let delete = fleet.request("DELETE", "/api/delete", body: #"{"model":"my-mistral"}"#, headers: [:], port: fleet.proxyPort)
        #expect(delete.status == 200 && delete.header("X-Herd-Node") == "node-b")
        #expect(waitUntil(seconds: 10) { !Self.listed(fleet, "my-mistral") })
        let missing = fleet.request("DELETE", "/api/delete", body: #"{"model":"nope:1b"}"#, headers: [:], port: fleet.proxyPort)
        #expect(missing.status == 404)
        #expect(try JSONValue.parse(missing.body)["error"] != nil)
        // On several nodes, a delete must name one.
        _ = fleet.post("/api/copy", #"{"source":"llama3:8b","destination":"twice"}"#)
        _ = fleet.post("/api/copy", #"{"source":"mistral:7b","destination":"twice"}"#)
        // (Push follows the same rule and changes nothing here: it tells when the proxy sees both copies.)
        #expect(waitUntil(seconds: 10) { fleet.post("/api/push", #"{"model":"twice","stream":false}"#).status == 400 })
        let ambiguous = fleet.request("DELETE", "/api/delete", body: #"{"model":"twice"}"#, headers: [:], port: fleet.proxyPort)
        #expect(ambiguous.status == 400 && ambiguous.text.contains("X-Herd-Node"), "\(ambiguous.text)")
        #expect(fleet.request("DELETE", "/api/delete", body: #"{"model":"twice"}"#, headers: ["X-Herd-Node": "node-a"], port: fleet.proxyPort).status == 200)
        // Blobs then create land on the same node.
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        #expect(fleet.request("HEAD", "/api/blobs/\(digest)", body: nil, headers: [:], port: fleet.proxyPort).status == 404)
        let upload = fleet.post("/api/blobs/\(digest)", "GGUF")
        #expect(upload.status == 201)
        #expect(fleet.request("HEAD", "/api/blobs/\(digest)", body: nil, headers: [:], port: fleet.proxyPort).status == 200)
        let create = fleet.post("/api/create", #"{"model":"made","files":{"m.gguf":"\#(digest)"},"stream":false}"#)
        #expect(create.status == 200 && create.header("X-Herd-Node") == upload.header("X-Herd-Node"))
        #expect(fleet.request("GET", "/api/pull", body: nil, headers: [:], port: fleet.proxyPort).status == 405)
    }

    @Test func withAFleetKeyManagementNeedsIt() throws {
        let key = "admin-test-key-0123456789"
        let fleet = try Self.fleet(control: ["--fleet-key", key], nodeExtra: ["--fleet-key", key])
        defer { fleet.shutdown() }
        let refused = fleet.post("/api/pull", #"{"model":"qwen:1b","stream":false}"#)
        #expect(refused.status == 401)
        #expect(try JSONValue.parse(refused.body)["error"]?.stringValue?.contains("fleet key") == true)
        #expect(fleet.post("/api/pull", #"{"model":"qwen:1b","stream":false}"#, headers: ["Authorization": "Bearer wrong-key-0123456789"]).status == 401)
        #expect(fleet.post("/api/pull", #"{"model":"qwen:1b","stream":false}"#, headers: ["Authorization": "Bearer \(key)"]).status == 200)
        #expect(fleet.post("/api/pull", #"{"model":"qwen:2b","stream":false}"#, headers: ["x-api-key": key]).status == 200)
        // Inference needs no key (the fleet key guards the fleet, not its use).
        #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200)
    }
}
