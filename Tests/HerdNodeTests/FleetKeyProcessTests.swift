import Glibc
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdWire
import HerdTestSupport
import Testing

/// The fleet key between real herd-control and herd-node processes.
@Suite struct FleetKeyProcessTests {
    static let key = "test-fleet-key-0123456789"

    func fleetJSONNodes(_ fleet: TestFleet) -> [String] {
        ((try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
    }

    @Test func onlyNodesWithTheKeyJoin() throws {
        let fleet = TestFleet(controlArguments: ["--fleet-key", Self.key])
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "m:1b"])
        try fleet.startControl()
        #expect(!fleet.control!.output.contains("no fleet key"))
        try fleet.addNode("unsigned", backend: "A")
        try fleet.addNode("wrong", backend: "A", extra: ["--fleet-key", "another-key-of-enough-length"])
        try fleet.addNode("signed", backend: "A", extra: ["--fleet-key", Self.key])
        try fleet.waitForNodes(1)
        #expect(fleet.nodes["unsigned"]!.waitForOutput("401"))
        #expect(fleet.nodes["wrong"]!.waitForOutput("fleet keys differ"))
        // Both were refused (their own logs say so); only the signed node is in the fleet.
        #expect(fleetJSONNodes(fleet) == ["signed"])
        #expect(fleet.post("/api/chat", #"{"model":"m:1b","stream":false}"#).header("X-Herd-Node") == "signed")
    }

    @Test func replayedAndStaleHeartbeatsAreRefused() throws {
        let fleet = TestFleet(controlArguments: ["--fleet-key", Self.key])
        defer { fleet.shutdown() }
        try fleet.startControl()
        let key = try #require(FleetKey(Self.key))
        let body = #"{"schema":1,"node_id":"forged","backends":[]}"#
        let now = Int(EventLoop.wallClockMilliseconds())
        var headers: [String: String] = [:]
        for (name, value) in key.headers(method: "POST", path: "/heartbeat", body: Array(body.utf8), now: now) { headers[name] = value }
        #expect(fleet.request("POST", "/heartbeat", body: body, headers: headers, port: fleet.controlPort).status == 200)
        let replay = fleet.request("POST", "/heartbeat", body: body, headers: headers, port: fleet.controlPort)
        #expect(replay.status == 401)
        #expect(replay.text.contains("already used"))
        var stale: [String: String] = [:]
        for (name, value) in key.headers(method: "POST", path: "/heartbeat", body: Array(body.utf8), now: now - 120_000) { stale[name] = value }
        let old = fleet.request("POST", "/heartbeat", body: body, headers: stale, port: fleet.controlPort)
        #expect(old.status == 401)
        #expect(old.text.contains("clocks"))
    }

    /// `systemctl reload herd-control` (SIGHUP) rotates the key from the file,
    /// without a restart; before, SIGHUP killed control.
    @Test func sighupReloadsTheFleetKeyFile() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let key = FleetKey(Self.key)!, next = FleetKey("the-next-fleet-key-9876543210")!
        _ = mkdir(fleet.dataDirectory, 0o700)
        let write = { (text: String) in
            let file = fopen(fleet.dataDirectory + "/fleet.key", "w")
            fputs(text + "\n", file)
            fclose(file)
        }
        write(Self.key)
        try fleet.startControl()
        let post = { (k: FleetKey, id: String) -> Int in
            let body = #"{"schema":1,"node_id":"\#(id)","backends":[]}"#
            var headers: [String: String] = [:]
            for (name, value) in k.headers(method: "POST", path: "/heartbeat", body: Array(body.utf8), now: Int(EventLoop.wallClockMilliseconds())) {
                headers[name] = value
            }
            return fleet.request("POST", "/heartbeat", body: body, headers: headers, port: fleet.controlPort).status
        }
        #expect(post(key, "a") == 200 && post(next, "b") == 401)
        write("the-next-fleet-key-9876543210")
        fleet.control!.kill(signal: SIGHUP)
        #expect(fleet.control!.waitForOutput("fleet key reloaded"), "\(fleet.control!.output)")
        #expect(fleet.control!.isRunning)
        #expect(post(next, "c") == 200 && post(key, "d") == 401, "the new key, and only it")
        #expect(fleet.get("/").status == 200, "the proxy kept serving")
    }

    @Test func withoutAKeyControlWarnsThatAnyoneCanJoin() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.startControl(waitForProxy: false)
        #expect(fleet.control!.output.contains("any machine that can reach"))
    }

    @Test func shortKeysAreRefusedAtStartup() {
        let control = ProcessRunner.run(ProcessRunner.executable("herd-control"), ["--fleet-key", "short"])
        #expect(control.status != 0)
        #expect(control.output.contains("at least 16"))
        let node = ProcessRunner.run(ProcessRunner.executable("herd-node"), ["--control", "http://127.0.0.1:1", "--fleet-key", "short"])
        #expect(node.status != 0)
        #expect(node.output.contains("at least 16"))
    }
}
