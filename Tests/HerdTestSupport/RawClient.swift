import Glibc
import HerdRuntime

/// A blocking TCP client for tests: sends exact bytes and reads raw responses,
/// with its own small response reader (independent of herd's parser).
public final class RawClient {
    public let fd: Int32
    private var buffer: [UInt8] = []

    /// `receiveBuffer`: SO_RCVBUF, set before connecting (a small window: a slow reader).
    public init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Int = 5, receiveBuffer: Int32? = nil) throws {
        let address = try SocketAddress(host: host, port: port)
        fd = socket(address.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) // not inherited by processes tests spawn
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.connect(socket: fd)
        if rc != 0 { throw TestError("connect to \(host):\(port) failed: errno \(errno)") }
    }

    deinit { Glibc.close(fd) }

    public func send(_ text: String) { send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads more bytes into the buffer; false on EOF, error or timeout.
    @discardableResult
    public func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// Bytes read and not yet consumed by `readResponse`.
    public var buffered: [UInt8] { buffer }

    /// Forgets the bytes read so far (a caller that parsed them itself).
    public func consume() { buffer.removeAll(keepingCapacity: true) }

    /// Reads until the peer closes (or the timeout) and returns every byte.
    public func readToEnd() -> [UInt8] {
        while fill() {}
        defer { buffer.removeAll() }
        return buffer
    }

    /// Whether the server closed the connection (EOF) within `seconds` (reading
    /// and discarding what still arrives: a stream that keeps sending is not closed).
    public func isClosedByPeer(seconds: Double = 30) -> Bool {
        let deadline = monotonicSeconds() + seconds
        var chunk = [UInt8](repeating: 0, count: 4096)
        while monotonicSeconds() < deadline {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
        return false
    }

    /// Reads one complete response (Content-Length, chunked or close-delimited).
    public func readResponse(headRequest: Bool = false) throws -> RawResponse {
        var headEnd: Int?
        while true {
            if let r = findHeadEnd() { headEnd = r; break }
            if !fill() { throw TestError("connection ended before a response head: \(String(decoding: buffer, as: UTF8.self))") }
        }
        let headText = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let status = Int(statusLine.split(separator: " ")[1])!
        var headers: [(String, String)] = []
        for line in lines where !line.isEmpty {
            let colon = line.firstIndex(of: ":")!
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters()))
        }
        buffer.removeFirst(headEnd! + 4)
        let response = RawResponse(status: status, headers: headers, body: [], rawBody: [])
        if headRequest || status == 204 || status == 304 || (100..<200).contains(status) { return response }
        if let length = response.header("Content-Length").flatMap({ Int($0) }) {
            while buffer.count < length { if !fill() { throw TestError("short body") } }
            let body = Array(buffer[0..<length])
            buffer.removeFirst(length)
            return RawResponse(status: status, headers: headers, body: body, rawBody: body)
        }
        if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            var body: [UInt8] = []
            var raw: [UInt8] = []
            while true {
                var lineEnd: Int?
                while true {
                    if let i = findCRLF() { lineEnd = i; break }
                    if !fill() { throw TestError("short chunk size") }
                }
                let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self)
                let size = Int(sizeText.split(separator: ";")[0], radix: 16)!
                raw.append(contentsOf: buffer[0..<(lineEnd! + 2)])
                buffer.removeFirst(lineEnd! + 2)
                while buffer.count < size + 2 { if !fill() { throw TestError("short chunk") } }
                body.append(contentsOf: buffer[0..<size])
                raw.append(contentsOf: buffer[0..<(size + 2)])
                buffer.removeFirst(size + 2)
                if size == 0 { return RawResponse(status: status, headers: headers, body: body, rawBody: raw) }
            }
        }
        let body = readToEnd()
        return RawResponse(status: status, headers: headers, body: body, rawBody: body)
    }

    private func findHeadEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func findCRLF() -> Int? {
        guard buffer.count >= 2 else { return nil }
        for i in 0...(buffer.count - 2) where buffer[i] == 13 && buffer[i + 1] == 10 { return i }
        return nil
    }
}

public struct RawResponse {
    public let status: Int
    public let headers: [(String, String)]
    public let body: [UInt8]
    public let rawBody: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

public struct TestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    public func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
