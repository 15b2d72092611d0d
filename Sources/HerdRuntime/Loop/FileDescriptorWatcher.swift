internal import CUV

/// Watches a file descriptor someone else owns (a D-Bus socket of Avahi's) for
/// readability and writability on the loop (`uv_poll_t`). Loop-thread only;
/// lives until `close()`.
public final class FileDescriptorWatcher: LoopClosable {
    /// What happened (or what to watch for).
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: 1)
        public static let writable = Events(rawValue: 2)
        /// The descriptor failed (reported alone).
        public static let error = Events(rawValue: 4)
    }

    public let descriptor: Int32
    private let loop: EventLoop
    private let handle: UnsafeMutablePointer<uv_poll_t>
    private var callback: ((Events) -> Void)?
    private var isClosed = false

    /// Starts watching nothing yet; `watch(_:)` chooses the events. Throws when
    /// libuv refuses the descriptor (then nothing is left open).
    public init(loop: EventLoop, descriptor: Int32, callback: @escaping (Events) -> Void) throws(UVError) {
        self.descriptor = descriptor
        self.loop = loop
        self.callback = callback
        handle = .allocate(capacity: 1)
        let rc = uv_poll_init(loop.raw, handle, descriptor)
        if rc < 0 {
            // An uninitialised handle must not be closed: only its memory goes.
            handle.deallocate()
            throw UVError(code: rc, operation: "uv_poll_init")
        }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Watches for `events` (empty: stops watching). A libuv failure is
    /// reported to the callback as `.error`, on the next loop iteration.
    public func watch(_ events: Events) {
        guard !isClosed else { return }
        var flags: Int32 = 0
        if events.contains(.readable) { flags |= Int32(UV_READABLE.rawValue) }
        if events.contains(.writable) { flags |= Int32(UV_WRITABLE.rawValue) }
        if flags == 0 {
            uv_poll_stop(handle)
            return
        }
        let rc = uv_poll_start(handle, flags) { raw, status, events in
            let watcher = Unmanaged<FileDescriptorWatcher>.fromOpaque(raw!.pointee.data).takeUnretainedValue()
            watcher.fire(status: status, events: events)
        }
        if rc < 0 { reportLater() }
    }

    private func reportLater() {
        // Never inside the caller's own call: the callback may free this watcher.
        loop.deferToNextTick { [self] in
            guard !isClosed else { return }
            callback?(.error)
        }
    }

    private func fire(status: Int32, events: Int32) {
        guard !isClosed, let callback else { return }
        var happened: Events = []
        if status < 0 {
            happened = .error
        } else {
            if events & Int32(UV_READABLE.rawValue) != 0 { happened.insert(.readable) }
            if events & Int32(UV_WRITABLE.rawValue) != 0 { happened.insert(.writable) }
        }
        callback(happened)
    }

    private var baseHandle: UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Stops watching and closes the handle (not the descriptor). Idempotent.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        uv_close(baseHandle) { raw in
            let watcher = Unmanaged<FileDescriptorWatcher>.fromOpaque(raw!.pointee.data)
            raw!.deallocate()
            watcher.release()
        }
    }

    func forceClose() { close() }
}
