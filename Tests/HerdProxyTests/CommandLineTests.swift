import HerdTestSupport
import Testing

/// The `herd-proxy` binary's command line, as a user runs it.
@Suite struct CommandLineTests {
    @Test func versionPrintsTheRelease() {
        let check = CommandLineChecks.version("herd-proxy")
        #expect(check.ok, "\(check.output)")
    }

    @Test func helpListsTheFlags() {
        let check = CommandLineChecks.help("herd-proxy", lists: "--port")
        #expect(check.ok, "\(check.output)")
    }

    @Test func unknownFlagFailsWithUsage() {
        let check = CommandLineChecks.unknownFlag("herd-proxy")
        #expect(check.ok, "\(check.output)")
    }
}
