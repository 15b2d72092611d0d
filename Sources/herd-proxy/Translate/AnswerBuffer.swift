import HerdJSON

/// A backend's OpenAI answer as it arrives, for the translators: collected
/// whole (bounded at `maxWholeBytes`), or split into its SSE `data:` lines
/// (one line bounded at `maxLineBytes`; a line arriving in many reads is
/// searched for its end once). Past a bound it holds nothing more and says
/// `overflow`.
struct AnswerBuffer {
    static let maxWholeBytes = 64 * 1024 * 1024
    static let maxLineBytes = 16 * 1024 * 1024

    /// One `data:` line of a stream: a JSON chunk, or `[DONE]`.
    enum Event {
        case chunk(JSONValue)
        case done
    }

    /// What has arrived and not yet been handed out (a whole answer: all of it).
    private(set) var bytes: [UInt8] = []
    private var scanned = 0
    private(set) var overflow = false

    /// Collects part of a whole answer.
    mutating func collect(_ raw: UnsafeRawBufferPointer) {
        guard !overflow else { return }
        bytes.append(contentsOf: raw)
        if bytes.count > Self.maxWholeBytes { tooLarge() }
    }

    /// Appends part of a stream and hands each complete line's event to `handle`.
    mutating func split(_ raw: UnsafeRawBufferPointer, _ handle: (Event) -> Void) {
        guard !overflow else { return }
        bytes.append(contentsOf: raw)
        var start = 0
        var from = scanned
        while let newline = bytes[from...].firstIndex(of: 10) {
            if let event = Self.event(bytes[start..<newline]) { handle(event) }
            start = newline + 1
            from = start
        }
        bytes.removeFirst(start)
        scanned = bytes.count
        if bytes.count > Self.maxLineBytes { tooLarge() }
    }

    /// The stream ended: its last line, if it had no line end.
    mutating func finishStream(_ handle: (Event) -> Void) {
        guard !overflow, !bytes.isEmpty else { return }
        if let event = Self.event(bytes[...]) { handle(event) }
        bytes = []
        scanned = 0
    }

    private mutating func tooLarge() {
        overflow = true
        bytes = []
        scanned = 0
    }

    /// A line's event: `data: {…}` or `data: [DONE]` (blank lines, `event:`
    /// lines, comments and what is not JSON: none).
    static func event(_ raw: ArraySlice<UInt8>) -> Event? {
        var text = raw
        while let last = text.last, last == 13 || last == 32 { text.removeLast() }
        guard text.starts(with: Array("data:".utf8)) else { return nil }
        text.removeFirst(5)
        while text.first == 32 { text.removeFirst() }
        if text.elementsEqual(Array("[DONE]".utf8)) { return .done }
        return (try? JSONValue.parse(Array(text))).map { .chunk($0) }
    }
}
