import HerdBounds

/// The requests in flight, per node:model and per node, with when each was
/// sent and is expected to end; and how each node:model has been given
/// requests (equal candidates take turns; the recent rate is its
/// crowding). One job: the live load the scorer reads. A value; times are
/// the scheduler's milliseconds.
struct Occupancy {
    /// The requests in flight on one node:model.
    struct SlotLoad {
        var count = 0
        /// Their expected end times, unordered.
        var ends: [UInt64] = []
        /// When each was sent, unordered: a request that ends while one sent
        /// before it is still in flight overtook it (served alongside).
        var sents: [UInt64] = []
    }

    /// How a node:model has been given requests.
    struct RouteHistory {
        /// The route counter when it last got one.
        var last: UInt64 = 0
        /// Requests given, halving every `arrivalHalfLifeMilliseconds`.
        var arrivals = DecayingCount(halfLifeMilliseconds: Occupancy.arrivalHalfLifeMilliseconds)
        /// Requests ever sent to it (wrapping).
        var sends: UInt64 = 0
    }

    /// The memory of the arrival rate a node:model's crowding is measured by.
    static let arrivalHalfLifeMilliseconds = 20_000.0

    private(set) var slots: [SlotKey: SlotLoad] = [:]
    /// Requests in flight per node, all models.
    private var nodes: [String: Int] = [:]
    /// Per node with requests in flight: requests × ms summed since its first, and up to when.
    private var nodeArea: [String: (area: Double, at: UInt64)] = [:]
    private var routed: [SlotKey: RouteHistory] = [:]
    /// Requests ever sent to each node, all models (wrapping).
    private var sendsOnNode: [String: UInt64] = [:]
    private var counter: UInt64 = 0

    var total: Int { slots.values.reduce(0) { $0 + $1.count } }

    func inFlight(_ slot: SlotKey) -> Int { slots[slot]?.count ?? 0 }

    func inFlight(node: String) -> Int { nodes[node] ?? 0 }

    /// Requests × ms in flight on `node` up to `now` (since its current busy
    /// spell began): the difference of two readings over their interval is
    /// the mean batch between them.
    func area(node: String, now: UInt64) -> Double {
        guard let a = nodeArea[node] else { return 0 }
        return a.area + Double(nodes[node] ?? 0) * Double(now > a.at ? now - a.at : 0)
    }

    private mutating func advance(node: String, now: UInt64) {
        let area = area(node: node, now: now)
        nodeArea[node] = (area, max(now, nodeArea[node]?.at ?? now))
    }

    /// The soonest expected end of a request in flight on `slot`.
    func soonestEnd(_ slot: SlotKey) -> UInt64? { slots[slot]?.ends.min() }

    /// How many requests sent before `sentAt` are in flight on `slot` (one
    /// that ends now overtook them: it was served alongside them all).
    func sentBefore(_ sentAt: UInt64, on slot: SlotKey) -> Int { slots[slot]?.sents.count { $0 < sentAt } ?? 0 }

    /// How many requests sent no later than one in flight on `slot` at `sentAt` are in flight there, itself excluded
    /// (those sent in the same millisecond included: the sender's concurrency bounds it).
    func othersSentBy(_ sentAt: UInt64, on slot: SlotKey) -> Int { max(0, (slots[slot]?.sents.count { $0 <= sentAt } ?? 0) - 1) }

    /// The last expected end per node:model with requests in flight on `node`, but `model`.
    func lastEnds(node: String, except model: String?) -> [(SlotKey, UInt64)] {
        slots.compactMap { slot, load in
            guard slot.node == node, slot.model != model, let last = load.ends.max() else { return nil }
            return (slot, last)
        }
    }

    /// Requests ever sent to `slot`'s node for its other models (wrapping):
    /// the difference of two readings counts those sent between them.
    func otherModelSends(_ slot: SlotKey) -> UInt64 { (sendsOnNode[slot.node] ?? 0) &- (routed[slot]?.sends ?? 0) }

    /// When it last got a request (a counter; 0: never).
    func lastRouted(_ slot: SlotKey) -> UInt64 { routed[slot]?.last ?? 0 }

    /// Requests it has been given per ms, recently: a count that halves every
    /// H and gains λ per ms settles at λ·H ÷ ln 2.
    func arrivalsPerMs(_ slot: SlotKey, now: UInt64) -> Double {
        (routed[slot]?.arrivals.value(at: now) ?? 0) * 0.693_147_180_559_945_3 / Occupancy.arrivalHalfLifeMilliseconds
    }

    /// A request sent to `slot` at `now`, expected to end at `expectedEnd`:
    /// the requests in flight there and on its node, itself included.
    mutating func occupy(_ slot: SlotKey, now: UInt64, expectedEnd: UInt64) -> (slot: Int, node: Int) {
        var load = slots[slot] ?? SlotLoad()
        load.count += 1
        load.ends.append(expectedEnd)
        load.sents.append(now)
        slots[slot] = load
        advance(node: slot.node, now: now)
        nodes[slot.node, default: 0] += 1
        counter += 1
        var history = routed[slot] ?? RouteHistory()
        history.last = counter
        history.arrivals.add(at: now)
        history.sends &+= 1
        routed[slot] = history
        sendsOnNode[slot.node, default: 0] &+= 1
        return (load.count, nodes[slot.node] ?? 1)
    }

    /// A request sent at `sentAt` and expected at `expectedEnd` left `slot`.
    /// `now`: when (nil: a release whose time the caller does not know, at the latest time seen).
    mutating func release(_ slot: SlotKey, sentAt: UInt64, expectedEnd: UInt64, now: UInt64?) {
        guard var load = slots[slot] else { return }
        advance(node: slot.node, now: now ?? nodeArea[slot.node]?.at ?? 0)
        load.count -= 1
        if let i = load.ends.firstIndex(of: expectedEnd) { load.ends.remove(at: i) }
        if let i = load.sents.firstIndex(of: sentAt) { load.sents.remove(at: i) }
        slots[slot] = load.count > 0 ? load : nil
        if let n = nodes[slot.node] { nodes[slot.node] = n > 1 ? n - 1 : nil }
        if nodes[slot.node] == nil { nodeArea[slot.node] = nil } // nothing in flight holds a reading
    }
}
