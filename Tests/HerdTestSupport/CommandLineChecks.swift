import HerdBounds
import HerdRuntime

/// The checks every herd binary's command line passes (each test target runs
/// them on its own binary).
public enum CommandLineChecks {
    /// `--version` prints the release and exits 0.
    public static func version(_ binary: String) -> (ok: Bool, output: String) {
        let result = ProcessRunner.run(ProcessRunner.executable(binary), ["--version"])
        var output = result.output
        while output.hasSuffix("\n") { output.removeLast() }
        return (result.status == 0 && output == HerdVersion.current, result.output)
    }

    /// `--help` exits 0 and lists `flag` and the HERD_* environment twins.
    public static func help(_ binary: String, lists flag: String) -> (ok: Bool, output: String) {
        let result = ProcessRunner.run(ProcessRunner.executable(binary), ["--help"])
        return (result.status == 0 && result.output.contains(flag) && result.output.contains("HERD_"), result.output)
    }

    /// An unknown flag fails with a usage message.
    public static func unknownFlag(_ binary: String) -> (ok: Bool, output: String) {
        let result = ProcessRunner.run(ProcessRunner.executable(binary), ["--no-such-flag"])
        return (result.status != 0 && result.output.contains("Usage"), result.output)
    }
}
