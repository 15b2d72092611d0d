/// One schema step. Versions start at 1 and only ever grow; a released
/// migration is never edited, a new one is added.
public struct SQLiteMigration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies versioned migrations in order, each in its own transaction, and
/// records the version reached in `PRAGMA user_version`.
public enum SQLiteMigrator {
    /// Applies the migrations newer than the database's version; returns the
    /// versions applied. Throws (leaving the database at the last good version)
    /// if one fails, or if the database is newer than this program knows.
    @discardableResult
    public static func migrate(_ database: SQLiteDatabase, _ migrations: [SQLiteMigration]) throws -> [Int] {
        let sorted = migrations.sorted { $0.version < $1.version }
        precondition(Set(sorted.map(\.version)).count == sorted.count, "duplicate migration version")
        let current = try database.userVersion()
        if let newest = sorted.last?.version, current > newest {
            throw SQLiteError(code: 0, message: "database schema version \(current) is newer than this herd (knows \(newest))", sql: nil)
        }
        var applied: [Int] = []
        for migration in sorted where migration.version > current {
            try database.transaction {
                try database.execute(migration.sql)
                try database.setUserVersion(migration.version)
            }
            applied.append(migration.version)
        }
        return applied
    }
}
