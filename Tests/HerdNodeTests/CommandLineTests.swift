import HerdShared
import HerdTestSupport
import Testing

/// The `herd-node` binary's command line, as a user runs it.
@Suite struct CommandLineTests {
    @Test func versionPrintsTheRelease() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-node"), ["--version"])
        #expect(result.status == 0)
        #expect(result.output.trimmingSuffixNewline == HerdVersion.current)
    }

    @Test func helpListsTheFlags() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-node"), ["--help"])
        #expect(result.status == 0)
        #expect(result.output.contains("--control"))
        #expect(result.output.contains("HERD_"))
    }

    @Test func unknownFlagFailsWithUsage() {
        let result = ProcessRunner.run(ProcessRunner.executable("herd-node"), ["--no-such-flag"])
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
