import HerdBounds
import HerdStorage

/// The learned week in SQLite (`<data-dir>/capacity.db`, table
/// `capacity_slots`: one row per hour of the week). Small and written once
/// an hour: the agent writes it on the loop's offload thread.
final class CapacityStore: @unchecked Sendable {
    private let database: SQLiteDatabase

    init(path: String) throws {
        database = try SQLiteDatabase(path: path)
        try database.execute("""
            CREATE TABLE IF NOT EXISTS capacity_slots (
                slot INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 167),
                owner_cpu REAL NOT NULL, owner_memory_bytes REAL NOT NULL, weeks INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)
            """)
    }

    func load() throws -> [CapacityModel.Slot?] {
        var slots = [CapacityModel.Slot?](repeating: nil, count: CapacityModel.slots)
        for row in try database.query("SELECT slot, owner_cpu, owner_memory_bytes, weeks FROM capacity_slots") {
            guard row.count == 4, let slot = row[0].double.map { Int(saturating: $0) }, (0..<CapacityModel.slots).contains(slot),
                  let cpu = row[1].double, let memory = row[2].double, let weeks = row[3].double else { continue }
            slots[slot] = CapacityModel.Slot(cpu: min(1, max(0, cpu)), memoryBytes: max(0, memory), weeks: Int(saturating: weeks))
        }
        return slots
    }

    func save(slot: Int, _ value: CapacityModel.Slot, at milliseconds: Int) throws {
        _ = try database.query(
            "INSERT OR REPLACE INTO capacity_slots (slot, owner_cpu, owner_memory_bytes, weeks, updated_at_ms) VALUES (?, ?, ?, ?, ?)",
            [.integer(Int64(slot)), .real(value.cpu), .real(value.memoryBytes), .integer(Int64(value.weeks)), .integer(Int64(milliseconds))])
    }
}
