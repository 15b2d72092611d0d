import HerdRuntime
import HerdWire
import HerdJSON
/// One framed control connection (either end): decodes frames as they arrive
/// and coalesces outgoing frames into one write per loop iteration.
/// A malformed frame closes the channel (only this one), and so does a peer
/// that stops reading: past `maxPendingBytes` unsent, the channel is dropped
/// rather than grow without bound. Loop-thread only.
public final class ControlChannel: StreamConnectionDelegate, LoopFlushable {
    public let stream: StreamConnection
    private var decoder = ControlFrameDecoder()
    private var output: [UInt8] = []
    private var flushScheduled = false
    private var closed = false
    /// A decoded frame.
    /// A decoded frame (its bytes are valid during the call only); a thrown
    /// error closes the channel with it.
    public var onMessage: ((ControlFrameBody) throws(ControlProtocolError) -> Void)?
    /// The channel closed: `nil` for an orderly close, else why.
    public var onClose: ((ControlProtocolError?) -> Void)?
    /// Every queued byte reached the kernel (after a backlog).
    public var onDrain: (() -> Void)?
    /// The most bytes a peer may leave unread before it is dropped.
    public var maxPendingBytes = 64 << 20

    public init(stream: StreamConnection) {
        self.stream = stream
        stream.delegate = self
    }

    public func start() { stream.startReading() }

    public var isOpen: Bool { !closed }

    /// Queues a JSON frame; it leaves with the others of this loop iteration.
    public func send(_ type: ControlMessageType, _ body: JSONValue) {
        guard !closed else { return }
        ControlFrame.encode(type, body, into: &output)
        queued()
    }

    /// Queues a compact frame; it leaves with the others of this loop iteration.
    public func send(_ type: ControlMessageType, _ message: some WireBinaryMessage) {
        guard !closed else { return }
        ControlFrame.encode(type, message, into: &output)
        queued()
    }

    private func queued() {
        if output.count > 256 * 1024 {
            flushOutput()
        } else if !flushScheduled {
            flushScheduled = true
            stream.loop.scheduleFlush(self)
        }
    }

    /// Bytes queued but not yet taken by the kernel.
    public var pendingBytes: Int { output.count + stream.pendingWriteBytes }

    /// Earlier writes wait for the peer to read (the kernel's buffer is full).
    public var isBacklogged: Bool { stream.pendingWriteBytes > 0 }

    public func flushOutput() {
        flushScheduled = false
        guard !output.isEmpty, !closed else { return }
        stream.write(output)
        output.removeAll(keepingCapacity: true)
        let pending = stream.pendingWriteBytes
        if pending > maxPendingBytes {
            abort(ControlProtocolError("the peer is not reading (\(pending >> 20) MiB unsent)"))
        }
    }

    /// Drops the connection and what it had queued; `onClose` on the next tick
    /// (this runs inside a send).
    private func abort(_ error: ControlProtocolError) {
        closed = true
        output = []
        stream.close()
        let callback = onClose
        onClose = nil
        onMessage = nil
        onDrain = nil
        stream.loop.deferToNextTick { callback?(error) }
    }

    public func close(_ error: ControlProtocolError? = nil) {
        guard !closed else { return }
        flushOutput()
        closed = true
        stream.closeAfterFlush()
        let callback = onClose
        onClose = nil
        onMessage = nil
        onDrain = nil
        callback?(error)
    }

    public func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        decoder.append(bytes)
        do {
            try decoder.forEachFrame { frame throws(ControlProtocolError) in
                try onMessage?(frame)
                return !closed
            }
        } catch {
            close(error)
        }
    }

    public func connectionDidDrain(_ connection: StreamConnection) {
        guard !closed else { return }
        onDrain?()
    }

    public func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        if closed {
            stream.close()
            return
        }
        closed = true
        stream.close()
        let callback = onClose
        onClose = nil
        onMessage = nil
        callback?(error.map { ControlProtocolError("connection failed: \($0.name)") })
    }
}
