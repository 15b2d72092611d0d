/// Ollama treats `llama3` and `llama3:latest` as one model.
enum ModelName {
    static func canonical(_ name: String) -> String {
        name.contains(":") ? name : name + ":latest"
    }

    /// Equal as Ollama sees them, without allocating (checked per model per node on every request).
    static func same(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        return impliesLatest(a, b) || impliesLatest(b, a)
    }

    /// `bare` has no tag and `tagged` is `bare:latest`.
    private static func impliesLatest(_ bare: String, _ tagged: String) -> Bool {
        let b = bare.utf8, t = tagged.utf8
        guard t.count == b.count + 7, !b.contains(UInt8(ascii: ":")), tagged.hasSuffix(":latest") else { return false }
        return t.starts(with: b)
    }
}
