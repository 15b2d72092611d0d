import ArgumentParser
import HerdShared

/// `herd-node`: the agent on each machine that serves models. Reports the
/// machine's and its backends' state to herd-control.
@main
struct HerdNodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-node",
        abstract: "herd's node agent: reports this machine and its model servers to the router.",
        discussion: "Each flag also reads an HERD_* environment variable (e.g. HERD_CONTROL).",
        version: HerdVersion.current)

    @Option(help: "herd-control's URL (HERD_CONTROL); found over mDNS when absent.")
    var control: String?

    @Option(help: "The local Ollama (HERD_OLLAMA).")
    var ollama: String = Environment.string("HERD_OLLAMA") ?? "http://127.0.0.1:11434"

    @Option(help: "An extra OpenAI-compatible backend as KIND=URL, e.g. openai=http://127.0.0.1:8080 (repeatable).")
    var backend: [String] = []

    @Option(help: "This node's id (HERD_NODE_ID); default: the host name.")
    var nodeId: String?

    @Option(help: "Fleet key to sign heartbeats with (HERD_FLEET_KEY).")
    var fleetKey: String?

    func run() throws {
        throw ValidationError("herd-node is not implemented yet (would report \(ollama))")
    }
}
