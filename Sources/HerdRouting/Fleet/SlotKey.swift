import HerdWire

/// A node and a model (canonical name): the unit of concurrency, of queues
/// and of most learned rates.
package struct SlotKey: Hashable, Sendable, CustomStringConvertible {
    package let node: String
    package let model: String

    /// The strings' hash, made once: a key is looked up in several tables
    /// per decision, and each look-up then hashes one word, not two strings.
    private let hash: Int

    package init(_ node: String, _ model: String) {
        self.node = node
        self.model = ModelName.canonical(model)
        var hasher = Hasher()
        hasher.combine(self.node)
        hasher.combine(self.model)
        hash = hasher.finalize()
    }

    package static func == (a: SlotKey, b: SlotKey) -> Bool {
        a.hash == b.hash && a.node == b.node && a.model == b.model
    }

    package func hash(into hasher: inout Hasher) { hasher.combine(hash) }

    package var description: String { node + "/" + model }
}
