import HerdWire

/// Whether a node can be routed to.
package enum NodeStatus: String, Sendable {
    /// Heartbeats arrive on time.
    case online
    /// Heartbeats are late: routed to only when no online node can serve.
    case degraded
    /// Heartbeats stopped: never routed to.
    case offline
}

/// One machine of the fleet, as its latest heartbeat describes it.
package struct FleetNode: Sendable {
    package var heartbeat: Heartbeat
    package var lastSeenMilliseconds: UInt64
    package var firstSeenMilliseconds: UInt64
    package var status: NodeStatus
    /// Models (canonical names) that left this node's memory, and when (ms):
    /// for a while their weights are still in the page cache ("warm").
    package var recentlyUnloaded: [String: UInt64] = [:]
    /// Set by an operator (dashboard or API): no new request goes here
    /// until resumed; requests in flight finish.
    package var hold: Hold?
    package var id: String { heartbeat.nodeID }
    /// How often this node says it beats (ms; older agents say nothing: 2 s).
    package var intervalMilliseconds: UInt64 { UInt64(clamping: heartbeat.interval) }
    /// The interval when the node says it (what lateness is judged by).
    package var statedIntervalMilliseconds: UInt64 { UInt64(clamping: heartbeat.intervalMilliseconds ?? 0) }

    package init(heartbeat: Heartbeat, lastSeenMilliseconds: UInt64, firstSeenMilliseconds: UInt64, status: NodeStatus) {
        self.heartbeat = heartbeat
        self.lastSeenMilliseconds = lastSeenMilliseconds
        self.firstSeenMilliseconds = firstSeenMilliseconds
        self.status = status
    }
}

/// Why an operator took a node out of routing.
package enum Hold: String, Sendable, CaseIterable {
    /// For maintenance: finish what runs, take nothing new.
    case drain
    /// For a while (the owner needs the machine): the same for routing.
    case pause

    package var label: String { self == .drain ? "drained" : "paused" }
}
