#if canImport(Glibc)
import Glibc
#endif

/// A mutex with a condition variable, for the few places where a thread
/// waits for another (a loop thread's answer, the SQLite writer's batches).
/// The pthread objects live in their own heap allocation: their addresses
/// never move, which a class's stored properties do not promise to
/// `&`-conversions. (Loop code never waits: this is not for the hot path.)
public final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init")
        // Waits with a deadline measure on the monotonic clock, not wall time.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        precondition(pthread_cond_init(condition, &attributes) == 0, "pthread_cond_init")
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` holding the lock.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (the lock held, released while waiting) until signalled. Call in a
    /// loop over the awaited condition (wake-ups may be spurious).
    public func wait() {
        pthread_cond_wait(condition, mutex)
    }

    /// Waits until signalled or `deadline` (a `monotonicDeadline(after:)`);
    /// false when the deadline passed.
    public func wait(until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }

    /// Wakes one waiter (call holding the lock).
    public func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter (call holding the lock).
    public func broadcast() { pthread_cond_broadcast(condition) }

    /// The monotonic time `milliseconds` from now, for `wait(until:)`.
    public static func deadline(after milliseconds: Int) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        var nanoseconds = now.tv_nsec + (milliseconds % 1000) * 1_000_000
        var seconds = now.tv_sec + milliseconds / 1000
        if nanoseconds >= 1_000_000_000 {
            nanoseconds -= 1_000_000_000
            seconds += 1
        }
        return timespec(tv_sec: seconds, tv_nsec: nanoseconds)
    }
}

/// A value behind a pthread mutex, shared between threads. Used instead of
/// the standard library's `Mutex`, whose futex is invisible to
/// ThreadSanitizer on Linux (every access looked like a race under TSan).
public final class Locked<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    /// Runs `body` with the value, holding the lock.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
}
