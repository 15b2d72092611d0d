internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// Events of a `StreamConnection`, delivered on the loop thread, never inside
/// a call the delegate made on the connection.
public protocol StreamConnectionDelegate: AnyObject {
    /// Bytes arrived. They are valid only during the call (the loop's shared read
    /// buffer): consume or copy them before returning.
    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer)
    /// The peer closed its side (`error == nil`) or reading/writing failed. Reported
    /// once; the delegate decides whether to close.
    func connection(_ connection: StreamConnection, didEndWith error: UVError?)
    /// Every queued write has reached the kernel (`pendingWriteBytes == 0`).
    func connectionDidDrain(_ connection: StreamConnection)
    /// The handle is closed; nothing else is delivered.
    func connectionDidClose(_ connection: StreamConnection)
}

extension StreamConnectionDelegate {
    public func connectionDidDrain(_ connection: StreamConnection) {}
    public func connectionDidClose(_ connection: StreamConnection) {}
}

/// A TCP or Unix-domain byte stream on the loop. Loop-thread only.
///
/// Lifetime: a `LoopHandle` (the connection outlives every callback libuv
/// still owes it). The delegate is held strongly until close, then released
/// (breaking cycles).
public final class StreamConnection: LoopHandleOwner {
    public enum Kind: Sendable { case tcp, pipe }

    public let loop: EventLoop
    public let kind: Kind
    let handle: LoopHandle<uv_stream_t>
    public var delegate: (any StreamConnectionDelegate)?
    public private(set) var isClosing = false
    private var isReading = false
    private var endReported = false
    private var closeWhenFlushed = false

    var stream: UnsafeMutablePointer<uv_stream_t> { handle.pointer }

    public init(loop: EventLoop, kind: Kind) {
        self.loop = loop
        self.kind = kind
        switch kind {
        case .tcp:
            handle = .allocate(as: uv_tcp_t.self)
            handle.initialiseInfallibly(for: self, "uv_tcp_init") { uv_tcp_init(loop.raw, UnsafeMutableRawPointer($0).assumingMemoryBound(to: uv_tcp_t.self)) }
        case .pipe:
            handle = .allocate(as: uv_pipe_t.self)
            handle.initialiseInfallibly(for: self, "uv_pipe_init") { uv_pipe_init(loop.raw, UnsafeMutableRawPointer($0).assumingMemoryBound(to: uv_pipe_t.self), 0) }
        }
    }

    // MARK: Reading

    private static let allocate: uv_alloc_cb = { handle, _, buf in
        let connection = LoopHandle<uv_handle_t>.owner(of: handle, as: StreamConnection.self)
        buf!.pointee = uv_buf_t(base: connection.loop.readBuffer.assumingMemoryBound(to: CChar.self), len: EventLoop.readBufferSize)
    }

    private static let read: uv_read_cb = { stream, nread, buf in
        LoopHandle<uv_stream_t>.owner(of: stream, as: StreamConnection.self).didRead(nread, buf!.pointee)
    }

    /// Starts delivering reads to the delegate. Idempotent.
    public func startReading() {
        guard !isReading, !isClosing, !endReported else { return }
        let rc = uv_read_start(stream, StreamConnection.allocate, StreamConnection.read)
        if rc < 0 {
            reportEndLater(UVError(code: rc, operation: "uv_read_start"))
        } else {
            isReading = true
        }
    }

    /// Stops delivering reads (backpressure); `startReading` resumes. Idempotent.
    public func stopReading() {
        guard isReading, !isClosing else { return }
        isReading = false
        UVError.mustSucceed(uv_read_stop(stream), "uv_read_stop")
    }

    private func didRead(_ nread: Int, _ buf: uv_buf_t) {
        if nread > 0 {
            delegate?.connection(self, didRead: UnsafeRawBufferPointer(start: buf.base, count: nread))
        } else if nread < 0 {
            stopReading()
            let code = Int32(clamping: nread)
            reportEnd(code == UVError.eofCode ? nil : UVError(code: code, operation: "read"))
        }
    }

    private func reportEnd(_ error: UVError?) {
        guard !endReported, !isClosing else { return }
        endReported = true
        delegate?.connection(self, didEndWith: error)
    }

    /// A failure found inside a call the delegate made (start reading, write)
    /// is reported on the next tick, never re-entrantly.
    private func reportEndLater(_ error: UVError) {
        guard !endReported else { return }
        endReported = true
        loop.deferToNextTick { [self] in
            guard !isClosing else { return }
            delegate?.connection(self, didEndWith: error)
        }
    }

    // MARK: Writing

    /// Bytes accepted by `write` that the kernel has not taken yet.
    public var pendingWriteBytes: Int { isClosing ? 0 : uv_stream_get_write_queue_size(stream) }

    private static let wrote: uv_write_cb = { request, status in
        let connection = LoopHandle<uv_stream_t>.owner(of: request!.pointee.handle, as: StreamConnection.self)
        free(request)
        connection.didWrite(status)
    }

