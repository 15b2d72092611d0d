import Glibc
import HerdJSON

/// A whole router on loopback for tests: fake backends (processes), herd-control
/// with its herd-proxy children, and a herd-node per backend. Every port is
/// picked free; everything is stopped by `shutdown()` (and killed on release).
public final class TestFleet: @unchecked Sendable {
    public let directory: String
    public private(set) var controlPort: Int
    /// Announce the router over mDNS (under `fleetID`) instead of `--no-mdns`.
    public var mdns = false
    /// A fleet id of this test's own, so that parallel tests never pick each other's router.
    public let fleetID = "test-\(UInt32.random(in: 0...UInt32.max))"
    public let proxyPort: Int
    public private(set) var backends: [String: RunningProcess] = [:]
    public private(set) var backendPorts: [String: Int] = [:]
    public private(set) var nodes: [String: RunningProcess] = [:]
    public private(set) var control: RunningProcess?
    public let controlArguments: [String]
    /// Extra environment for herd-control.
    public var controlEnvironment: [String: String] = [:]

    public var dataDirectory: String { directory + "/data" }

    public init(controlArguments: [String] = []) {
        directory = temporaryDirectory("herd-fleet")
        controlPort = freePort()
        proxyPort = freePort()
        self.controlArguments = controlArguments
    }

    /// Stops everything and removes the fleet's folder (logs, databases) unless
    /// `HERD_KEEP_TEST_DIRS` is set: a failing test has already printed `logs`.
    deinit {
        shutdown()
        removeTemporaryDirectory(directory)
    }

    /// The common one-machine fleet: backend `name` (fake-backend `arguments`),
    /// herd-control (with `control` flags) and a node `node-<name>` registered.
    public static func single(_ name: String, backend arguments: [String], control: [String] = []) throws -> TestFleet {
        let fleet = TestFleet(controlArguments: control)
        try fleet.addBackend(name, arguments: arguments)
        try fleet.startControl()
        try fleet.addNode("node-\(name.lowercased())", backend: name)
        try fleet.waitForNodes(1)
        return fleet
    }

    /// Starts a fake backend named `name` (its responses carry `X-Fake-Backend: name`).
    @discardableResult
    public func addBackend(_ name: String, arguments: [String]) throws -> Int {
        let port = freePort()
        let process = try RunningProcess(name: "backend-\(name)", path: ProcessRunner.executable("herd-fake-backend"),
                                         arguments: ["--port", String(port), "--name", name] + arguments, logDirectory: directory)
        guard process.waitForOutput("listening on") else { throw TestError("backend \(name) did not start: \(process.output)") }
        backends[name] = process
        backendPorts[name] = port
        return port
    }

    /// Starts herd-control (and its proxies).
    public func startControl(extra: [String] = [], waitForProxy: Bool = true) throws {
        let process = try RunningProcess(
            name: "control-\(control == nil ? 0 : Int.random(in: 1...1_000_000))", path: ProcessRunner.executable("herd-control"),
            arguments: ["--port", String(controlPort), "--proxy-port", String(proxyPort), "--data-dir", dataDirectory]
                + (mdns ? ["--fleet-id", fleetID] : ["--no-mdns"]) + controlArguments + extra, logDirectory: directory,
            environment: controlEnvironment)
        control = process
        guard process.waitForOutput("listening on") else { throw TestError("herd-control did not start: \(process.output)") }
        if waitForProxy {
            guard waitUntil(seconds: 10, { self.get("/").status == 200 }) else { throw TestError("herd-proxy did not answer: \(process.output)") }
        }
    }

    /// Stops herd-control and starts it again on a new port (its proxies follow).
    public func restartControl(onNewPort: Bool) throws {
        control?.stop(seconds: 20)
        if onNewPort { controlPort = freePort() }
        try startControl()
    }

