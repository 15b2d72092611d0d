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
    private let lock = ConditionLock()
    private var value: Result<T, any Error>?

    func set(_ result: Result<T, any Error>) {
        lock.withLock {
            value = result
            lock.broadcast()
        }
    }

    func wait() -> Result<T, any Error> {
        lock.withLock {
            while value == nil { lock.wait() }
            return value!
        }
    }
}

/// Carries a value across threads where the runtime's confinement rules, not the
/// type system, make that safe (a closure handed to the loop thread that owns
/// what it captures).
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
