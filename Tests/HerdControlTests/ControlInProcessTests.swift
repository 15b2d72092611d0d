import Glibc
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdTestSupport
import HerdWire
import Testing
@testable import herd_control

/// herd-control's parts in this process (`ControlParts`, as the binary builds
/// them), on a loop thread, with time on a `ManualClock`: heartbeats, the
/// fleet API, node status over time and the health checks, without
/// sleeping and without the binary.
final class ControlFixture: @unchecked Sendable {
    let thread: LoopThread
    let clock = ManualClock(now: 1_000_000)
    private(set) var parts: ControlParts!
    private(set) var port = 0
    let directory: String

    init(fleetKey: String? = nil) throws {
        directory = temporaryDirectory("herd-control-test")
        var options = ControlOptions()
        options.port = 0
        options.proxies = 0
        options.mdns = false
        options.dataDirectory = directory
        options.fleetKey = fleetKey
        thread = try LoopThread()
        let loop = thread.loop, clock = clock
        port = try thread.sync { [self] in
            parts = try ControlParts(options: options, loop: loop, log: Logger(label: "herd-control-test"), clock: clock)
            return try parts.listen().port
        }
    }

    func onLoop<T>(_ body: @escaping () throws -> T) throws -> T { try thread.sync(body) }

    /// `method path` against the API, with a JSON body and headers.
    func request(_ method: String, _ path: String, body: [UInt8] = [], headers: [String: String] = [:]) throws -> RawResponse {
        let client = try RawClient(port: port, timeoutSeconds: 10)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n"
        if method == "POST", headers["Content-Type"] == nil { head += "Content-Type: application/json\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        client.send(Array((head + "\r\n").utf8) + body)
        return try client.readResponse()
    }

    func heartbeat(_ id: String, model: String = "m:1b") throws -> RawResponse {
        let beat = Heartbeat(nodeID: id, memoryAvailableBytes: 8_000_000_000, backends: [
            Heartbeat.Backend(kind: .ollama, url: "http://127.0.0.1:1", address: "127.0.0.1:1", reachable: true,
                              models: [Heartbeat.Model(name: model)], loaded: [Heartbeat.LoadedModel(name: model)]),
        ])
        var body: [UInt8] = []
        beat.json.write(to: &body)
        return try request("POST", "/heartbeat", body: body)
    }

    func json(_ path: String) throws -> JSONValue { try JSONValue.parse(try request("GET", path).body) }

    func shutdown() {
        _ = try? thread.sync { [self] in
            parts.close()
            parts.flush()
        }
        thread.shutdown()
        removeTemporaryDirectory(directory)
    }
}

@Suite(.serialized) struct ControlInProcessTests {
    @Test func aNodeGoesDegradedThenOfflineAndTheCheckFiresInVirtualTime() throws {
        let control = try ControlFixture()
        defer { control.shutdown() }
        #expect(try control.heartbeat("a").status == 200)
        func status() throws -> String? { try control.json("/api/v1/nodes/a")["status"]?.stringValue }
        #expect(try status() == "online")
        // The registry's thresholds (6 s degraded, 15 s offline), on the manual clock.
        try control.onLoop { control.clock.advance(by: 6_001); control.parts.sweepNodes() }
        #expect(try status() == "degraded")
        try control.onLoop { control.clock.advance(by: 9_000); control.parts.sweepNodes(); control.parts.evaluateHealth() }
        #expect(try status() == "offline")
        let checks = try control.json("/api/v1/health")["checks"]?.arrayValue ?? []
        #expect(checks.contains { $0["id"]?.stringValue == "node_offline" && $0["state"]?.stringValue == "firing" })
        // It comes back with its next heartbeat; the check clears at the next evaluation.
        #expect(try control.heartbeat("a").status == 200)
        try control.onLoop { control.parts.evaluateHealth() }
        #expect(try status() == "online")
        let after = try control.json("/api/v1/health")["checks"]?.arrayValue ?? []
        #expect(after.contains { $0["id"]?.stringValue == "node_offline" && $0["state"]?.stringValue == "ok" })
        // /metrics and /health answer from the same parts.
        #expect(try control.request("GET", "/metrics").text.contains("herd_nodes"))
        #expect(try control.request("GET", "/health").status == 200)
    }

    @Test func theFleetKeyGuardsHeartbeatsAndActionsAndIsReplacedInPlace() throws {
        let key = "a-fleet-key-of-enough-length"
        let control = try ControlFixture(fleetKey: key)
        defer { control.shutdown() }
        #expect(try control.heartbeat("a").status == 401, "an unsigned heartbeat")
        #expect(try control.json("/api/v1/settings")["fleet_key"]?.stringValue == "set")
        let refused = try control.request("POST", "/api/v1/nodes/a/drain")
        #expect(refused.status == 401, "\(refused.status) \(refused.text)")
        // With the key gone from the gate (as SIGHUP does when the file is removed), both open.
        try control.onLoop { control.parts.gate.verifier = nil }
        #expect(try control.heartbeat("a").status == 200)
        #expect(try control.request("POST", "/api/v1/nodes/a/drain").status == 200)
        #expect(try control.json("/api/v1/nodes/a")["hold"]?.stringValue == "drain")
        // And back: a Bearer key opens an action, the wrong one does not.
        try control.onLoop { control.parts.gate.verifier = FleetKeyVerifier(key: FleetKey(key)!) }
        #expect(try control.request("POST", "/api/v1/nodes/a/resume", headers: ["Authorization": "Bearer wrong-key-wrong-key"]).status == 401)
        #expect(try control.request("POST", "/api/v1/nodes/a/resume", headers: ["Authorization": "Bearer \(key)"]).status == 200)
    }
}
