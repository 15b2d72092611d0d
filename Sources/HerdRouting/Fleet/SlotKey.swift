import HerdWire

/// A node and a model (canonical name): the unit of concurrency, of queues
/// and of most learned rates.
package struct SlotKey: Hashable, Sendable, CustomStringConvertible {
    package let node: String
    package let model: String

    package init(_ node: String, _ model: String) {
        self.node = node
        self.model = ModelName.canonical(model)
    }

    package var description: String { node + "/" + model }
}
