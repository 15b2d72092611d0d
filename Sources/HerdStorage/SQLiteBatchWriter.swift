internal import CHerdLinux
import HerdRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The single writer of a SQLite file: callers (the loop) enqueue rows without
/// blocking; a worker thread with its own connection writes them in batches,
/// one transaction per batch, with statements prepared once.
///
/// A batch is written when `maxBatch` rows are waiting or `maxDelayMilliseconds`
/// after the first one arrived. A failing batch is reported through `onError`
/// and dropped; the writer carries on.
public final class SQLiteBatchWriter: @unchecked Sendable {
    /// One row for one statement.
    public struct Row: Sendable {
        public let sql: String
        public let values: [SQLiteValue]
        public init(sql: String, values: [SQLiteValue]) {
            self.sql = sql
            self.values = values
        }
    }

    private struct Queue {
        var rows: [Row] = []
        var stopping = false
        var flushWaiters = 0
        /// A batch has been taken off the queue and is being written.
        var writing = false
    }

    public let path: String
    public let maxBatch: Int
    public let maxDelayMilliseconds: Int
    /// Rows waiting at most; past it new rows are dropped and counted (the
    /// writer runs at idle priority and could fall behind a saturated CPU).
    public let maxQueuedRows: Int
    /// Guards `queue`; signalled when rows arrive, a flush or stop is asked
    /// for, and a batch is written (every wait loops over its own condition).
    private let lock = ConditionLock()
    private var queue = Queue()
    private var thread = pthread_t()
    private let onError: @Sendable (SQLiteError) -> Void
    private let statistics = Locked<(batches: Int, rows: Int, failures: Int, dropped: Int)>((0, 0, 0, 0))

    /// Opens the writer's own connection (the schema must already exist:
    /// migrate first) and starts its thread.
    public init(path: String, maxBatch: Int = 512, maxDelayMilliseconds: Int = 50, maxQueuedRows: Int = 100_000,
                onError: @escaping @Sendable (SQLiteError) -> Void = { _ in }) throws {
        self.path = path
        self.maxBatch = maxBatch
        self.maxDelayMilliseconds = maxDelayMilliseconds
        self.maxQueuedRows = maxQueuedRows
        self.onError = onError
        let database = try SQLiteDatabase(path: path)
        let context = Unmanaged.passRetained(WriterContext(writer: self, database: database)).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let context = Unmanaged<WriterContext>.fromOpaque(arg!).takeRetainedValue()
            context.writer.run(context.database)
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    deinit {
        close()
    }

    /// Queues a row. Thread-safe, never blocks on I/O.
    public func enqueue(_ row: Row) {
        let accepted = lock.withLock {
            guard queue.rows.count < maxQueuedRows else { return false }
            queue.rows.append(row)
            if queue.rows.count == 1 || queue.rows.count >= maxBatch { lock.broadcast() }
            return true
        }
        if !accepted { statistics.withLock { $0.dropped += 1 } }
    }

    public func enqueue(sql: String, _ values: [SQLiteValue]) { enqueue(Row(sql: sql, values: values)) }

    /// Blocks until every row queued before the call is written (tests, shutdown).
    public func flush() {
        lock.withLock {
            queue.flushWaiters += 1
            lock.broadcast()
            while !queue.rows.isEmpty || queue.writing { lock.wait() }
            queue.flushWaiters -= 1
        }
    }

    /// Writes what is queued and stops the thread. Idempotent.
    public func close() {
        let first = lock.withLock {
            guard !queue.stopping else { return false }
            queue.stopping = true
            lock.broadcast()
            return true
        }
        if first { pthread_join(thread, nil) }
    }

    /// Batches and rows written, batches that failed, rows dropped at the bound.
    public var counts: (batches: Int, rows: Int, failures: Int, dropped: Int) { statistics.withLock { $0 } }

    private func run(_ database: SQLiteDatabase) {
        // Below the loop threads in priority: a batch must not delay routing
        // when both share a core. SCHED_IDLE runs it only when no other thread
        // wants the core; where that is refused, nice +10 for this thread.
        var parameters = sched_param()
        if pthread_setschedparam(pthread_self(), 5 /* SCHED_IDLE, a macro Swift does not import */, &parameters) != 0 {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(clamping: herd_current_thread_id()), 10)
        }
        var statements: [String: SQLiteStatement] = [:]
        while true {
            let (batch, stopping) = lock.withLock {
                while queue.rows.isEmpty, !queue.stopping { lock.wait() }
                // Give a batch time to fill, unless asked to flush or stop.
                if queue.rows.count < maxBatch, !queue.stopping, queue.flushWaiters == 0 {
                    let deadline = ConditionLock.deadline(after: maxDelayMilliseconds)
                    while queue.rows.count < maxBatch, !queue.stopping, queue.flushWaiters == 0 {
                        if !lock.wait(until: deadline) { break }
                    }
                }
                let batch = queue.rows
                queue.rows.removeAll(keepingCapacity: true)
                queue.writing = true
                return (batch, queue.stopping)
            }

            if !batch.isEmpty { write(batch, database, &statements) }

            let done = lock.withLock {
                queue.writing = false
                lock.broadcast()
                return stopping && queue.rows.isEmpty
            }
            if done { return }
        }
    }

    private func write(_ batch: [Row], _ database: SQLiteDatabase, _ statements: inout [String: SQLiteStatement]) {
        do {
            try database.execute("BEGIN IMMEDIATE")
            for row in batch {
                let statement: SQLiteStatement
                if let cached = statements[row.sql] {
                    statement = cached
                } else {
                    statement = try database.prepare(row.sql)
                    statements[row.sql] = statement
                }
                try statement.run(row.values)
            }
            try database.execute("COMMIT")
            statistics.withLock { $0.batches += 1; $0.rows += batch.count }
        } catch {
            try? database.execute("ROLLBACK") // the batch's own error is what gets reported
            statistics.withLock { $0.failures += 1 }
            onError(error)
        }
    }
}

private final class WriterContext {
    let writer: SQLiteBatchWriter
    let database: SQLiteDatabase
    init(writer: SQLiteBatchWriter, database: SQLiteDatabase) {
        self.writer = writer
        self.database = database
    }
}
