import HerdRuntime

/// A flag one thread sets and another waits for (with a deadline).
public final class SyncFlag: @unchecked Sendable {
    private let lock = ConditionLock()
    private var isSet = false

    public init() {}

    public func set() {
        lock.withLock {
            isSet = true
            lock.broadcast()
        }
    }

    public func wait(milliseconds: Int) -> Bool {
        let deadline = ConditionLock.deadline(after: milliseconds)
        return lock.withLock {
            while !isSet {
                if !lock.wait(until: deadline) { return isSet }
            }
            return true
        }
    }
}
