import HerdShared
import HerdTestSupport
import Testing

/// The `herd-proxy` binary's command line, as a user runs it.
@Suite struct CommandLineTests {
    @Test func versionPrintsTheRelease() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-proxy"), ["--version"])
        #expect(result.status == 0)
        #expect(result.output.trimmingSuffixNewline == HerdVersion.current)
    }

    @Test func helpListsTheFlags() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-proxy"), ["--help"])
        #expect(result.status == 0)
        #expect(result.output.contains("--port"))
        #expect(result.output.contains("HERD_"))
    }

    @Test func unknownFlagFailsWithUsage() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-proxy"), ["--no-such-flag"])
        #expect(result.status != 0)
        #expect(result.output.contains("Usage"))
    }
}

extension String {
    var trimmingSuffixNewline: String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
