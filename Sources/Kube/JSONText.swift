// JSON text in and out, by hand: Codable's trial decoding of every value was most of the cost of a large list.
import Synchronization

/// A strict RFC 8259 parser straight from UTF-8 into `JSON`, without Codable's per-value trial decoding:
/// a list of 5,000 Nodes parses several times faster and with no intermediate tree.
struct JSONParser: ~Copyable {
    let bytes: UnsafeBufferPointer<UInt8>
    var at = 0
    var depth = 0
    /// Deeper nesting is refused rather than risk the stack (JSONDecoder's limit too).
    static let maxDepth = 512

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func document() throws(JSONSyntaxError) -> JSON {
        skipSpace()
        let value = try self.value()
        skipSpace()
        guard at == bytes.count else { throw error("unexpected text after the value") }
        return value
    }

    func error(_ what: String) -> JSONSyntaxError { JSONSyntaxError(offset: at, reason: what) }

    mutating func skipSpace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    mutating func value() throws(JSONSyntaxError) -> JSON {
        guard at < bytes.count else { throw error("unexpected end of input") }
        switch bytes[at] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string(key: false))
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - at >= n else { throw error("unexpected end of input") }
        for i in 0..<n where bytes[at + i] != word.utf8Start[i] { throw error("invalid literal") }
        at += n
    }

    mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= Self.maxDepth else { throw error("nested more than \(Self.maxDepth) deep") }
        at += 1
        skipSpace()
    }

    mutating func object() throws(JSONSyntaxError) -> JSON {
        try enter()
        var members: [String: JSON] = [:]
        if at < bytes.count, bytes[at] == UInt8(ascii: "}") {
            at += 1
            depth -= 1
            return .object(members)
        }
        while true {
            guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try string(key: true)
            skipSpace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw error("expected ':'") }
            at += 1
            skipSpace()
            members[key] = try value()
            skipSpace()
            guard at < bytes.count else { throw error("unexpected end of input") }
            if bytes[at] == UInt8(ascii: ",") {
                at += 1
                skipSpace()
            } else if bytes[at] == UInt8(ascii: "}") {
                at += 1
                depth -= 1
                return .object(members)
            } else {
                throw error("expected ',' or '}'")
            }
        }
    }

    mutating func array() throws(JSONSyntaxError) -> JSON {
        try enter()
        var elements: [JSON] = []
        if at < bytes.count, bytes[at] == UInt8(ascii: "]") {
            at += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            elements.append(try value())
            skipSpace()
            guard at < bytes.count else { throw error("unexpected end of input") }
            if bytes[at] == UInt8(ascii: ",") {
                at += 1
                skipSpace()
            } else if bytes[at] == UInt8(ascii: "]") {
                at += 1
                depth -= 1
                return .array(elements)
            } else {
                throw error("expected ',' or ']'")
            }
        }
    }

    /// A string at `at` (its opening quote). Member names go through `JSONKeys`, so that the many Nodes
    /// of a cache share one copy of each long annotation key.
    mutating func string(key: Bool) throws(JSONSyntaxError) -> String {
        at += 1
        let start = at
        while at < bytes.count {
            let b = bytes[at]
            if b == UInt8(ascii: "\"") {
                let raw = UnsafeBufferPointer(rebasing: bytes[start..<at])
                at += 1
                return try validated(raw, key: key)
            }
            if b == UInt8(ascii: "\\") { return try escapedString(from: start, key: key) }
            if b < 0x20 { throw error("control character in a string") }
            at += 1
        }
        throw error("unterminated string")
    }

    func validated(_ raw: UnsafeBufferPointer<UInt8>, key: Bool) throws(JSONSyntaxError) -> String {
        guard let s = String(validating: raw, as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
        return key ? JSONKeys.shared(s) : s
    }

    mutating func escapedString(from start: Int, key: Bool) throws(JSONSyntaxError) -> String {
        var out = Array(bytes[start..<at])
        while at < bytes.count {
            let b = bytes[at]
            switch b {
            case UInt8(ascii: "\""):
                at += 1
                return try out.withUnsafeBufferPointer { (p) throws(JSONSyntaxError) in try validated(p, key: key) }
            case UInt8(ascii: "\\"):
                at += 1
                guard at < bytes.count else { throw error("unterminated string") }
                let e = bytes[at]
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        // A high surrogate must be followed by an escaped low one.
                        guard bytes.count - at >= 6, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired surrogate") }
                        at += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw error("unpaired surrogate")
                    }
                    out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
                default: throw error("invalid escape")
                }
            default:
                if b < 0x20 { throw error("control character in a string") }
                out.append(b)
                at += 1
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard bytes.count - at >= 4 else { throw error("unterminated string") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[at]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            at += 1
        }
        return v
    }

    /// An integer that fits Int64 stays exact; any other number is a Double.
    mutating func number() throws(JSONSyntaxError) -> JSON {
        let start = at
        func digit(_ i: Int) -> Bool { i < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) }
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        guard digit(at) else { throw error("invalid number") }
        if bytes[at] == UInt8(ascii: "0") {
            at += 1
            if digit(at) { throw error("leading zero in a number") }
        } else {
            while digit(at) { at += 1 }
        }
        var integral = true
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            integral = false
            at += 1
            guard digit(at) else { throw error("invalid number") }
            while digit(at) { at += 1 }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            integral = false
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard digit(at) else { throw error("invalid number") }
            while digit(at) { at += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
        if integral, let i = Int64(text) { return .integer(i) }
        guard let d = Double(text), d.isFinite else { throw error("number out of range") }
        return .double(d)
    }
}

/// Why JSON text did not parse, and where.
public struct JSONSyntaxError: Error, Hashable, CustomStringConvertible {
    /// Byte offset into the text.
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// Member names seen before (annotation and field names), shared by every parsed object: 5,000 cached
/// Nodes then hold one copy of each long key instead of 5,000. Bounded: names past the limit are not kept.
enum JSONKeys {
    static let table = Mutex<Set<String>>([])
    static let limit = 4096

    /// The copy of `s` already kept, else `s` (kept from now on while there is room).
    static func shared(_ s: String) -> String {
        // Up to 15 bytes live inside the String itself: nothing to share. Long ones are values, not names.
        let n = s.utf8.count
        guard n > 15, n <= 128 else { return s }
        return table.withLock { t in
            if let kept = t.firstIndex(of: s) { return t[kept] }
            if t.count < limit { t.insert(s) }
            return s
        }
    }
}

/// Compact JSON text with sorted member names and unescaped slashes, written straight to UTF-8.
struct JSONWriter {
    var out: [UInt8] = []

    mutating func write(_ value: JSON) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .integer(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            // As JSONEncoder writes it: no ".0" on whole numbers; not finite is not JSON.
            guard d.isFinite else { return out.append(contentsOf: "null".utf8) }
            var s = d.description
            if s.hasSuffix(".0") { s.removeLast(2) }
            out.append(contentsOf: s.utf8)
        case .string(let s): write(string: s)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(e)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, key) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(string: key)
                out.append(UInt8(ascii: ":"))
                write(o[key]!)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    mutating func write(string s: String) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x08: out.append(contentsOf: #"\b"#.utf8)
            case 0x0C: out.append(contentsOf: #"\f"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 15)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
