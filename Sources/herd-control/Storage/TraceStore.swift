import HerdRuntime
import HerdStorage
import HerdWire

/// The request traces in SQLite: one row per routed request (including those
/// refused or abandoned), written in batches off the loop.
final class TraceStore {
    static let migrations = [
        SQLiteMigration(version: 1, name: "request traces", sql: """
            CREATE TABLE request_traces (
                id INTEGER PRIMARY KEY,
                request_id INTEGER NOT NULL,
                at_ms INTEGER NOT NULL,
                api TEXT NOT NULL,
                path TEXT NOT NULL,
                model TEXT NOT NULL,
                served_model TEXT NOT NULL,
                node_id TEXT NOT NULL,
                outcome TEXT NOT NULL,
                status INTEGER NOT NULL,
                ttft_ms REAL NOT NULL,
                duration_ms REAL NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                retries INTEGER NOT NULL,
                client TEXT NOT NULL,
                tags TEXT NOT NULL,
                error TEXT
            );
            CREATE INDEX request_traces_at ON request_traces(at_ms);
            CREATE INDEX request_traces_model_at ON request_traces(model, at_ms);
            CREATE INDEX request_traces_node_model ON request_traces(node_id, model);
            """),
    ]

    private static let insert = """
        INSERT INTO request_traces (request_id, at_ms, api, path, model, served_model, node_id, outcome, status, ttft_ms,
            duration_ms, prompt_tokens, completion_tokens, bytes, retries, client, tags, error)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    let path: String
    private let writer: SQLiteBatchWriter

    /// Opens (creating and migrating) `path` and starts the writer thread.
    init(path: String, log: Logger) throws {
        self.path = path
        let database = try SQLiteDatabase(path: path)
        try SQLiteMigrator.migrate(database, TraceStore.migrations)
        writer = try SQLiteBatchWriter(path: path) { error in log.error("trace write failed: \(error)") }
    }

    func record(_ result: RouteResult, request: RouteRequest?, now: Int) {
        writer.enqueue(sql: TraceStore.insert, [
            .integer(Int64(result.id)), .integer(Int64(now)), .text(request?.api.rawValue ?? ""), .text(request?.path ?? ""),
            .text(request?.model ?? result.model), .text(result.model), .text(result.node), .text(result.outcome.rawValue),
            .integer(Int64(result.status)), .real(result.ttftMilliseconds), .real(result.durationMilliseconds),
            .integer(Int64(result.promptTokens)), .integer(Int64(result.completionTokens)), .integer(Int64(result.bytes)),
            .integer(Int64(result.retries)), .text(request?.client ?? ""), .text((request?.tags ?? []).joined(separator: ",")),
            result.error.map { .text($0) } ?? .null,
        ])
    }

    func close() {
        writer.close()
    }
}
