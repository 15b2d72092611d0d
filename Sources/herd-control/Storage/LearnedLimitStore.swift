import HerdRouting
import HerdStorage
import HerdWire

/// The concurrency limits herd learned per node:model (`learned_limits` in
/// `<data-dir>/herd.db`; the schema is `TraceStore.migrations`), so that a
/// restarted control starts from them instead of slow start: a restart (an
/// upgrade, a crash) costs no queueing while the fleet is found again. Saved
/// every minute and when control stops; read at start, rows of the last
/// week. A few rows, written on the loop's own connection.
final class LearnedLimitStore {
    /// Rows read at start, at most.
    static let maxRows = 16_384
    /// Older rows are not believed (the fleet may have changed since).
    static let maxAgeMilliseconds = 7 * 86_400_000

    struct Row: Equatable {
        var node: String
        var model: String
        var limit: Int
        var atMs: Int
    }

    private let database: SQLiteDatabase

    /// Opens `path` (already migrated by `TraceStore`).
    init(path: String) throws {
        database = try SQLiteDatabase(path: path)
    }

    /// Keeps `limits` as learned at `atMs` (each node:model's last replaces its earlier).
    func save(_ limits: [(node: String, model: String, limit: Int)], atMs: Int) throws {
        guard !limits.isEmpty else { return }
        try database.transaction {
            for entry in limits.prefix(Self.maxRows) where Self.plausible(node: entry.node, model: entry.model, limit: entry.limit) {
                _ = try database.query("""
                    INSERT INTO learned_limits (node_id, model, concurrency, at_ms) VALUES (?, ?, ?, ?)
                    ON CONFLICT (node_id, model) DO UPDATE SET concurrency = excluded.concurrency, at_ms = excluded.at_ms
                    """, [.text(entry.node), .text(entry.model), .integer(Int64(entry.limit)), .integer(Int64(atMs))])
            }
        }
    }

    /// Rows learned since `sinceMs`, newest first; a row this herd would not
    /// have written (a name out of range, a limit outside 1–1024) is skipped.
    func load(sinceMs: Int) throws -> [Row] {
        let rows = try database.query("""
            SELECT node_id, model, concurrency, at_ms FROM learned_limits WHERE at_ms >= ? ORDER BY at_ms DESC LIMIT ?
            """, [.integer(Int64(sinceMs)), .integer(Int64(Self.maxRows))])
        return rows.compactMap { row in
            guard row.count == 4, case let .text(node) = row[0], case let .text(model) = row[1], case let .integer(limit) = row[2],
                  case let .integer(at) = row[3] else { return nil }
            let value = Int(clamping: limit)
            guard Self.plausible(node: node, model: model, limit: value) else { return nil }
            return Row(node: node, model: model, limit: value, atMs: Int(clamping: at))
        }
    }

    static func plausible(node: String, model: String, limit: Int) -> Bool {
        RequestLimits.isModelName(node) && RequestLimits.isModelName(model) && BenchmarkPrior.concurrency.contains(limit)
    }
}
