/// Limits and timeouts of an HTTP server. Times are in milliseconds.
public struct HTTPServerConfiguration: Sendable {
    /// Request line plus headers; more is answered `431`.
    public var maxHeadBytes = 32 * 1024
    /// Request body; more is answered `413` (before reading it, when declared).
    public var maxBodyBytes = 64 * 1024 * 1024
    /// From the first byte of a request to the end of its head; then `408`.
    public var headTimeoutMilliseconds: UInt64 = 10_000
    /// Longest silence while a request body is arriving; then `408`.
    public var bodyIdleTimeoutMilliseconds: UInt64 = 30_000
    /// An idle keep-alive connection is closed after this.
    public var keepAliveTimeoutMilliseconds: UInt64 = 60_000
    /// After answering an error with the request unread, how long the server keeps
    /// draining the client's bytes before closing (so the client sees the answer).
    public var lingerMilliseconds: UInt64 = 2_000
    /// Bytes of pipelined requests buffered while a response is in progress;
    /// past this the server stops reading until the response ends.
    public var maxPipelinedBytes = 64 * 1024
    /// Request bodies one h2c connection may hold in memory (its streams'
    /// together, until their responses end); past it the server stops
    /// acknowledging DATA and the client's flow-control windows close.
    public var maxConnectionBodyBytes = 64 * 1024 * 1024
    /// Serve HTTP/2 with prior knowledge (h2c) on the same port.
    public var enableH2C = true

    public init() {}
}
