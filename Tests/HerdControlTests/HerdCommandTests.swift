import HerdJSON
import HerdTestSupport
import Testing

/// `herd`, the one command: it runs the binaries beside it with the rest of
/// its command line — the router in the foreground, its status, its keys.
@Suite(.serialized) struct HerdCommandTests {
    static var herd: String { ProcessRunner.executable("herd") }

    @Test func itsManualAndVersion() {
        let help = ProcessRunner.run(Self.herd, ["help"])
        #expect(help.status == 0 && help.output.contains("herd node [FLAGS]") && help.output.contains("herd keys COMMAND"), "\(help.output)")
        let version = ProcessRunner.run(Self.herd, ["--version"])
        #expect(version.status == 0 && version.output.split(separator: ".").count == 3, "\(version.output)")
        let unknown = ProcessRunner.run(Self.herd, ["frobnicate"])
        #expect(unknown.status == 64 && unknown.output.contains("no command 'frobnicate'"))
        let nodeHelp = ProcessRunner.run(Self.herd, ["help", "node"])
        #expect(nodeHelp.status == 0 && nodeHelp.output.contains("--ollama"), "herd help node is herd-node --help")
        // Each binary's --help reads like a manual page: what it does, its files, examples, where to read on.
        for (binary, words) in [("herd-control", ["DESCRIPTION", "COMMANDS", "ENVIRONMENT", "FILES", "herd.db", "EXAMPLES", "SEE ALSO"]),
                                ("herd-node", ["DESCRIPTION", "FILES", "capacity.db", "EXAMPLES", "SEE ALSO"]),
                                ("herd-proxy", ["DESCRIPTION", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"])] {
            let help = ProcessRunner.run(ProcessRunner.executable(binary), ["--help"])
            #expect(help.status == 0 && words.allSatisfy { help.output.contains($0) }, "\(binary) --help: \(help.output)")
        }
        let benchmarkHelp = ProcessRunner.run(Self.herd, ["help", "benchmark"])
        #expect(benchmarkHelp.status == 0 && benchmarkHelp.output.contains("knee") && benchmarkHelp.output.contains("--dry-run"), "\(benchmarkHelp.output)")
    }

    @Test func herdServeRunsTheRouterAndHerdKeysAndStatusTalkToIt() throws {
        let directory = temporaryDirectory("herd-serve")
        defer { removeTemporaryDirectory(directory) }
        let port = freePort(), proxyPort = freePort()
        let router = try RunningProcess(name: "herd", path: Self.herd,
                                        arguments: ["serve", "--port", String(port), "--proxy-port", String(proxyPort), "--data-dir", directory + "/data",
                                                    "--no-mdns"], logDirectory: directory)
        defer { router.stop() }
        #expect(router.waitForOutput("listening on"), "\(router.output)")
        let fleet = TestFleet()
        #expect(waitUntil(seconds: 10) { fleet.request("GET", "/", body: nil, headers: [:], port: proxyPort).status == 200 }, "the proxies answer")
        let made = ProcessRunner.run(Self.herd, ["keys", "create", "laptop", "--rpm", "30", "--port", String(port)])
        #expect(made.status == 0 && made.output.contains("herd_"), "\(made.output)")
        let listed = ProcessRunner.run(Self.herd, ["keys", "list", "--port", String(port)])
        #expect(listed.status == 0 && listed.output.contains("laptop") && listed.output.contains("rpm=30"), "\(listed.output)")
        let status = ProcessRunner.run(Self.herd, ["status", "--port", String(port)])
        #expect(status.status == 0 && status.output.contains("nodes: 0"), "\(status.output)")
    }
}
