import Glibc
import Synchronization
import Testing
import HerdRuntime
@testable import HerdStorage

/// A fresh database file in a temporary folder, removed afterwards.
struct TemporaryDatabase {
    let directory: String
    var path: String { directory + "/herd.db" }
    init() {
        var template = Array("/tmp/herd-sqlite-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template))
    }
    func remove() {
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        rmdir(directory)
    }
}

let traceMigrations = [
    SQLiteMigration(version: 1, name: "traces", sql: """
        CREATE TABLE request_traces (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, model TEXT NOT NULL,
                                     node_id TEXT, status INTEGER, latency_ms REAL);
        CREATE INDEX request_traces_model ON request_traces(model);
        """),
    SQLiteMigration(version: 2, name: "tokens", sql: "ALTER TABLE request_traces ADD COLUMN completion_tokens INTEGER DEFAULT 0;"),
]

@Suite struct SQLiteTests {
    @Test func opensInWALModeAndMigratesOnce() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        #expect(try db.journalMode() == "wal")
        #expect(try SQLiteMigrator.migrate(db, traceMigrations) == [1, 2])
        #expect(try db.userVersion() == 2)
        // A second run (a restart) applies nothing.
        let reopened = try SQLiteDatabase(path: temp.path)
        #expect(try SQLiteMigrator.migrate(reopened, traceMigrations) == [])
        try reopened.execute("INSERT INTO request_traces (request_id, model, completion_tokens) VALUES ('r1', 'llama3', 42)")
        let rows = try reopened.query("SELECT request_id, completion_tokens FROM request_traces")
        #expect(rows == [[.text("r1"), .integer(42)]])
    }

    @Test func laterMigrationIsAppliedToAnOlderDatabase() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        #expect(try SQLiteMigrator.migrate(db, Array(traceMigrations.prefix(1))) == [1])
        #expect(try SQLiteMigrator.migrate(db, traceMigrations) == [2])
    }

    @Test func failingMigrationRollsBackAndKeepsTheVersion() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        let broken = traceMigrations + [SQLiteMigration(version: 3, name: "broken", sql: "CREATE TABLE t (a); SELECT nonsense FROM nowhere;")]
        #expect(throws: SQLiteError.self) { try SQLiteMigrator.migrate(db, broken) }
        #expect(try db.userVersion() == 2)
        #expect(try db.query("SELECT name FROM sqlite_master WHERE name = 't'").isEmpty)
    }

    @Test func newerDatabaseIsRefused() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        try SQLiteMigrator.migrate(db, traceMigrations)
        #expect(throws: SQLiteError.self) { try SQLiteMigrator.migrate(db, Array(traceMigrations.prefix(1))) }
    }

    @Test func preparedStatementsBindEveryType() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        try db.execute("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB, n)")
        let insert = try db.prepare("INSERT INTO v VALUES (?, ?, ?, ?, ?)")
        try insert.run([.integer(-7), .real(2.5), .text("héllo 'quoted'"), .blob([0, 1, 255]), .null])
        try insert.run([.integer(8), .real(0), .text(""), .blob([]), .null])
        let rows = try db.query("SELECT * FROM v ORDER BY i")
        #expect(rows[0] == [.integer(-7), .real(2.5), .text("héllo 'quoted'"), .blob([0, 1, 255]), .null])
        #expect(rows.count == 2)
    }

    @Test func batchWriterWritesEveryRowInFewTransactions() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        try SQLiteMigrator.migrate(db, traceMigrations)
        let writer = try SQLiteBatchWriter(path: temp.path, maxBatch: 1000, maxDelayMilliseconds: 20)
        let insert = "INSERT INTO request_traces (request_id, model, node_id, status, latency_ms) VALUES (?, ?, ?, ?, ?)"
        // Enqueued from several threads at once, as the loop and others would.
        let threads = try (0..<4).map { t in
            try LoopThread().also { thread in
                thread.loop.execute {
                    for i in 0..<2500 {
                        writer.enqueue(sql: insert, [.text("r\(t)-\(i)"), .text("llama3"), .text("node-\(t)"), .integer(200), .real(Double(i))])
                    }
                }
            }
        }
        for thread in threads { thread.shutdown() }
        writer.flush()
        let count = try db.query("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM request_traces")
        #expect(count == [[.integer(10_000), .integer(10_000)]])
        let stats = writer.counts
        #expect(stats.rows == 10_000)
        #expect(stats.failures == 0)
        #expect(stats.batches < 100, "10,000 rows took \(stats.batches) transactions")
        writer.close()
    }

    @Test func rowsPastTheQueueBoundAreDroppedAndCounted() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        try SQLiteMigrator.migrate(db, traceMigrations)
        // A long delay keeps rows queued; 10 fit, 5 are dropped.
        let writer = try SQLiteBatchWriter(path: temp.path, maxBatch: 1_000, maxDelayMilliseconds: 10_000, maxQueuedRows: 10)
        for i in 0..<15 { writer.enqueue(sql: "INSERT INTO request_traces (request_id, model) VALUES (?, ?)", [.text("r\(i)"), .text("m")]) }
        writer.flush()
        #expect(try db.query("SELECT COUNT(*) FROM request_traces") == [[.integer(10)]])
        #expect(writer.counts.dropped == 5)
        writer.close()
    }

    @Test func badRowFailsItsBatchAndTheWriterCarriesOn() throws {
        let temp = TemporaryDatabase()
        defer { temp.remove() }
        let db = try SQLiteDatabase(path: temp.path)
        try SQLiteMigrator.migrate(db, traceMigrations)
        let errors = ErrorLog()
        let writer = try SQLiteBatchWriter(path: temp.path, maxDelayMilliseconds: 5) { errors.add($0) }
        writer.enqueue(sql: "INSERT INTO no_such_table VALUES (?)", [.integer(1)])
        writer.flush()
        writer.enqueue(sql: "INSERT INTO request_traces (request_id, model) VALUES (?, ?)", [.text("after"), .text("m")])
        writer.flush()
        #expect(try db.query("SELECT request_id FROM request_traces") == [[.text("after")]])
        #expect(errors.count == 1)
        #expect(writer.counts.failures == 1)
        writer.close()
    }
}

final class ErrorLog: Sendable {
    private let errors = Mutex<[SQLiteError]>([])
    func add(_ error: SQLiteError) { errors.withLock { $0.append(error) } }
    var count: Int { errors.withLock { $0.count } }
}

extension LoopThread {
    func also(_ body: (LoopThread) -> Void) -> LoopThread {
        body(self)
        return self
    }
}
