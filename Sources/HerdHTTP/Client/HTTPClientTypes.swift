import HerdRuntime
/// Limits and timeouts of the HTTP client. Times are in milliseconds.
public struct HTTPClientConfiguration: Sendable {
    /// Connections per upstream at most; further requests wait for one to free.
    public var maxConnectionsPerUpstream = 1024
    /// A pooled connection unused this long is closed.
    public var idleTimeoutMilliseconds: UInt64 = 30_000
    /// Connecting (TCP handshake) may take this long.
    public var connectTimeoutMilliseconds: UInt64 = 3_000
    /// From the request written to the first response byte.
    public var firstByteTimeoutMilliseconds: UInt64 = 120_000
    /// Longest silence between response bytes once the response has begun (0: none).
    public var readIdleTimeoutMilliseconds: UInt64 = 0
    /// From the request written to the end of its response (0: none).
    public var totalTimeoutMilliseconds: UInt64 = 0
    /// Largest response head accepted.
    public var maxHeadBytes = 64 * 1024

    public init() {}
}

/// A request for an upstream. The body is sent whole (herd reads a request's
/// body before it routes it).
public struct HTTPClientRequest: Sendable {
    public var method: String
    public var target: String
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// Why an upstream request failed.
public enum HTTPClientError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The TCP connection could not be made (refused, unreachable, …).
    case connectFailed(UVError)
    case connectTimeout
    /// No response byte arrived within the first-byte timeout.
    case firstByteTimeout
    /// The response stalled longer than the read idle timeout.
    case readTimeout
    /// The exchange took longer than the total timeout.
    case totalTimeout(afterResponseStarted: Bool)
    /// The connection ended or failed; `afterResponseStarted` says whether part
    /// of the response had already been delivered.
    case connectionLost(UVError?, afterResponseStarted: Bool)
    /// The upstream sent something that is not HTTP.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case let .connectFailed(error): "connect failed: \(error.name)"
        case .connectTimeout: "connect timed out"
        case .firstByteTimeout: "no response within the first-byte timeout"
        case .readTimeout: "response stalled"
        case let .totalTimeout(started): "no complete response within the total timeout\(started ? " (cut mid-response)" : "")"
        case let .connectionLost(error, started):
            "connection lost \(started ? "mid-response" : "before the response")\(error.map { ": \($0.name)" } ?? "")"
        case let .invalidResponse(reason): "invalid response: \(reason)"
        }
    }

    /// Whether nothing of the response reached the caller, so another upstream
    /// may be tried without the client noticing.
    public var isBeforeResponse: Bool {
        switch self {
        case .connectFailed, .connectTimeout, .firstByteTimeout: true
        case let .connectionLost(_, started), let .totalTimeout(started): !started
        case .invalidResponse, .readTimeout: false
        }
    }
}

/// Receives one request's response, on the loop thread. After `didFinish` or
/// `didFail` nothing more is delivered.
public protocol HTTPClientResponseDelegate: AnyObject {
    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead)
    /// Part of the (de-chunked) body; valid only during the call.
    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer)
    func taskDidFinish(_ task: HTTPClientTask)
    func task(_ task: HTTPClientTask, didFail error: HTTPClientError)
}
