internal import CUV

/// What owns a libuv handle (a timer, a stream, a listener, a signal, a child
/// process, a watched descriptor). The loop closes what is still open at
/// shutdown through `forceClose`.
protocol LoopHandleOwner: AnyObject {
    /// Starts closing the handle (idempotent); memory goes in the close callback.
    func forceClose()
    /// Runs in the close callback, before the owner is released: the last
    /// event the owner sees (a stream tells its delegate here).
    func handleDidClose()
}

extension LoopHandleOwner {
    func handleDidClose() {}
}

/// One libuv handle of type `Handle` owned by a Swift object, with the one
/// lifetime rule of the runtime (h2o's uv-binding): the handle's `data`
/// holds a retain of its owner from a successful `uv_*_init` until the close
/// callback, which frees the handle's memory and then releases the owner, so
/// the owner outlives every callback libuv still owes it. A handle whose init
/// failed was never initialised: it is `discard`ed, never closed.
struct LoopHandle<Handle> {
    let pointer: UnsafeMutablePointer<Handle>

    /// Memory for a handle, not yet initialised.
    static func allocate() -> LoopHandle {
        LoopHandle(pointer: .allocate(capacity: 1))
    }

    /// Memory for a handle of a larger concrete type (a `uv_stream_t` that is
    /// a `uv_tcp_t` or a `uv_pipe_t`).
    static func allocate<Concrete>(as _: Concrete.Type) -> LoopHandle {
        LoopHandle(pointer: UnsafeMutableRawPointer(UnsafeMutablePointer<Concrete>.allocate(capacity: 1)).assumingMemoryBound(to: Handle.self))
    }

    /// The handle as its concrete type.
    func `as`<Concrete>(_: Concrete.Type) -> UnsafeMutablePointer<Concrete> {
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: Concrete.self)
    }

    var base: UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Initialises the handle with `initialise` (a `uv_*_init`); on success the
    /// handle keeps `owner` alive until it is closed, on failure its memory is
    /// freed and the error thrown.
    func initialise(for owner: some LoopHandleOwner, _ operation: String,
                    _ initialise: (UnsafeMutablePointer<Handle>) -> Int32) throws(UVError) {
        let rc = initialise(pointer)
        if rc < 0 {
            discard()
            throw UVError(code: rc, operation: operation)
        }
        base.pointee.data = Unmanaged.passRetained(owner).toOpaque()
    }

    /// `initialise` for the inits libuv documents as unable to fail
    /// (`uv_timer_init`, `uv_tcp_init` without a family, `uv_pipe_init`).
    func initialiseInfallibly(for owner: some LoopHandleOwner, _ operation: String,
                              _ initialise: (UnsafeMutablePointer<Handle>) -> Int32) {
        UVError.mustSucceed(initialise(pointer), operation)
        base.pointee.data = Unmanaged.passRetained(owner).toOpaque()
    }

    /// Frees a handle that was never initialised.
    func discard() {
        pointer.deallocate()
    }

    /// Whether libuv considers the handle closing or closed.
    var isClosing: Bool { uv_is_closing(base) != 0 }

    /// Closes the handle; the owner hears `handleDidClose` in the close
    /// callback, then the memory and the owner's retain are released.
    func close() {
        guard !isClosing else { return }
        uv_close(base, loopHandleDidClose)
    }

    /// The owner a callback's handle points back at.
    @inline(__always)
    static func owner<Owner: AnyObject>(of handle: UnsafeMutablePointer<Handle>?, as _: Owner.Type = Owner.self) -> Owner {
        Unmanaged<Owner>.fromOpaque(UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_handle_t.self).pointee.data).takeUnretainedValue()
    }
}

/// The one close callback of every owned handle.
let loopHandleDidClose: uv_close_cb = { handle in
    let owner = Unmanaged<AnyObject>.fromOpaque(handle!.pointee.data!)
    (owner.takeUnretainedValue() as? any LoopHandleOwner)?.handleDidClose()
    handle!.deallocate()
    owner.release()
}

extension UVError {
    /// For calls libuv documents as unable to fail the way herd uses them
    /// (`uv_timer_init`, `uv_timer_start` on an open timer, `uv_read_stop`, …):
    /// a failure is a broken invariant, reported with libuv's name for it.
    @inline(__always)
    static func mustSucceed(_ rc: Int32, _ operation: @autoclosure () -> String) {
        if rc < 0 { fatalError("\(UVError(code: rc, operation: operation()))") }
    }
}
