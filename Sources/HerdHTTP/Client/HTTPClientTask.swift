import HerdRuntime
/// One request in flight: the handle a caller uses for backpressure and
/// cancellation. Loop-thread only.
public final class HTTPClientTask {
    public let request: HTTPClientRequest
    public let upstream: SocketAddress
    public private(set) weak var delegate: (any HTTPClientResponseDelegate)?
    /// Whether the request went over a connection reused from the pool.
    public internal(set) var reusedConnection = false
    /// When the request was written to a connection (monotonic ns; nil while
    /// it waits for one in the pool): the upstream's time starts here.
    public internal(set) var sentAt: UInt64?
    /// Body bytes delivered so far.
    public internal(set) var bodyBytesReceived = 0
    public internal(set) var isResponseStarted = false
    public private(set) var isFinished = false
    /// Set when the pooled connection died before answering and the request was
    /// sent again on a fresh one.
    public internal(set) var retriedOnFreshConnection = false
    var isPaused = false
    weak var connection: HTTP1ClientConnection?

    init(request: consuming HTTPClientRequest, upstream: SocketAddress, delegate: any HTTPClientResponseDelegate) {
        self.request = request
        self.upstream = upstream
        self.delegate = delegate
    }

    /// Stops reading the response (backpressure: the consumer's buffer is full).
    public func pauseReading() {
        isPaused = true
        connection?.setReading(false)
    }

    /// Resumes reading the response.
    public func resumeReading() {
        isPaused = false
        connection?.setReading(true)
    }

    /// Abandons the request: its connection is closed (it cannot be reused
    /// mid-response), a queued request leaves the queue, and nothing more is
    /// delivered.
    public func cancel() {
        guard !isFinished else { return }
        isFinished = true
        delegate = nil
        // A task still waiting for a connection is skipped when its turn comes.
        connection?.abandon(self)
    }

    func deliverHead(_ head: HTTPResponseHead) {
        guard !isFinished else { return }
        isResponseStarted = true
        delegate?.task(self, didReceiveHead: head)
    }

    func deliverBody(_ bytes: UnsafeRawBufferPointer) {
        guard !isFinished else { return }
        bodyBytesReceived += bytes.count
        delegate?.task(self, didReceiveBody: bytes)
    }

    func deliverFinish() {
        guard !isFinished else { return }
        isFinished = true
        connection = nil
        let d = delegate
        delegate = nil
        d?.taskDidFinish(self)
    }

    func deliverFailure(_ error: HTTPClientError) {
        guard !isFinished else { return }
        isFinished = true
        connection = nil
        let d = delegate
        delegate = nil
        d?.task(self, didFail: error)
    }
}
