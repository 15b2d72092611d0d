import Glibc
import HerdJSON
import HerdTestSupport
import HerdWire
import Testing
@testable import herd_node

/// The owner's week: the 168-hour model, its store, and what the node reports.
@Suite struct CapacityTests {
    @Test func hoursFoldIntoTheirSlotAndOldWeeksDecay() {
        var model = CapacityModel()
        let monday9 = CapacityModel.slot(weekday: 1, hour: 9)
        #expect(monday9 == 33)
        #expect(model.availability(slot: monday9, minuteOfHour: 0) == nil, "nothing known yet")
        // Week 1, Monday 9–10: the owner uses 80 % of the CPU and 6 GB.
        for _ in 0..<10 { model.add(slot: monday9, ownerCPU: 0.8, ownerMemoryBytes: 6e9, inMeeting: false) }
        #expect(model.add(slot: monday9 + 1, ownerCPU: 0, ownerMemoryBytes: 0, inMeeting: false) == monday9, "the hour ended: folded")
        #expect(abs((model.learned[monday9]?.cpu ?? 0) - 0.8) < 1e-9 && model.learned[monday9]?.weeks == 1)
        #expect(abs((model.availability(slot: monday9, minuteOfHour: 0) ?? 0) - 0.2) < 1e-9)
        // Week 2 the owner is away at that hour: the slot moves 30 % of the way.
        model.fold()
        for _ in 0..<10 { model.add(slot: monday9, ownerCPU: 0, ownerMemoryBytes: 0, inMeeting: false) }
        model.fold()
        #expect(abs((model.learned[monday9]?.cpu ?? 0) - 0.56) < 1e-9 && model.learned[monday9]?.weeks == 2)
        #expect(model.learnedHours == 2, "Monday 9 and Monday 10")
    }

    @Test func nowCountsAtOnceAndMeetingsAreBusy() {
        var model = CapacityModel(learned: [CapacityModel.Slot](repeating: CapacityModel.Slot(cpu: 0, memoryBytes: 0, weeks: 3), count: 168))
        // Usually idle at this hour, but a call started: at least half busy, a quarter of the blend at minute 0.
        model.add(slot: 5, ownerCPU: 0.1, ownerMemoryBytes: 0, inMeeting: true)
        #expect(abs((model.availability(slot: 5, minuteOfHour: 0) ?? 0) - 0.875) < 1e-9)
        #expect(abs((model.availability(slot: 5, minuteOfHour: 60) ?? 0) - 0.5) < 1e-9, "an hour in, now is all that counts")
    }

    @Test func theMemoryCeilingLeavesTheOwnersShare() {
        var slots = [CapacityModel.Slot?](repeating: nil, count: 168)
        slots[7] = CapacityModel.Slot(cpu: 0.2, memoryBytes: 10e9, weeks: 2)
        let model = CapacityModel(learned: slots)
        #expect(model.memoryCeiling(slot: 7, totalBytes: 32_000_000_000, ownerNowBytes: 4e9, freeNow: 8_000_000_000) == 22_000_000_000)
        #expect(model.memoryCeiling(slot: 7, totalBytes: 32_000_000_000, ownerNowBytes: 20e9, freeNow: 8_000_000_000) == 12_000_000_000,
                "the owner uses more now than usual: now counts")
        #expect(model.memoryCeiling(slot: 8, totalBytes: 32_000_000_000, ownerNowBytes: 30e9, freeNow: 8_000_000_000) == 8_000_000_000,
                "never below what is free")
    }

    @Test func theWeekSurvivesARestartInSQLite() throws {
        let folder = temporaryDirectory("herd-capacity")
        defer { removeTemporaryDirectory(folder) }
        let path = folder + "/capacity.db"
        let store = try CapacityStore(path: path)
        try store.save(slot: 33, CapacityModel.Slot(cpu: 0.4, memoryBytes: 3e9, weeks: 2), at: 1)
        try store.save(slot: 33, CapacityModel.Slot(cpu: 0.5, memoryBytes: 4e9, weeks: 3), at: 2)
        let loaded = try CapacityStore(path: path).load()
        #expect(loaded[33] == CapacityModel.Slot(cpu: 0.5, memoryBytes: 4e9, weeks: 3))
        #expect(loaded.compactMap { $0 }.count == 1)
    }

    @Test func modelServersAreToldApartFromTheOwner() {
        #expect(LinuxParsers.isModelServer(comm: "ollama\n") && LinuxParsers.isModelServer(comm: "llama-server\n"))
        #expect(!LinuxParsers.isModelServer(comm: "firefox\n"))
        let stat = "4242 (ollama runner) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 0 0 20 0 12 0 100 1000 500"
        #expect(LinuxParsers.processTicks(stat) == 1750, "utime 1500 + stime 250, a name with a space")
        #expect(LinuxParsers.processTicks("garbage") == nil)
    }

    @Test func aHeartbeatWithCapacityIsValidatedAndRoundTrips() throws {
        var heartbeat = Heartbeat(nodeID: "n")
        heartbeat.capacity = Heartbeat.Capacity(availability: 0.75, memoryCeilingBytes: 8_000_000_000, learnedHours: 12)
        var body: [UInt8] = []
        heartbeat.json.write(to: &body)
        #expect(try Heartbeat(json: try JSONValue.parse(body)).capacity == heartbeat.capacity)
        let bad = #"{"schema":1,"node_id":"n","capacity":{"availability":1.5,"memory_ceiling_bytes":1}}"#
        #expect(throws: JSONFieldError.self) { try Heartbeat(json: try JSONValue.parse(Array(bad.utf8))) }
    }
}

/// herd-node learns by default and the router sees it.
@Suite(.serialized) struct CapacityProcessTests {
    @Test func theNodeReportsCapacityAndKeepsItsWeek() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "m:1b", "--loaded", "m:1b"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        let reported = waitUntil(seconds: 15) {
            let nodes = (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? []
            return nodes.first?["capacity"]?["availability"]?.doubleValue != nil
        }
        #expect(reported, "\(fleet.getControl("/api/fleet").text)")
        let capacity = (try JSONValue.parse(fleet.getControl("/api/fleet").body))["nodes"]?.arrayValue?.first?["capacity"]
        #expect((capacity?["availability"]?.doubleValue).map { (0...1).contains($0) } == true)
        #expect((capacity?["memory_ceiling_bytes"]?.intValue ?? 0) > 0)
        #expect(access(fleet.directory + "/node-node-a/capacity.db", F_OK) == 0, "the week is kept in SQLite")
        #expect(fleet.nodes["node-a"]!.output.contains("capacity learning:"))
    }
}
