import Glibc
import HerdJSON

/// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol:
/// navigate, evaluate JavaScript, collect console errors and uncaught
/// exceptions, take screenshots. A small WebSocket client of its own (text
/// frames, masked as a client must); everything on 127.0.0.1.
public final class HeadlessChromium {
    public static let executable = "/usr/bin/chromium"
    private let process: RunningProcess
    private let socket: RawClient
    private var nextID = 0
    /// Console errors, uncaught exceptions and browser log errors (CSP, failed loads) seen so far.
    public private(set) var errors: [String] = []
    private var pending: [UInt8] = []

    public init(directory: String, width: Int = 1280, height: Int = 900) throws {
        guard access(Self.executable, X_OK) == 0 else { throw TestError("\(Self.executable) is not installed (apt-get install chromium)") }
        let profile = directory + "/chromium-profile"
        mkdir(profile, 0o700)
        process = try RunningProcess(name: "chromium", path: Self.executable, arguments: [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--hide-scrollbars", "--mute-audio",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir=" + profile,
            "--window-size=\(width),\(height)", "about:blank",
        ], logDirectory: directory, environment: ["TMPDIR": directory])  // its singleton socket folder goes with the test's
        guard process.waitForOutput("DevTools listening on ws://127.0.0.1:", seconds: 30) else {
            throw TestError("chromium did not start: \(process.output)")
        }
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
        let line = process.output.split(separator: "\n").first { $0.contains("DevTools listening on") } ?? ""
        guard let portText = line.split(separator: ":").dropFirst(2).first?.split(separator: "/").first, let port = Int(portText) else {
            throw TestError("no DevTools port in: \(line)")
        }
        // The first page target (about:blank).
        let list = try JSONValue.parse(Self.httpGet(port: port, path: "/json/list"))
        guard let page = list.arrayValue?.first(where: { $0["type"]?.stringValue == "page" }),
              let url = page["webSocketDebuggerUrl"]?.stringValue,
              let path = url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).last.map({ "/" + $0 }) else {
            throw TestError("no page target: \(list)")
        }
        socket = try RawClient(port: port, timeoutSeconds: 30)
        socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: aGVyZC1kYXNoYm9hcmQtdGVzdA==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        while !String(decoding: socket.buffered, as: UTF8.self).contains("\r\n\r\n") {
            guard socket.fill() else { throw TestError("DevTools handshake failed") }
        }
        let bytes = socket.buffered
        guard String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
            throw TestError("DevTools handshake: \(String(decoding: bytes, as: UTF8.self))")
        }
        let end = (3..<bytes.count).first { bytes[$0 - 3] == 13 && bytes[$0 - 2] == 10 && bytes[$0 - 1] == 13 && bytes[$0] == 10 }! + 1
        pending = Array(bytes[end...])
        socket.consume()
        _ = try call("Runtime.enable")
        _ = try call("Log.enable")
        _ = try call("Page.enable")
    }

    deinit { close() }

    public func close() {
        process.kill(signal: SIGKILL)
    }

    /// Sends a DevTools command and waits for its answer (events seen meanwhile are kept as errors when they are).
    @discardableResult
    public func call(_ method: String, _ params: JSONValue = [:]) throws -> JSONValue {
        nextID += 1
        let id = nextID
        var body: [UInt8] = []
        JSONValue.object([("id", .int(id)), ("method", .string(method)), ("params", params)]).write(to: &body)
        sendFrame(body)
        while true {
            let message = try JSONValue.parse(try readMessage())
            if message["id"]?.intValue == id {
                if let error = message["error"] { throw TestError("\(method): \(error)") }
                return message["result"] ?? [:]
            }
            note(message)
        }
    }

    /// The value of a JavaScript expression (awaited when it is a promise).
    public func evaluate(_ expression: String) throws -> JSONValue {
        let result = try call("Runtime.evaluate", ["expression": .string(expression), "returnByValue": true, "awaitPromise": true])
        if let exception = result["exceptionDetails"] { throw TestError("evaluate \(expression): \(exception)") }
        return result["result"]?["value"] ?? .null
    }

    /// Waits until `expression` is true (polling every 100 ms).
    public func waitFor(_ expression: String, seconds: Double = 10) -> Bool {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            if (try? evaluate("Boolean(\(expression))")) == .bool(true) { return true }
            usleep(100_000)
        }
        return false
    }

    public func navigate(_ url: String) throws {
        try call("Page.navigate", ["url": .string(url)])
    }

    /// A PNG of the viewport, written to `path`; returns its size in bytes.
    @discardableResult
    public func screenshot(to path: String) throws -> Int {
        let result = try call("Page.captureScreenshot", ["format": "png"])
        guard let data = result["data"]?.stringValue, let png = Base64.decode(data) else { throw TestError("no screenshot data") }
        guard let file = fopen(path, "wb") else { throw TestError("cannot write \(path)") }
        defer { fclose(file) }
        fwrite(png, 1, png.count, file)
        return png.count
    }

    private func note(_ message: JSONValue) {
        let params = message["params"] ?? [:]
        switch message["method"]?.stringValue {
        case "Runtime.exceptionThrown":
            errors.append("exception: \(params["exceptionDetails"]?["exception"]?["description"]?.stringValue ?? params["exceptionDetails"]?["text"]?.stringValue ?? "?")")
        case "Runtime.consoleAPICalled" where params["type"]?.stringValue == "error" || params["type"]?.stringValue == "assert":
            errors.append("console: \((params["args"]?.arrayValue ?? []).map { $0["value"]?.stringValue ?? $0["description"]?.stringValue ?? "" }.joined(separator: " "))")
        case "Log.entryAdded" where params["entry"]?["level"]?.stringValue == "error":
            errors.append("log: \(params["entry"]?["text"]?.stringValue ?? "") \(params["entry"]?["url"]?.stringValue ?? "")")
        default: break
        }
    }

    /// Drains events that arrived (console errors) without a command.
    public func drainEvents(seconds: Double = 0.3) {
        _ = try? call("Runtime.evaluate", ["expression": "0"])
        usleep(useconds_t(seconds * 1_000_000))
        _ = try? call("Runtime.evaluate", ["expression": "0"])
    }

    // MARK: WebSocket framing

    private func sendFrame(_ payload: [UInt8]) {
        var frame: [UInt8] = [0x81]
        let n = payload.count
        if n < 126 {
            frame.append(0x80 | UInt8(n))
        } else if n < 65_536 {
            frame += [0x80 | 126, UInt8(n >> 8), UInt8(n & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((n >> shift) & 0xFF)) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        for (i, b) in payload.enumerated() { frame.append(b ^ mask[i % 4]) }
        socket.send(frame)
    }

    private func need(_ count: Int) throws {
        while pending.count < count {
            let before = socket.buffered.count
            guard socket.fill() else { throw TestError("DevTools connection closed") }
            pending += socket.buffered[before...]
            socket.consume()
        }
    }

    /// One whole message (continuation frames joined).
    private func readMessage() throws -> [UInt8] {
        var message: [UInt8] = []
        while true {
            try need(2)
            let fin = pending[0] & 0x80 != 0, opcode = pending[0] & 0x0F
            var length = Int(pending[1] & 0x7F), offset = 2
            if length == 126 {
                try need(4)
                length = Int(pending[2]) << 8 | Int(pending[3])
                offset = 4
            } else if length == 127 {
                try need(10)
                length = (2..<10).reduce(0) { $0 << 8 | Int(pending[$1]) }
                offset = 10
            }
            try need(offset + length)
            let payload = pending[offset..<(offset + length)]
            pending.removeFirst(offset + length)
            if opcode == 0x8 { throw TestError("DevTools closed the connection") }
            if opcode == 0x9 || opcode == 0xA { continue }
            message += payload
            if fin { return message }
        }
    }

    private static func httpGet(port: Int, path: String) throws -> [UInt8] {
        let client = try RawClient(port: port, timeoutSeconds: 10)
        client.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n")
        return try client.readResponse().body
    }
}

/// Base64 (standard alphabet) decoding for screenshots.
public enum Base64 {
    public static func decode(_ text: String) -> [UInt8]? {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(c)] = Int8(i) }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3 / 4)
        var buffer = 0, bits = 0
        for c in text.utf8 where c != UInt8(ascii: "=") && c != UInt8(ascii: "\n") {
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            buffer = buffer << 6 | Int(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> bits) & 0xFF))
            }
        }
        return out
    }
}