    /// Writes `bytes` in order after earlier writes. Tries a direct write first and
    /// copies only what the kernel did not take. Failures go to `didEndWith`
    /// (on the next tick).
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !isClosing, !endReported, let base = bytes.baseAddress, bytes.count > 0 else { return }
        var offset = 0
        if uv_stream_get_write_queue_size(stream) == 0 {
            var buf = uv_buf_t(base: UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: CChar.self)), len: bytes.count)
            let written = uv_try_write(stream, &buf, 1)
            if written == Int32(clamping: bytes.count) { return }
            if written > 0 {
                offset = Int(written)
            } else if written != UV_EAGAIN.rawValue {
                reportEndLater(UVError(code: written, operation: "write"))
                return
            }
        }
        let remaining = bytes.count - offset
        let header = MemoryLayout<uv_write_t>.stride
        let memory = malloc(header + remaining)!
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = memory + header
        memcpy(payload, base + offset, remaining)
        var buf = uv_buf_t(base: payload.assumingMemoryBound(to: CChar.self), len: remaining)
        let rc = uv_write(request, stream, &buf, 1, StreamConnection.wrote)
        if rc < 0 {
            free(memory)
            reportEndLater(UVError(code: rc, operation: "uv_write"))
        }
    }

    /// Writes a byte array (see `write(_:)` for raw buffers).
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    private func didWrite(_ status: Int32) {
        if status < 0 {
            if status != UVError.cancelledCode { reportEnd(UVError(code: status, operation: "write")) }
            return
        }
        guard !isClosing, uv_stream_get_write_queue_size(stream) == 0 else { return }
        if closeWhenFlushed {
            close()
        } else {
            delegate?.connectionDidDrain(self)
        }
    }

    // MARK: Closing

    /// Closes once every queued write has been written (or at once if none is).
    public func closeAfterFlush() {
        guard !isClosing else { return }
        if endReported || uv_stream_get_write_queue_size(stream) == 0 {
            close()
        } else {
            closeWhenFlushed = true
            stopReading()
        }
    }

    /// Sends FIN after queued writes (half-close) and keeps the read side open.
    /// A connection that can no longer be shut down (the peer left) is left to
    /// its read side to report.
    public func shutdownWrite() {
        guard !isClosing else { return }
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        if uv_shutdown(request, stream, { request, _ in request!.deallocate() }) < 0 {
            request.deallocate()
        }
    }

    /// Closes the handle now; queued writes are dropped. Idempotent.
    public func close() {
        guard !isClosing else { return }
        isClosing = true
        handle.close()
    }

    /// Closes a TCP stream with a reset (RST) instead of an orderly FIN: the peer
    /// sees `ECONNRESET`. Pipes (and a socket that cannot be reset) close normally.
    public func reset() {
        guard !isClosing else { return }
        guard kind == .tcp else { return close() }
        isClosing = true
        if uv_tcp_close_reset(handle.as(uv_tcp_t.self), loopHandleDidClose) < 0 {
            handle.close()
        }
    }

    func handleDidClose() {
        delegate?.connectionDidClose(self)
        delegate = nil
    }

    func forceClose() { close() }

    // MARK: Socket options and addresses

    /// Disables Nagle's algorithm on TCP streams (no effect on pipes).
    public func setNoDelay(_ enabled: Bool = true) throws(UVError) {
        guard kind == .tcp, !isClosing else { return }
        try UVError.check(uv_tcp_nodelay(handle.as(uv_tcp_t.self), enabled ? 1 : 0), "uv_tcp_nodelay")
    }

    /// Caps the kernel's send buffer (SO_SNDBUF; TCP only). A long-lived stream
    /// to a reader that may stop reading then backs up into `pendingWriteBytes`,
    /// where its owner bounds it, instead of into megabytes of kernel memory.
    public func setSendBuffer(bytes: Int) throws(UVError) {
        guard kind == .tcp, !isClosing else { return }
        var value = Int32(clamping: max(bytes, 4096))
        try UVError.check(uv_send_buffer_size(handle.as(uv_handle_t.self), &value), "uv_send_buffer_size")
    }

    /// The peer's address (TCP only).
    public var peerAddress: SocketAddress? { address(peer: true) }
    /// The local address (TCP only).
    public var localAddress: SocketAddress? { address(peer: false) }

    private func address(peer: Bool) -> SocketAddress? {
        guard kind == .tcp, !isClosing else { return nil }
        var storage = sockaddr_storage()
        var length = Int32(clamping: MemoryLayout<sockaddr_storage>.size)
        let tcp = handle.as(uv_tcp_t.self)
        let rc = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? uv_tcp_getpeername(tcp, $0, &length) : uv_tcp_getsockname(tcp, $0, &length)
            }
        }
        return rc == 0 ? SocketAddress(storage: storage) : nil
    }
}
