import Glibc
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
    /// The backend's whole time, queueing inside it included (Ollama `total_duration`).
    var totalMilliseconds: Double?
}

/// Reads `BackendUsage` from the end of a response: Ollama's last line
/// (`prompt_eval_count`, `eval_count`, `*_duration` in nanoseconds), OpenAI's
/// `usage`, llama.cpp's `timings`.
enum TokenCounter {
    static let keys: JSONKeys = ["eval_count", "prompt_eval_count", "usage", "eval_duration", "prompt_eval_duration", "load_duration", "timings",
                                 "total_duration", "response"]
    /// Positions in `keys` (`JSONValue.Picked` is indexed, not hashed).
    private enum Key {
        static let evalCount = 0, promptEvalCount = 1, usage = 2, evalDuration = 3, promptEvalDuration = 4, loadDuration = 5, timings = 6,
                   totalDuration = 7, response = 8
    }

    /// Newlines in `bytes` (memchr per line: vectorised in libc).
    static func newlines(in bytes: UnsafeRawBufferPointer) -> Int {
        guard var at = bytes.baseAddress else { return 0 }
        let end = at + bytes.count
        var n = 0
        while at < end, let found = memchr(at, 10, end - at) {
            n &+= 1
            at = UnsafeRawPointer(found) + 1
        }
        return n
    }

    /// The output tokens of a server-sent event stream that said nothing of
    /// its usage (vLLM and most OpenAI-compatible servers, unless the client
    /// asks with `stream_options.include_usage`), from its `newlines`: an event
    /// ends in a blank line, and one carries about one token; the opening
    /// (role) event and `[DONE]` carry none. An estimate, 0 for no events.
    static func streamedTokens(newlines: Int) -> Int {
        let events = newlines / 2
        return events > 0 ? max(1, events - 2) : 0
    }

    static func count(_ tail: [UInt8]) -> (prompt: Int, completion: Int) {
        let usage = read(tail)
        return (usage.promptTokens, usage.completionTokens)
    }

    static func read(_ tail: [UInt8]) -> BackendUsage {
        tail.withUnsafeBytes { read($0) }
    }

    /// The last JSON lines of `tail` (at most 8 of them, newest first, `data: `
    /// stripped) until one carries counters: a scan over the bytes in place.
    static func read(_ tail: UnsafeRawBufferPointer) -> BackendUsage {
        var end = tail.count
        var examined = 0
        while end > 0, examined < 8 {
            var start = end - 1
            while start > 0, tail[start - 1] != 10 { start -= 1 }
            var lower = start, upper = end
            end = start > 0 ? start - 1 : 0
            if upper - lower >= 6, tail[lower] == UInt8(ascii: "d"), tail[lower + 1] == UInt8(ascii: "a"), tail[lower + 2] == UInt8(ascii: "t"),
               tail[lower + 3] == UInt8(ascii: "a"), tail[lower + 4] == UInt8(ascii: ":"), tail[lower + 5] == UInt8(ascii: " ") {
                lower += 6
            }
            while upper > lower, tail[upper - 1] == 13 || tail[upper - 1] == 10 || tail[upper - 1] == 32 { upper -= 1 }
            guard upper > lower, tail[lower] == UInt8(ascii: "{") else { continue }
            examined += 1
            // Only the counters are built; the text of the answer is skipped.
            guard let json = try? JSONValue.pickTopLevel(UnsafeRawBufferPointer(rebasing: tail[lower..<upper]), keys: TokenCounter.keys) else { continue }
            if let usage = usage(json) { return usage }
        }
        return BackendUsage()
    }

    /// The counters of one line, if it carries any.
    private static func usage(_ json: JSONValue.Picked) -> BackendUsage? {
        if let completion = json[Key.evalCount]?.intValue {
            return BackendUsage(promptTokens: json[Key.promptEvalCount]?.intValue ?? 0, completionTokens: completion,
                                promptMilliseconds: milliseconds(nanoseconds: json[Key.promptEvalDuration]),
                                decodeMilliseconds: milliseconds(nanoseconds: json[Key.evalDuration]),
                                loadMilliseconds: milliseconds(nanoseconds: json[Key.loadDuration]),
                                totalMilliseconds: milliseconds(nanoseconds: json[Key.totalDuration]))
        }
        // OpenAI `usage` (chat: prompt/completion tokens; Anthropic Messages and
        // OpenAI Responses: input/output tokens; a Responses stream's last
        // event carries it inside `response`).
        if let usage = json[Key.usage] ?? json[Key.response]?["usage"], usage != .null {
            var result = BackendUsage(promptTokens: usage["prompt_tokens"]?.intValue ?? usage["input_tokens"]?.intValue ?? 0,
                                      completionTokens: usage["completion_tokens"]?.intValue ?? usage["output_tokens"]?.intValue ?? 0)
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
        return nil
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
