import HerdJSON

/// What the backend says about its own work at the end of a response:
/// token counts and, when it reports them, how long each phase took.
struct BackendUsage: Equatable {
    var promptTokens = 0
    var completionTokens = 0
    /// Milliseconds spent reading the prompt (Ollama `prompt_eval_duration`, llama.cpp `timings.prompt_ms`).
    var promptMilliseconds: Double?
    /// Milliseconds spent generating (Ollama `eval_duration`, llama.cpp `timings.predicted_ms`).
    var decodeMilliseconds: Double?
    /// Milliseconds spent loading the model (Ollama `load_duration`).
    var loadMilliseconds: Double?
}

/// Reads `BackendUsage` from the end of a response: Ollama's last line
/// (`prompt_eval_count`, `eval_count`, `*_duration` in nanoseconds), OpenAI's
/// `usage`, llama.cpp's `timings`.
enum TokenCounter {
    static let keys: JSONKeys = ["eval_count", "prompt_eval_count", "usage", "eval_duration", "prompt_eval_duration", "load_duration", "timings"]
    /// Positions in `keys` (`JSONValue.Picked` is indexed, not hashed).
    private enum Key {
        static let evalCount = 0, promptEvalCount = 1, usage = 2, evalDuration = 3, promptEvalDuration = 4, loadDuration = 5, timings = 6
    }

    static func count(_ tail: [UInt8]) -> (prompt: Int, completion: Int) {
        let usage = read(tail)
        return (usage.promptTokens, usage.completionTokens)
    }

    static func read(_ tail: [UInt8]) -> BackendUsage {
        var end = tail.count
        var examined = 0
        while end > 0, examined < 8 {
            var start = end - 1
            while start > 0, tail[start - 1] != 10 { start -= 1 }
            var line = tail[start..<end]
            end = start > 0 ? start - 1 : 0
            if line.starts(with: Array("data: ".utf8)) { line = line.dropFirst(6) }
            while let last = line.last, last == 13 || last == 10 || last == 32 { line = line.dropLast() }
            guard line.first == UInt8(ascii: "{") else { continue }
            examined += 1
            // Only the counters are built; the text of the answer is skipped.
            guard let json = try? line.withUnsafeBytes({ raw in try JSONValue.pickTopLevel(raw, keys: TokenCounter.keys) }) else { continue }
            if let completion = json[Key.evalCount]?.intValue {
                return BackendUsage(promptTokens: json[Key.promptEvalCount]?.intValue ?? 0, completionTokens: completion,
                                    promptMilliseconds: milliseconds(nanoseconds: json[Key.promptEvalDuration]),
                                    decodeMilliseconds: milliseconds(nanoseconds: json[Key.evalDuration]),
                                    loadMilliseconds: milliseconds(nanoseconds: json[Key.loadDuration]))
            }
            if let usage = json[Key.usage], usage != .null {
                var result = BackendUsage(promptTokens: usage["prompt_tokens"]?.intValue ?? 0,
                                          completionTokens: usage["completion_tokens"]?.intValue ?? 0)
                if let timings = json[Key.timings] { result.add(timings: timings) }
                return result
            }
            if let timings = json[Key.timings], timings != .null {
                var result = BackendUsage(promptTokens: timings["prompt_n"]?.intValue ?? 0, completionTokens: timings["predicted_n"]?.intValue ?? 0)
                result.add(timings: timings)
                return result
            }
            if let prompt = json[Key.promptEvalCount]?.intValue {
                return BackendUsage(promptTokens: prompt, promptMilliseconds: milliseconds(nanoseconds: json[Key.promptEvalDuration]),
                                    loadMilliseconds: milliseconds(nanoseconds: json[Key.loadDuration]))
            }
        }
        return BackendUsage()
    }

    private static func milliseconds(nanoseconds value: JSONValue?) -> Double? {
        guard let n = value?.doubleValue, n.isFinite, n >= 0 else { return nil }
        return n / 1e6
    }
}

extension BackendUsage {
    /// llama.cpp's `timings` object (milliseconds already).
    mutating func add(timings: JSONValue) {
        if let ms = timings["prompt_ms"]?.doubleValue, ms.isFinite, ms >= 0 { promptMilliseconds = ms }
        if let ms = timings["predicted_ms"]?.doubleValue, ms.isFinite, ms >= 0 { decodeMilliseconds = ms }
    }
}
