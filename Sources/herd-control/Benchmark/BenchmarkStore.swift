import HerdJSON
import HerdRouting
import HerdStorage
import HerdWire

/// `herd benchmark` results in `<data-dir>/herd.db` (`benchmarks`; the
/// schema is `TraceStore.migrations`): every run kept, the last per
/// node:model and kind used. Writes are rare (one per benchmarked
/// node:model) and small, done on the loop's own connection.
final class BenchmarkStore {
    private let database: SQLiteDatabase

    /// Opens `path` (already migrated by `TraceStore`).
    init(path: String) throws {
        database = try SQLiteDatabase(path: path)
    }

    func insert(_ prior: BenchmarkPrior) throws {
        var steps: [UInt8] = []
        JSONValue.array(prior.steps.map(BenchmarkJSON.step)).write(to: &steps)
        _ = try database.query("INSERT INTO benchmarks (at_ms, node_id, model, kind, knee, steps) VALUES (?, ?, ?, ?, ?, ?)",
                               [.integer(Int64(prior.atMs)), .text(prior.node), .text(prior.model), .text(prior.kind.rawValue),
                                .integer(Int64(prior.knee)), .text(String(decoding: steps, as: UTF8.self))])
    }

    /// The last result of each node:model and kind, oldest first (rows this herd cannot read are skipped).
    func latest() throws -> [BenchmarkPrior] {
        let rows = try database.query("""
            SELECT at_ms, node_id, model, kind, knee, steps FROM benchmarks
            WHERE id IN (SELECT MAX(id) FROM benchmarks GROUP BY node_id, model, kind) ORDER BY id LIMIT 16384
            """)
        return rows.compactMap { row in
            guard row.count == 6, case let .integer(at) = row[0], case let .text(node) = row[1], case let .text(model) = row[2],
                  case let .text(kindText) = row[3], let kind = BenchmarkPrior.Kind(rawValue: kindText), case let .integer(knee) = row[4],
                  case let .text(stepsText) = row[5], let json = try? JSONValue.parse(Array(stepsText.utf8)),
                  let steps = json.arrayValue?.compactMap(BenchmarkJSON.step) else { return nil }
            let prior = BenchmarkPrior(node: node, model: model, kind: kind, knee: Int(clamping: knee), steps: steps, atMs: Int(clamping: at))
            return prior.problem == nil ? prior : nil
        }
    }
}

/// The JSON of a benchmark result (`/api/v1/benchmarks`, the `steps` column).
enum BenchmarkJSON {
    static func step(_ s: BenchmarkPrior.Step) -> JSONValue {
        .object([("concurrency", .int(s.concurrency)), ("requests", .int(s.requests)), ("errors", .int(s.errors)),
                 ("per_second", .number(rounded(s.perSecond))), ("ttft_ms", .number(rounded(s.ttftMs))),
                 ("duration_ms", .number(rounded(s.durationMs))), ("prompt_tokens", .number(rounded(s.promptTokens))),
                 ("output_tokens", .number(rounded(s.outputTokens)))])
    }

    static func step(_ json: JSONValue) -> BenchmarkPrior.Step? {
        guard let concurrency = json["concurrency"]?.intValue, let requests = json["requests"]?.intValue,
              let perSecond = json["per_second"]?.doubleValue else { return nil }
        return BenchmarkPrior.Step(concurrency: concurrency, requests: requests, errors: json["errors"]?.intValue ?? 0, perSecond: perSecond,
                                   ttftMs: json["ttft_ms"]?.doubleValue ?? 0, durationMs: json["duration_ms"]?.doubleValue ?? 0,
                                   promptTokens: json["prompt_tokens"]?.doubleValue ?? 0, outputTokens: json["output_tokens"]?.doubleValue ?? 0)
    }

    static func result(_ prior: BenchmarkPrior) -> JSONValue {
        .object([("node", .string(prior.node)), ("model", .string(prior.model)), ("kind", .string(prior.kind.rawValue)),
                 ("knee", .int(prior.knee)), ("at_ms", .int(prior.atMs)), ("steps", .array(prior.steps.map(step)))])
    }

    /// A posted result, checked (`BenchmarkPrior.problem`); `atMs` is the time it arrived.
    static func result(_ json: JSONValue, atMs: Int) throws(BenchmarkError) -> BenchmarkPrior {
        guard json.objectValue != nil else { throw BenchmarkError("each result must be an object") }
        guard let node = json["node"]?.stringValue else { throw BenchmarkError("node: a string is required") }
        guard let model = json["model"]?.stringValue, RequestLimits.isModelName(model) else {
            throw BenchmarkError("model: a model name of 1–256 bytes is required")
        }
        guard let kind = json["kind"].map({ $0.stringValue.flatMap(BenchmarkPrior.Kind.init(rawValue:)) }) ?? .chat else {
            throw BenchmarkError("kind: chat or embed")
        }
        guard let items = json["steps"]?.arrayValue, items.count <= BenchmarkPrior.maxSteps else {
            throw BenchmarkError("steps: an array of at most \(BenchmarkPrior.maxSteps)")
        }
        var steps: [BenchmarkPrior.Step] = []
        for item in items {
            guard item.objectValue != nil, let step = step(item) else {
                throw BenchmarkError("steps[]: objects with integer concurrency and requests and a number per_second")
            }
            steps.append(step)
        }
        steps.sort { $0.concurrency < $1.concurrency }
        let knee = json["knee"].map { $0.intValue } ?? BenchmarkPrior.knee(steps)
        guard let knee else { throw BenchmarkError("knee: an integer") }
        let prior = BenchmarkPrior(node: node, model: ModelName.canonical(model), kind: kind, knee: knee, steps: steps, atMs: atMs)
        if let problem = prior.problem { throw BenchmarkError(problem) }
        return prior
    }

    private static func rounded(_ value: Double) -> Double { (value * 100).rounded() / 100 }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