    /// Starts a herd-node for backend `name`; `discover` finds control by mDNS (by `fleetID`).
    public func addNode(_ id: String, backend name: String, discover: Bool = false, extra: [String] = []) throws {
        guard let port = backendPorts[name] else { throw TestError("no backend \(name)") }
        let control = discover ? ["--fleet-id", fleetID] : ["--control", "http://127.0.0.1:\(controlPort)"]
        let process = try RunningProcess(name: "node-\(id)", path: ProcessRunner.executable("herd-node"),
                                         arguments: control + ["--ollama", "http://127.0.0.1:\(port)",
                                                               "--node-id", id, "--interval", "0.5", "--data-dir", directory + "/node-" + id]
                                             + extra, logDirectory: directory)
        nodes[id] = process
    }

    /// Waits until control lists `count` online nodes and the proxy's snapshot has them.
    public func waitForNodes(_ count: Int, seconds: Double = 10) throws {
        let ok = waitUntil(seconds: seconds) {
            guard let fleet = try? JSONValue.parse(self.getControl("/api/fleet").body),
                  let nodes = fleet["nodes"]?.arrayValue else { return false }
            return nodes.filter { $0["status"]?.stringValue == "online" }.count >= count
        }
        guard ok else { throw TestError("fleet did not reach \(count) nodes: \(getControl("/api/fleet").text)\n\(control?.output ?? "")") }
        // The snapshot reaches the proxy right after (coalesced, within
        // milliseconds): wait until it lists every model control knows.
        _ = waitUntil(seconds: 5) {
            let known = Set(((try? JSONValue.parse(self.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? [])
                .filter { $0["status"]?.stringValue == "online" }
                .flatMap { ($0["backends"]?.arrayValue ?? []).flatMap { ($0["models"]?.arrayValue ?? []).compactMap(\.stringValue) } })
            // /v1/models lists every kind (speech and image models are not in /api/tags).
            let listed = Set(((try? JSONValue.parse(self.get("/v1/models").body))?["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
            return !listed.isEmpty && known.isSubset(of: listed)
        }
    }

    /// Scripts a backend through its `/_fake/config` endpoint.
    public func script(_ name: String, _ json: String) throws {
        guard let port = backendPorts[name] else { throw TestError("no backend \(name)") }
        let client = try RawClient(port: port)
        client.send("POST /_fake/config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)")
        let response = try client.readResponse()
        guard response.status == 200 else { throw TestError("script \(name) failed: \(response.text)") }
    }

    /// Requests backend `name` has received on `path` (`/_fake/stats`; -1 if it cannot tell).
    public func backendRequests(_ name: String, path: String = "/api/chat") -> Int {
        guard let port = backendPorts[name] else { return -1 }
        let stats = request("GET", "/_fake/stats", body: nil, headers: [:], port: port)
        guard let json = try? JSONValue.parse(stats.body) else { return -1 }
        return json["by_path"]?[path]?.intValue ?? 0
    }

    /// `GET path` against the proxy (status 0 if it cannot connect).
    public func get(_ path: String, headers: [String: String] = [:]) -> RawResponse {
        request("GET", path, body: nil, headers: headers, port: proxyPort)
    }

    public func getControl(_ path: String) -> RawResponse {
        request("GET", path, body: nil, headers: [:], port: controlPort)
    }

    /// `POST path` with a JSON body against the proxy.
    public func post(_ path: String, _ body: String, headers: [String: String] = [:]) -> RawResponse {
        request("POST", path, body: body, headers: headers, port: proxyPort)
    }

    public func request(_ method: String, _ path: String, body: String?, headers: [String: String], port: Int, timeout: Int = 30) -> RawResponse {
        guard let client = try? RawClient(port: port, timeoutSeconds: timeout) else {
            return RawResponse(status: 0, headers: [], body: [], rawBody: [])
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        client.send(head + "\r\n" + (body ?? ""))
        return (try? client.readResponse(headRequest: method == "HEAD")) ?? RawResponse(status: 0, headers: [], body: [], rawBody: [])
    }

    public func shutdown() {
        for node in nodes.values { node.stop(seconds: 5) }
        control?.stop(seconds: 20)
        for backend in backends.values { backend.stop(seconds: 5) }
    }

    /// Every process's output, for failure messages.
    public var logs: String {
        ([control].compactMap { $0 } + Array(nodes.values) + Array(backends.values))
            .map { "--- \($0.name)\n\($0.output.suffix(4000))" }.joined(separator: "\n")
    }
}
