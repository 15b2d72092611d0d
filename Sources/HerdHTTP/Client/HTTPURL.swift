import HerdRuntime

/// An `http://host:port/path` URL, as the flags take them.
public struct HTTPURL: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The path prefix without a trailing slash (`""` for the root).
    public var path: String

    /// Parses `http://host[:port][/path]`; `https` is refused (herd speaks plain
    /// HTTP to model servers on its network).
    public init(_ text: String, defaultPort: Int = 80) throws(HTTPURLError) {
        var rest = Substring(text)
        guard rest.hasPrefix("http://") else {
            throw HTTPURLError("\(text): only http:// URLs are supported")
        }
        rest = rest.dropFirst(7)
        let authority = rest.prefix { $0 != "/" }
        var pathPart = String(rest.dropFirst(authority.count))
        while pathPart.hasSuffix("/") { pathPart.removeLast() }
        path = pathPart
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw HTTPURLError("\(text): unterminated IPv6 address") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                port = defaultPort
            } else if after.hasPrefix(":"), let p = Int(after.dropFirst()) {
                port = p
            } else {
                throw HTTPURLError("\(text): bad port")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]) else { throw HTTPURLError("\(text): bad port") }
            port = p
        } else {
            host = String(authority)
            port = defaultPort
        }
        guard !host.isEmpty else { throw HTTPURLError("\(text): no host") }
        guard (1...65535).contains(port) else { throw HTTPURLError("\(text): port out of range") }
    }

    public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }

    /// Resolves the host (numeric or by name, blocking: call through `offload`).
    public func resolve() throws(HTTPURLError) -> SocketAddress {
        do {
            return try SocketAddress.resolve(host: host, port: port)
        } catch {
            throw HTTPURLError(error.message)
        }
    }
}

public struct HTTPURLError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
