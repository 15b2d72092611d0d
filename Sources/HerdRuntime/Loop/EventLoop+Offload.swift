internal import CUV

/// Work handed to libuv's thread pool, with its result carried back to the loop.
private final class OffloadJob: @unchecked Sendable {
    let work: () -> Void
    let done: () -> Void
    init(work: @escaping () -> Void, done: @escaping () -> Void) {
        self.work = work
        self.done = done
    }
}

/// The result slot shared by the worker (writes once) and the loop (reads after).
private final class ResultSlot<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}

extension EventLoop {
    /// Runs blocking `work` on a worker thread (libuv's pool) and delivers its
    /// result to `completion` on the loop thread. Loop-thread only.
    ///
    /// `completion` always runs, never inside this call, with `.failure` when
    /// `work` throws or the pool refuses it.
    public func offload<T>(
        _ work: @escaping @Sendable () throws -> T,
        then completion: @escaping (Result<T, any Error>) -> Void
    ) {
        let slot = ResultSlot<T>()
        let job = OffloadJob(
            work: { slot.value = Result { try work() } },
            done: { completion(slot.value!) }
        )
        let request = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(job).toOpaque()
        let rc = uv_queue_work(raw, request, { request in
            Unmanaged<OffloadJob>.fromOpaque(request!.pointee.data).takeUnretainedValue().work()
        }, { request, status in
            // ECANCELED only for work cancelled with uv_cancel, which herd never does:
            // the work ran, its result is in the slot.
            let job = Unmanaged<OffloadJob>.fromOpaque(request!.pointee.data).takeRetainedValue()
            request!.deallocate()
            job.done()
        })
        if rc < 0 {
            Unmanaged<OffloadJob>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            let error = UVError(code: rc, operation: "uv_queue_work")
            deferToNextTick { completion(.failure(error)) }
        }
    }
}
