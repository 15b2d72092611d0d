import HerdHTTP
import HerdRuntime
import HerdWire

/// The proxy's client to model servers: keep-alive pools per upstream, and
/// this proxy's requests in flight per upstream (what the local policy
/// balances on while control is away). Loop-thread only.
final class Upstreams {
    /// One upstream as the proxy knows it: its pool, found once by its
    /// `host:port` text, and the requests this proxy has in flight to it.
    final class Upstream {
        let pool: UpstreamPool
        fileprivate(set) var inFlight = 0
        fileprivate init(pool: UpstreamPool) { self.pool = pool }
    }

    private let client: HTTPClient
    private var known: [String: Upstream] = [:]
    /// Cloud providers (`cloud:NAME` upstreams), when the proxy has any.
    var providers: CloudProviders?
    /// Past this many idle upstreams, an idle one is forgotten when its last
    /// request ends (its pool stays in the client): the table cannot grow
    /// with every address control ever named.
    private static let keepIdle = 256

    init(client: HTTPClient) {
        self.client = client
    }

    /// `path upstream` pairs that answered 404 (Anthropic Messages, OpenAI
    /// Responses): later requests there are translated at once (bounded).
    private var lacking: Set<String> = []

    func lacks(_ path: String, at upstream: String) -> Bool { lacking.contains(path + " " + upstream) }

    func noteLacks(_ path: String, at upstream: String) {
        if lacking.count >= Upstreams.keepIdle { lacking.removeAll() }
        lacking.insert(path + " " + upstream)
    }

    /// This proxy's requests in flight to `upstream` (`host:port`).
    func load(_ upstream: String) -> Int { known[upstream]?.inFlight ?? 0 }

    /// Sends `request` to `upstream` (`host:port`, numeric); the response goes
    /// to `delegate`. `nil` when the address is not valid. The caller passes
    /// the returned upstream to `release` once the exchange is over.
    func send(_ request: consuming HTTPClientRequest, to upstream: String, delegate: any HTTPClientResponseDelegate) -> (HTTPClientTask, Upstream)? {
        // Nodes are numeric `host:port` (a digit or `[`): only a cloud provider's name starts with a letter.
        if let first = upstream.utf8.first, first >= UInt8(ascii: "a"), upstream.hasPrefix(CloudProvider.nodePrefix) {
            var request = request
            guard let pool = providers?.prepare(&request, for: String(upstream.dropFirst(CloudProvider.nodePrefix.count))) else { return nil }
            let entry = known[upstream] ?? Upstream(pool: pool)
            known[upstream] = entry
            entry.inFlight += 1
            return (client.execute(request, in: pool, delegate: delegate), entry)
        }
        let entry: Upstream
        if let found = known[upstream] {
            entry = found
        } else {
            guard let (host, port) = splitHostPort(upstream), let address = try? SocketAddress(host: host, port: port) else { return nil }
            entry = Upstream(pool: client.pool(for: address))
            known[upstream] = entry
        }
        entry.inFlight += 1
        return (client.execute(request, in: entry.pool, delegate: delegate), entry)
    }

    /// An exchange with `upstream` is over.
    func release(_ upstream: Upstream) {
        upstream.inFlight -= 1
        if upstream.inFlight == 0, known.count > Upstreams.keepIdle {
            known = known.filter { $0.value.inFlight > 0 }
        }
    }

    func close() { client.close() }
}
