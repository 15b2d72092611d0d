import HerdWire

/// The route tickets this proxy holds (`ControlProtocol.md`), as a value:
/// granted by control, spent one per request, returned when their time runs
/// out or control revokes them. Also remembers, per conversation and prompt
/// prefix, the node this proxy last sent it to: a request whose KV cache
/// lives on a node spends only a ticket for that node (else it asks control,
/// whose scorer weighs the cache), unless the ticket is exclusive (one node
/// serves the model: affinity cannot change the choice). No I/O, no clock:
/// times come in.
struct TicketBook {
    struct Held {
        var ticket: RouteTicket
        var expiresAt: UInt64
    }

    struct Key: Hashable {
        let api: ClientAPI
        let model: String
        /// The kind of work a ticket was decided for (a chat's ticket serves chats only).
        let work: WorkKind

        /// The model's name and one byte for API and kind (this runs on every request).
        func hash(into hasher: inout Hasher) {
            hasher.combine(model)
            hasher.combine(api.wireCode &* 8 &+ work.wireCode)
        }
    }

    /// One model's tickets, oldest first. Spending the oldest (the usual
    /// case) moves `head` on instead of shifting the list; the spent front is
    /// dropped once it is half the list.
    struct Queue {
        var items: [Held] = []
        var head = 0

        var live: ArraySlice<Held> { items[head...] }

        mutating func take(at i: Int) -> RouteTicket {
            if i == head {
                head += 1
                let ticket = items[i].ticket
                if head == items.count {
                    items.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 16, head * 2 >= items.count {
                    items.removeFirst(head)
                    head = 0
                }
                return ticket
            }
            return items.remove(at: i).ticket
        }

        mutating func replace(with kept: [Held]) {
            items = kept
            head = 0
        }
    }

    private(set) var held: [Key: Queue] = [:]
    private(set) var count = 0
    /// Where this proxy last sent each conversation / prompt prefix.
    private var affinity: [UInt64: String] = [:]
    static let affinityCapacity = 8192

    /// Tickets granted at `now`.
    mutating func grant(_ tickets: [RouteTicket], now: UInt64) {
        for ticket in tickets {
            held[Key(api: ticket.api, model: ticket.model, work: ticket.work), default: Queue()].items.append(Held(ticket: ticket, expiresAt: now + ticket.ttlMilliseconds))
            count += 1
        }
    }

    /// A ticket `request` may spend, taken out of the book; nil: ask control.
    mutating func spend(for request: RouteRequest, now: UInt64) -> RouteTicket? {
        guard count > 0, request.tags.isEmpty, request.numCtx == nil else { return nil }
        let key = Key(api: request.api, model: request.model, work: WorkKind(path: request.path))
        let wanted = affinityNode(request)
        // Found by reading in place, taken out in place: copying the list
        // out of the dictionary would copy (retain) every ticket in it.
        // One look-up (one hash of the key): found, then taken through its index.
        guard let slot = held.index(forKey: key), let i = held.values[slot].live.firstIndex(where: { h in
            h.expiresAt > now && (h.ticket.exclusive || wanted == nil || wanted == h.ticket.node)
        }) else { return nil }
        count -= 1
        return held.values[slot].take(at: i)
    }

    /// Remembers where `request` went (a ticket spent, or control's answer).
    mutating func routed(_ request: RouteRequest, to node: String) {
        guard request.session != nil || request.prefix != nil else { return }
        if affinity.count >= TicketBook.affinityCapacity { affinity.removeAll(keepingCapacity: true) }
        if let session = request.session { affinity[session.value] = node }
        if let prefix = request.prefix { affinity[prefix.value ^ 0x9E37_79B9_7F4A_7C15] = node }
    }

    private func affinityNode(_ request: RouteRequest) -> String? {
        if let session = request.session, let node = affinity[session.value] { return node }
        if let prefix = request.prefix, let node = affinity[prefix.value ^ 0x9E37_79B9_7F4A_7C15] { return node }
        return nil
    }

    /// Takes out the tickets whose time ran out at `now` (to return).
    mutating func expire(now: UInt64) -> [UInt64] {
        var out: [UInt64] = []
        for (key, queue) in held where queue.live.contains(where: { $0.expiresAt <= now }) {
            var kept: [Held] = []
            for h in queue.live {
                if h.expiresAt <= now { out.append(h.ticket.ticket) } else { kept.append(h) }
            }
            held[key]!.replace(with: kept)
        }
        count -= out.count
        return out
    }

    /// Takes out the revoked tickets still held (to return).
    mutating func revoke(_ ids: [UInt64]) -> [UInt64] {
        let revoked = Set(ids)
        var out: [UInt64] = []
        for (key, queue) in held where queue.live.contains(where: { revoked.contains($0.ticket.ticket) }) {
            held[key]!.replace(with: queue.live.filter { h in
                if revoked.contains(h.ticket.ticket) {
                    out.append(h.ticket.ticket)
                    return false
                }
                return true
            })
        }
        count -= out.count
        return out
    }

    /// The earliest expiry, when any ticket is held.
    var nextExpiry: UInt64? {
        guard count > 0 else { return nil }
        return held.values.lazy.compactMap { $0.live.lazy.map(\.expiresAt).min() }.min()
    }

    /// Drops every ticket (control went away: it forgot them too).
    mutating func removeAll() {
        held.removeAll()
        count = 0
    }
}
