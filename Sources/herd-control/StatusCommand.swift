import HerdBounds
import ArgumentParser
import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime

/// `herd-control status`: the fleet, its queue and health, in a terminal,
/// read from a running herd-control's JSON API.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the fleet, the queue and herd-control's health (from its API on :11436).")

    @Option(help: "herd-control's API address (HERD_HOST; 0.0.0.0 means this machine).")
    var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

    @Option(help: "herd-control's API port (HERD_PORT).")
    var port: Int = Environment.int("HERD_PORT") ?? 11436

    @Flag(help: "Print the API's JSON instead of a table.")
    var json = false

    func run() throws {
        let address: SocketAddress
        do {
            address = try SocketAddress(host: host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host, port: port)
        } catch {
            throw ValidationError("--host: \(error)")
        }
        let health = try Self.get("/health", from: address)
        let fleet = try Self.get("/api/fleet", from: address)
        if json {
            var out: [UInt8] = []
            JSONValue.object([("health", health), ("fleet", fleet)]).write(to: &out)
            print(String(decoding: out, as: UTF8.self))
            return
        }
        print(Self.render(health: health, fleet: fleet, address: "\(address)"))
    }

    /// GET `path` from herd-control's API (a command-line tool: blocking).
    static func get(_ path: String, from address: SocketAddress) throws -> JSONValue {
        let response = try send(HTTPClientRequest(method: "GET", target: path), to: address)
        guard response.status == 200 else { throw StatusError("herd-control at \(address) answered \(response.status) on \(path)") }
        return try JSONValue.parse(response.body)
    }

    /// Sends `request` to herd-control at `address` on a loop of its own, blocking until the whole answer.
    static func send(_ request: HTTPClientRequest, to address: SocketAddress) throws -> HTTPCollectedResponse {
        let loop = try EventLoop()
        var configuration = HTTPClientConfiguration()
        configuration.firstByteTimeoutMilliseconds = 5_000
        let client = HTTPClient(loop: loop, configuration: configuration)
        var outcome: Result<HTTPCollectedResponse, HTTPClientError>?
        client.collect(request, to: address) { result in
            outcome = result
            client.close()
            loop.stop()
        }
        loop.run()
        loop.close()
        switch outcome {
        case let .success(response)?:
            return response
        case let .failure(error)?:
            throw StatusError("herd-control is not answering at \(address) (\(error)); is it running? (systemctl status herd-control)")
        case nil:
            throw StatusError("no answer from \(address)")
        }
    }

    /// The terminal view: health, then one line per node.
    static func render(health: JSONValue, fleet: JSONValue, address: String) -> String {
        var lines: [String] = []
        let nodes = fleet["nodes"]?.arrayValue ?? []
        lines.append("herd-control \(health["version"]?.stringValue ?? "?") at \(address): \(health["status"]?.stringValue ?? "?"), "
                     + "\(health["proxies"]?.intValue ?? 0) prox\((health["proxies"]?.intValue ?? 0) == 1 ? "y" : "ies"), "
                     + "\(fleet["in_flight"]?.intValue ?? 0) in flight, \(fleet["queue_length"]?.intValue ?? 0) queued")
        for problem in (health["problems"]?.arrayValue ?? []).compactMap(\.stringValue) { lines.append("problem: \(problem)") }
        let online = nodes.filter { $0["status"]?.stringValue == "online" }.count
        lines.append("nodes: \(nodes.count) (\(online) online)")
        guard !nodes.isEmpty else {
            lines.append("  no node has reported yet: start herd-node on each machine that runs a model server")
            return lines.joined(separator: "\n")
        }
        var rows = [["NODE", "STATUS", "SEEN", "CPU", "MEM FREE", "IN FLIGHT", "LOADED", "MODELS"]]
        for node in nodes {
            let backends = node["backends"]?.arrayValue ?? []
            let loaded = backends.flatMap { ($0["loaded"]?.arrayValue ?? []).compactMap(\.stringValue) }
            let models = backends.flatMap { ($0["models"]?.arrayValue ?? []).compactMap(\.stringValue) }
            let free = Double(node["memory"]?["available_bytes"]?.intValue ?? 0) / 1_073_741_824
            let seen = Double(node["last_seen_ms_ago"]?.intValue ?? 0) / 1000
            rows.append([
                node["id"]?.stringValue ?? "?", node["status"]?.stringValue ?? "?", format(seen, digits: 1) + " s",
                format((node["cpu"]?["utilization"]?.doubleValue ?? 0) * 100, digits: 0) + " %", format(free, digits: 1) + " GiB",
                String(node["in_flight"]?.intValue ?? 0), loaded.isEmpty ? "-" : loaded.joined(separator: ","), String(models.count),
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let line = "  " + row.enumerated().map { $1.padding(to: widths[$0]) }.joined(separator: "  ")
            lines.append(String(line.reversed().drop { $0 == " " }.reversed()))
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return "?" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        return digits == 0 ? String(Int(saturating: rounded)) : String(rounded)
    }
}

struct StatusError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension String {
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
