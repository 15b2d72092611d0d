import HerdRuntime
/// Keep-alive connections to one upstream: reuses idle ones (most recent first),
/// opens new ones up to the limit, and queues requests beyond it. Loop-thread only.
public final class UpstreamPool {
    public let address: SocketAddress
    let loop: EventLoop
    let clock: any LoopClock
    let configuration: HTTPClientConfiguration
    private var idle: [HTTP1ClientConnection] = []
    private var waiting: [HTTPClientTask] = []
    private var waitingHead = 0
    /// Connections open or opening, idle or busy.
    public private(set) var connectionCount = 0
    /// Connections opened over the pool's life (for tests and metrics).
    public private(set) var connectionsOpened = 0
    private var isClosed = false

    /// An HTTPS upstream's TLS: how it is trusted and the name its certificate must carry.
    struct TLS {
        let context: TLSClientContext
        let serverName: String
    }

    let tls: TLS?

    init(loop: EventLoop, clock: any LoopClock, address: SocketAddress, configuration: HTTPClientConfiguration, tls: TLS? = nil) {
        self.tls = tls
        self.loop = loop
        self.clock = clock
        self.address = address
        self.configuration = configuration
    }

    /// Idle connections ready for reuse.
    public var idleCount: Int { idle.count }

    func enqueue(_ task: HTTPClientTask) {
        if isClosed {
            task.deliverFailure(.connectionLost(nil, afterResponseStarted: false))
            return
        }
        if let connection = idle.popLast() {
            connection.send(task, reused: true)
        } else if connectionCount < configuration.maxConnectionsPerUpstream {
            openConnection(for: task)
        } else {
            waiting.append(task)
        }
    }

    /// Opens a fresh connection for `task` (also used to retry a request whose
    /// pooled connection turned out dead).
    func openConnection(for task: HTTPClientTask) {
        connectionCount += 1
        connectionsOpened += 1
        let connection = HTTP1ClientConnection(pool: self)
        connection.connect(then: task)
    }

    /// A connection finished its exchange and may serve another.
    func connectionBecameIdle(_ connection: HTTP1ClientConnection) {
        if let task = nextWaiter() {
            connection.send(task, reused: true)
            return
        }
        if isClosed {
            connection.close()
            return
        }
        idle.append(connection)
        connection.parkIdle()
    }

    /// A connection closed (for whatever reason).
    func connectionDidClose(_ connection: HTTP1ClientConnection) {
        connectionCount -= 1
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        if !isClosed, connectionCount < configuration.maxConnectionsPerUpstream, let task = nextWaiter() {
            openConnection(for: task)
        }
    }

    private func nextWaiter() -> HTTPClientTask? {
        while waitingHead < waiting.count {
            let task = waiting[waitingHead]
            waitingHead += 1
            if waitingHead > 64, waitingHead * 2 > waiting.count {
                waiting.removeFirst(waitingHead)
                waitingHead = 0
            }
            if !task.isFinished { return task }
        }
        return nil
    }

    /// Closes idle connections and fails queued requests.
    func close() {
        isClosed = true
        for connection in idle { connection.close() }
        idle.removeAll()
        while let task = nextWaiter() { task.deliverFailure(.connectionLost(nil, afterResponseStarted: false)) }
    }
}
