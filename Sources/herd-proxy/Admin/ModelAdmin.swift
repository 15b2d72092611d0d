import HerdHTTP
import HerdJSON
import HerdRouting
import HerdRuntime
import HerdSecurity
import HerdWire

/// Ollama's model management through the router: `POST /api/pull`, `DELETE
/// /api/delete`, `POST /api/copy`, `POST /api/create`, `POST /api/push`,
/// `HEAD`/`POST /api/blobs/:digest`. Each goes to one node's Ollama, relayed
/// as that Ollama answers it (a pull's progress streamed line by line):
///
/// - `X-Herd-Node: ID` names the node;
/// - else a pull (and `create`, and its blobs) goes to the online node with
///   the most memory (GPUs', else RAM) that does not have the model yet (if
///   every node has it: the one with the most memory, as an update);
/// - else `delete`, `copy` and `push` go to the node that has the model, and
///   when several have it the client must name one (a delete is not fanned
///   out: "which machine" is the operator's call).
///
/// A second pull of a model already being pulled — through any proxy of
/// this router or from the dashboard (control counts them, PULL_CLAIM) — is
/// refused (409) rather than started twice: to the same node, or to any
/// node when the client did not name one with `X-Herd-Node`. All of these change state: with
/// a fleet key set they need it (`Authorization: Bearer`, or `x-api-key`);
/// without one, only clients on this machine may, unless
/// `--allow-remote-admin`. Loop-thread only.
final class ModelAdmin {
    static let paths: Set<String> = ["/api/pull", "/api/delete", "/api/copy", "/api/create", "/api/push"]

    private let control: ControlClient
    private let upstreams: Upstreams
    private let allowRemote: Bool
    /// Pulls under way through this proxy: canonical model, node, control's claim id (nil: not granted by control).
    private var pulls: [(model: String, node: String, claim: UInt64?)] = []
    /// Models this proxy just made (pull, copy, create), canonical → node and
    /// when: a `delete` right after `copy` finds its node before the next heartbeat lists it.
    private var made: [String: (node: String, at: UInt64)] = [:]
    static let madeMemoryMilliseconds: UInt64 = 60_000
    static func nowMs() -> UInt64 { EventLoop.monotonicNanoseconds() / 1_000_000 }

    init(control: ControlClient, upstreams: Upstreams, allowRemote: Bool) {
        self.control = control
        self.upstreams = upstreams
        self.allowRemote = allowRemote
    }

    /// Whether `method path` is model management (then `handle` answers it).
    static func manages(method: String, path: some StringProtocol) -> Bool {
        if path.hasPrefix("/api/blobs/") { return method == "HEAD" || method == "POST" }
        return paths.contains(String(path))
    }

    func handle(_ exchange: HTTPExchange, cors: HTTPHeaders) {
        let method = exchange.head.method
        let path = String(exchange.head.path)
        if let refusal = authorize(exchange) { return refusal.respond(exchange, api: .ollama, headers: cors) }
        let expected = path == "/api/delete" ? "DELETE" : path.hasPrefix("/api/blobs/") ? method : "POST"
        guard method == expected else {
            return ClientError(status: 405, message: "\(method) is not allowed on \(path); use \(expected)").respond(exchange, api: .ollama, headers: cors)
        }
        exchange.collectBody { [self] body in
            let fields = (try? JSONValue.parse(body)) ?? [:]
            let model = fields["model"]?.stringValue ?? fields["name"]?.stringValue ?? fields["source"]?.stringValue ?? ""
            if !path.hasPrefix("/api/blobs/") {
                guard !model.isEmpty else { return ClientError.badRequest("\"model\" is required").respond(exchange, api: .ollama, headers: cors) }
                do throws(RouteFields.Invalid) { try RouteFields.checkModelName(model, field: "model") } catch {
                    return ClientError.badRequest(error.message).respond(exchange, api: .ollama, headers: cors)
                }
            }
            let target: (node: String, upstream: String)
            switch self.target(path: path, model: model, named: exchange.head.headers["X-Herd-Node"]) {
            case let .success(found): target = found
            case let .failure(error): return error.respond(exchange, api: .ollama, headers: cors)
            }
            let made = path == "/api/copy" ? fields["destination"]?.stringValue : path == "/api/pull" || path == "/api/create" ? model : nil
            let relay = { [weak self] (claim: UInt64?) in
                guard let self else { return }
                let key = ModelName.canonical(model)
                AdminRelay(exchange: exchange, upstreams: self.upstreams, node: target.node, upstream: target.upstream, body: body, cors: cors) { [weak self] status in
                    guard let self else { return }
                    if path == "/api/pull" {
                        self.pulls.removeAll { $0.claim == claim && $0.model == key && $0.node == target.node }
                        if let claim { self.control.pullDone(claim) }
                    }
                    if status == 200, let made, made.utf8.count <= RequestLimits.modelBytes.upperBound {
                        if self.made.count >= 1_024 { self.made.removeAll() }
                        self.made[ModelName.canonical(made)] = (target.node, ModelAdmin.nowMs())
                    }
                }.start()
            }
            guard path == "/api/pull" else { return relay(nil) }
            // One pull of a model at a time in the whole router: control counts
            // every proxy's and the dashboard's; this proxy's own count decides
            // while control is away.
            let named = exchange.head.headers["X-Herd-Node"] != nil
            if let busy = self.underWay(model: model, node: target.node, named: named) {
                return ClientError.pullUnderWay(model, node: busy).respond(exchange, api: .ollama, headers: cors)
            }
            let key = ModelName.canonical(model)
            self.pulls.append((key, target.node, nil))
            self.control.claimPull(model: model, node: target.node, named: named) { [weak self] answer in
                guard let self else { return }
                guard let index = self.pulls.lastIndex(where: { $0.model == key && $0.node == target.node && $0.claim == nil }) else { return }
                if let answer, !answer.granted {
                    self.pulls.remove(at: index)
                    return ClientError.pullUnderWay(model, node: answer.node).respond(exchange, api: .ollama, headers: cors)
                }
                self.pulls[index].claim = answer?.id
                relay(answer?.id)
            }
        }
    }

