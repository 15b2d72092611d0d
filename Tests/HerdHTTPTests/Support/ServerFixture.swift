import HerdRuntime
import HerdTestSupport
@testable import HerdHTTP

/// An HTTP server on its own loop thread, on 127.0.0.1 and a free port.
final class ServerFixture: @unchecked Sendable {
    let thread: LoopThread
    var server: HTTPServer!
    var port = 0

    /// A server whose timeouts run on `clock` (virtual time) when one is given.
    init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), clock: ManualClock? = nil,
         handler: @escaping HTTPServer.Handler) throws {
        thread = try LoopThread()
        let loop = thread.loop
        port = try thread.sync { [self] in
            let server = HTTPServer(loop: loop, clock: clock, configuration: configuration, handler: handler)
            self.server = server
            return try server.listen(host: "127.0.0.1", port: 0).port
        }
    }

    func onLoop<T>(_ body: @escaping () throws -> T) throws -> T { try thread.sync(body) }

    /// Waits until the server's HTTP/1.1 connections are in `phases`.
    func waitForPhases(_ phases: [HTTP1ServerFlow.Phase], seconds: Double = 5) -> Bool {
        waitUntil(seconds: seconds) { (try? self.onLoop { self.server.http1Phases }) == phases }
    }

    func shutdown() {
        _ = try? thread.sync { [self] in self.server.close() }
        thread.shutdown()
    }
}
