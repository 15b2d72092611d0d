/// The seeded workload: conversations that start on a bursty schedule, each
/// a few turns long (the next turn comes a think-time after the answer), over
/// a mix of models, short and long prompts.

import Glibc
import HerdRuntime

extension SeededRandom {
    mutating func between(_ low: Double, _ high: Double) -> Double { low + (high - low) * uniform() }
    mutating func exponential(mean: Double) -> Double { -mean * log(max(1e-12, 1 - uniform())) }
}

/// One request of a conversation.
struct SimRequest {
    let id: Int
    let conversation: Int
    let turnIndex: Int
    let model: String
    /// The whole prompt (the conversation so far) and its new part.
    let promptTokens: Int
    let newPromptTokens: Int
    let outputTokens: Int
    /// Set for multi-turn conversations (their KV cache can be reused).
    let session: UInt64?
    /// Which system prompt (`.max`: none).
    let systemPrompt: UInt64
}

/// A conversation: its model, when it starts, its turns.
struct Conversation {
    let index: Int
    let model: String
    let start: Double
    /// (new prompt tokens, output tokens) per turn.
    let turns: [(Int, Int)]
    let thinkMs: Double
    /// Which system prompt (`.max`: none).
    let systemPrompt: UInt64
}

enum SimWorkload {
    /// Conversations over `durationMs`: a base rate with bursts at four times it.
    static func conversations(seed: UInt64, durationMs: Double, perMinute: Double, models: [(SimModel, Double)]) -> [Conversation] {
        var random = SeededRandom(seed: seed)
        var result: [Conversation] = []
        var t = 0.0
        let bursts = [(0.15, 0.22), (0.45, 0.5), (0.75, 0.8)].map { ($0.0 * durationMs, $0.1 * durationMs) }
        while true {
            let inBurst = bursts.contains { t >= $0.0 && t < $0.1 }
            t += random.exponential(mean: 60_000 / (perMinute * (inBurst ? 4 : 1)))
            guard t < durationMs else { break }
            // The model, by share.
            var pick = random.uniform() * models.reduce(0) { $0 + $1.1 }
            var model = models[0].0
            for (m, share) in models {
                pick -= share
                if pick <= 0 { model = m; break }
            }
            // One-shot or a multi-turn chat.
            let turnCount = random.uniform() < 0.4 ? Int(random.between(3, 7)) : 1
            var turns: [(Int, Int)] = []
            for turn in 0..<turnCount {
                let long = random.uniform() < 0.3
                let prompt = turn == 0 ? Int(long ? random.between(2_000, 6_000) : random.between(100, 500)) : Int(random.between(50, 300))
                let output = model.thinking ? Int(random.between(800, 2_000)) : Int(random.between(80, 500))
                turns.append((prompt, output))
            }
            result.append(Conversation(index: result.count, model: model.name, start: t, turns: turns,
                                       thinkMs: random.between(5_000, 20_000), systemPrompt: UInt64(random.between(0, 3))))
        }
        return result
    }

    /// One-shot chats of one model at Poisson arrivals (`perSecond`), prompts
    /// and answers log-uniform over `spread` from their shortest: the workload
    /// of Benchmarks/routing-real (loadgen.py), in virtual time.
    static func oneShots(seed: UInt64, count: Int, perSecond: Double, model: SimModel, prompt: Double, answer: Double, spread: Double) -> [Conversation] {
        var random = SeededRandom(seed: seed)
        var t = 0.0
        return (0..<count).map { index in
            t += random.exponential(mean: 1_000 / perSecond)
            let p = Int(prompt * exp(random.uniform() * log(spread)))
            let a = Int(answer * exp(random.uniform() * log(spread)))
            return Conversation(index: index, model: model.name, start: t, turns: [(p, a)], thinkMs: 0, systemPrompt: .max)
        }
    }
}
