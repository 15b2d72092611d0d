/// The requests waiting for a node, in the order they are served: clients
/// take turns (each client's requests in arrival order; the client whose
/// oldest request came first goes first), so a client that sends a burst of
/// 100 does not hold back one that sends 1.
///
/// Built for a long queue re-scored on every freed slot: each item carries
/// what it waits for, so a pass can skip, without scoring them, the items
/// behind one that waits for the same node:model and could not start
/// (`Scheduler.dispatchWaiting`); with one client the items are kept in
/// place (a head index, no copy per pass).
struct WaitQueue {
    struct Item {
        let key: Scheduler.RequestKey
        let client: String
        let deadline: UInt64
        /// The node:model it waits for (its best choice, full when last scored).
        var slot: SlotKey
        /// Its best choice waits for that node to drain (it holds the node).
        var reserves: Bool
    }

    /// Storage; the live items are `items[head...]`.
    private(set) var items: [Item] = []
    private(set) var head = 0
    /// Items per client.
    private var clients: [String: Int] = [:]
    /// No item's deadline is earlier (it may be earlier than the earliest
    /// left: a hint, made exact by `recomputeDeadline`).
    private(set) var deadlineHint: UInt64?

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var keys: [Scheduler.RequestKey] { items[head...].map(\.key) }
    /// Whether clients take turns (more than one client waits).
    var isShared: Bool { clients.count > 1 }

    mutating func append(_ item: Item) {
        items.append(item)
        clients[item.client, default: 0] += 1
        if deadlineHint == nil || item.deadline < deadlineHint! { deadlineHint = item.deadline }
    }

    /// Removes the item of `key` (a cancel, an expiry): O(n), rare.
    mutating func remove(_ key: Scheduler.RequestKey) -> Item? {
        guard let i = items[head...].firstIndex(where: { $0.key == key }) else { return nil }
        let item = items.remove(at: i)
        forget(item.client)
        if isEmpty {
            items.removeAll(keepingCapacity: true)
            head = 0
            deadlineHint = nil
        }
        return item
    }

    /// Removes and returns the items whose deadline is `now` or earlier.
    mutating func removeExpired(now: UInt64) -> [Item] {
        guard let hint = deadlineHint, hint <= now else { return [] }
        var expired: [Item] = []
        var kept: [Item] = []
        kept.reserveCapacity(count)
        for item in items[head...] {
            if item.deadline <= now { expired.append(item); forget(item.client) } else { kept.append(item) }
        }
        items = kept
        head = 0
        recomputeDeadline()
        return expired
    }

    mutating func recomputeDeadline() {
        deadlineHint = items[head...].lazy.map(\.deadline).min()
    }

    /// The serving order as indices into `items` (clients take turns), or
    /// nil when one client waits: then it is the storage order.
    func fairOrder() -> [Int]? {
        guard isShared else { return nil }
        var byClient: [String: [Int]] = [:]
        var order: [String] = []
        for i in head..<items.count {
            let client = items[i].client
            if byClient[client] == nil { order.append(client) }
            byClient[client, default: []].append(i)
        }
        var out: [Int] = []
        out.reserveCapacity(count)
        var round = 0
        while out.count < count {
            for client in order {
                if let mine = byClient[client], round < mine.count { out.append(mine[round]) }
            }
            round += 1
        }
        return out
    }

    /// The index of the `n`th item in serving order.
    func index(_ n: Int, in order: [Int]?) -> Int { order?[n] ?? head + n }

    /// After a pass that visited the first `visited` items in serving order
    /// (`order`, nil for storage order): the queue becomes `kept` (the
    /// visited items still waiting, in serving order) followed by the items
    /// not visited, in serving order; `left` are the visited items that left.
    mutating func finishPass(order: [Int]?, visited: Int, kept: [Item], left: [Item]) {
        if let order {
            var next = kept
            next.reserveCapacity(kept.count + order.count - visited)
            for i in order[visited...] { next.append(items[i]) }
            items = next
            head = 0
        } else {
            // In place: the visited prefix becomes `kept`, right before the rest.
            let start = head + visited - kept.count
            for (offset, item) in kept.enumerated() { items[start + offset] = item }
            head = start
        }
        for item in left { forget(item.client) }
        if isEmpty {
            items.removeAll(keepingCapacity: true)
            head = 0
            deadlineHint = nil
        } else if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    private mutating func forget(_ client: String) {
        if let n = clients[client] { clients[client] = n > 1 ? n - 1 : nil }
    }
}
