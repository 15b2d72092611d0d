import HerdHTTP
import HerdRuntime
import HerdWire

/// The proxy's client to model servers: keep-alive pools per upstream, and
/// this proxy's requests in flight per upstream (what the local policy
/// balances on while control is away). Loop-thread only.
final class Upstreams {
    private let client: HTTPClient
    private var inFlight: [String: Int] = [:]

    init(client: HTTPClient) {
        self.client = client
    }

    /// This proxy's requests in flight to `upstream` (`host:port`).
    func load(_ upstream: String) -> Int { inFlight[upstream] ?? 0 }

    /// Sends `request` to `upstream` (`host:port`, numeric); the response goes
    /// to `delegate`. `nil` when the address is not valid. The caller calls
    /// `release` once the exchange is over.
    func send(_ request: HTTPClientRequest, to upstream: String, delegate: any HTTPClientResponseDelegate) -> HTTPClientTask? {
        guard let (host, port) = splitHostPort(upstream), let address = try? SocketAddress(host: host, port: port) else { return nil }
        inFlight[upstream, default: 0] += 1
        return client.execute(request, to: address, delegate: delegate)
    }

    /// An exchange with `upstream` is over.
    func release(_ upstream: String) {
        if let count = inFlight[upstream], count > 1 { inFlight[upstream] = count - 1 } else { inFlight[upstream] = nil }
    }

    func close() { client.close() }
}
