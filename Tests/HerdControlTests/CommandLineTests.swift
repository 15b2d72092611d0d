import HerdTestSupport
import Testing

/// The `herd-control` binary's command line, as a user runs it.
@Suite struct CommandLineTests {
    @Test func versionPrintsTheRelease() {
        let check = CommandLineChecks.version("herd-control")
        #expect(check.ok, "\(check.output)")
    }

    @Test func helpListsTheFlags() {
        let check = CommandLineChecks.help("herd-control", lists: "--proxies")
        #expect(check.ok, "\(check.output)")
    }

    @Test func unknownFlagFailsWithUsage() {
        let check = CommandLineChecks.unknownFlag("herd-control")
        #expect(check.ok, "\(check.output)")
    }

    @Test func statusPrintsTheFleetOfARunningControl() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b,qwen:7b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        let status = ProcessRunner.run(ProcessRunner.executable("herd-control"), ["status", "--port", String(fleet.controlPort)])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains(": ok, 1 proxy"), "\(status.output)")
        #expect(status.output.contains("nodes: 1 (1 online)"))
        let row = status.output.split(separator: "\n").first { $0.contains("node-a") }
        #expect(row?.contains("online") == true && row?.contains("llama3:8b") == true, "\(status.output)")
        let json = ProcessRunner.run(ProcessRunner.executable("herd-control"), ["status", "--json", "--port", String(fleet.controlPort)])
        #expect(json.output.contains("\"queue_length\""))
        let away = ProcessRunner.run(ProcessRunner.executable("herd-control"), ["status", "--port", String(freePort())])
        #expect(away.status != 0 && away.output.contains("not answering"), "a clear error: \(away.output)")
    }
}
