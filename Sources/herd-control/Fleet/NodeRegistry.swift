import HerdRouting
import HerdWire

/// The fleet: nodes keyed by id, fed by heartbeats, aged by a clock.
/// Loop-thread only; time comes in as a parameter (tests need no sleeping).
final class NodeRegistry {
    struct Settings: Sendable {
        /// A node whose last heartbeat is older than this is degraded.
        var degradedAfterMilliseconds: UInt64 = 6_000
        /// … and older than this, offline.
        var offlineAfterMilliseconds: UInt64 = 15_000
        /// An offline node is forgotten after this.
        var forgetAfterMilliseconds: UInt64 = 3_600_000
        /// The most nodes the fleet holds (a LAN's worth: forged node ids
        /// cannot grow control without bound). A new node past it takes the
        /// place of the longest-offline one, else is refused.
        var maxNodes = 256

        /// A node is degraded after `degradedAfterMilliseconds` or three of its
        /// own intervals, whichever is longer (its interval is its own: a
        /// node beating every 6 s is not late at 6 s).
        func degradedAfter(_ node: FleetNode) -> UInt64 { max(degradedAfterMilliseconds, node.statedIntervalMilliseconds * 3) }
        /// … and offline after `offlineAfterMilliseconds` or 7.5 intervals.
        func offlineAfter(_ node: FleetNode) -> UInt64 { max(offlineAfterMilliseconds, node.statedIntervalMilliseconds * 15 / 2) }
    }

    /// What became of a heartbeat.
    enum Admission: Equatable {
        /// Recorded; `changed`: routing-relevant state changed.
        case accepted(changed: Bool)
        /// A new node, and the fleet is full of nodes that are not offline.
        case fleetFull
    }

    let settings: Settings
    private(set) var nodes: [String: FleetNode] = [:] {
        didSet { cachedList = nil }
    }
    private var cachedList: [FleetNode]?
    /// Bumped whenever something routing depends on changes.
    private(set) var version = 0
    /// Models loaded or unloaded, as heartbeats showed them (newest last, at
    /// most `maxModelChanges`): the health checks count churn from it.
    private(set) var modelChanges: [(node: String, model: String, loaded: Bool, at: UInt64)] = []
    static let maxModelChanges = 1_024
    /// Each node's clock minus control's when its last heartbeat came (ms).
    private(set) var clockSkew: [String: Int] = [:]

