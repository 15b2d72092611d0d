/// The head of an HTTP request as the server received it (HTTP/1.1 or h2).
public struct HTTPRequestHead: Sendable, Equatable {
    /// `GET`, `POST`, … as sent.
    public var method: String
    /// The request target: path and query (`/api/chat?x=1`).
    public var target: String
    /// 1.0, 1.1 or 2.0 as (major, minor).
    public var versionMajor: Int
    public var versionMinor: Int
    public var headers: HTTPHeaders
    /// Whether the connection may be reused after this exchange (HTTP/1.x rules).
    public var keepAlive: Bool

    public init(method: String, target: String, versionMajor: Int = 1, versionMinor: Int = 1, headers: HTTPHeaders = HTTPHeaders(), keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.headers = headers
        self.keepAlive = keepAlive
    }

    /// The target without its query string.
    public var path: Substring {
        if let q = target.firstIndex(of: "?") { return target[..<q] }
        return Substring(target)
    }

    /// The value of query parameter `name` as sent (not percent-decoded; the first if repeated).
    public func queryValue(_ name: String) -> Substring? {
        guard let q = target.firstIndex(of: "?") else { return nil }
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts[0] == name { return parts.count > 1 ? parts[1] : "" }
        }
        return nil
    }

    /// The `Content-Length` header as a number, when present and valid.
    public var contentLength: Int? { headers[.contentLength].flatMap { Int($0.trimmingSpaces) } }
}

/// The head of an HTTP response.
public struct HTTPResponseHead: Sendable, Equatable {
    public var status: Int
    public var headers: HTTPHeaders
    public var versionMajor: Int
    public var versionMinor: Int
    public var keepAlive: Bool

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), versionMajor: Int = 1, versionMinor: Int = 1, keepAlive: Bool = true) {
        self.status = status
        self.headers = headers
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.keepAlive = keepAlive
    }
}

/// Reason phrases for the status codes herd sends.
public enum HTTPStatus {
    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 499: "Client Closed Request"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    /// `HTTP/1.1 <status> <reason>\r\n`, made once per status code.
    public static func statusLine(_ status: Int) -> [UInt8] {
        if status >= 100, status < 600, let line = statusLines[status - 100] { return line }
        return Array("HTTP/1.1 \(status) \(reason(status))\r\n".utf8)
    }

    private static let statusLines: [[UInt8]?] = (100..<600).map { status in
        let text = reason(status)
        return text.hasPrefix("Status ") ? nil : Array("HTTP/1.1 \(status) \(text)\r\n".utf8)
    }

    /// Whether a response with this status never has a body (1xx, 204, 304).
    public static func forbidsBody(_ status: Int) -> Bool {
        (100..<200).contains(status) || status == 204 || status == 304
    }
}
