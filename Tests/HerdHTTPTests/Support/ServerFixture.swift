import HerdHTTP
import HerdRuntime
import HerdTestSupport

/// An HTTP server on its own loop thread, on 127.0.0.1 and a free port.
final class ServerFixture: @unchecked Sendable {
    let thread: LoopThread
    var server: HTTPServer!
    var port = 0

    init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), handler: @escaping HTTPServer.Handler) throws {
        thread = try LoopThread()
        let loop = thread.loop
        port = try thread.sync { [self] in
            let server = HTTPServer(loop: loop, configuration: configuration, handler: handler)
            self.server = server
            return try server.listen(host: "127.0.0.1", port: 0).port
        }
    }

    func shutdown() {
        _ = try? thread.sync { [self] in self.server.close() }
        thread.shutdown()
    }
}
