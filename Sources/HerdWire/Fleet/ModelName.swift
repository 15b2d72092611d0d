/// Model names as Ollama compares them: `llama3` and `llama3:latest` are one
/// model. The one place herd decides whether two names mean the same model
/// (control's routing, the proxy's local policy, the fleet listings).
public enum ModelName {
    /// The name with its tag: `llama3` → `llama3:latest`; tagged names as they are.
    public static func canonical(_ name: String) -> String {
        name.utf8.contains(UInt8(ascii: ":")) ? name : name + ":latest"
    }

    /// Equal as Ollama sees them, without allocating (checked per model per
    /// node on every request).
    public static func same(_ a: String, _ b: String) -> Bool {
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
