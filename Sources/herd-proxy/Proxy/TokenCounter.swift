import HerdJSON

/// Token counts from the end of a response: Ollama's last line
/// (`prompt_eval_count`, `eval_count`) or OpenAI's `usage`.
enum TokenCounter {
    static let keys: Set<String> = ["eval_count", "prompt_eval_count", "usage"]

    static func count(_ tail: [UInt8]) -> (prompt: Int, completion: Int) {
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
            guard let json = try? line.withUnsafeBytes({ raw in try JSONValue.parseTopLevel(raw, keys: TokenCounter.keys) }) else { continue }
            if let completion = json["eval_count"]?.intValue {
                return (json["prompt_eval_count"]?.intValue ?? 0, completion)
            }
            if let usage = json["usage"], usage != .null {
                return (usage["prompt_tokens"]?.intValue ?? 0, usage["completion_tokens"]?.intValue ?? 0)
            }
            if let prompt = json["prompt_eval_count"]?.intValue { return (prompt, 0) }
        }
        return (0, 0)
    }
}
