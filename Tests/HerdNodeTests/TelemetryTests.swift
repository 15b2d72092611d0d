import Glibc
import HerdWire
import Testing
@testable import herd_node

/// Telemetry parsers against fixture trees (Tests/HerdNodeTests/Fixtures) and text.
@Suite struct TelemetryTests {
    static let fixtures: String = {
        let file = "\(#filePath)"
        return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
    }()

    func read(_ name: String, cpuBusy: Double = 0.2) -> TelemetryReader.Reading {
        var reader = TelemetryReader()
        reader.root = Self.fixtures + "/" + name
        return reader.read(cpuBusy: cpuBusy, slow: true, previous: nil)
    }

    @Test func workstationWithTwoNvidiaGPUs() {
        let r = read("workstation-nvidia")
        let t = r.telemetry
        #expect(r.memoryTotal == 65_760_432 * 1024)
        #expect(r.memoryAvailable == 12_345_678 * 1024)
        #expect(t.load1 == 3.52)
        #expect(t.swapTotalBytes == 8_388_604 * 1024 && t.swapFreeBytes == 6_291_452 * 1024)
        #expect(t.pressureStallPercent == 12.5)
        #expect(t.pressure == .high, "PSI some avg10 12.5 %")
        #expect(t.gpus.count == 2)
        #expect(t.gpus[0].name == "NVIDIA GeForce RTX 4090")
        #expect(t.gpus[0].memoryTotalBytes == 24_564 * 1_048_576)
        #expect(t.gpus[0].utilization == 0.87)
        #expect(t.gpus[0].temperatureCelsius == 71)
        #expect(t.gpus[0].powerWatts == 320.55)
        #expect(t.gpus[1].powerWatts == nil, "[N/A]")
        #expect(!t.gpus[1].throttled, "0x1 is the idle reason, not throttling")
        #expect(t.maxTemperatureCelsius == 88)
        #expect(t.thermal == .serious, "88 °C")
        #expect(!t.cpuThrottled, "running at 92 % of max frequency")
        #expect(t.microphoneInUse, "a capture stream is RUNNING")
        #expect(!t.cameraInUse, "no /dev/video* in the fixture")
        #expect(t.inMeeting)
    }