    /// Where a pull of `model` is already under way through this proxy, if
    /// one is that stops a pull to `node` (the same node, or any node when
    /// the client did not name one).
    private func underWay(model: String, node: String, named: Bool) -> String? {
        let key = ModelName.canonical(model)
        return pulls.first { PullClaim.stops(running: $0.model, on: $0.node, model: key, node: node, named: named) }?.node
    }

    /// A fleet key set: it must come with the request. None: only this machine's clients, unless allowed.
    private func authorize(_ exchange: HTTPExchange) -> ClientError? {
        guard control.everConnected else {
            return ClientError(status: 503, message: "herd-control is not reachable: model management waits for it", retryAfter: 2)
        }
        if let hash = control.adminKeyHash {
            let headers = exchange.head.headers
            var key = headers["x-api-key"] ?? ""
            if let authorization = headers["Authorization"], authorization.lowercased().hasPrefix("bearer ") {
                key = String(String(authorization.dropFirst(7)).trimmingSpaces)
            }
            guard !key.isEmpty, let expected = SHA256.bytes(hex: hash),
                  SHA256.constantTimeEqual(SHA256.hash(Array(key.utf8)), expected) else {
                return ClientError(status: 401, message: "model management on this router needs the fleet key (Authorization: Bearer <key>)")
            }
            return nil
        }
        if allowRemote { return nil }
        let host = exchange.remoteHost ?? ""
        guard host.hasPrefix("127.") || host == "::1" || host.hasPrefix("::ffff:127.") else {
            return ClientError(status: 403, message: "model management is open to this machine only: set a fleet key (and send it), or start herd with --allow-remote-admin")
        }
        return nil
    }

    /// The node this proxy just made `model` on, if it did within the memory.
    private func recentlyMade(_ model: String) -> String? {
        guard let entry = made[ModelName.canonical(model)], ModelAdmin.nowMs() >= entry.at,
              ModelAdmin.nowMs() - entry.at <= Self.madeMemoryMilliseconds else { return nil }
        return entry.node
    }

