import HerdRuntime
/// An HTTP/1.1 client with a keep-alive pool per upstream address.
/// Loop-thread only.
public final class HTTPClient {
    public let loop: EventLoop
    /// The clock of every connection timeout (the loop's own, unless a test holds one).
    public let clock: any LoopClock
    public let configuration: HTTPClientConfiguration
    private var pools: [SocketAddress: UpstreamPool] = [:]
    private var tlsPools: [String: UpstreamPool] = [:]

    public init(loop: EventLoop, clock: (any LoopClock)? = nil, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.loop = loop
        self.clock = clock ?? loop
        self.configuration = configuration
    }

    /// The pool of `upstream` (created on first use).
    public func pool(for upstream: SocketAddress) -> UpstreamPool {
        if let pool = pools[upstream] { return pool }
        let pool = UpstreamPool(loop: loop, clock: clock, address: upstream, configuration: configuration)
        pools[upstream] = pool
        return pool
    }

    /// The pool of an HTTPS upstream: TLS with `context`, the certificate checked against `serverName`.
    public func pool(for upstream: SocketAddress, tls context: TLSClientContext, serverName: String) -> UpstreamPool {
        let key = serverName + "@" + upstream.description
        if let pool = tlsPools[key] { return pool }
        let pool = UpstreamPool(loop: loop, clock: clock, address: upstream, configuration: configuration,
                                tls: UpstreamPool.TLS(context: context, serverName: serverName))
        tlsPools[key] = pool
        return pool
    }

    /// Sends `request` to `upstream`; the response goes to `delegate`.
    @discardableResult
    public func execute(_ request: consuming HTTPClientRequest, to upstream: SocketAddress, delegate: any HTTPClientResponseDelegate) -> HTTPClientTask {
        execute(request, in: pool(for: upstream), delegate: delegate)
    }

    /// Sends `request` on `pool` (one this client made: `pool(for:)`).
    @discardableResult
    public func execute(_ request: consuming HTTPClientRequest, in pool: UpstreamPool, delegate: any HTTPClientResponseDelegate) -> HTTPClientTask {
        let task = HTTPClientTask(request: request, upstream: pool.address, delegate: delegate)
        pool.enqueue(task)
        return task
    }

    /// Closes every pooled connection (in-flight requests fail).
    public func close() {
        for pool in pools.values { pool.close() }
        pools.removeAll()
        for pool in tlsPools.values { pool.close() }
        tlsPools.removeAll()
    }
}