    init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Every node, in no particular order (kept between changes: routing reads
    /// it on every decision).
    var list: [FleetNode] {
        if let cachedList { return cachedList }
        let list = Array(nodes.values)
        cachedList = list
        return list
    }

    /// Records a heartbeat. Returns whether routing-relevant state changed
    /// (false also when it was refused: see `admit`).
    @discardableResult
    func accept(_ heartbeat: Heartbeat, now: UInt64) -> Bool {
        admit(heartbeat, now: now) == .accepted(changed: true)
    }

    /// Records a heartbeat, within the node cap.
    func admit(_ heartbeat: Heartbeat, now: UInt64) -> Admission {
        if nodes[heartbeat.nodeID] == nil, nodes.count >= settings.maxNodes {
            // Room is made only from nodes already offline, the longest gone first.
            // (A scan without copies: a flood of refused heartbeats pays it each.)
            var gone: (id: String, seen: UInt64)?
            for (id, node) in nodes where node.status == .offline && node.lastSeenMilliseconds < (gone?.seen ?? .max) {
                gone = (id, node.lastSeenMilliseconds)
            }
            guard let gone else { return .fleetFull }
            nodes[gone.id] = nil
        }
        return .accepted(changed: record(heartbeat, now: now))
    }

    private func record(_ heartbeat: Heartbeat, now: UInt64) -> Bool {
        if var node = nodes[heartbeat.nodeID] {
            let changed = node.status != .online || NodeRegistry.routingView(node.heartbeat) != NodeRegistry.routingView(heartbeat)
            if changed {
                NodeRegistry.noteUnloads(&node, from: node.heartbeat, to: heartbeat, now: now)
                noteModelChanges(node: heartbeat.nodeID, from: node.heartbeat, to: heartbeat, now: now)
            }
            node.heartbeat = heartbeat
            node.lastSeenMilliseconds = now
            node.status = .online
            nodes[heartbeat.nodeID] = node
            if changed { version += 1 }
            return changed
        }
        var node = FleetNode(heartbeat: heartbeat, lastSeenMilliseconds: now, firstSeenMilliseconds: now, status: .online)
        node.hold = holds[heartbeat.nodeID]
        nodes[heartbeat.nodeID] = node
        version += 1
        return true
    }

    /// Re-derives every node's status from the time of its last heartbeat.
    /// Returns whether any status changed.
    @discardableResult
    func sweep(now: UInt64) -> Bool {
        var changed = false
        for (id, var node) in nodes {
            let age = now >= node.lastSeenMilliseconds ? now - node.lastSeenMilliseconds : 0
            if age > settings.forgetAfterMilliseconds {
                nodes[id] = nil
                changed = true
                continue
            }
            let status: NodeStatus = age > settings.offlineAfter(node) ? .offline : age > settings.degradedAfter(node) ? .degraded : .online
            if status != node.status {
                node.status = status
                nodes[id] = node
                changed = true
            }
        }
        if changed { version += 1 }
        return changed
    }

    private func noteModelChanges(node: String, from old: Heartbeat, to new: Heartbeat, now: UInt64) {
        let before = Set(old.backends.flatMap(\.loaded).map { ModelName.canonical($0.name) })
        let after = Set(new.backends.flatMap(\.loaded).map { ModelName.canonical($0.name) })
        for model in before.subtracting(after).sorted() { modelChanges.append((node, model, false, now)) }
        for model in after.subtracting(before).sorted() { modelChanges.append((node, model, true, now)) }
        if modelChanges.count > Self.maxModelChanges { modelChanges.removeFirst(modelChanges.count - Self.maxModelChanges) }
    }

    /// Operators' holds by node id, kept for nodes that leave and come back
    /// (and across restarts: `HoldFile`).
    private(set) var holds: [String: Hold] = [:]

    /// An operator's hold on a node (nil: resume). Returns false for an
    /// unknown node. Routing-relevant: bumps the version.
    @discardableResult
    func setHold(_ hold: Hold?, node id: String) -> Bool {
        guard var node = nodes[id] else { return false }
        holds[id] = hold
        guard node.hold != hold else { return true }
        node.hold = hold
        nodes[id] = node
        version += 1
        return true
    }

    /// Holds read back after a restart: applied as those nodes join.
    func restoreHolds(_ saved: [String: Hold]) {
        holds = saved
        for (id, hold) in saved where nodes[id] != nil { setHold(hold, node: id) }
    }

    /// Records the node's clock against control's (`wallNow`) when a heartbeat
    /// says when it was sent.
    func noteClock(node: String, sentAt: Int, wallNow: Int) {
        guard sentAt > 0, nodes[node] != nil else { return }
        clockSkew[node] = sentAt - wallNow
        if clockSkew.count > nodes.count { clockSkew = clockSkew.filter { nodes[$0.key] != nil } }
    }

    /// Models that left memory since the last heartbeat are warm for a while
    /// (their weights still in the page cache); models loaded again are not.
    static func noteUnloads(_ node: inout FleetNode, from old: Heartbeat, to new: Heartbeat, now: UInt64) {
        let before = Set(old.backends.flatMap(\.loaded).map { ModelName.canonical($0.name) })
        let after = Set(new.backends.flatMap(\.loaded).map { ModelName.canonical($0.name) })
        for model in before.subtracting(after) { node.recentlyUnloaded[model] = now }
        for model in after { node.recentlyUnloaded[model] = nil }
        node.recentlyUnloaded = node.recentlyUnloaded.filter { now - min(now, $0.value) < CompletionTimeModel.Priors.warmWindowMs }
    }

    /// What routing reads from a heartbeat (memory and CPU readings change every
    /// beat and are read live, not pushed).
    private static func routingView(_ heartbeat: Heartbeat) -> [String] {
        heartbeat.backends.map { b in
            // A model's capabilities too: they come a beat after the model (`/api/show`), and say its kind (an embedding model, a speech one).
            "\(b.kind.rawValue) \(b.address) \(b.reachable) \(b.parallel ?? 0) \(b.models.map { $0.name + "[" + $0.capabilities.joined(separator: "+") + "]" }.joined(separator: ",")) | \(b.loaded.map(\.name).joined(separator: ","))"
        }
    }
}
