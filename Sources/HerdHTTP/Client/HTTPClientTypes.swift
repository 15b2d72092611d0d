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
/// body before it routes it), or, for an upload, relayed from a `bodySource`
/// as it arrives.
public struct HTTPClientRequest: @unchecked Sendable {
    public var method: String
    public var target: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The body, relayed as it arrives (then `body` is unused): loop-thread only.
    public var bodySource: (any HTTPBodySource)?

    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                bodySource: (any HTTPBodySource)? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.bodySource = bodySource
    }
}

/// A request body that is sent while it arrives (an upload relayed from the
/// client). The connection writes the request head, then `attach`es itself:
/// the source writes what it holds and what comes, then ends the sink. It is
/// sent at most once: after `attach` it cannot be sent again (`isSpent`).
/// Loop-thread only.
public protocol HTTPBodySource: AnyObject {
    /// The whole body's length when known (sent as Content-Length; else chunked).
    var totalLength: Int? { get }
    /// Some of the body went to a connection: it cannot be sent again.
    var isSpent: Bool { get }
    func attach(_ sink: any HTTPBodySink)
    /// The sink is gone (the connection failed or closed, or its response
    /// ended): nothing more may be written to it.
    func detach(_ sink: any HTTPBodySink)
    /// The sink's unsent bytes went out: the source may write more.
    func sinkDrained()
}

/// Where an `HTTPBodySource` writes. Loop-thread only.
public protocol HTTPBodySink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer)
    /// The body is complete.
    func end()
    /// Bytes written but not yet sent (the source pauses its own input above a watermark).
    var pendingBytes: Int { get }
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
    /// An HTTPS upstream's TLS failed (its certificate not trusted, the handshake refused).
    case tlsFailed(String)

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
        case let .tlsFailed(reason): "TLS: \(reason)"
        }
    }

    /// Whether nothing of the response reached the caller, so another upstream
    /// may be tried without the client noticing.
    public var isBeforeResponse: Bool {
        switch self {
        case .connectFailed, .connectTimeout, .firstByteTimeout, .tlsFailed: true
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
