import Yams
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `-o`: kubectl's table, its wide table, or a machine format that decodes back into the same value.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, wide, json, yaml

    /// `-o` as given; nil (no `-o`) is the table.
    public init(flag: String?) throws(CLIError) {
        guard let flag else {
            self = .table
            return
        }
        guard let format = OutputFormat(rawValue: flag), format != .table else {
            throw CLIError(
                "-o \(flag) is not an output format: use -o wide, -o json or -o yaml, or leave -o out for the table")
        }
        self = format
    }

    /// `value` as JSON (sorted keys, indented) or YAML; the table formats are the caller's.
    public func encode(_ value: some Encodable) throws -> String {
        switch self {
        case .yaml:
            return try YAMLEncoder().encode(value)
        case .json, .table, .wide:
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try e.encode(value), as: UTF8.self) + "\n"
        }
    }
}
