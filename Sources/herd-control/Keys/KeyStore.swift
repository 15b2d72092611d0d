import HerdJSON
import HerdStorage

/// The client keys in `<data-dir>/herd.db` (`client_keys`; the schema is
/// `TraceStore.migrations`): hashed, never the secret. Writes are rare
/// (create, update, revoke) and small, done on the loop's own connection;
/// usage per day goes through the trace writer (`TraceStore.recordKeyUsage`).
final class KeyStore {
    private let database: SQLiteDatabase

    /// Opens `path` (already migrated by `TraceStore`).
    init(path: String) throws {
        database = try SQLiteDatabase(path: path)
    }

    /// Every key, revoked ones included, oldest first.
    func all() throws -> [ClientKey] {
        let rows = try database.query("SELECT id, name, sha256, prefix, settings, created_ms, revoked_ms FROM client_keys ORDER BY id")
        return rows.compactMap { row in
            guard row.count == 7, case let .integer(id) = row[0], case let .text(name) = row[1], case let .text(hash) = row[2],
                  case let .text(prefix) = row[3], case let .text(settingsText) = row[4], case let .integer(created) = row[5] else { return nil }
            var settings = KeySettings()
            // A row this herd cannot read keeps no limits rather than stopping the start; it still authenticates.
            if let json = try? JSONValue.parse(Array(settingsText.utf8)) { try? settings.apply(json) }
            let revoked: Int? = if case let .integer(at) = row[6] { Int(at) } else { nil }
            return ClientKey(id: Int(id), name: name, sha256: hash, prefix: prefix, settings: settings, createdMs: Int(created), revokedMs: revoked)
        }
    }

    /// Stores a new key; returns its id.
    func insert(name: String, sha256: String, prefix: String, settings: KeySettings, createdMs: Int) throws -> Int {
        let rows = try database.query("""
            INSERT INTO client_keys (name, sha256, prefix, settings, created_ms) VALUES (?, ?, ?, ?, ?) RETURNING id
            """, [.text(name), .text(sha256), .text(prefix), .text(settings.json.serialized()), .integer(Int64(createdMs))])
        guard case let .integer(id)? = rows.first?.first else { throw KeyError("the key was not stored", status: 500) }
        return Int(id)
    }

    func update(id: Int, name: String, settings: KeySettings) throws {
        _ = try database.query("UPDATE client_keys SET name = ?, settings = ? WHERE id = ?",
                               [.text(name), .text(settings.json.serialized()), .integer(Int64(id))])
    }

    func revoke(id: Int, at: Int) throws {
        _ = try database.query("UPDATE client_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL", [.integer(Int64(at)), .integer(Int64(id))])
    }

    /// Tokens per key and day since `firstDay` (what budgets count after a restart).
    func usage(sinceDay firstDay: Int) throws -> [(key: Int, day: Int, tokens: Int)] {
        try database.query("SELECT key_id, day, prompt_tokens + completion_tokens FROM key_usage WHERE day >= ?", [.integer(Int64(firstDay))])
            .compactMap { row in
                guard row.count == 3, case let .integer(key) = row[0], case let .integer(day) = row[1], case let .integer(tokens) = row[2] else { return nil }
                return (Int(key), Int(day), Int(tokens))
            }
    }
}
