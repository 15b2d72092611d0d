import ArgumentParser
import HerdShared

/// `herd-proxy`: the data plane. Serves the Ollama and OpenAI APIs on `:11435`
/// and relays each request to the node herd-control chooses.
@main
struct HerdProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-proxy",
        abstract: "herd's data plane: one Ollama/OpenAI endpoint in front of a fleet.",
        discussion: "Each flag also reads an HERD_* environment variable (e.g. HERD_PORT).",
        version: HerdVersion.current)

    @Option(help: "Address to listen on (HERD_HOST).")
    var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

    @Option(help: "Port for client traffic (HERD_PORT).")
    var port: Int = Environment.int("HERD_PORT") ?? 11435

    @Option(help: "herd-control's Unix socket (HERD_CONTROL_SOCKET); default <data-dir>/control.sock.")
    var controlSocket: String?

    func run() throws {
        let socket = controlSocket ?? Environment.string("HERD_CONTROL_SOCKET") ?? (DataDirectory.resolve() + "/control.sock")
        throw ValidationError("herd-proxy request routing is not implemented yet (would listen on \(host):\(port), control at \(socket))")
    }
}
