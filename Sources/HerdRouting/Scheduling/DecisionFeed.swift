import HerdJSON
import HerdWire

/// The most recent routing decisions (routed or queued), newest last, in a
/// fixed-size ring: what the dashboard's live view reads (`GET
/// /api/decisions` on control). Bounded whatever the traffic: the oldest
/// falls out. Rendered to JSON only when read.
package struct DecisionFeed: Sendable {
    package struct Decision: Sendable {
        package var sequence: UInt64
        package var atMilliseconds: UInt64
        package var requestID: UInt64
        package var model: String
        package var client: String
        /// "routed" or "queued".
        package var action: String
        package var node: String
        package var servedModel: String
        package var score: String
        package var reason: String
        package var card: ScoreCard
    }

    package let capacity: Int
    private var ring: [Decision] = []
    private var next = 0
    private var sequence: UInt64 = 0

    package init(capacity: Int = 256) {
        self.capacity = max(1, capacity)
        ring.reserveCapacity(self.capacity)
    }

    package mutating func record(_ decision: consuming Decision) {
        sequence += 1
        decision.sequence = sequence
        if ring.count < capacity {
            ring.append(decision)
        } else {
            ring[next] = decision
        }
        next = (next + 1) % capacity
    }

    /// Oldest first.
    package var decisions: [Decision] {
        ring.count < capacity ? ring : Array(ring[next...] + ring[..<next])
    }

    /// `{"decisions":[…]}`, oldest first, those after sequence `since` (0: all kept), at most `limit`.
    package func json(since: UInt64 = 0, limit: Int = 256) -> [UInt8] {
        var out: [UInt8] = []
        out.append(literal: #"{"decisions":["#)
        var first = true
        for d in decisions.filter({ $0.sequence > since }).suffix(max(0, limit)) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(literal: #"{"seq":"#)
            out.append(decimal: Int(clamping: d.sequence))
            out.append(literal: #","at_ms":"#)
            out.append(decimal: Int(clamping: d.atMilliseconds))
            out.append(literal: #","request_id":"#)
            out.append(decimal: Int(truncatingIfNeeded: d.requestID))
            out.append(literal: #","model":"#)
            JSONValue.writeString(d.model, to: &out)
            out.append(literal: #","client":"#)
            JSONValue.writeString(d.client, to: &out)
            out.append(literal: #","action":"#)
            JSONValue.writeString(d.action, to: &out)
            out.append(literal: #","node":"#)
            JSONValue.writeString(d.node, to: &out)
            out.append(literal: #","served_model":"#)
            JSONValue.writeString(d.servedModel, to: &out)
            out.append(literal: #","score":"#)
            JSONValue.writeString(d.score, to: &out)
            out.append(literal: #","reason":"#)
            JSONValue.writeString(d.reason, to: &out)
            out.append(literal: #","candidates":"#)
            out.append(contentsOf: d.card.jsonText)
            out.append(UInt8(ascii: "}"))
        }
        out.append(literal: "]}")
        return out
    }
}
