import HerdTestSupport
import Testing

/// The `herd-node` binary's command line, as a user runs it.
@Suite struct CommandLineTests {
    @Test func versionPrintsTheRelease() {
        let check = CommandLineChecks.version("herd-node")
        #expect(check.ok, "\(check.output)")
    }

    @Test func helpListsTheFlags() {
        let check = CommandLineChecks.help("herd-node", lists: "--control")
        #expect(check.ok, "\(check.output)")
    }

    @Test func unknownFlagFailsWithUsage() {
        let check = CommandLineChecks.unknownFlag("herd-node")
        #expect(check.ok, "\(check.output)")
    }
}
