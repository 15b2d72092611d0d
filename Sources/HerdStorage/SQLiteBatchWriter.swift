internal import CHerdLinux
import Synchronization
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
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var flushed = pthread_cond_t()
    private var queue = Queue()
    private var thread = pthread_t()
    private let onError: @Sendable (SQLiteError) -> Void
    private let statistics = Mutex<(batches: Int, rows: Int, failures: Int, dropped: Int)>((0, 0, 0, 0))

    /// Opens the writer's own connection (the schema must already exist:
    /// migrate first) and starts its thread.
    public init(path: String, maxBatch: Int = 512, maxDelayMilliseconds: Int = 50, maxQueuedRows: Int = 100_000,
                onError: @escaping @Sendable (SQLiteError) -> Void = { _ in }) throws {
        self.path = path
        self.maxBatch = maxBatch
        self.maxDelayMilliseconds = maxDelayMilliseconds
        self.maxQueuedRows = maxQueuedRows
        self.onError = onError
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&flushed, nil)
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
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&wake)
        pthread_cond_destroy(&flushed)
    }

    /// Queues a row. Thread-safe, never blocks on I/O.
    public func enqueue(_ row: Row) {
        pthread_mutex_lock(&mutex)
        guard queue.rows.count < maxQueuedRows else {
            pthread_mutex_unlock(&mutex)
            statistics.withLock { $0.dropped += 1 }
            return
        }
        queue.rows.append(row)
        if queue.rows.count == 1 || queue.rows.count >= maxBatch { pthread_cond_signal(&wake) }
        pthread_mutex_unlock(&mutex)
    }

    public func enqueue(sql: String, _ values: [SQLiteValue]) { enqueue(Row(sql: sql, values: values)) }

    /// Blocks until every row queued before the call is written (tests, shutdown).
    public func flush() {
        pthread_mutex_lock(&mutex)
        queue.flushWaiters += 1
        pthread_cond_signal(&wake)
        while !queue.rows.isEmpty || queue.writing {
            pthread_cond_wait(&flushed, &mutex)
        }
        queue.flushWaiters -= 1
        pthread_mutex_unlock(&mutex)
    }

    /// Writes what is queued and stops the thread. Idempotent.
    public func close() {
        pthread_mutex_lock(&mutex)
        if queue.stopping {
            pthread_mutex_unlock(&mutex)
            return
        }
        queue.stopping = true
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&mutex)
        pthread_join(thread, nil)
    }

    /// Batches and rows written, batches that failed, rows dropped at the bound.
    public var counts: (batches: Int, rows: Int, failures: Int, dropped: Int) { statistics.withLock { $0 } }

    private func run(_ database: SQLiteDatabase) {
        // Below the loop threads in priority: a batch must not delay routing
        // when both share a core. SCHED_IDLE runs it only when no other thread
        // wants the core; where that is refused, nice +10 for this thread.
        var parameters = sched_param()
        if pthread_setschedparam(pthread_self(), 5 /* SCHED_IDLE, a macro Swift does not import */, &parameters) != 0 {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(herd_current_thread_id()), 10)
        }
        var statements: [String: SQLiteStatement] = [:]
        while true {
            pthread_mutex_lock(&mutex)
            while queue.rows.isEmpty, !queue.stopping { pthread_cond_wait(&wake, &mutex) }
            // Give a batch time to fill, unless asked to flush or stop.
            if queue.rows.count < maxBatch, !queue.stopping, queue.flushWaiters == 0 {
                var deadline = timespec()
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_nsec += maxDelayMilliseconds * 1_000_000
                deadline.tv_sec += deadline.tv_nsec / 1_000_000_000
                deadline.tv_nsec %= 1_000_000_000
                while queue.rows.count < maxBatch, !queue.stopping, queue.flushWaiters == 0 {
                    if pthread_cond_timedwait(&wake, &mutex, &deadline) != 0 { break }
                }
            }
            let batch = queue.rows
            queue.rows.removeAll(keepingCapacity: true)
            queue.writing = true
            let stopping = queue.stopping
            pthread_mutex_unlock(&mutex)

            if !batch.isEmpty { write(batch, database, &statements) }

            pthread_mutex_lock(&mutex)
            queue.writing = false
            pthread_cond_broadcast(&flushed)
            let done = stopping && queue.rows.isEmpty
            pthread_mutex_unlock(&mutex)
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
