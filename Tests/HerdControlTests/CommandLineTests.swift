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
}
