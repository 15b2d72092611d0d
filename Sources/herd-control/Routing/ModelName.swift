/// Ollama treats `llama3` and `llama3:latest` as one model.
enum ModelName {
    static func canonical(_ name: String) -> String {
        name.contains(":") ? name : name + ":latest"
    }

    static func same(_ a: String, _ b: String) -> Bool {
        a == b || canonical(a) == canonical(b)
    }
}
