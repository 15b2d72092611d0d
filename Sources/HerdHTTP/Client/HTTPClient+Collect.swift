import HerdRuntime
/// A whole response, collected.
public struct HTTPCollectedResponse: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    public let body: [UInt8]
}

/// Collects one response into memory (bounded) and calls back once.
private final class CollectingResponse: HTTPClientResponseDelegate {
    private let limit: Int
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    private var completion: ((Result<HTTPCollectedResponse, HTTPClientError>) -> Void)?
    private var selfReference: CollectingResponse?

    init(limit: Int, completion: @escaping (Result<HTTPCollectedResponse, HTTPClientError>) -> Void) {
        self.limit = limit
        self.completion = completion
        selfReference = self
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) { self.head = head }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        body.append(contentsOf: bytes)
        if body.count > limit {
            task.cancel()
            finish(.failure(.invalidResponse("response over \(limit) bytes")))
        }
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        finish(.success(HTTPCollectedResponse(status: head?.status ?? 0, headers: head?.headers ?? HTTPHeaders(), body: body)))
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) { finish(.failure(error)) }

    private func finish(_ result: Result<HTTPCollectedResponse, HTTPClientError>) {
        let callback = completion
        completion = nil
        selfReference = nil
        callback?(result)
    }
}

extension HTTPClient {
    /// Sends `request` and delivers the whole response (at most `limit` bytes).
    public func collect(_ request: HTTPClientRequest, to upstream: SocketAddress, limit: Int = 16 * 1024 * 1024,
                        completion: @escaping (Result<HTTPCollectedResponse, HTTPClientError>) -> Void) {
        let collector = CollectingResponse(limit: limit, completion: completion)
        execute(request, to: upstream, delegate: collector)
    }
}
