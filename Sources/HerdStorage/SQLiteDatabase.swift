internal import CSQLite3

/// A SQLite failure: the result code, SQLite's message and the statement.
public struct SQLiteError: Error, Equatable, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let sql: String?
    public var description: String { "SQLite error \(code): \(message)" + (sql.map { " in `\($0)`" } ?? "") }
}

/// A value bound to or read from a statement.
public enum SQLiteValue: Equatable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// A number column's value (integer or real), nil for anything else.
    public var double: Double? {
        switch self {
        case let .integer(n): Double(n)
        case let .real(x): x
        default: nil
        }
    }
}

/// SQLite's "copy the bytes now" destructor; the C macro is not imported.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection. Not thread-safe: each thread (the loop, the batch
/// writer) opens its own.
public final class SQLiteDatabase {
    let handle: OpaquePointer
    public let path: String

    /// Opens (creating) the database at `path` in WAL mode with
    /// `synchronous=NORMAL`, a busy timeout and foreign keys on.
    public init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.path = path
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: "\(message) (\(path))", sql: nil)
        }
        handle = db
        sqlite3_busy_timeout(db, 5000)
        if !readOnly {
            try execute("PRAGMA journal_mode=WAL")
            try execute("PRAGMA synchronous=NORMAL")
        }
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit { sqlite3_close_v2(handle) }

    func error(_ rc: Int32, _ sql: String?) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, sql: sql)
        }
    }

    /// Compiles `sql` into a reusable statement.
    public func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql) }
        return SQLiteStatement(database: self, handle: statement, sql: sql)
    }

    /// Runs `sql` with `values` and returns every row.
    public func query(_ sql: String, _ values: [SQLiteValue] = []) throws(SQLiteError) -> [[SQLiteValue]] {
        let statement = try prepare(sql)
        try statement.bind(values)
        var rows: [[SQLiteValue]] = []
        while try statement.step() { rows.append(statement.row()) }
        return rows
    }

    /// Runs `body` in a transaction (`BEGIN IMMEDIATE`), rolled back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK") // the original error is the one to report
            throw error
        }
    }

    /// `PRAGMA user_version`: the schema version migrations have reached.
    public func userVersion() throws(SQLiteError) -> Int {
        guard case let .integer(version)? = try query("PRAGMA user_version").first?.first else { return 0 }
        return Int(version)
    }

    func setUserVersion(_ version: Int) throws(SQLiteError) { try execute("PRAGMA user_version=\(version)") }

    /// The journal mode in force (`wal` once opened read-write).
    public func journalMode() throws(SQLiteError) -> String {
        guard case let .text(mode)? = try query("PRAGMA journal_mode").first?.first else { return "" }
        return mode
    }

}

/// A prepared statement: bind, step, read columns, reset. Owned by one thread.
public final class SQLiteStatement {
    let database: SQLiteDatabase
    let handle: OpaquePointer
    public let sql: String

    init(database: SQLiteDatabase, handle: OpaquePointer, sql: String) {
        self.database = database
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    /// Resets the statement and binds `values` to parameters 1…n.
    public func bind(_ values: [SQLiteValue]) throws(SQLiteError) {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (i, value) in values.enumerated() {
            let index = Int32(clamping: i + 1)
            let rc: Int32 = switch value {
            case .null: sqlite3_bind_null(handle, index)
            case let .integer(v): sqlite3_bind_int64(handle, index, v)
            case let .real(v): sqlite3_bind_double(handle, index, v)
            case let .text(v): sqlite3_bind_text(handle, index, v, -1, sqliteTransient)
            case let .blob(v): v.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32(clamping: $0.count), sqliteTransient) }
            }
            if rc != SQLITE_OK { throw database.error(rc, sql) }
        }
    }

    /// Advances; true while a row is available.
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw database.error(rc, sql)
        }
    }

    /// Runs a statement that returns no rows.
    public func run(_ values: [SQLiteValue]) throws(SQLiteError) {
        try bind(values)
        while try step() {}
    }

    /// The current row's columns.
    public func row() -> [SQLiteValue] {
        (0..<sqlite3_column_count(handle)).map { column($0) }
    }

    public func column(_ i: Int32) -> SQLiteValue {
        switch sqlite3_column_type(handle, i) {
        case SQLITE_INTEGER: .integer(sqlite3_column_int64(handle, i))
        case SQLITE_FLOAT: .real(sqlite3_column_double(handle, i))
        case SQLITE_TEXT: .text(String(cString: sqlite3_column_text(handle, i)))
        case SQLITE_BLOB:
            if let bytes = sqlite3_column_blob(handle, i) {
                .blob(Array(UnsafeRawBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(handle, i)))))
            } else {
                .blob([])
            }
        default: .null
        }
    }
}
