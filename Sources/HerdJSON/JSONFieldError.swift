/// A JSON document that is valid JSON but not of the expected shape; the
/// message names the field (`route.api must be ollama or openai`).
public struct JSONFieldError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension JSONValue {
    /// A JSON number from an integer.
    public static func int(_ n: Int) -> JSONValue { .number(Double(n)) }
    /// A JSON array of strings.
    public static func strings(_ items: [String]) -> JSONValue { .array(items.map { .string($0) }) }
}
