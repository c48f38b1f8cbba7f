#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Any JSON value. Kubernetes objects are held as JSON so that fields this client does not know are
/// kept exactly and never dropped by a write.
public enum JSON: Sendable, Hashable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// Integers stay exact (generation, code, remainingItemCount are int64).
    case integer(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSON].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSON].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .integer(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses JSON text.
    public static func parse(_ data: some Sequence<UInt8>) throws -> JSON {
        func document(_ bytes: UnsafeBufferPointer<UInt8>) throws -> JSON {
            var parser = JSONParser(bytes)
            return try parser.document()
        }
        if let parsed = try data.withContiguousStorageIfAvailable(document) { return parsed }
        return try Array(data).withUnsafeBufferPointer(document)
    }

    /// Compact JSON text with sorted keys (stable for tests and patches), as UTF-8.
    public var bytes: [UInt8] {
        var writer = JSONWriter()
        writer.write(self)
        return writer.out
    }

    /// Compact JSON text with sorted keys (stable for tests and patches).
    public var data: Data { Data(bytes) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var int: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }
    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var array: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var object: [String: JSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// A `map[string]string` such as labels or annotations; non-string values are left out.
    public var stringMap: [String: String] {
        object?.compactMapValues(\.string) ?? [:]
    }
}

extension JSON: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}
