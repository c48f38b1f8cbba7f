/// The string formats of a CRD schema that the test server checks, each as kube-apiserver's format registry
/// (kube-openapi strfmt) accepts it.
enum SchemaFormat: String, Sendable {
    /// Go's net.ParseCIDR: an IPv4 or IPv6 address (no zone, no leading zeros in IPv4), `/`, a decimal prefix
    /// length within the family's bits. Host bits may be set.
    case cidr
    /// strfmt's IsDateTime: RFC 3339 (`T` or `t`, `Z`, `z` or an offset, optional fraction).
    case dateTime = "date-time"

    func accepts(_ s: String) -> Bool {
        switch self {
        case .cidr: return SchemaFormat.isCIDR(s)
        case .dateTime: return SchemaFormat.isDateTime(s)
        }
    }

    static func isCIDR(_ s: String) -> Bool {
        guard let slash = s.firstIndex(of: "/") else { return false }
        let address = s[..<slash]
        let bits: Int
        // netip.ParseAddr: the first '.' or ':' decides the family.
        switch address.first(where: { $0 == "." || $0 == ":" }) {
        case ".":
            guard isIPv4(address) else { return false }
            bits = 32
        case ":":
            guard isIPv6(address) else { return false }
            bits = 128
        default:
            return false
        }
        // dtoi: decimal digits only, leading zeros allowed.
        let mask = s[s.index(after: slash)...]
        guard !mask.isEmpty, mask.count <= 8, mask.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(mask)
        else { return false }
        return n <= bits
    }

    static func isIPv4(_ s: Substring) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { p in
            guard (1...3).contains(p.utf8.count), p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            if p.utf8.count > 1 && p.first == "0" { return false }
            return Int(p)! <= 255
        }
    }

    static func isIPv6(_ s: Substring) -> Bool {
        var rest = s
        var groups = 0
        var ellipsis = false
        if rest.hasPrefix("::") {
            ellipsis = true
            rest = rest.dropFirst(2)
        }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isHexDigit }
            guard !digits.isEmpty, digits.count <= 4 else { return false }
            let after = rest[digits.endIndex...]
            if after.first == "." {
                // An embedded IPv4 address fills the last 32 bits.
                guard ellipsis || groups == 6, isIPv4(rest) else { return false }
                groups += 2
                break
            }
            groups += 1
            rest = after
            if rest.isEmpty { break }
            guard rest.first == ":", groups < 8 else { return false }
            rest = rest.dropFirst()
            if rest.first == ":" {
                guard !ellipsis else { return false }
                ellipsis = true
                rest = rest.dropFirst()
            } else if rest.isEmpty {
                return false
            }
        }
        // The :: must stand for at least one group of zeros.
        return ellipsis ? groups <= 7 : groups == 8
    }

    static func isDateTime(_ s: String) -> Bool {
        guard s.utf8.count >= 4 else { return false }
        let parts = s.lowercased().split(separator: "t", omittingEmptySubsequences: false)
        guard parts.count >= 2, isDate(parts[0]) else { return false }
        // ^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$, hour <= 23, minute and second <= 59.
        let t = Array(parts[1].utf8)
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= t.count, t[range].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return t[range].reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        guard t.count >= 9, let h = digits(0..<2), t[2] == UInt8(ascii: ":"), let m = digits(3..<5),
            t[5] == UInt8(ascii: ":"), let sec = digits(6..<8), h <= 23, m <= 59, sec <= 59
        else { return false }
        if isZone(Array(t[8...])) { return true }
        // `.` in the pattern is any character; then one or more digits, then the zone.
        guard digits(9..<10) != nil else { return false }
        var j = 10
        while j < t.count, t[j] >= 0x30 && t[j] <= 0x39 { j += 1 }
        return isZone(Array(t[j...]))
    }

    private static func isZone(_ z: [UInt8]) -> Bool {
        if z == [UInt8(ascii: "z")] { return true }
        guard z.count == 6, z[0] == UInt8(ascii: "+") || z[0] == UInt8(ascii: "-"), z[3] == UInt8(ascii: ":") else {
            return false
        }
        return [1, 2, 4, 5].allSatisfy { z[$0] >= 0x30 && z[$0] <= 0x39 }
    }

    /// time.Parse("2006-01-02"): a day that exists.
    static func isDate(_ d: Substring) -> Bool {
        let b = Array(d.utf8)
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-") else { return false }
        func number(_ r: Range<Int>) -> Int? {
            guard b[r].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return b[r].reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), (1...12).contains(month)
        else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day)
    }
}
