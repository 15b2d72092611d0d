import HerdBounds
import HerdHTTP
import HerdJSON
import HerdRouting
import HerdRuntime
import HerdWire

/// Sends pre-warms: an empty generate with `keep_alive` to an Ollama node
/// (`POST /api/generate {"model","keep_alive"}` loads the model and answers
/// with its `load_duration`), and reports how it went. Loop-thread only.
final class Prewarmer {
    /// How long Ollama keeps a pre-warmed model loaded without requests.
    static let keepAlive = "10m"
    private let client: HTTPClient
    private let log: Logger

    init(loop: EventLoop, log: Logger) {
        var configuration = HTTPClientConfiguration()
        configuration.maxConnectionsPerUpstream = 4
        // A cold load of a large model from a slow disk takes minutes.
        configuration.firstByteTimeoutMilliseconds = 300_000
        client = HTTPClient(loop: loop, configuration: configuration)
        self.log = log
    }

    /// Loads `prewarm.model` on its node; `done(ok, load ms)` once it answered or failed.
    func send(_ prewarm: Prewarm, done: @escaping (Bool, Double?) -> Void) {
        guard let (host, port) = splitHostPort(prewarm.address), let address = try? SocketAddress(host: host, port: port) else {
            done(false, nil)
            return
        }
        var body: [UInt8] = []
        JSONValue.object([("model", .string(prewarm.model)), ("keep_alive", .string(Prewarmer.keepAlive))]).write(to: &body)
        var headers = HTTPHeaders()
        headers.add("Host", prewarm.address)
        headers.add("Content-Type", "application/json")
        let request = HTTPClientRequest(method: "POST", target: "/api/generate", headers: headers, body: body)
        log.info("pre-warming \(Logger.escape(prewarm.model)) on \(Logger.escape(prewarm.node)) (expected load \(Int(saturating: prewarm.expectedLoadMs)) ms)")
        client.collect(request, to: address, limit: 64 * 1024) { [log] result in
            switch result {
            case let .success(response) where response.status == 200:
                let loadNs = (try? JSONValue.parse(response.body))?["load_duration"]?.doubleValue
                done(true, loadNs.map { $0 / 1e6 })
            case let .success(response):
                log.warning("pre-warm of \(Logger.escape(prewarm.model)) on \(Logger.escape(prewarm.node)) answered \(response.status)")
                done(false, nil)
            case let .failure(error):
                log.warning("pre-warm of \(Logger.escape(prewarm.model)) on \(Logger.escape(prewarm.node)) failed: \(error)")
                done(false, nil)
            }
        }
    }

    func close() { client.close() }
}
