/// An IP address family.
public enum IPFamily: String, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case v4 = "IPv4"
    case v6 = "IPv6"

    /// Number of bits in an address of this family.
    public var bitWidth: Int { self == .v4 ? 32 : 128 }
    /// Number of bytes in an address of this family.
    public var byteCount: Int { bitWidth / 8 }
    public var description: String { rawValue }
    public static func < (a: IPFamily, b: IPFamily) -> Bool { a == .v4 && b == .v6 }
}

/// An IPv4 or IPv6 address; the value is held in the low `family.bitWidth` bits.
public struct IPAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let family: IPFamily
    public let value: UInt128

    /// An address of `family` from its numeric value; bits above the family's width are an error.
    public init(family: IPFamily, value: UInt128) {
        precondition(family == .v6 || value <= UInt128(UInt32.max), "IPv4 value out of range")
        self.family = family
        self.value = value
    }

    /// An address from its network-order bytes (4 or 16 of them).
    public init(bytes: some Collection<UInt8>) throws(AddressError) {
        let family: IPFamily
        switch bytes.count {
        case 4: family = .v4
        case 16: family = .v6
        default: throw .badByteCount(bytes.count)
        }
        var v: UInt128 = 0
        for b in bytes { v = v << 8 | UInt128(b) }
        self.init(family: family, value: v)
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and an embedded IPv4 tail).
    public init(_ text: some StringProtocol) throws(AddressError) {
        guard let address = IPAddress.parse(utf8: text.utf8) else { throw .malformed(String(text)) }
        self = address
    }

    /// `init(_:)` on ASCII bytes, without making a String: what the configuration file parser calls.
    public static func parse(utf8 s: some Collection<UInt8>) -> IPAddress? {
        if s.contains(UInt8(ascii: ":")) {
            return parseV6(bytes: s).map { IPAddress(family: .v6, value: $0) }
        }
        return parseV4(bytes: s).map { IPAddress(family: .v4, value: UInt128($0)) }
    }

    /// Network-order bytes.
    public var bytes: [UInt8] {
        (0..<family.byteCount).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as `::`).
    public var description: String {
        switch family {
        case .v4:
            return (0..<4).reversed().map { String(UInt8(truncatingIfNeeded: value >> ($0 * 8))) }.joined(
                separator: ".")
        case .v6:
            let groups = (0..<8).reversed().map { UInt16(truncatingIfNeeded: value >> ($0 * 16)) }
            // RFC 5952 4.2: compress the longest run (>= 2) of zero groups, the first one on ties.
            var best = (start: -1, length: 0)
            var run = (start: -1, length: 0)
            for (i, g) in groups.enumerated() {
                if g == 0 {
                    run = run.start < 0 ? (i, 1) : (run.start, run.length + 1)
                    if run.length > best.length { best = run }
                } else {
                    run = (-1, 0)
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard best.length >= 2 else { return hex.joined(separator: ":") }
            let head = hex[..<best.start].joined(separator: ":")
            let tail = hex[(best.start + best.length)...].joined(separator: ":")
            return head + "::" + tail
        }
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        (a.family, a.value) < (b.family, b.value)
    }

    /// Dotted quad from ASCII bytes: no signs, no leading zeros (octal to some parsers), each part 0-255.
    static func parseV4<C: Collection<UInt8>>(bytes: C) -> UInt32? {
        var value: UInt32 = 0
        var part: UInt32 = 0
        var digits = 0
        var parts = 0
        var leadingZero = false
        for c in bytes {
            if c == UInt8(ascii: ".") {
                guard digits > 0 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
                continue
            }
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            if digits == 0 { leadingZero = c == UInt8(ascii: "0") } else if leadingZero { return nil }
            part = part * 10 + UInt32(c - UInt8(ascii: "0"))
            digits += 1
            guard part <= 255 else { return nil }
        }
        guard digits > 0, parts == 3 else { return nil }
        return value << 8 | part
    }

    /// RFC 4291 text from ASCII bytes: eight groups, or fewer around one `::`, optionally ending in IPv4.
    /// One pass, no allocation: groups before the `::` and after it are gathered apart, then joined.
    static func parseV6<C: Collection<UInt8>>(bytes: C) -> UInt128? {
        let colon = UInt8(ascii: ":")
        var head: UInt128 = 0
        var headCount = 0
        var tail: UInt128 = 0
        var tailCount = 0
        var gap = false
        var i = bytes.startIndex
        let end = bytes.endIndex
        func add(_ group: UInt128) {
            if gap {
                tail = tail << 16 | group
                tailCount += 1
            } else {
                head = head << 16 | group
                headCount += 1
            }
        }
        if i != end, bytes[i] == colon {
            i = bytes.index(after: i)
            guard i != end, bytes[i] == colon else { return nil }
            gap = true
            i = bytes.index(after: i)
        }
        while i != end {
            let start = i
            var group: UInt128 = 0
            var digits = 0
            while i != end, let d = hexValue(bytes[i]) {
                group = group << 4 | UInt128(d)
                digits += 1
                i = bytes.index(after: i)
            }
            if i != end, bytes[i] == UInt8(ascii: ".") {  // an IPv4 tail ends the address
                guard let v4 = parseV4(bytes: bytes[start..<end]) else { return nil }
                add(UInt128(v4 >> 16))
                add(UInt128(v4 & 0xffff))
                break
            }
            guard (1...4).contains(digits), headCount + tailCount < 8 else { return nil }
            add(group)
            if i == end { break }
            guard bytes[i] == colon else { return nil }
            i = bytes.index(after: i)
            guard i != end else { return nil }  // one trailing colon
            if bytes[i] == colon {
                guard !gap else { return nil }
                gap = true
                i = bytes.index(after: i)
            }
        }
        let count = headCount + tailCount
        guard gap ? count <= 7 : count == 8 else { return nil }
        return gap ? head << (16 * (8 - headCount)) | tail : head
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Why an address or prefix was rejected.
public enum AddressError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case badByteCount(Int)
    case badPrefixLength(String, max: Int)
    case mixedFamilies(String, String)

    public var description: String {
        switch self {
        case .malformed(let s):
            return
                """
                \"\(s)\" is not an IP address or CIDR: write IPv4 as 10.244.0.0 and IPv6 as fd00:10:244::, with \
                an optional /prefix-length
                """
        case .badByteCount(let n):
            return "an IP address has 4 or 16 bytes, not \(n)"
        case .badPrefixLength(let s, let max):
            return "\"\(s)\" has a prefix length outside 0...\(max): use a length from 0 to \(max) for this family"
        case .mixedFamilies(let a, let b):
            return "\(a) and \(b) are of different IP families"
        }
    }
}
