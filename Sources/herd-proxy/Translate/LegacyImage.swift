import HerdJSON

/// Ollama Herd's `POST /api/generate-image` (`{"model","prompt","width",
/// "height", "steps", "seed", "negative_prompt"}`, answered with the PNG's
/// bytes) sent on as OpenAI's `/v1/images/generations` (`b64_json`), so that
/// the Python router's clients work unchanged.
enum LegacyImage {
    /// The OpenAI request; nil when the body is not an object with a `prompt` string.
    static func request(body: [UInt8], model: String) -> [UInt8]? {
        guard case let .object(members)? = try? JSONValue.parse(body),
              let prompt = members.first(where: { $0.0 == "prompt" })?.1.stringValue, !prompt.isEmpty else { return nil }
        func int(_ key: String) -> Int? {
            guard let value = members.first(where: { $0.0 == key })?.1.intValue, (1...16_384).contains(value) else { return nil }
            return value
        }
        var out: [(String, JSONValue)] = [("model", .string(model)), ("prompt", .string(prompt)), ("n", .int(1)),
                                          ("response_format", .string("b64_json"))]
        out.append(("size", .string("\(int("width") ?? 1024)x\(int("height") ?? 1024)")))
        for key in ["steps", "seed", "negative_prompt"] {
            if let value = members.first(where: { $0.0 == key })?.1 { out.append((key, value)) }
        }
        var bytes: [UInt8] = []
        JSONValue.object(out).write(to: &bytes)
        return bytes
    }

    /// The backend's `{"data":[{"b64_json":…}]}` as the image's bytes
    /// (`image/png`); an error answer is passed on as it came (JSON).
    final class AnswerTranslator: herd_proxy.AnswerTranslator {
        private var buffer = AnswerBuffer()
        private var status = 200

        func head(status: Int) { self.status = status }
        var contentType: String { status < 300 ? "image/png" : "application/json" }

        func feed(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
            buffer.collect(bytes)
            return []
        }

        func finish() -> [UInt8] {
            guard status < 300 else { return buffer.bytes }
            guard !buffer.overflow, let answer = try? JSONValue.parse(buffer.bytes),
                  let encoded = answer["data"]?.arrayValue?.first?["b64_json"]?.stringValue,
                  let image = Base64.decode(encoded) else {
                return Array(#"{"error":"the image server's answer has no image (data[0].b64_json)"}"#.utf8)
            }
            return image
        }
    }
}

/// Standard base64 (RFC 4648, padding optional, no line breaks), decoded
/// without Foundation; nil on any byte outside the alphabet.
enum Base64 {
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(c)] = UInt8(truncatingIfNeeded: i) }
        return table
    }()

    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 4 * 3)
        var accumulator: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            if c == UInt8(ascii: "=") { break }
            let v = values[Int(c)]
            guard v != 0xFF else { return nil }
            accumulator = (accumulator << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(truncatingIfNeeded: bits)))
                accumulator &= (1 << UInt32(truncatingIfNeeded: bits)) - 1
            }
        }
        return out
    }
}
