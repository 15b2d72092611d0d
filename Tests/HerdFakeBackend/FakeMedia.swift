/// A speech and image server's answers, deterministic: what a test needs to
/// tell which backend served a job and that its bytes arrived whole.
enum FakeMedia {
    /// The value of a small form field (`name="model"`), found by a plain scan.
    static func formField(_ name: String, in body: [UInt8]) -> String? {
        let marker = Array("name=\"\(name)\"".utf8)
        guard let at = find(marker, in: body, from: 0), let start = find([13, 10, 13, 10], in: body, from: at),
              let end = find([13, 10], in: body, from: start + 4) else { return nil }
        return String(decoding: body[(start + 4)..<end], as: UTF8.self)
    }

    static func find(_ needle: [UInt8], in body: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, body.count >= needle.count, from <= body.count - needle.count else { return nil }
        for i in from...(body.count - needle.count) where body[i] == needle[0] && body[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }

    /// A WAV stream: a 44-byte header, then `chunks` chunks of 16-bit silence,
    /// 100 samples (at 16 kHz) per character read, at least one per chunk.
    static func speech(characters: Int, chunks: Int) -> FakeLineSource {
        let samples = max(chunks, min(characters, 100_000) * 100)
        let perChunk = samples / chunks
        let dataBytes = perChunk * chunks * 2
        return FakeLineSource(count: chunks + 1) { i in
            guard i > 0 else { return wavHeader(dataBytes: dataBytes) }
            return [UInt8](repeating: 0, count: perChunk * 2)
        }
    }

    static func wavHeader(dataBytes: Int) -> [UInt8] {
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func le16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        return Array("RIFF".utf8) + le32(36 + dataBytes) + Array("WAVEfmt ".utf8) + le32(16) + le16(1) + le16(1)
            + le32(16_000) + le32(32_000) + le16(2) + le16(16) + Array("data".utf8) + le32(dataBytes)
    }
}
