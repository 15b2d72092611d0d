import HerdRouting
import HerdWire

/// Model pulls under way in the whole router — through every proxy
/// (PULL_CLAIM) and the dashboard's Models view — so that one model is not
/// downloaded twice at once: a second pull of a model (by canonical name) is
/// refused while one to the same node runs, or to any node when the second
/// did not name its node (a pull that names another node is the operator
/// asking for the model on both). A value; the owner's end releases it (a
/// proxy's connection closing releases all of that proxy's).
struct PullsUnderWay {
    enum Owner: Hashable {
        /// A proxy's claim, by its connection and its claim id.
        case proxy(ProxyKey, claim: UInt64)
        /// A pull the dashboard started (its own counter).
        case dashboard(UInt64)
    }

    struct Pull: Equatable {
        /// Canonical model name.
        var model: String
        var node: String
        var since: UInt64
    }

    /// Pulls under way at most (each one a download of gigabytes: more is a flood).
    static let maxPulls = 256

    private(set) var pulls: [Owner: Pull] = [:]
    private var nextDashboard: UInt64 = 0

    enum Verdict: Equatable {
        case granted
        /// A pull of it under way to this node.
        case underWay(node: String)
        /// `maxPulls` under way.
        case full
    }

    /// Whether `owner` may pull `model` to `node` (`named`: the client chose that node); granted, it is recorded.
    mutating func claim(model: String, node: String, named: Bool, owner: Owner, now: UInt64) -> Verdict {
        let canonical = ModelName.canonical(model)
        if let other = pulls.first(where: {
            $0.key != owner && PullClaim.stops(running: $0.value.model, on: $0.value.node, model: canonical, node: node, named: named)
        }) {
            return .underWay(node: other.value.node)
        }
        guard pulls.count < Self.maxPulls || pulls[owner] != nil else { return .full }
        pulls[owner] = Pull(model: canonical, node: node, since: now)
        return .granted
    }

    /// A new owner for a dashboard pull.
    mutating func dashboardOwner() -> Owner {
        nextDashboard &+= 1
        return .dashboard(nextDashboard)
    }

    mutating func release(_ owner: Owner) { pulls[owner] = nil }

    /// A proxy went away: its pulls end with it.
    mutating func release(proxy: ProxyKey) {
        pulls = pulls.filter { owner, _ in
            if case let .proxy(key, _) = owner { return key != proxy }
            return true
        }
    }
}
