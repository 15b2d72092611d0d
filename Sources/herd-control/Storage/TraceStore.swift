import HerdBounds
import HerdJSON
import HerdRuntime
import HerdStorage
import HerdRouting
import HerdWire

/// The request traces in SQLite: one row per routed request (including those
/// refused or abandoned), written in batches off the loop. A row holds what
/// the client asked (model, stream, estimated prompt tokens, `num_ctx`), where
/// it went and why (the decision's reason, the time it queued, whether the
/// proxy routed it alone while control was away) and how it ended.
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
        SQLiteMigration(version: 2, name: "what the request asked and why it went where it went", sql: """
            ALTER TABLE request_traces ADD COLUMN stream INTEGER;
            ALTER TABLE request_traces ADD COLUMN est_tokens INTEGER;
            ALTER TABLE request_traces ADD COLUMN num_ctx INTEGER;
            ALTER TABLE request_traces ADD COLUMN queued_ms INTEGER;
            ALTER TABLE request_traces ADD COLUMN local INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE request_traces ADD COLUMN reason TEXT;
            """),
        SQLiteMigration(version: 3, name: "the decision explained: score, every candidate, fallback, affinity", sql: """
            ALTER TABLE request_traces ADD COLUMN score TEXT;
            ALTER TABLE request_traces ADD COLUMN candidates TEXT;
            ALTER TABLE request_traces ADD COLUMN fallback_used INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE request_traces ADD COLUMN affinity TEXT;
            """),
        SQLiteMigration(version: 4, name: "what learning needs after a restart; indexes for the dashboard", sql: """
            ALTER TABLE request_traces ADD COLUMN concurrency INTEGER;
            ALTER TABLE request_traces ADD COLUMN prompt_eval_ms REAL;
            ALTER TABLE request_traces ADD COLUMN eval_ms REAL;
            ALTER TABLE request_traces ADD COLUMN load_ms REAL;
            CREATE INDEX request_traces_node_at ON request_traces(node_id, at_ms);
            CREATE INDEX request_traces_outcome_at ON request_traces(outcome, at_ms);
            """),
        SQLiteMigration(version: 5, name: "how the route came: by a ticket (decided ahead) or by a ROUTE", sql: """
            ALTER TABLE request_traces ADD COLUMN ticket INTEGER NOT NULL DEFAULT 0;
            """),
        SQLiteMigration(version: 6, name: "the kind of work and its size: audio seconds, characters, images, inputs", sql: """
            ALTER TABLE request_traces ADD COLUMN work TEXT;
            ALTER TABLE request_traces ADD COLUMN work_units REAL;
            """),
        SQLiteMigration(version: 7, name: "client keys (hashed), their usage per day, the key of each request", sql: """
            CREATE TABLE client_keys (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL UNIQUE,
                prefix TEXT NOT NULL,
                settings TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                revoked_ms INTEGER
            );
            CREATE UNIQUE INDEX client_keys_live_name ON client_keys(name) WHERE revoked_ms IS NULL;
            CREATE TABLE key_usage (
                key_id INTEGER NOT NULL,
                day INTEGER NOT NULL,
                requests INTEGER NOT NULL DEFAULT 0,
                prompt_tokens INTEGER NOT NULL DEFAULT 0,
                completion_tokens INTEGER NOT NULL DEFAULT 0,
                refused INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (key_id, day)
            ) WITHOUT ROWID;
            ALTER TABLE request_traces ADD COLUMN key_name TEXT;
            """),
        SQLiteMigration(version: 8, name: "herd benchmark: each node:model's throughput by concurrency, its knee", sql: """
            CREATE TABLE benchmarks (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at_ms INTEGER NOT NULL,
                node_id TEXT NOT NULL,
                model TEXT NOT NULL,
                kind TEXT NOT NULL,
                knee INTEGER NOT NULL,
                steps TEXT NOT NULL
            );
            CREATE INDEX benchmarks_slot ON benchmarks(node_id, model, kind, id);
            """),
        SQLiteMigration(version: 9, name: "learned concurrency limits, kept across a restart", sql: """
            CREATE TABLE learned_limits (
                node_id TEXT NOT NULL,
                model TEXT NOT NULL,
                concurrency INTEGER NOT NULL,
                at_ms INTEGER NOT NULL,
                PRIMARY KEY (node_id, model)
            ) WITHOUT ROWID;
            """),
    ]

    private static let insert = """
        INSERT INTO request_traces (request_id, at_ms, api, path, model, served_model, node_id, outcome, status, ttft_ms,
            duration_ms, prompt_tokens, completion_tokens, bytes, retries, client, tags, error,
            stream, est_tokens, num_ctx, queued_ms, local, reason, score, candidates, fallback_used, affinity,
            concurrency, prompt_eval_ms, eval_ms, load_ms, ticket, work, work_units, key_name)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    let path: String
    private let writer: SQLiteBatchWriter
    /// The last failed write (wall ms, error) and the failures since the last
    /// log line: a full disk is said once a minute, not once a batch (the log
    /// may live on the same full disk).
    private let failure = Locked<(at: Int, error: String, unlogged: Int, loggedAt: Int)>((0, "", 0, 0))

    /// Opens (creating and migrating) `path` and starts the writer thread.
    init(path: String, log: Logger) throws {
        self.path = path
        let database = try SQLiteDatabase(path: path)
        try SQLiteMigrator.migrate(database, TraceStore.migrations)
        let failure = self.failure
        writer = try SQLiteBatchWriter(path: path) { error in
            let now = Int(clamping: EventLoop.wallClockMilliseconds())
            let line: String? = failure.withLock { state in
                state.at = now
                state.error = "\(error)"
                state.unlogged += 1
                guard now - state.loggedAt >= 60_000 else { return nil }
                defer { state.unlogged = 0; state.loggedAt = now }
                return "trace write failed\(state.unlogged > 1 ? " (\(state.unlogged) batches since the last report)" : ""): \(error); requests are still served, their trace rows are lost"
            }
            if let line { log.error(line) }
        }
    }

    /// Rows written, batches that failed, rows dropped at the queue's bound.
    var counts: (rows: Int, failures: Int, dropped: Int) {
        let c = writer.counts
        return (c.rows, c.failures, c.dropped)
    }

    /// Why traces are failing now (a write failed within the last minute), if they are.
    func problem(now: Int) -> String? {
        failure.withLock { state in
            state.at > 0 && now - state.at < 60_000 ? "trace writes failing: \(state.error)" : nil
        }
    }

    func record(_ finished: FinishedRequest, keyName: String? = nil, now: Int) {
        let result = finished.result, request = finished.request, decision = finished.decision
        let chosen = finished.card?.candidates.first { $0.node == result.node && ModelName.same($0.model, result.model) }
        writer.enqueue(sql: TraceStore.insert, [
            .integer(Int64(truncatingIfNeeded: result.id)), .integer(Int64(clamping: now)), .text(request?.api.rawValue ?? ""), .text(request?.path ?? ""),
            .text(request?.model ?? result.model), .text(result.model), .text(result.node), .text(result.outcome.rawValue),
            .integer(Int64(result.status)), .real(result.ttftMilliseconds), .real(result.durationMilliseconds),
            .integer(Int64(result.promptTokens)), .integer(Int64(result.completionTokens)), .integer(Int64(result.bytes)),
            .integer(Int64(result.retries)), .text(request?.client ?? ""), .text((request?.tags ?? []).joined(separator: ",")),
            result.error.map { .text($0) } ?? .null,
            request.map { .integer($0.stream ? 1 : 0) } ?? .null, request.map { .integer(Int64($0.estimatedTokens)) } ?? .null,
            request?.numCtx.map { .integer(Int64($0)) } ?? .null, decision.map { .integer(Int64($0.queuedMilliseconds)) } ?? .null,
            .integer(result.local ? 1 : 0), (decision?.reason ?? result.localReason).map { .text($0) } ?? .null,
            decision.map { .text($0.score) } ?? .null, finished.card.map { .text(String(decoding: $0.jsonText, as: UTF8.self)) } ?? .null,
            .integer(finished.servedByFallback ? 1 : 0), chosen?.affinity.map { .text($0.rawValue) } ?? .null,
            finished.concurrency.map { .integer(Int64($0)) } ?? .null, result.backendPromptMilliseconds.map { .real($0) } ?? .null,
            result.backendDecodeMilliseconds.map { .real($0) } ?? .null, result.backendLoadMilliseconds.map { .real($0) } ?? .null,
            .integer(finished.ticket ? 1 : 0),
            request.map { .text(WorkKind(path: $0.path).rawValue) } ?? .null,
            request.flatMap { $0.workUnits > 0 ? .real($0.workUnits) : nil } ?? .null,
            keyName.map { .text($0) } ?? .null,
        ])
    }

    /// Adds to a key's usage of one UTC day (`key_usage`): what budgets count after a restart.
    func recordKeyUsage(key: Int, day: Int, requests: Int, promptTokens: Int, completionTokens: Int, refused: Int) {
        writer.enqueue(sql: """
            INSERT INTO key_usage (key_id, day, requests, prompt_tokens, completion_tokens, refused) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (key_id, day) DO UPDATE SET requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                completion_tokens = completion_tokens + excluded.completion_tokens, refused = refused + excluded.refused
            """, [.integer(Int64(key)), .integer(Int64(day)), .integer(Int64(requests)), .integer(Int64(promptTokens)),
                  .integer(Int64(completionTokens)), .integer(Int64(refused))])
    }

    /// Deletes the rows older than `cutoff` (ms since the epoch): the retention.
    func prune(before cutoff: Int) {
        writer.enqueue(sql: "DELETE FROM request_traces WHERE at_ms < ?", [.integer(Int64(cutoff))])
    }

    /// What finished requests taught before a restart: the last `limit`
    /// successful routed requests since `since` (ms), oldest first, as the
    /// scheduler observed them (the backend's time: herd's queue wait taken out).
    static func recentObservations(path: String, since: Int, limit: Int) throws -> [LearnedRates.Observation] {
        let database = try SQLiteDatabase(path: path, readOnly: true)
        let rows = try database.query("""
            SELECT node_id, served_model, path, concurrency, prompt_tokens, completion_tokens, ttft_ms, duration_ms,
                   COALESCE(queued_ms, 0), COALESCE(stream, 0), prompt_eval_ms, eval_ms, load_ms
            FROM request_traces
            WHERE outcome = 'ok' AND node_id != '' AND concurrency IS NOT NULL AND at_ms >= ?
            ORDER BY id DESC LIMIT ?
            """, [.integer(Int64(since)), .integer(Int64(limit))])
        return rows.reversed().compactMap { row in
            guard row.count == 13, case let .text(node) = row[0], case let .text(model) = row[1], case let .text(path) = row[2] else { return nil }
            let queued = row[8].double ?? 0
            return LearnedRates.Observation(
                slot: SlotKey(node, model), ok: true, generates: Scheduler.generates(path: path), batch: Int(saturating: row[3].double ?? 1),
                promptTokens: Int(saturating: row[4].double ?? 0), completionTokens: Int(saturating: row[5].double ?? 0),
                ttftMs: max(0, (row[6].double ?? 0) - queued), durationMs: max(0, (row[7].double ?? 0) - queued),
                streamed: (row[9].double ?? 0) != 0, backendPromptMs: row[10].double, backendDecodeMs: row[11].double,
                backendLoadMs: row[12].double)
        }
    }

    func close() {
        writer.close()
    }

    // MARK: Reading (blocking: run off the loop)

    /// Filters of the traces API; nil = any.
    struct Filter: Sendable {
        var sinceMs: Int?
        var untilMs: Int?
        var model: String?
        var node: String?
        var outcome: String?
        var tag: String?
        var client: String?
        /// Rows with an id below this (the next page of a newest-first list).
        var beforeID: Int?
        var limit = 50
    }

    /// The columns of a trace's list entry, then those only its whole record has.
    static let listColumns = ["id", "request_id", "at_ms", "api", "path", "model", "served_model", "node_id", "outcome", "status",
                              "ttft_ms", "duration_ms", "prompt_tokens", "completion_tokens", "retries", "client", "tags", "error",
                              "stream", "queued_ms", "local", "reason", "fallback_used", "ticket", "work", "work_units", "key_name"]
    static let recordColumns = listColumns + ["bytes", "est_tokens", "num_ctx", "score", "affinity", "concurrency", "prompt_eval_ms",
                                              "eval_ms", "load_ms", "candidates"]

    /// Newest first, at most `filter.limit` (1–500), and the id to ask
    /// `before` for the next page (nil: no more).
    static func list(path: String, _ filter: Filter) throws -> (rows: [JSONValue], next: Int?) {
        let database = try SQLiteDatabase(path: path, readOnly: true)
        var clauses: [String] = []
        var values: [SQLiteValue] = []
        func add(_ clause: String, _ value: SQLiteValue) { clauses.append(clause); values.append(value) }
        if let v = filter.sinceMs { add("at_ms >= ?", .integer(Int64(v))) }
        if let v = filter.untilMs { add("at_ms < ?", .integer(Int64(v))) }
        if let v = filter.model { add("(model = ? OR served_model = ?)", .text(v)); values.append(.text(v)) }
        if let v = filter.node { add("node_id = ?", .text(v)) }
        if let v = filter.outcome { add("outcome = ?", .text(v)) }
        if let v = filter.tag { add("(',' || tags || ',') LIKE ? ESCAPE '\\'", .text("%," + likeEscaped(v) + ",%")) }
        if let v = filter.client { add("client = ?", .text(v)) }
        if let v = filter.beforeID { add("id < ?", .integer(Int64(v))) }
        let limit = min(500, max(1, filter.limit))
        let sql = "SELECT \(listColumns.joined(separator: ", ")) FROM request_traces"
            + (clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")) + " ORDER BY id DESC LIMIT \(limit + 1)"
        let rows = try database.query(sql, values)
        let page = rows.prefix(limit).map { json($0, columns: listColumns) }
        let next = rows.count > limit ? rows[limit - 1].first?.double.map { Int(saturating: $0) } : nil
        return (Array(page), next)
    }

    /// One trace, whole (its candidates as JSON), by row id.
    static func record(path: String, id: Int) throws -> JSONValue? {
        let database = try SQLiteDatabase(path: path, readOnly: true)
        let rows = try database.query("SELECT \(recordColumns.joined(separator: ", ")) FROM request_traces WHERE id = ?", [.integer(Int64(id))])
        return rows.first.map { json($0, columns: recordColumns) }
    }

    struct UsageBucket: Sendable {
        var requests = 0
        var promptTokens = 0
        var completionTokens = 0
        var errors = 0
        var durationMsSum = 0.0

        mutating func add(_ o: UsageBucket) {
            requests = requests.addingSaturated(o.requests); promptTokens = promptTokens.addingSaturated(o.promptTokens); completionTokens = completionTokens.addingSaturated(o.completionTokens)
            errors += o.errors; durationMsSum += o.durationMsSum
        }
    }

    /// Requests, tokens, errors and summed duration per bucket since
    /// `sinceMs`, per tag (`clients: false`) or per client: the Apps view.
    /// What usage is grouped by: a request's tags, its client, or its client key.
    enum UsageGrouping: String, Sendable {
        case tag, client, key
    }

    static func usage(path: String, by grouping: UsageGrouping, sinceMs: Int, bucketMs: Int) throws -> [String: [Int: UsageBucket]] {
        let database = try SQLiteDatabase(path: path, readOnly: true)
        let key = switch grouping {
        case .tag: "tags"
        case .client: "client"
        case .key: "COALESCE(key_name, '')"
        }
        let rows = try database.query("""
            SELECT \(key), (at_ms / ?) * ?, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),
                   SUM(outcome IN ('upstream_error', 'timeout')), SUM(duration_ms)
            FROM request_traces WHERE at_ms >= ? GROUP BY 1, 2
            """, [.integer(Int64(bucketMs)), .integer(Int64(bucketMs)), .integer(Int64(sinceMs))])
        var out: [String: [Int: UsageBucket]] = [:]
        for row in rows {
            guard row.count == 7, case let .text(label) = row[0], let at = row[1].double else { continue }
            let bucket = UsageBucket(requests: Int(saturating: row[2].double ?? 0), promptTokens: Int(saturating: row[3].double ?? 0),
                                     completionTokens: Int(saturating: row[4].double ?? 0), errors: Int(saturating: row[5].double ?? 0),
                                     durationMsSum: row[6].double ?? 0)
            let labels = switch grouping {
            case .client: [label.isEmpty ? "unknown" : label]
            case .key: [label.isEmpty ? "none" : label]
            case .tag: label.isEmpty ? ["untagged"] : label.split(separator: ",").map(String.init)
            }
            for name in labels { out[name, default: [:]][Int(saturating: at), default: UsageBucket()].add(bucket) }
        }
        return out
    }

    private static func likeEscaped(_ s: String) -> String {
        var out = ""
        for c in s {
            if c == "%" || c == "_" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    private static func json(_ row: [SQLiteValue], columns: [String]) -> JSONValue {
        var members: [(String, JSONValue)] = []
        members.reserveCapacity(columns.count)
        for (name, value) in zip(columns, row) {
            switch (name, value) {
            case (_, .null), (_, .blob): members.append((name, .null))
            case ("stream", _), ("local", _), ("fallback_used", _), ("ticket", _):
                members.append((name, .bool((value.double ?? 0) != 0)))
            case let (_, .integer(n)): members.append((name, .number(Double(n))))
            case let (_, .real(x)): members.append((name, x.isFinite ? .number(x) : .null))
            case let ("candidates", .text(t)): members.append((name, (try? JSONValue.parse(Array(t.utf8))) ?? .string(t)))
            case let ("tags", .text(t)): members.append((name, .strings(t.isEmpty ? [] : t.split(separator: ",").map(String.init))))
            case let (_, .text(t)): members.append((name, .string(t)))
            }
        }
        return .object(members)
    }
}