    @Test func laptopWithAnAMDGPUAndNoPSI() {
        let t = read("laptop-amd").telemetry
        #expect(t.pressureStallPercent == nil)
        #expect(t.pressure == .high, "1.5 of 16 GB available, no PSI")
        #expect(t.gpus == [Telemetry.GPU(vendor: "amd", name: "card0", memoryUsedBytes: 2_147_483_648, memoryTotalBytes: 8_589_934_592,
                                         utilization: 0.35, temperatureCelsius: 52)])
        #expect(t.thermal == .nominal)
        #expect(!t.microphoneInUse)
    }

    @Test func malformedAndMissingFilesGiveUnknownsNotCrashes() {
        let r = read("malformed")
        #expect(r.memoryTotal == 0)
        #expect(r.telemetry.load1 == 0)
        #expect(r.telemetry.pressureStallPercent == nil)
        #expect(r.telemetry.gpus.isEmpty, "nvidia-smi failed")
        #expect(r.telemetry.maxTemperatureCelsius == nil)
        let nothing = read("no-such-machine")
        #expect(nothing.telemetry == Telemetry())
    }

    /// Found under attack: a hung nvidia-smi stopped every heartbeat. It is
    /// killed at the command deadline and the reading goes on without GPUs.
    @Test func aHungNvidiaSMIIsKilledAtItsDeadline() throws {
        var template = Array("/tmp/herd-hung-smi-XXXXXX".utf8CString)
        let root = String(cString: try #require(mkdtemp(&template)))
        let script = root + "/nvidia-smi"
        defer {
            unlink(script)
            rmdir(root)
        }
        let text = Array("#!/bin/sh\nexec sleep 600\n".utf8)
        let fd = open(script, O_WRONLY | O_CREAT | O_TRUNC, 0o755)
        #expect(fd >= 0 && write(fd, text, text.count) == text.count)
        close(fd)
        var reader = TelemetryReader()
        reader.root = root
        reader.nvidiaSMI = "/nvidia-smi"
        reader.commandTimeoutMilliseconds = 200
        let reading = reader.read(cpuBusy: 0, slow: true, previous: nil)
        #expect(reading.telemetry.gpus.isEmpty)
    }

    @Test func meetingDetectionCanBeSwitchedOff() {
        var reader = TelemetryReader()
        reader.root = Self.fixtures + "/workstation-nvidia"
        reader.meetingDetection = false
        #expect(!reader.read(cpuBusy: 0, slow: true, previous: nil).telemetry.microphoneInUse)
    }

    @Test func throttledCPUIsSerious() {
        let (state, throttled) = LinuxParsers.thermalState(maxTemperature: 60, frequencyRatio: 0.4, cpuBusy: 0.9, gpus: [])
        #expect(throttled && state == .serious)
        let (idle, notThrottled) = LinuxParsers.thermalState(maxTemperature: 60, frequencyRatio: 0.4, cpuBusy: 0.1, gpus: [])
        #expect(!notThrottled && idle == .nominal, "a slow clock while idle is power saving")
        #expect(LinuxParsers.thermalState(maxTemperature: 97, frequencyRatio: nil, cpuBusy: 0, gpus: []).0 == .critical)
    }

    @Test func parsersOnText() {
        #expect(LinuxParsers.pressure(stall: 0.2, total: 1, available: 1) == .low)
        #expect(LinuxParsers.pressure(stall: 45, total: 1, available: 1) == .critical)
        #expect(LinuxParsers.pressure(stall: nil, total: 100, available: 3) == .critical)
        #expect(LinuxParsers.nvidiaSMI("garbage\n,,,\nGPU, x, y, z") == [])
        #expect(LinuxParsers.nvidiaSMI("A100, 100, 81920, 50, 60, 250, 0x0000000000000020").first?.throttled == true)
        #expect(LinuxParsers.holdsCamera(["/dev/pts/0", "socket:[123]", "/dev/video0"]))
        #expect(!LinuxParsers.holdsCamera(["/dev/null"]))
        #expect(!LinuxParsers.captureRunning("state: PREPARED\n"))
        #expect(LinuxParsers.zoneTemperature("999999999") == nil)
        #expect(SystemSampler.parseCPU("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4") ?? (0, 0) == (1000, 850))
    }

    @Test func telemetryRoundTripsInTheHeartbeat() throws {
        var t = read("workstation-nvidia").telemetry
        t.cameraInUse = true
        let heartbeat = Heartbeat(nodeID: "n", telemetry: t)
        #expect(try Heartbeat(json: heartbeat.json).telemetry == t)
        // An older agent sends no telemetry: defaults.
        #expect(try Heartbeat(json: ["schema": 1, "node_id": "old"]).telemetry == Telemetry())
    }
}

@Suite struct DirectClientTests {
    /// /proc/net/tcp and tcp6 as the kernel prints them: established
    /// connections to Ollama's port 11434 (0x2CAA) from 192.168.1.77 and
    /// 127.0.0.1, a listening socket, and one to another port.
    @Test func establishedPeersOfAPort() {
        let tcp = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   997        0 1 1 0 100 0 0 10 0
               1: 0A01A8C0:2CAA 4D01A8C0:D431 01 00000000:00000000 00:00000000 00000000   997        0 2 1 0 20 4 30 10 -1
               2: 0100007F:2CAA 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   997        0 3 1 0 20 4 30 10 -1
               3: 0A01A8C0:0016 4E01A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1
               4: 0A01A8C0:2CAA 4D01A8C0:D432 01 00000000:00000000 00:00000000 00000000   997        0 5 1 0 20 4 30 10 -1
            """
        #expect(LinuxParsers.establishedPeers(tcp, localPort: 11434) == ["192.168.1.77", "127.0.0.1"])
        #expect(LinuxParsers.establishedPeers(tcp, localPort: 22) == ["192.168.1.78"])
        let tcp6 = """
              sl  local_address                         remote_address                        st tx_queue rx_queue
               0: 00000000000000000000000001000000:2CAA 00000000000000000000000001000000:A1B2 01 00000000:00000000
               1: 0000000000000000FFFF00000A01A8C0:2CAA 0000000000000000FFFF00004F01A8C0:A1B3 01 00000000:00000000
               2: B80D0120000000000000000001000000:2CAA B80D0120000000000000000002000000:A1B4 01 00000000:00000000
            """
        #expect(LinuxParsers.establishedPeers(tcp6, localPort: 11434) == ["::1", "192.168.1.79", "2001:db8:0:0:0:0:0:2"])
        #expect(LinuxParsers.establishedPeers(nil, localPort: 11434).isEmpty)
        #expect(LinuxParsers.establishedPeers("garbage\n1: zz:zz yy:yy 01", localPort: 11434).isEmpty)
    }
}
