import HerdJSON
import HerdWire

/// How much work a speech, image, embedding or rerank job is, in its kind's
/// unit (`WorkKind.unit`), read from the request: control expects its time
/// from the rate measured per unit on each node. 0 when it cannot be told.
/// Only for those endpoints: a chat never comes here.
enum WorkUnits {
    static let keys: JSONKeys = ["input", "n", "size", "documents", "width", "height"]
    private enum Key { static let input = 0, n = 1, size = 2, documents = 3, width = 4, height = 5 }

    /// Whether `endpoint`'s requests are measured in units.
    static func measures(_ endpoint: Endpoint) -> Bool {
        switch endpoint {
        case .embed, .embeddings, .openAIEmbeddings, .rerank, .rerankBare, .reranking, .speech, .imageGenerations, .legacyGenerateImage: true
        default: false
        }
    }

    /// The units of a JSON request body (nil-safe: 0 when unreadable).
    static func json(_ body: [UInt8], endpoint: Endpoint) -> Double {
        guard let picked = try? body.withUnsafeBytes({ raw throws(JSONParseError) in try JSONValue.pickTopLevel(raw, keys: keys) }) else { return 0 }
        let units: Double
        switch endpoint {
        case .speech:
            units = Double(picked[Key.input]?.stringValue?.count ?? 0)
        case .imageGenerations, .legacyGenerateImage:
            let n = picked[Key.n]?.intValue.map { min(max($0, 1), 128) } ?? 1
            var pixels = 1024.0 * 1024.0
            if let size = picked[Key.size]?.stringValue, let (w, h) = dimensions(size) {
                pixels = w * h
            } else if let w = picked[Key.width]?.intValue, let h = picked[Key.height]?.intValue, (1...16_384).contains(w), (1...16_384).contains(h) {
                pixels = Double(w) * Double(h)
            }
            units = Double(n) * pixels / 1_048_576
        case .rerank, .rerankBare, .reranking:
            units = Double(picked[Key.documents]?.arrayValue?.count ?? 0)
        default: // embeddings: a string, a list of strings, or of token lists
            switch picked[Key.input] {
            case .string?: units = 1
            case let .array(items)?: units = Double(items.count)
            default: units = 0
            }
        }
        return min(units, RequestLimits.maxWorkUnits)
    }

    /// `"1024x768"` → (1024, 768), each 1–16384.
    static func dimensions(_ size: String) -> (Double, Double)? {
        let parts = size.split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), (1...16_384).contains(w), (1...16_384).contains(h) else { return nil }
        return (Double(w), Double(h))
    }

    /// Seconds of audio in an upload whose file part is a PCM WAV (its
    /// header's byte rate and data size; a streamed WAV's unknown size is
    /// taken from the upload's length). 0 for other formats (mp3, ogg, …);
    /// nil while the start of the file has not arrived (`held` is the start of the form).
    static func audioSeconds(form held: [UInt8], contentType: String?, totalLength: Int?) -> Double? {
        guard let contentType, let boundary = RouteFields.formBoundary(contentType) else { return 0 }
        var seconds: Double?
        held.withUnsafeBytes { raw in
            _ = RouteFields.scanForm(raw, delimiter: Array("--".utf8) + boundary, partial: true) { name, headers in
                guard seconds == nil, name == "file" || name == "audio" else { return }
                let start = headers.upperBound + 4
                let needed = min(wavHeaderBytes, totalLength.map { max(0, $0 - start) } ?? wavHeaderBytes)
                guard start + needed <= raw.count else { return }
                seconds = wavSeconds(UnsafeRawBufferPointer(rebasing: raw[start...]), remaining: totalLength.map { $0 - start })
            }
        }
        return seconds.map { min($0, RequestLimits.maxWorkUnits) }
    }

    /// What a WAV's size is read from (its header, with a chunk or two before `data`).
    static let wavHeaderBytes = 256

    /// A WAV file's duration from its first bytes: RIFF/WAVE, the `fmt `
    /// chunk's byte rate, the `data` chunk's size (bounded walk of chunks).
    static func wavSeconds(_ file: UnsafeRawBufferPointer, remaining: Int?) -> Double {
        func u32(_ at: Int) -> UInt32 {
            UInt32(file[at]) | UInt32(file[at + 1]) << 8 | UInt32(file[at + 2]) << 16 | UInt32(file[at + 3]) << 24
        }
        guard file.count >= 12, Array(file[0..<4]) == Array("RIFF".utf8), Array(file[8..<12]) == Array("WAVE".utf8) else { return 0 }
        var at = 12
        var byteRate: UInt32 = 0
        for _ in 0..<16 where at + 8 <= file.count {
            let id = Array(file[at..<at + 4]), size = u32(at + 4)
            if id == Array("fmt ".utf8), at + 20 <= file.count {
                byteRate = u32(at + 16)
            } else if id == Array("data".utf8) {
                guard byteRate > 0 else { return 0 }
                var bytes = Double(size)
                if size == 0xFFFF_FFFF || size == 0 {
                    // A streamed WAV: its size is the rest of the upload, if that is known.
                    guard let remaining else { return 0 }
                    bytes = Double(max(0, remaining - at - 8))
                }
                return bytes / Double(byteRate)
            }
            guard size < 1 << 24 else { return 0 }
            at += 8 + Int(size) + Int(size & 1)
        }
        return 0
    }
}
