import HerdRuntime
/// An HTTP/1.1 client with a keep-alive pool per upstream address.
/// Loop-thread only.
public final class HTTPClient {
    public let loop: EventLoop
    /// The clock of every connection timeout (the loop's own, unless a test holds one).
    public let clock: any LoopClock
    public let configuration: HTTPClientConfiguration
    private var pools: [String: UpstreamPool] = [:]

    public init(loop: EventLoop, clock: (any LoopClock)? = nil, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.loop = loop
        self.clock = clock ?? loop
        self.configuration = configuration
    }

    /// The pool of `upstream` (created on first use).
    public func pool(for upstream: SocketAddress) -> UpstreamPool {
        let key = upstream.description
        if let pool = pools[key] { return pool }
        let pool = UpstreamPool(loop: loop, clock: clock, address: upstream, configuration: configuration)
        pools[key] = pool
        return pool
    }

    /// Sends `request` to `upstream`; the response goes to `delegate`.
    @discardableResult
    public func execute(_ request: HTTPClientRequest, to upstream: SocketAddress, delegate: any HTTPClientResponseDelegate) -> HTTPClientTask {
        let task = HTTPClientTask(request: request, upstream: upstream, delegate: delegate)
        pool(for: upstream).enqueue(task)
        return task
    }

    /// Closes every pooled connection (in-flight requests fail).
    public func close() {
        for pool in pools.values { pool.close() }
        pools.removeAll()
    }
}
