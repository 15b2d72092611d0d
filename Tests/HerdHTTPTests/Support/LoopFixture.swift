import HerdFakeBackend
import HerdHTTP
import HerdRuntime
import HerdTestSupport

/// A loop thread hosting a fake backend and an HTTP client, for client tests.
final class LoopFixture: @unchecked Sendable {
    let thread: LoopThread
    var backend: FakeBackend!
    var client: HTTPClient!
    var backendAddress: SocketAddress!

    /// A backend and a client whose timeouts run on `clock` (virtual time) when one is given.
    init(backend configuration: FakeBackendConfiguration = FakeBackendConfiguration(), client clientConfiguration: HTTPClientConfiguration = HTTPClientConfiguration(),
         clock: ManualClock? = nil) throws {
        thread = try LoopThread()
        let loop = thread.loop
        try thread.sync { [self] in
            backend = FakeBackend(loop: loop, configuration: configuration)
            let port = try backend.start()
            backendAddress = try SocketAddress(host: "127.0.0.1", port: port)
            client = HTTPClient(loop: loop, clock: clock, configuration: clientConfiguration)
        }
    }

    func onLoop<T>(_ body: @escaping () throws -> T) throws -> T { try thread.sync(body) }

    /// Sends `request` without waiting for the answer.
    func start(_ request: HTTPClientRequest, to address: SocketAddress? = nil) throws -> CollectingDelegate {
        let delegate = CollectingDelegate()
        let target = address ?? backendAddress!
        _ = try onLoop { [self] in client.execute(request, to: target, delegate: delegate) }
        return delegate
    }

    /// Sends `request` to the fake backend and waits for the whole response.
    func send(_ request: HTTPClientRequest, to address: SocketAddress? = nil, timeout: Int = 5000) throws -> CollectingDelegate {
        let delegate = CollectingDelegate()
        let target = address ?? backendAddress!
        _ = try onLoop { [self] in client.execute(request, to: target, delegate: delegate) }
        try delegate.wait(timeout)
        return delegate
    }

    func shutdown() {
        _ = try? thread.sync { [self] in
            client.close()
            backend.stop()
        }
        thread.shutdown()
    }
}

func chatRequest(model: String = "llama3:8b", stream: Bool = false, path: String = "/api/chat") -> HTTPClientRequest {
    HTTPClientRequest(method: "POST", target: path, headers: ["Content-Type": "application/json"],
                      body: Array("{\"model\":\"\(model)\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\(stream)}".utf8))
}
