import Kube

/// A label selector as kube-apiserver parses the `labelSelector` parameter: requirements joined by commas,
/// all of which must hold: `key`, `!key`, `key=value` (or `==`), `key!=value`, `key in (a,b)`,
/// `key notin (a,b)`. `!=` and `notin` hold for an object without the label, as in the API.
public struct LabelSelector: Sendable, Hashable {
    public enum Requirement: Sendable, Hashable {
        case exists(String)
        case doesNotExist(String)
        case `in`(String, Set<String>)
        case notIn(String, Set<String>)
    }

    public var requirements: [Requirement]

    /// Parses the parameter; a malformed one is the 400 BadRequest the API answers.
    public init(_ text: String) throws(Status) {
        var lexer = Lexer(text)
        requirements = []
        while true {
            if requirements.isEmpty, lexer.atEnd { break }
            let requirement = try lexer.requirement()
            requirements.append(requirement)
            if lexer.atEnd { break }
            try lexer.expect(",")
        }
    }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { r in
            switch r {
            case .exists(let k): return labels[k] != nil
            case .doesNotExist(let k): return labels[k] == nil
            case .in(let k, let values): return labels[k].map(values.contains) ?? false
            case .notIn(let k, let values): return labels[k].map { !values.contains($0) } ?? true
            }
        }
    }

    /// Whether the object's current labels match.
    public func matches(_ object: JSON) -> Bool { matches(ObjectMeta(object["metadata"]).labels) }

    struct Lexer {
        let chars: [Character]
        var i = 0
        let text: String

        init(_ text: String) {
            self.text = text
            chars = Array(text)
        }

        var atEnd: Bool {
            mutating get {
                skipSpace()
                return i == chars.count
            }
        }

        mutating func skipSpace() { while i < chars.count, chars[i] == " " { i += 1 } }

        func failure(_ what: String) -> Status {
            Status(code: 400, reason: "BadRequest", message: "unable to parse requirement: \(what) in \"\(text)\"")
        }

        mutating func peek(_ s: String) -> Bool {
            skipSpace()
            return chars[i...].starts(with: s)
        }

        mutating func expect(_ s: String) throws(Status) {
            guard peek(s) else { throw failure("expected \"\(s)\" at position \(i)") }
            i += s.count
        }

        /// A key or value: anything up to a space or an operator character; may be empty for a value.
        mutating func word() -> String {
            skipSpace()
            let start = i
            while i < chars.count, !" ,()!=".contains(chars[i]) { i += 1 }
            return String(chars[start..<i])
        }

        mutating func key() throws(Status) -> String {
            let k = word()
            guard APIStore.isQualifiedName(k) else { throw failure("invalid label key \"\(k)\"") }
            return k
        }

        mutating func value() throws(Status) -> String {
            let v = word()
            guard v.isEmpty || (v.count <= 63 && APIStore.isQualifiedName(v) && !v.contains("/")) else {
                throw failure("invalid label value \"\(v)\"")
            }
            return v
        }

        mutating func requirement() throws(Status) -> Requirement {
            if peek("!"), !peek("!=") {
                i += 1
                return .doesNotExist(try key())
            }
            let k = try key()
            if atEnd || peek(",") { return .exists(k) }
            if peek("!=") {
                i += 2
                return .notIn(k, [try value()])
            }
            if peek("==") {
                i += 2
                return .in(k, [try value()])
            }
            if peek("=") {
                i += 1
                return .in(k, [try value()])
            }
            let op = word()
            guard op == "in" || op == "notin" else { throw failure("found \"\(op)\", expected: in, notin, =, ==, !=") }
            try expect("(")
            var values: Set<String> = []
            while true {
                values.insert(try value())
                guard peek(",") else { break }
                i += 1
            }
            try expect(")")
            guard values != [""] else { throw failure("for 'in', 'notin' operators, values set can't be empty") }
            return op == "in" ? .in(k, values) : .notIn(k, values)
        }
    }
}
