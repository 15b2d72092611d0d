#if canImport(Glibc)
import Glibc
#endif

/// An event loop running on a thread of its own: for tests, benchmarks and
/// processes that keep their main thread for something else.
public final class LoopThread: @unchecked Sendable {
    public let loop: EventLoop
    private var thread = pthread_t()
    private var joined = false

    /// Creates a loop and starts running it on a new thread.
    public init() throws {
        loop = try EventLoop()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let owner = Unmanaged<LoopThread>.fromOpaque(arg!).takeRetainedValue()
            owner.loop.run()
            owner.loop.close()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Runs `body` on the loop thread and waits for its result.
    public func sync<T>(_ body: @escaping () throws -> T) throws -> T {
        let slot = SyncSlot<T>()
        let job = UncheckedSendable(body)
        loop.execute {
            slot.set(Result { try job.value() })
        }
        return try slot.wait().get()
    }

    /// Stops the loop, closes its remaining handles and joins the thread.
    public func shutdown() {
        guard !joined else { return }
        joined = true
        loop.stop()
        pthread_join(thread, nil)
    }
}

/// A one-shot value handed from the loop thread to a waiting thread.
final class SyncSlot<T>: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var value: Result<T, any Error>?

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&cond)
    }

    func set(_ result: Result<T, any Error>) {
        pthread_mutex_lock(&mutex)
        value = result
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    func wait() -> Result<T, any Error> {
        pthread_mutex_lock(&mutex)
        while value == nil { pthread_cond_wait(&cond, &mutex) }
        let result = value!
        pthread_mutex_unlock(&mutex)
        return result
    }
}

/// Carries a value across threads where the runtime's confinement rules, not the
/// type system, make that safe (a closure handed to the loop thread that owns
/// what it captures).
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
