import HerdHTTP
import HerdJSON
import HerdRouting
import HerdRuntime

/// `/api/v1/benchmarks`: what `herd benchmark` measured.
///
/// - `GET /api/v1/benchmarks`: the last result of each node:model (and kind).
/// - `POST /api/v1/benchmarks` `{"results": [{"node", "model", "kind", "knee", "steps": [{"concurrency", "requests",
///   "errors", "per_second", "ttft_ms", "duration_ms", "prompt_tokens", "output_tokens"}]}]}`: stored, and each
///   node:model starts from it at once (its learner at the knee, its rates from the figures). Needs the fleet key or
///   an admin key when either exists (it changes routing).
///
/// Loop-thread only.
final class BenchmarksAPI {
    private let store: BenchmarkStore
    private let routes: ControlServer
    private let log: Logger
    /// Why a request may not change routing (nil: it may): the keys API's rule.
    private let refusal: (HTTPExchange, [UInt8]) -> String?
    /// At most this many results in one POST.
    static let maxResults = 256

    init(store: BenchmarkStore, routes: ControlServer, log: Logger, refusal: @escaping (HTTPExchange, [UInt8]) -> String?) {
        self.store = store
        self.routes = routes
        self.log = log
        self.refusal = refusal
    }

    static func serves(_ path: Substring) -> Bool { path == "/api/v1/benchmarks" }

    func handle(_ exchange: HTTPExchange) {
        switch exchange.head.method {
        case "GET", "HEAD":
            do {
                respond(exchange, 200, ["benchmarks": .array(try store.latest().map(BenchmarkJSON.result))])
            } catch {
                respond(exchange, 500, ["error": .string("benchmark results could not be read: \(error)")])
            }
        case "POST":
            exchange.collectBody { [weak self] bytes in self?.post(exchange, bytes) }
        default:
            respond(exchange, 405, ["error": .string("\(exchange.head.method) is not allowed here: GET, POST /api/v1/benchmarks")])
        }
    }

    private func post(_ exchange: HTTPExchange, _ bytes: [UInt8]) {
        if let refusal = refusal(exchange, bytes) {
            return respond(exchange, 401, ["error": .string(refusal)])
        }
        guard let body = try? JSONValue.parse(bytes), body.objectValue != nil else { return respond(exchange, 400, ["error": "send a JSON object"]) }
        guard let items = body["results"]?.arrayValue, (1...BenchmarksAPI.maxResults).contains(items.count) else {
            return respond(exchange, 400, ["error": .string("results: an array of 1–\(BenchmarksAPI.maxResults) results")])
        }
        let now = Int(clamping: EventLoop.wallClockMilliseconds())
        var priors: [BenchmarkPrior] = []
        for (index, item) in items.enumerated() {
            do {
                priors.append(try BenchmarkJSON.result(item, atMs: now))
            } catch {
                return respond(exchange, 400, ["error": .string("results[\(index)]: \(error)")])
            }
        }
        do {
            for prior in priors { try store.insert(prior) }
        } catch {
            return respond(exchange, 500, ["error": .string("benchmark results could not be stored: \(error)")])
        }
        routes.benchmarked(priors)
        let named = priors.prefix(8).map { "\($0.node):\($0.model) knee \($0.knee)" }.joined(separator: ", ")
        log.info("benchmark results stored for \(priors.count) node:models (\(named)) from \(exchange.remoteAddress?.description ?? "?")")
        respond(exchange, 201, ["stored": .int(priors.count), "benchmarks": .array(priors.map(BenchmarkJSON.result))])
    }

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: JSONValue) {
        var bytes: [UInt8] = []
        body.write(to: &bytes)
        exchange.respond(status: status, headers: FleetAPI.jsonHeaders, body: bytes)
    }
}
