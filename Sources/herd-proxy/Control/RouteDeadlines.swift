/// When each request's wait for herd-control ends, as a value (time is
/// passed in: tests drive it by hand). A ROUTE or RETRY must be answered —
/// ROUTE_OK, ROUTE_ERROR, or QUEUED — within the route timeout; a queued one
/// within the queue time control announced plus the route timeout (control
/// refuses it itself when the queue time runs out: the margin is for a
/// control that stopped answering meanwhile).
///
/// Cheap per request: one entry appended to a first-in-first-out list (the
/// route timeout is the same for all, so the list stays in deadline order);
/// answered requests are not removed but skipped when their entry comes due
/// (`pending` says whether an id still waits and for which deadline).
/// Expiry is checked at most every `granularity` milliseconds, so a timeout
/// fires up to that late and a busy proxy does not wake per request.
struct RouteDeadlines {
    /// Milliseconds control has to answer a ROUTE or RETRY.
    let routeTimeout: UInt64
    let granularity: UInt64

    private struct Due {
        let id: UInt64
        let deadline: UInt64
    }

    /// Unanswered asks, in deadline order.
    private var asked: [Due] = []
    private var askedHead = 0
    /// Queued requests (announced by control), in deadline order when control's
    /// queue timeout is one setting (a later deadline out of order fires late,
    /// never early).
    private var queued: [Due] = []
    private var queuedHead = 0
    /// The deadline each waiting request is held to.
    private(set) var pending: [UInt64: UInt64] = [:]

    init(routeTimeout: UInt64, granularity: UInt64 = 100) {
        self.routeTimeout = routeTimeout
        self.granularity = max(1, granularity)
    }

    var isEmpty: Bool { pending.isEmpty }

    /// A ROUTE or RETRY for `id` was sent at `now`.
    mutating func asked(_ id: UInt64, now: UInt64) {
        let deadline = now + routeTimeout
        pending[id] = deadline
        asked.append(Due(id: id, deadline: deadline))
    }

    /// Control queued `id` for up to `timeout` milliseconds.
    mutating func queued(_ id: UInt64, timeout: UInt64, now: UInt64) {
        guard pending[id] != nil else { return }
        let deadline = now + timeout + routeTimeout
        pending[id] = deadline
        queued.append(Due(id: id, deadline: deadline))
    }

    /// Control answered `id`, or the request ended.
    mutating func done(_ id: UInt64) {
        pending[id] = nil
    }

    /// Forgets every request (control went away: they are all routed locally).
    mutating func removeAll() {
        pending.removeAll()
        asked.removeAll(keepingCapacity: true)
        askedHead = 0
        queued.removeAll(keepingCapacity: true)
        queuedHead = 0
    }

    /// The requests whose deadline passed by `now` (removed from `pending`).
    mutating func expire(now: UInt64) -> [UInt64] {
        var expired: [UInt64] = []
        Self.pop(&asked, &askedHead, now: now, pending: &pending, into: &expired)
        Self.pop(&queued, &queuedHead, now: now, pending: &pending, into: &expired)
        return expired
    }

    /// When `expire` should next run: the earliest deadline still listed, but
    /// not sooner than `granularity` after `now`. Nil when nothing waits.
    func nextCheck(now: UInt64) -> UInt64? {
        guard !pending.isEmpty else { return nil }
        let nextAsked = askedHead < asked.count ? asked[askedHead].deadline : UInt64.max
        let nextQueued = queuedHead < queued.count ? queued[queuedHead].deadline : UInt64.max
        let first = min(nextAsked, nextQueued)
        guard first != .max else { return nil }
        return max(first, now + granularity)
    }

    private static func pop(_ list: inout [Due], _ head: inout Int, now: UInt64, pending: inout [UInt64: UInt64],
                            into expired: inout [UInt64]) {
        while head < list.count, list[head].deadline <= now {
            let due = list[head]
            head += 1
            // Skipped when answered, or held to another (later) deadline.
            if pending[due.id] == due.deadline {
                pending[due.id] = nil
                expired.append(due.id)
            }
        }
        // Compacts once the consumed prefix dominates.
        if head == list.count {
            list.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024, head * 2 > list.count {
            list.removeFirst(head)
            head = 0
        }
    }
}
