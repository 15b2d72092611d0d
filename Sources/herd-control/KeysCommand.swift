import HerdBounds
import ArgumentParser
import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime

/// `herd-control keys …`: client keys, through a running herd-control's API
/// (`/api/v1/keys`), so a change reaches the proxies at once. Changing keys
/// sends the fleet key (--fleet-key, HERD_FLEET_KEY, else
/// `<data-dir>/fleet.key` when readable) or an admin key (HERD_ADMIN_KEY).
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make, list, change and revoke client keys (of a running herd-control).",
        subcommands: [Create.self, List.self, Show.self, Update.self, Revoke.self])

    struct Connection: ParsableArguments {
        @Option(help: "herd-control's API address (HERD_HOST; 0.0.0.0 means this machine).")
        var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

        @Option(help: "herd-control's API port (HERD_PORT).")
        var port: Int = Environment.int("HERD_PORT") ?? 11436

        @Option(name: .customLong("fleet-key"), help: "The fleet key or an admin key (HERD_FLEET_KEY, HERD_ADMIN_KEY, or <data-dir>/fleet.key).")
        var fleetKey: String?

        @Option(help: "Data directory, for its fleet.key (HERD_DATA_DIR).")
        var dataDir: String?

        @Flag(help: "Print the API's JSON.")
        var json = false

        /// Sends `method path body`; the answer's JSON (an error status throws with the API's message).
        func call(_ method: String, _ path: String, body: JSONValue? = nil) throws -> JSONValue {
            let target = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host
            let address: SocketAddress
            do { address = try SocketAddress(host: target, port: port) } catch { throw ValidationError("--host: \(error)") }
            var headers: HTTPHeaders = ["Host": target.contains(":") ? "[\(target)]:\(port)" : "\(target):\(port)", "Content-Type": "application/json"]
            let key = fleetKey ?? Environment.string("HERD_FLEET_KEY") ?? Environment.string("HERD_ADMIN_KEY")
                ?? (try? FleetKeyFile.read((dataDir ?? DataDirectory.resolve()) + "/fleet.key")) ?? nil
            if let key { headers.add("Authorization", "Bearer \(key)") }
            var bytes: [UInt8] = []
            body?.write(to: &bytes)
            let response = try StatusCommand.send(HTTPClientRequest(method: method, target: path, headers: headers, body: bytes), to: address)
            let answer = (try? JSONValue.parse(response.body)) ?? .null
            guard (200..<300).contains(response.status) else {
                throw StatusError("herd-control answered \(response.status): \(answer["error"]?.stringValue ?? String(decoding: response.body.prefix(300), as: UTF8.self))")
            }
            return answer
        }

        func print(_ value: JSONValue) {
            Swift.print(value.serialized())
        }
    }

    /// The settings flags shared by `create` and `update` (`none` clears a limit in an update).
    struct Settings: ParsableArguments {
        @Option(help: "Model globs the key may use, comma-separated (llama3*,qwen2.5:*); default: any.")
        var models: String?

        @Option(help: "Requests per minute (none: no limit).")
        var rpm: String?

        @Option(help: "Tokens (prompt + completion) per minute (none: no limit).")
        var tpm: String?

        @Option(name: .customLong("budget-tokens"), help: "Tokens per day, week or month (UTC): N/day, N/week, N/month (none: no budget).")
        var budgetTokens: String?

        @Option(help: "Labels for the key, comma-separated.")
        var tags: String?

        @Option(name: .customLong("max-queue-wait"), help: "Seconds its requests may wait in the queue (at most --queue-timeout; none: the router's).")
        var maxQueueWait: String?

        @Flag(inversion: .prefixedNo, help: "It may overflow to a cloud provider when the fleet is busy.")
        var cloud: Bool?

        @Flag(inversion: .prefixedNo, help: "It may manage keys, as the fleet key may.")
        var admin: Bool?

        @Flag(name: .customLong("semantic-cache"), inversion: .prefixedNo,
              help: "Its single-turn prompts may be answered by the semantic cache (proxies with --cache-mb).")
        var semanticCache: Bool?

        func body(name: String?) throws -> JSONValue {
            var members: [(String, JSONValue)] = []
            if let name { members.append(("name", .string(name))) }
            if let models { members.append(("models", .string(models))) }
            if let tags { members.append(("tags", .string(tags))) }
            for (field, value) in [("rpm", rpm), ("tpm", tpm)] {
                guard let value else { continue }
                if value == "none" { members.append((field, .null)); continue }
                guard let n = Int(value) else { throw ValidationError("--\(field): a whole number, or none") }
                members.append((field, .int(n)))
            }
            if let budgetTokens { members.append(("budget_tokens", budgetTokens == "none" ? .null : .string(budgetTokens))) }
            if let maxQueueWait {
                if maxQueueWait == "none" {
                    members.append(("max_queue_wait", .null))
                } else {
                    guard let seconds = Double(maxQueueWait), seconds.isFinite else { throw ValidationError("--max-queue-wait: seconds, or none") }
                    members.append(("max_queue_wait", .number(seconds)))
                }
            }
            if let cloud { members.append(("cloud", .bool(cloud))) }
            if let admin { members.append(("admin", .bool(admin))) }
            if let semanticCache { members.append(("semantic_cache", .bool(semanticCache))) }
            return .object(members)
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; its secret is printed once (stored hashed).")
        @Argument(help: "Its name: 1–64 of A-Z a-z 0-9 . _ -") var name: String
        @OptionGroup var settings: Settings
        @OptionGroup var connection: Connection

        func run() throws {
            let answer = try connection.call("POST", "/api/v1/keys", body: try settings.body(name: name))
            if connection.json { return connection.print(answer) }
            Swift.print(answer["key"]?.stringValue ?? "")
            let note = "key '\(name)' (id \(answer["id"]?.intValue ?? 0)) made; the line above is its secret, shown this once\n"
            _ = note.withCString { write(2, $0, strlen($0)) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (never their secrets).")
        @Flag(help: "Revoked keys too.") var revoked = false
        @OptionGroup var connection: Connection

        func run() throws {
            let answer = try connection.call("GET", "/api/v1/keys" + (revoked ? "?revoked=1" : ""))
            if connection.json { return connection.print(answer) }
            let keys = answer["keys"]?.arrayValue ?? []
            Swift.print("\(keys.count) key\(keys.count == 1 ? "" : "s")\(answer["required"]?.boolValue == true ? " (required)" : "")")
            for key in keys { Swift.print(KeysCommand.line(key)) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One key: its settings and usage.")
        @Argument(help: "Its id or name.") var key: String
        @OptionGroup var connection: Connection

        func run() throws {
            let answer = try connection.call("GET", "/api/v1/keys/" + KeysCommand.escaped(key))
            if connection.json { return connection.print(answer) }
            Swift.print(KeysCommand.line(answer))
            let usage = answer["usage"]
            Swift.print("  last minute: \(usage?["last_minute_requests"]?.intValue ?? 0) requests, \(usage?["last_minute_tokens"]?.intValue ?? 0) tokens; "
                        + "budget used: \(usage?["budget_used"]?.intValue ?? 0) tokens this \(answer["budget_period"]?.stringValue ?? "day")")
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a key's settings (none clears a limit).")
        @Argument(help: "Its id or name.") var key: String
        @Option(help: "A new name.") var name: String?
        @OptionGroup var settings: Settings
        @OptionGroup var connection: Connection

        func run() throws {
            let answer = try connection.call("PATCH", "/api/v1/keys/" + KeysCommand.escaped(key), body: try settings.body(name: name))
            if connection.json { return connection.print(answer) }
            Swift.print(KeysCommand.line(answer))
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key: refused from the next request on.")
        @Argument(help: "Its id or name.") var key: String
        @OptionGroup var connection: Connection

        func run() throws {
            let answer = try connection.call("DELETE", "/api/v1/keys/" + KeysCommand.escaped(key))
            if connection.json { return connection.print(answer) }
            Swift.print("revoked: " + KeysCommand.line(answer))
        }
    }

    /// One key on one line: id, name, prefix, limits.
    static func line(_ key: JSONValue) -> String {
        var parts = ["\(key["id"]?.intValue ?? 0)", key["name"]?.stringValue ?? "?", (key["prefix"]?.stringValue ?? "") + "…"]
        if let rpm = key["rpm"]?.intValue { parts.append("rpm=\(rpm)") }
        if let tpm = key["tpm"]?.intValue { parts.append("tpm=\(tpm)") }
        if let budget = key["budget_tokens"]?.intValue { parts.append("budget=\(budget)/\(key["budget_period"]?.stringValue ?? "day")") }
        let models = (key["models"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !models.isEmpty { parts.append("models=\(models.joined(separator: ","))") }
        if let wait = key["max_queue_wait"]?.doubleValue { parts.append("max_queue_wait=\(wait)s") }
        if key["cloud"]?.boolValue == true { parts.append("cloud") }
        if key["admin"]?.boolValue == true { parts.append("admin") }
        if key["semantic_cache"]?.boolValue == true { parts.append("semantic-cache") }
        let tags = (key["tags"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !tags.isEmpty { parts.append("tags=\(tags.joined(separator: ","))") }
        if key["revoked_ms"]?.intValue != nil { parts.append("REVOKED") }
        return parts.joined(separator: "  ")
    }

    /// A name or id as a path part.
    static func escaped(_ reference: String) -> String {
        var out = ""
        for byte in reference.utf8 {
            let plain = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x5F || byte == 0x2D
            out += plain ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
        }
        return out
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
