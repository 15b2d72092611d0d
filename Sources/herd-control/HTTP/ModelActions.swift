import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdWire

/// `POST /api/v1/nodes/{id}/pull` and `/delete` with `{"model": …}`: the
/// dashboard's Models view pulls a model to a node (Ollama's progress lines
/// streamed back as they come) or deletes one from it. Guarded as the other
/// node actions (the fleet key when one is set). A pull counts among the
/// router's pulls under way (`PullsUnderWay`, shared with every proxy): one
/// of the same model to the same node already running is refused (409).
/// Loop-thread only.
final class ModelActions {
    private let client: HTTPClient
    private unowned let routes: ControlServer
    private let clock: any LoopClock

    init(loop: EventLoop, routes: ControlServer, clock: any LoopClock) {
        self.routes = routes
        self.clock = clock
        var configuration = HTTPClientConfiguration()
        configuration.connectTimeoutMilliseconds = 3_000
        configuration.firstByteTimeoutMilliseconds = 60_000
        // A pull of a large model goes on for as long as its progress keeps coming.
        configuration.readIdleTimeoutMilliseconds = 300_000
        client = HTTPClient(loop: loop, configuration: configuration)
    }

    /// Relays `action` (pull or delete) of the body's model to `node`'s Ollama.
    func perform(_ exchange: HTTPExchange, action: String, node: FleetNode, body: [UInt8]) {
        let fail = { (status: Int, message: String) in
            var bytes: [UInt8] = []
            JSONValue.object([("error", .string(message))]).write(to: &bytes)
            exchange.respond(status: status, headers: FleetAPI.jsonHeaders, body: bytes)
        }
        guard let model = (try? JSONValue.parse(body))?["model"]?.stringValue, RequestLimits.modelBytes.contains(model.utf8.count),
              RequestLimits.isModelName(model) else {
            return fail(400, "expected {\"model\": NAME}")
        }
        guard let backend = node.heartbeat.backends.first(where: { $0.kind == .ollama }),
              let address = Self.address(backend.address) else {
            return fail(409, "node \(node.id) has no Ollama to \(action) models on")
        }
        var owner: PullsUnderWay.Owner?
        if action == "pull" {
            let claimant = routes.pulls.dashboardOwner()
            switch routes.pulls.claim(model: model, node: node.id, named: true, owner: claimant, now: clock.now) {
            case .granted: owner = claimant
            case let .underWay(other): return fail(409, "a pull of '\(model)' to node \(other) is already under way")
            case .full: return fail(429, "\(PullsUnderWay.maxPulls) pulls are under way; try again when one ends")
            }
        }
        var out: [UInt8] = []
        JSONValue.object([("model", .string(model)), ("stream", .bool(action == "pull"))]).write(to: &out)
        let request = HTTPClientRequest(method: action == "pull" ? "POST" : "DELETE", target: action == "pull" ? "/api/pull" : "/api/delete",
                                        headers: ["Content-Type": "application/json", "Host": backend.address], body: out)
        let relay = Relay(exchange: exchange) { [weak routes = self.routes] in
            if let owner { routes?.pulls.release(owner) }
        }
        relay.task = client.execute(request, to: address, delegate: relay)
    }

    static func address(_ text: String) -> SocketAddress? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return try? SocketAddress(host: host, port: port)
    }

    private final class Relay: HTTPClientResponseDelegate {
        let exchange: HTTPExchange
        var task: HTTPClientTask?
        private var started = false
        private var selfReference: Relay?
        /// Called once when it ends, however it ends.
        private var onEnd: (() -> Void)?

        init(exchange: HTTPExchange, onEnd: @escaping () -> Void) {
            self.exchange = exchange
            self.onEnd = onEnd
            selfReference = self
            exchange.onCancel = { [self] in
                self.task?.cancel()
                self.ended()
            }
        }

        private func ended() {
            onEnd?()
            onEnd = nil
            selfReference = nil
        }

        func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) {
            started = true
            var headers: HTTPHeaders = ["Cache-Control": "no-store"]
            headers.add("Content-Type", head.headers["Content-Type"] ?? "application/json")
            exchange.startResponse(status: head.status, headers: headers)
        }

        func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) { exchange.write(bytes) }

        func taskDidFinish(_ task: HTTPClientTask) {
            exchange.end()
            ended()
        }

        func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
            var bytes: [UInt8] = []
            JSONValue.object([("error", .string("the node's Ollama did not answer: \(error)"))]).write(to: &bytes)
            if started {
                bytes.append(10)
                exchange.write(bytes)
                exchange.end()
            } else {
                exchange.respond(status: 502, headers: FleetAPI.jsonHeaders, body: bytes)
            }
            ended()
        }
    }
}
