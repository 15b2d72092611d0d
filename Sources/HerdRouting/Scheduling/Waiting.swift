/// The requests waiting for a node (`WaitQueue`, clients taking turns) and
/// what the scorer reads of them: how many wait for each node:model, the
/// nodes held for a queued request's load, when the queue is next
/// re-scored. One job; the scheduler's `dispatchWaiting` moves it.
struct Waiting {
    var queue = WaitQueue()
    /// Queued requests per node:model they wait for: always the count of
    /// `queue`'s items per `slot`.
    var perSlot: [SlotKey: Int] = [:]
    /// Nodes held for a queued request whose model fits there only once the
    /// node's other models drain: node → that model (first in the queue wins;
    /// rebuilt as the whole queue is re-scored). Other models start nothing there meanwhile.
    var reservations: [String: String] = [:]
    /// When the queue is re-scored next (time passes: estimates change).
    var nextRescore: UInt64?

    /// A queued request waits for `slot`, holding its node for its model when `reserves`.
    mutating func waits(for slot: SlotKey, reserves: Bool) {
        if reserves, reservations[slot.node] == nil { reservations[slot.node] = slot.model }
        perSlot[slot, default: 0] += 1
    }

    /// Drops a queue item's counts (its slot's queue length, its hold on a node).
    mutating func forget(_ item: WaitQueue.Item) {
        if let n = perSlot[item.slot] { perSlot[item.slot] = n > 1 ? n - 1 : nil }
        releaseHold(item)
    }

    /// The item no longer holds its node.
    mutating func releaseHold(_ item: WaitQueue.Item) {
        if item.reserves, reservations[item.slot.node] == item.slot.model { reservations[item.slot.node] = nil }
    }
}
