import HerdRuntime
import HerdJSON
/// An HTTP/1.1 (and h2c) server on the loop: it accepts connections, parses
/// requests and hands each one to `handler` as an `HTTPExchange`. Loop-thread only.
public final class HTTPServer {
    public typealias Handler = (HTTPExchange) -> Void

    public let loop: EventLoop
    /// The clock of every connection timeout (the loop's own, unless a test holds one).
    public let clock: any LoopClock
    public let configuration: HTTPServerConfiguration
    let handler: Handler
    /// Builds the body of an error the server itself answers (400, 408, 413,
    /// 431) from the status, the message and the request target (as much of it
    /// as arrived): the default is `{"error":"…"}`. A server of an API with
    /// its own error format sets its own.
    public var errorBody: (_ status: Int, _ message: String, _ target: String?) -> (contentType: String, body: [UInt8]) = { _, message, _ in
        ("application/json; charset=utf-8", Array(JSONText.object(["error": .string(message)]).utf8))
    }
    let dates = HTTPDateCache()
    private var listeners: [StreamListener] = []
    private var connections: [ObjectIdentifier: AnyObject] = [:]
    private var isDraining = false
    private var drainedCallback: (() -> Void)?

    /// Connections keep their server alive until they close; `close()` or
    /// `drain` ends them.
    public init(loop: EventLoop, clock: (any LoopClock)? = nil, configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                handler: @escaping Handler) {
        self.loop = loop
        self.clock = clock ?? loop
        self.configuration = configuration
        self.handler = handler
    }

    deinit { stopAccepting() }

    /// Listens on `host:port` (port 0 picks a free port) and returns the bound address.
    @discardableResult
    public func listen(host: String, port: Int, reusePort: Bool = false) throws -> SocketAddress {
        let address = try SocketAddress(host: host, port: port)
        let listener = try StreamListener(loop: loop, address: address, reusePort: reusePort) { [unowned self] connection in
            self.accept(connection)
        }
        listeners.append(listener)
        return listener.localAddress ?? address
    }

    /// Listens on a Unix socket.
    public func listen(path: String) throws {
        let listener = try StreamListener(loop: loop, path: path) { [unowned self] connection in
            self.accept(connection)
        }
        listeners.append(listener)
    }

    /// The number of open client connections.
    public var connectionCount: Int { connections.count }

    /// The phases of the open HTTP/1.1 connections (tests wait on them).
    var http1Phases: [HTTP1ServerFlow.Phase] { connections.values.compactMap { ($0 as? HTTP1ServerConnection)?.phase } }

    private func accept(_ connection: StreamConnection) {
        let session = HTTP1ServerConnection(server: self, stream: connection)
        connections[ObjectIdentifier(session)] = session
        session.start()
    }

    func adopt(_ replacement: AnyObject, replacing old: AnyObject) {
        connections[ObjectIdentifier(old)] = nil
        connections[ObjectIdentifier(replacement)] = replacement
    }

    func connectionDidClose(_ session: AnyObject) {
        connections[ObjectIdentifier(session)] = nil
        if isDraining, connections.isEmpty {
            let callback = drainedCallback
            drainedCallback = nil
            callback?()
        }
    }

    /// Stops accepting new connections (the listening sockets close).
    public func stopAccepting() {
        for listener in listeners { listener.close() }
        listeners.removeAll()
    }

    /// Graceful stop: stops accepting, closes idle connections, lets in-flight
    /// exchanges finish (their connections close after the response), and calls
    /// `completion` when no connection is left.
    public func drain(completion: @escaping () -> Void) {
        stopAccepting()
        isDraining = true
        drainedCallback = completion
        for case let session as any DrainableConnection in connections.values { session.beginDrain() }
        if connections.isEmpty {
            drainedCallback = nil
            completion()
        }
    }

    var draining: Bool { isDraining }

    /// Closes every listener and connection at once.
    public func close() {
        stopAccepting()
        for case let session as any DrainableConnection in connections.values { session.closeNow() }
    }
}

/// A server connection that can be asked to finish its work and close.
protocol DrainableConnection: AnyObject {
    func beginDrain()
    func closeNow()
}
