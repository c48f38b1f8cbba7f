import Kube

/// One field's validation failure, worded as k8s.io/apimachinery's field.Error: `FIELD: TYPE: VALUE: DETAIL`,
/// the value printed as Go's fmt prints it, so that messages match kube-apiserver's to the character.
struct FieldError: Sendable, Hashable {
    enum Kind: String, Sendable {
        case required = "FieldValueRequired"
        case invalid = "FieldValueInvalid"
        case typeInvalid = "FieldValueTypeInvalid"
        case notSupported = "FieldValueNotSupported"
        case duplicate = "FieldValueDuplicate"
        case tooLong = "FieldValueTooLong"
        case tooMany = "FieldValueTooMany"
        case forbidden = "FieldValueForbidden"

        var words: String {
            switch self {
            case .required: return "Required value"
            case .invalid, .typeInvalid: return "Invalid value"
            case .notSupported: return "Unsupported value"
            case .duplicate: return "Duplicate value"
            case .tooLong: return "Too long"
            case .tooMany: return "Too many"
            case .forbidden: return "Forbidden"
            }
        }
    }

    /// A bad value as Go holds it after decoding JSON: the count of `Too many` is a Go int, not JSON.
    enum Value: Sendable, Hashable {
        case json(JSON)
        case count(Int)
    }

    var kind: Kind
    var field: String
    var value: Value?
    var detail: String

    static func required(_ field: String, _ detail: String = "") -> FieldError {
        FieldError(kind: .required, field: field, detail: detail)
    }
    static func invalid(_ field: String, _ value: JSON, _ detail: String) -> FieldError {
        FieldError(kind: .invalid, field: field, value: .json(value), detail: detail)
    }
    static func typeInvalid(_ field: String, _ value: JSON, _ detail: String) -> FieldError {
        FieldError(kind: .typeInvalid, field: field, value: .json(value), detail: detail)
    }
    static func notSupported(_ field: String, _ value: JSON, supported: [String]) -> FieldError {
        FieldError(
            kind: .notSupported, field: field, value: .json(value),
            detail: supported.isEmpty
                ? "" : "supported values: " + supported.map(FieldError.quoted).joined(separator: ", "))
    }
    static func duplicate(_ field: String, _ value: JSON) -> FieldError {
        FieldError(kind: .duplicate, field: field, value: .json(value), detail: "")
    }
    static func tooLong(_ field: String, max: Int) -> FieldError {
        FieldError(kind: .tooLong, field: field, detail: "may not be more than \(max) bytes")
    }
    static func tooMany(_ field: String, actual: Int, max: Int) -> FieldError {
        FieldError(kind: .tooMany, field: field, value: .count(actual), detail: "must have at most \(max) items")
    }
    static func forbidden(_ field: String, _ detail: String) -> FieldError {
        FieldError(kind: .forbidden, field: field, detail: detail)
    }

    /// field.Error's ErrorBody: no value for Required, Forbidden and Too long.
    var body: String {
        var s = kind.words
        if ![.required, .forbidden, .tooLong].contains(kind), let value {
            switch value {
            case .count(let n): s += ": \(n)"
            case .json(let j): s += ": " + FieldError.goValue(j)
            }
        }
        if !detail.isEmpty { s += ": " + detail }
        return s
    }

    var message: String { "\(field): \(body)" }

    var cause: JSON {
        .object(["reason": .string(kind.rawValue), "message": .string(body), "field": .string(field)])
    }

    /// The errors joined as an aggregate of them is printed: duplicates once, several in `[a, b]`.
    static func aggregate(_ errors: [FieldError]) -> String {
        var seen = Set<String>()
        let messages = errors.map(\.message).filter { seen.insert($0).inserted }
        return messages.count == 1 ? messages[0] : "[" + messages.joined(separator: ", ") + "]"
    }

    // MARK: Go's formatting

    /// `%v` of a decoded JSON value in ErrorBody: strings quoted, numbers and booleans bare, null as "null",
    /// objects and arrays as `%#v` prints `map[string]interface {}` and `[]interface {}`.
    static func goValue(_ value: JSON) -> String {
        switch value {
        case .null: return "null"
        case .string(let s): return quoted(s)
        default: return goSyntax(value)
        }
    }

    /// `%#v`.
    static func goSyntax(_ value: JSON) -> String {
        switch value {
        case .null: return "interface {}(nil)"
        case .bool(let b): return b ? "true" : "false"
        case .integer(let i): return String(i)
        case .double(let d): return goFloat(d)
        case .string(let s): return quoted(s)
        case .array(let a): return "[]interface {}{" + a.map(goSyntax).joined(separator: ", ") + "}"
        case .object(let o):
            return "map[string]interface {}{"
                + o.keys.sorted().map { quoted($0) + ":" + goSyntax(o[$0]!) }.joined(separator: ", ") + "}"
        }
    }

    /// `%v` of a float64: shortest form, without Swift's trailing ".0", exponent from 1e21.
    static func goFloat(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e21 { return String(Int64(d)) }
        return d.description
    }

    /// strconv.Quote: Go's escapes for quotes, backslashes and control characters.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{07}": out += "\\a"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0B}": out += "\\v"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\x" + (hex.count < 2 ? "0" : "") + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
