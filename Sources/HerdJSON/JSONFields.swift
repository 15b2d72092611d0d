/// Typed reads of a JSON object's members, with errors that name the field:
/// the hand-written decoding of the per-request control messages (their
/// `Codable` form costs about four times the instructions on the hot path;
/// tests hold the two to the same JSON).
public struct JSONFields {
    public let value: JSONValue
    public let context: String

    public init(_ value: JSONValue, context: String) throws(JSONFieldError) {
        guard value.objectValue != nil else { throw JSONFieldError("\(context) must be a JSON object") }
        self.value = value
        self.context = context
    }

    public func string(_ key: String) throws(JSONFieldError) -> String {
        guard let s = value[key]?.stringValue else { throw JSONFieldError("\(context).\(key) must be a string") }
        return s
    }

    public func optionalString(_ key: String) throws(JSONFieldError) -> String? {
        guard let v = value[key], v != .null else { return nil }
        guard let s = v.stringValue else { throw JSONFieldError("\(context).\(key) must be a string") }
        return s
    }

    public func int(_ key: String) throws(JSONFieldError) -> Int {
        guard let n = value[key]?.intValue else { throw JSONFieldError("\(context).\(key) must be an integer") }
        return n
    }

    public func optionalInt(_ key: String) throws(JSONFieldError) -> Int? {
        guard let v = value[key], v != .null else { return nil }
        guard let n = v.intValue else { throw JSONFieldError("\(context).\(key) must be an integer") }
        return n
    }

    public func double(_ key: String, default fallback: Double? = nil) throws(JSONFieldError) -> Double {
        guard let v = value[key], v != .null else {
            if let fallback { return fallback }
            throw JSONFieldError("\(context).\(key) must be a number")
        }
        guard let n = v.doubleValue, n.isFinite else { throw JSONFieldError("\(context).\(key) must be a number") }
        return n
    }

    public func optionalDouble(_ key: String) throws(JSONFieldError) -> Double? {
        guard let v = value[key], v != .null else { return nil }
        guard let n = v.doubleValue, n.isFinite else { throw JSONFieldError("\(context).\(key) must be a number") }
        return n
    }

    public func optionalBool(_ key: String) throws(JSONFieldError) -> Bool? {
        guard let v = value[key], v != .null else { return nil }
        guard let b = v.boolValue else { throw JSONFieldError("\(context).\(key) must be true or false") }
        return b
    }

    public func bool(_ key: String, default fallback: Bool) throws(JSONFieldError) -> Bool {
        guard let v = value[key], v != .null else { return fallback }
        guard let b = v.boolValue else { throw JSONFieldError("\(context).\(key) must be true or false") }
        return b
    }

    public func strings(_ key: String) throws(JSONFieldError) -> [String] {
        guard let v = value[key], v != .null else { return [] }
        guard let items = v.arrayValue else { throw JSONFieldError("\(context).\(key) must be an array of strings") }
        var out: [String] = []
        for item in items {
            guard let s = item.stringValue else { throw JSONFieldError("\(context).\(key) must be an array of strings") }
            out.append(s)
        }
        return out
    }

    public func objects(_ key: String) throws(JSONFieldError) -> [JSONFields] {
        guard let v = value[key], v != .null else { return [] }
        guard let items = v.arrayValue else { throw JSONFieldError("\(context).\(key) must be an array of objects") }
        var out: [JSONFields] = []
        for (i, item) in items.enumerated() { out.append(try JSONFields(item, context: "\(context).\(key)[\(i)]")) }
        return out
    }

    public func object(_ key: String) throws(JSONFieldError) -> JSONFields? {
        guard let v = value[key], v != .null else { return nil }
        return try JSONFields(v, context: "\(context).\(key)")
    }
}
