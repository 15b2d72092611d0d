import Glibc
import HerdBounds

// `herd`: the one command a person remembers. It runs the binaries that do
// the work (they stay separate: systemd starts them directly), found beside
// this one, with the rest of the command line:
//
//   herd [serve] [flags]     herd-control [flags]: the router in the foreground (control and its proxies)
//   herd node [flags]        herd-node [flags]: the agent on a machine that runs a model server
//   herd status [flags]      herd-control status: the fleet, its queue and health
//   herd keys …              herd-control keys: client keys
//   herd benchmark …         herd-control benchmark: each node:model measured through the router
//   herd proxy [flags]       herd-proxy [flags] (systemd runs more of them; rarely by hand)
//   herd help [COMMAND]      this text, or the command's own --help

let manual = """
    herd — one endpoint for a fleet of model servers (Ollama, llama.cpp, vLLM, …).

    USAGE
      herd [serve] [FLAGS]   Run the router in the foreground: herd-control, which starts its herd-proxy
                             children. Clients point at :11435 as at one Ollama; the dashboard is :11436.
      herd node [FLAGS]      Run the agent on a machine with a model server (finds the router by mDNS).
      herd status            Print the fleet, the queue and the router's health.
      herd keys COMMAND      Make, list, change and revoke client keys (create, list, show, update, revoke).
      herd benchmark         Measure each node:model's throughput through the router, one at a time; routing
                             starts from the figures (--models, --nodes, --duration 60s, --dry-run).
      herd proxy [FLAGS]     Run one herd-proxy (systemd runs them; rarely by hand).
      herd help [COMMAND]    This text, or COMMAND's flags (herd help node = herd-node --help).
      herd --version

    EXAMPLES
      herd                                   the router on 127.0.0.1 (add --host 0.0.0.0 for the network)
      herd node                              on each machine that runs Ollama
      herd keys create alice --rpm 60        a key for alice, at most 60 requests a minute
      herd status

    Every flag has an HERD_* environment twin (--proxy-port is HERD_PROXY_PORT). Installed as a
    service, systemd runs herd-control and herd-node directly: systemctl enable --now herd-control.

    """

/// The directory this executable is in (its siblings are the binaries it runs).
func ownDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

/// Replaces this process with `binary` (a sibling) and `arguments`; returns only on failure.
func run(_ binary: String, _ arguments: [String]) -> Never {
    let path = ownDirectory() + "/" + binary
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    execv(path, argv)
    let reason = String(cString: strerror(errno))
    fputsError("herd: cannot run \(path): \(reason) (is herd installed whole? herd-control, herd-proxy and herd-node sit beside herd)\n")
    exit(127)
}

func fputsError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let commands = ["serve": "herd-control", "node": "herd-node", "proxy": "herd-proxy"]
switch arguments.first {
case nil:
    run("herd-control", [])
case "help"?, "-h"?, "--help"?:
    if arguments.first == "help", arguments.count > 1 {
        let topic = arguments[1]
        if let binary = commands[topic] { run(binary, ["--help"]) }
        if topic == "status" || topic == "keys" || topic == "benchmark" { run("herd-control", [topic, "--help"]) }
        fputsError("herd: no command '\(topic)'; herd help lists them\n")
        exit(64)
    }
    print(manual, terminator: "")
case "--version"?, "version"?:
    print(HerdVersion.current)
case let command? where commands[command] != nil:
    run(commands[command]!, Array(arguments.dropFirst()))
case "status"?, "keys"?, "benchmark"?:
    run("herd-control", arguments)
case let first? where first.hasPrefix("-"):
    // Flags without a command: the router's (herd --host 0.0.0.0 = herd serve --host 0.0.0.0).
    run("herd-control", arguments)
case let other?:
    fputsError("herd: no command '\(other)'\n\n" + manual)
    exit(64)
}
