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
        let s = String(text)
        if s.contains(":") {
            guard let v = IPAddress.parseV6(Substring(s)) else { throw .malformed(s) }
            self.init(family: .v6, value: v)
        } else {
            guard let v = IPAddress.parseV4(Substring(s)) else { throw .malformed(s) }
            self.init(family: .v4, value: UInt128(v))
        }
    }

    /// Network-order bytes.
    public var bytes: [UInt8] {
        (0..<family.byteCount).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as `::`).
    public var description: String {
        switch family {
        case .v4:
            return (0..<4).reversed().map { String(UInt8(truncatingIfNeeded: value >> ($0 * 8))) }.joined(separator: ".")
        case .v6:
            let groups = (0..<8).reversed().map { UInt16(truncatingIfNeeded: value >> ($0 * 16)) }
            // RFC 5952 4.2: compress the longest run (>= 2) of zero groups, the first one on ties.
            var best = (start: -1, length: 0), run = (start: -1, length: 0)
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
        (a.family, a.value) < (b.family, b.value) ? true : false
    }

    static func parseV4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            // No signs, no leading zeros (they mean octal to some parsers), at most 3 digits.
            guard (1...3).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  p.count == 1 || p.first != "0", let n = UInt8(p) else { return nil }
            v = v << 8 | UInt32(n)
        }
        return v
    }

    static func parseV6(_ s: Substring) -> UInt128? {
        var groups: [UInt16] = []
        var tailV4: UInt32?
        let halves = s.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func parseGroups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if allowV4Tail, i == items.count - 1, item.contains(".") {
                    guard let v4 = parseV4(item) else { return nil }
                    tailV4 = v4
                    out.append(UInt16(v4 >> 16)); out.append(UInt16(v4 & 0xffff))
                    continue
                }
                guard (1...4).contains(item.count), item.allSatisfy(\.isHexDigit), let g = UInt16(item, radix: 16) else { return nil }
                out.append(g)
            }
            return out
        }
        if halves.count == 2 {
            guard let head = parseGroups(halves[0], allowV4Tail: false),
                  let tail = parseGroups(halves[1], allowV4Tail: true),
                  head.count + tail.count <= 7 else { return nil }
            groups = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = parseGroups(halves[0], allowV4Tail: true), all.count == 8 else { return nil }
            groups = all
        }
        _ = tailV4
        return groups.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
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
            return "\"\(s)\" is not an IP address or CIDR: write IPv4 as 10.244.0.0 and IPv6 as fd00:10:244::, with an optional /prefix-length"
        case .badByteCount(let n):
            return "an IP address has 4 or 16 bytes, not \(n)"
        case .badPrefixLength(let s, let max):
            return "\"\(s)\" has a prefix length outside 0...\(max): use a length from 0 to \(max) for this family"
        case .mixedFamilies(let a, let b):
            return "\(a) and \(b) are of different IP families"
        }
    }
}
