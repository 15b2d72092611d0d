import Glibc
import HerdJSON

/// Ollama API bodies as Ollama frames them (see shared/API-NOTES.md).
enum FakeOllama {
    static func details(_ model: FakeModel) -> JSONValue {
        ["parent_model": "", "format": "gguf", "family": .string(model.family), "families": [.string(model.family)],
         "parameter_size": .string(model.parameterSize), "quantization_level": .string(model.quantization)]
    }

    static func digest(_ model: FakeModel) -> String {
        var hash: UInt64 = 1469598103934665603
        for byte in model.name.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        return String(repeating: String(hash, radix: 16), count: 4).prefix(64).description
    }

    static func tags(_ configuration: FakeBackendConfiguration) -> JSONValue {
        ["models": .array(configuration.models.map { model in
            ["name": .string(model.name), "model": .string(model.name), "modified_at": "2026-11-01T10:00:00.000000000Z",
             "size": .number(Double(model.sizeBytes)), "digest": .string(digest(model)), "details": details(model)]
        })]
    }

    static func ps(_ configuration: FakeBackendConfiguration) -> JSONValue {
        ["models": .array(configuration.models.filter(\.loaded).map { model in
            ["name": .string(model.name), "model": .string(model.name), "size": .number(Double(model.sizeBytes + 500_000_000)),
             "digest": .string(digest(model)), "details": details(model), "expires_at": "2099-01-01T00:00:00.000000000Z",
             "size_vram": .number(Double(model.sizeBytes + 500_000_000)), "context_length": .number(Double(model.contextLength))]
        })]
    }

    static func show(_ model: FakeModel) -> JSONValue {
        ["modelfile": .string("FROM \(model.name)"), "parameters": "", "template": "{{ .Prompt }}",
         "details": details(model),
         "model_info": ["general.architecture": .string(model.family),
                        .init(stringLiteral: "\(model.family).context_length"): .number(Double(model.contextLength))],
         "capabilities": .array(model.capabilities.map { .string($0) }), "modified_at": "2026-11-01T10:00:00.000000000Z"]
    }

    static func token(_ i: Int, _ configuration: FakeBackendConfiguration) -> String {
        "tok\(i) " + String(repeating: "x", count: configuration.tokenPadding)
    }

    /// The final line's counters and durations (nanoseconds), as the pacing
    /// makes them: reading the prompt takes the first-byte delay, each token
    /// its token delay (at least a microsecond each).
    static func statistics(_ configuration: FakeBackendConfiguration, loadNanoseconds: Double = 500_000) -> [(String, JSONValue)] {
        let tokens = Double(configuration.tokens)
        let prompt = max(200_000, Double(configuration.firstByteDelayMilliseconds) * 1e6)
        let eval = tokens * max(1000, Double(configuration.tokenDelayMilliseconds) * 1e6)
        return [("done_reason", "stop"), ("done", true), ("total_duration", .number(loadNanoseconds + prompt + eval)),
                ("load_duration", .number(loadNanoseconds)), ("prompt_eval_count", 12), ("prompt_eval_duration", .number(prompt)),
                ("eval_count", .number(tokens)), ("eval_duration", .number(eval))]
    }

    static func streamLines(model: FakeModel, chat: Bool, configuration: FakeBackendConfiguration, loadNanoseconds: Double = 500_000) -> FakeLineSource {
        let count = configuration.tokens
        return FakeLineSource(count: count + 1) { i in
            var members: [(String, JSONValue)] = [("model", .string(model.name)), ("created_at", .string(FakeClock.rfc3339()))]
            let text: JSONValue = i < count ? .string(token(i, configuration)) : ""
            if chat {
                members.append(("message", ["role": "assistant", "content": text]))
            } else {
                members.append(("response", text))
            }
            if i < count {
                members.append(("done", false))
            } else {
                if !chat { members.append(("context", [1, 2, 3])) }
                members.append(contentsOf: statistics(configuration, loadNanoseconds: loadNanoseconds))
            }
            var line: [UInt8] = []
            JSONValue.object(members).write(to: &line)
            line.append(10)
            return line
        }
    }

    static func whole(model: FakeModel, chat: Bool, configuration: FakeBackendConfiguration, loadNanoseconds: Double = 500_000) -> JSONValue {
        let text = (0..<configuration.tokens).map { token($0, configuration) }.joined()
        var members: [(String, JSONValue)] = [("model", .string(model.name)), ("created_at", .string(FakeClock.rfc3339()))]
        if chat {
            members.append(("message", ["role": "assistant", "content": .string(text)]))
        } else {
            members.append(("response", .string(text)))
            members.append(("context", [1, 2, 3]))
        }
        members.append(contentsOf: statistics(configuration, loadNanoseconds: loadNanoseconds))
        return .object(members)
    }

    static func vector(_ n: Int) -> JSONValue {
        .array((0..<n).map { .number(Double($0 + 1) / Double(n)) })
    }

    /// A text's vector: its words (lower-cased letters and digits) hashed into
    /// the dimensions, so texts sharing most words are close (cosine) and
    /// others are not — enough to test similarity without a model.
    static func vector(_ n: Int, text: String?) -> JSONValue {
        guard let text, n > 0 else { return vector(n) }
        var counts = [Double](repeating: 0, count: n)
        var word: [UInt8] = []
        func flush() {
            guard !word.isEmpty else { return }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in word { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            counts[Int(h % UInt64(n))] += 1
            word.removeAll()
        }
        for b in text.utf8 {
            let lower = b >= 0x41 && b <= 0x5A ? b + 32 : b
            if (lower >= 0x61 && lower <= 0x7A) || (lower >= 0x30 && lower <= 0x39) { word.append(lower) } else { flush() }
        }
        flush()
        return .array(counts.map { .number($0) })
    }

    /// The texts of an embedding request's `input` (a string or a list of strings).
    static func texts(_ input: JSONValue?) -> [String?] {
        if let text = input?.stringValue { return [text] }
        return input?.arrayValue?.map(\.stringValue) ?? [nil]
    }

    static func embed(model: FakeModel, inputs: Int, texts: [String?] = []) -> JSONValue {
        ["model": .string(model.name), "embeddings": .array((0..<inputs).map { i in
            vector(model.embeddingDimensions, text: i < texts.count ? texts[i] : nil) }),
         "total_duration": 1_000_000, "load_duration": 100_000, "prompt_eval_count": .number(Double(inputs * 4))]
    }
}

/// Wall-clock stamps for `created_at`.
enum FakeClock {
    static func rfc3339() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let base = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let nanos = String(now.tv_nsec)
        return base + "." + String(repeating: "0", count: 9 - nanos.count) + nanos + "Z"
    }

    static func unixSeconds() -> Int { Int(time(nil)) }
}
