import Glibc

/// A flag one thread sets and another waits for (with a deadline).
public final class SyncFlag: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var isSet = false
    public init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }
    public func set() {
        pthread_mutex_lock(&mutex)
        isSet = true
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }
    public func wait(milliseconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += milliseconds / 1000
        deadline.tv_nsec += (milliseconds % 1000) * 1_000_000
        if deadline.tv_nsec >= 1_000_000_000 { deadline.tv_sec += 1; deadline.tv_nsec -= 1_000_000_000 }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !isSet {
            if pthread_cond_timedwait(&cond, &mutex, &deadline) != 0 { return isSet }
        }
        return true
    }
}
