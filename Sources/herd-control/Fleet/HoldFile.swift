import Glibc
import HerdRouting
import HerdWire

/// `<data-dir>/holds`: the nodes an operator drained or paused, one
/// `<node id> <drain|pause>` per line, so that a hold outlives a restart.
/// Written whole (to a temporary file, then renamed) on every change.
enum HoldFile {
    static func read(_ path: String) -> [String: Hold] {
        guard let file = fopen(path, "r") else { return [:] }
        defer { fclose(file) }
        var holds: [String: Hold] = [:]
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(clamping: line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard parts.count == 2, Heartbeat.isValidNodeID(String(parts[0])), let hold = Hold(rawValue: String(parts[1])) else { continue }
            holds[String(parts[0])] = hold
        }
        return holds
    }

    static func write(_ holds: [String: Hold], to path: String) throws {
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else { throw ControlError("cannot write \(temporary): errno \(errno)") }
        let text = holds.keys.sorted().map { "\($0) \(holds[$0]!.rawValue)\n" }.joined()
        let bytes = Array(text.utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        guard fclose(file) == 0, written == bytes.count, rename(temporary, path) == 0 else {
            throw ControlError("cannot write \(path): errno \(errno)")
        }
    }
}