    /// The node (and its Ollama's address) a management request goes to.
    func target(path: String, model: String, named: String?) -> Result<(node: String, upstream: String), ClientError> {
        let nodes = control.snapshot.nodes
        func ollama(_ node: RoutingSnapshot.Node) -> RoutingSnapshot.Backend? { node.backends.first { $0.kind == .ollama } }
        if let named {
            guard let node = nodes.first(where: { $0.id == named }) else {
                return .failure(ClientError(status: 404, message: "X-Herd-Node: no node '\(named.prefix(128))' in the fleet"))
            }
            guard node.status != "offline", let backend = ollama(node) else {
                return .failure(ClientError(status: 503, message: "node \(node.id) has no reachable Ollama", retryAfter: 5))
            }
            return .success((node.id, backend.address))
        }
        let usable = nodes.filter { $0.status == "online" || $0.status == "degraded" }.filter { ollama($0) != nil }
        let having = usable.filter { node in ollama(node)!.models.contains { ModelName.same($0, model) } }
        func largest(_ list: [RoutingSnapshot.Node]) -> RoutingSnapshot.Node? {
            list.max { $0.memoryBytes != $1.memoryBytes ? $0.memoryBytes < $1.memoryBytes : $0.id > $1.id }
        }
        let pick: RoutingSnapshot.Node?
        if path == "/api/pull" || path == "/api/create" || path.hasPrefix("/api/blobs/") {
            pick = largest(usable.filter { node in !having.contains { $0.id == node.id } }) ?? largest(having)
        } else if having.count > 1 {
            return .failure(ClientError(status: 400, message: "'\(model)' is on \(having.count) nodes (\(having.prefix(8).map(\.id).joined(separator: ", "))): name one with X-Herd-Node"))
        } else {
            pick = having.first ?? recentlyMade(model).flatMap { node in usable.first { $0.id == node } }
            if pick == nil { return .failure(ClientError(status: 404, message: "model '\(model)' not found in the fleet")) }
        }
        guard let node = pick, let backend = ollama(node) else {
            return .failure(ClientError(status: 503, message: "no online node with Ollama to \(path.dropFirst(5)) on", retryAfter: 5))
        }
        return .success((node.id, backend.address))
    }
}

/// One management request relayed to one node, as its Ollama answers (a
/// pull's progress line by line). Keeps itself alive while under way.
private final class AdminRelay: HTTPClientResponseDelegate {
    private let exchange: HTTPExchange
    private let upstreams: Upstreams
    private let node: String
    private let upstreamAddress: String
    private let body: [UInt8]
    private let cors: HTTPHeaders
    private let done: ((Int) -> Void)?
    private var status = 502
    private var task: HTTPClientTask?
    private var upstream: Upstreams.Upstream?
    private var started = false
    private var selfReference: AdminRelay?

    init(exchange: HTTPExchange, upstreams: Upstreams, node: String, upstream: String, body: [UInt8], cors: HTTPHeaders, done: ((Int) -> Void)?) {
        self.exchange = exchange
        self.upstreams = upstreams
        self.node = node
        upstreamAddress = upstream
        self.body = body
        self.cors = cors
        self.done = done
    }

    func start() {
        selfReference = self
        var headers = ProxyHeaders.endToEnd(exchange.head.headers, dropping: ProxySession.requestDrops)
        headers.remove("Authorization")
        headers.remove("x-api-key")
        headers.remove("X-Herd-Node")
        headers.add("Host", upstreamAddress)
        let request = HTTPClientRequest(method: exchange.head.method, target: exchange.head.target, headers: headers, body: body)
        guard let (task, upstream) = upstreams.send(request, to: upstreamAddress, delegate: self) else {
            return fail("bad upstream address \(upstreamAddress)")
        }
        self.task = task
        self.upstream = upstream
        exchange.onCancel = { [self] in
            self.task?.cancel()
            self.finish()
        }
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) {
        started = true
        status = head.status
        var headers = ProxyHeaders.endToEnd(head.headers, dropping: ProxySession.responseDrops)
        headers.addSafely("X-Herd-Node", node)
        for (name, value) in cors { headers.add(name, value) }
        let length = ProxySession.isChunked(head) ? nil : head.headers[.contentLength].flatMap { Int($0.trimmingSpaces) }
        exchange.startResponse(status: head.status, headers: headers, contentLength: exchange.head.method == "HEAD" ? 0 : length)
    }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        exchange.write(bytes)
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        exchange.end()
        finish()
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        status = 502
        if started {
            if let line = ClientError.streamError(contentType: "application/x-ndjson", message: "node \(node) failed mid-answer: \(error)") {
                exchange.write(line)
            }
            exchange.end()
            finish()
        } else {
            fail("node \(node) did not answer: \(error)")
        }
    }

    private func fail(_ message: String) {
        ClientError(status: 502, message: message).respond(exchange, api: .ollama, headers: cors)
        finish()
    }

    private func finish() {
        guard let self_ = selfReference else { return }
        if let upstream { upstreams.release(upstream) }
        upstream = nil
        done?(status)
        exchange.onCancel = nil
        _ = self_
        selfReference = nil
    }
}
