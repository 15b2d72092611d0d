import Glibc
import HerdJSON
import HerdRuntime
import HerdTestSupport
import Testing

/// Zero-config discovery through the real (loopback-only) avahi-daemon.
@Suite(.serialized) struct DiscoveryTests {
    func registered(_ fleet: TestFleet, _ id: String) -> Bool {
        ((try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? [])
            .contains { $0["id"]?.stringValue == id && $0["status"]?.stringValue == "online" }
    }

    @Test func aNodeWithNoAddressFindsTheRouterAndFollowsItToANewPort() throws {
        let fleet = TestFleet()
        fleet.mdns = true
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "m:1b", "--loaded", "m:1b"])
        try fleet.startControl()
        #expect(fleet.control!.waitForOutput("announced as"), "\(fleet.control!.output)")
        try fleet.addNode("roaming", backend: "A", discover: true)
        #expect(waitUntil(seconds: 5) { registered(fleet, "roaming") }, "registered within 5 s\n\(fleet.logs)")
        #expect(fleet.nodes["roaming"]!.output.contains("found router"))
        #expect(fleet.post("/api/chat", #"{"model":"m:1b","stream":false}"#).header("X-Herd-Node") == "roaming")

        try fleet.restartControl(onNewPort: true)
        #expect(waitUntil(seconds: 10) { registered(fleet, "roaming") }, "the node followed the router to :\(fleet.controlPort)\n\(fleet.logs)")
        #expect(fleet.post("/api/chat", #"{"model":"m:1b","stream":false}"#).status == 200)
    }

    @Test func controlStartedBeforeDBusAnnouncesItselfOnceDBusIsUp() throws {
        // Found in a container / at boot: control that started before D-Bus
        // never announced itself, even after D-Bus and avahi-daemon came up.
        let fleet = TestFleet()
        fleet.mdns = true
        defer { fleet.shutdown() }
        let bus = fleet.directory + "/system_bus_socket"
        fleet.controlEnvironment = ["DBUS_SYSTEM_BUS_ADDRESS": "unix:path=\(bus)"]
        try fleet.addBackend("A", arguments: ["--models", "m:1b", "--loaded", "m:1b"])
        try fleet.startControl()
        #expect(fleet.control!.waitForOutput("mDNS unavailable"), "\(fleet.control!.output)")
        // D-Bus "comes up" at the address control was given.
        let system = Glibc.getenv("DBUS_SYSTEM_BUS_ADDRESS").map { String(cString: $0) }
            .flatMap { $0.hasPrefix("unix:path=") ? String($0.dropFirst("unix:path=".count)) : nil } ?? "/run/dbus/system_bus_socket"
        #expect(symlink(system, bus) == 0)
        #expect(fleet.control!.waitForOutput("announced as", seconds: 10), "\(fleet.control!.output)")
        try fleet.addNode("late", backend: "A", discover: true)
        #expect(waitUntil(seconds: 10) { registered(fleet, "late") }, "found by mDNS\n\(fleet.logs)")
    }

    @Test func aNodeIgnoresRoutersOfOtherFleets() throws {
        let fleet = TestFleet()
        fleet.mdns = true
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "m:1b"])
        try fleet.startControl()
        let stranger = try RunningProcess(name: "node-stranger", path: ProcessRunner.executable("herd-node"),
                                          arguments: ["--fleet-id", "no-such-fleet-\(getpid())", "--ollama", "http://127.0.0.1:\(fleet.backendPorts["A"]!)",
                                                      "--node-id", "stranger", "--interval", "0.3"], logDirectory: fleet.directory)
        defer { stranger.stop() }
        #expect(stranger.waitForOutput("none of fleet", seconds: 8), "\(stranger.output)")
        #expect(!registered(fleet, "stranger"))
    }
}
