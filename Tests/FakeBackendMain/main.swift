import Glibc
import HerdFakeBackend
import HerdHTTP
import HerdRuntime

// herd-fake-backend: the scriptable fake Ollama/OpenAI server as a process, for
// whole-process tests and benchmarks.
//   herd-fake-backend [--host 127.0.0.1] [--port 0] [--name N] [--models a,b]
//                     [--loaded a] [--tokens N] [--token-delay-ms N]
//                     [--first-byte-delay-ms N] [--failure none|refuse|500|501|hang|reset:N] [--slots N]
// Prints "listening on HOST:PORT" once it accepts connections.

var configuration = FakeBackendConfiguration()
var host = "127.0.0.1"
var port = 0
var arguments = Array(CommandLine.arguments.dropFirst())
var loaded: [String]?
var vision: [String] = []
var embedding: [String] = []
var fixed200 = false

@MainActor func value(_ flag: String) -> String {
    guard !arguments.isEmpty else {
        print("herd-fake-backend: \(flag) needs a value")
        exit(2)
    }
    return arguments.removeFirst()
}

while !arguments.isEmpty {
    let flag = arguments.removeFirst()
    switch flag {
    case "--host": host = value(flag)
    case "--port": port = Int(value(flag)) ?? 0
    case "--name": configuration.name = value(flag)
    case "--models": configuration.models = value(flag).split(separator: ",").map { FakeModel(name: String($0)) }
    case "--loaded": loaded = value(flag).split(separator: ",").map(String.init)
    case "--tokens": configuration.tokens = Int(value(flag)) ?? 8
    case "--token-delay-ms": configuration.tokenDelayMilliseconds = UInt64(value(flag)) ?? 0
    case "--first-byte-delay-ms": configuration.firstByteDelayMilliseconds = UInt64(value(flag)) ?? 0
    case "--slots": configuration.slots = Int(value(flag)) ?? 0
    case "--no-props": configuration.props = false
    case "--deaf-while-busy": configuration.deafWhileBusy = true
    case "--heads-early": configuration.headsEarly = true
    case "--context-reloads": configuration.contextReloads = true
    case "--ttft-grows-as-context-shrinks":
        configuration.contextReloads = true
        configuration.ttftGrowsAsContextShrinks = true
    case "--metrics": configuration.metrics = value(flag)
    case "--no-anthropic": configuration.anthropic = false
    case "--no-responses": configuration.responses = false
    case "--vision":
        // These models can see (their /api/show capabilities say vision).
        let names = value(flag).split(separator: ",").map(String.init)
        vision = names
    case "--embedding":
        // These models only embed (their /api/show capabilities say embedding).
        embedding = value(flag).split(separator: ",").map(String.init)
    case "--failure":
        let text = value(flag)
        guard let failure = FakeFailure(text) else {
            print("herd-fake-backend: unknown failure '\(text)'")
            exit(2)
        }
        configuration.failure = failure
    case "--fixed-200":
        // Benchmark mode: every request gets the same 200 "Ollama is running",
        // straight from herd's HTTP server (no routing, no JSON).
        fixed200 = true
    case "--help", "-h":
        print("usage: herd-fake-backend [--host H] [--port P] [--name N] [--models a,b] [--loaded a] [--tokens N] [--token-delay-ms N] [--first-byte-delay-ms N] [--failure none|refuse|500|501|hang|reset:N] [--slots N] [--no-props] [--heads-early]")
        exit(0)
    default:
        print("herd-fake-backend: unknown flag \(flag)")
        exit(2)
    }
}
for i in configuration.models.indices {
    if vision.contains(configuration.models[i].name) { configuration.models[i].capabilities = ["completion", "vision"] }
    if embedding.contains(configuration.models[i].name) { configuration.models[i].capabilities = ["embedding"] }
}
if let loaded {
    for i in configuration.models.indices { configuration.models[i].loaded = loaded.contains(configuration.models[i].name) }
}

do {
    let loop = try EventLoop()
    let backend = FakeBackend(loop: loop, configuration: configuration)
    var fixedServer: HTTPServer?
    let bound: Int
    if fixed200 {
        let headers: HTTPHeaders = ["Content-Type": "text/plain; charset=utf-8"]
        let body = Array("Ollama is running".utf8)
        let server = HTTPServer(loop: loop) { $0.respond(status: 200, headers: headers, body: body) }
        bound = try server.listen(host: host, port: port).port
        fixedServer = server
    } else {
        bound = try backend.start(host: host, port: port)
    }
    print("listening on \(host):\(bound)")
    fflush(nil)
    let term = try SignalWatcher(loop: loop, signal: SIGTERM) { _ in loop.stop() }
    let int = try SignalWatcher(loop: loop, signal: SIGINT) { _ in loop.stop() }
    loop.run()
    term.close()
    int.close()
    backend.stop()
    fixedServer?.close()
} catch {
    print("herd-fake-backend: \(error)")
    exit(1)
}
