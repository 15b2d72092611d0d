import HerdHTTP
import HerdTestSupport
import HerdTestSupport

/// Collects one client response (on the loop thread) for a test thread to wait on.
final class CollectingDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var error: HTTPClientError?
    var finished = false
    let done = SyncFlag()
    /// Called for each body piece (on the loop thread), e.g. to pause reading.
    var onBody: ((HTTPClientTask, Int) -> Void)?

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) { self.head = head }
    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        body.append(contentsOf: bytes)
        onBody?(task, bytes.count)
    }
    func taskDidFinish(_ task: HTTPClientTask) {
        finished = true
        done.set()
    }
    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        self.error = error
        done.set()
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    func wait(_ milliseconds: Int = 5000) throws {
        if !done.wait(milliseconds: milliseconds) { throw TestError("no response within \(milliseconds) ms") }
    }
}
