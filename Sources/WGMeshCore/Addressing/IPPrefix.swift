/// An IP prefix (CIDR): an address and a prefix length, host bits kept as given.
public struct IPPrefix: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// A prefix from an address and a length within the family's width.
    public init(address: IPAddress, length: Int) throws(AddressError) {
        guard (0...address.family.bitWidth).contains(length) else {
            throw .badPrefixLength("\(address)/\(length)", max: address.family.bitWidth)
        }
        self.address = address
        self.length = length
    }

    /// Parses `addr/len`; a bare address is a host prefix (/32 or /128).
    public init(_ text: some StringProtocol) throws(AddressError) {
        self = try IPPrefix.parse(utf8: text.utf8)
    }

    /// `init(_:)` on ASCII bytes; a String is made only for an error message.
    public static func parse<C: Collection<UInt8>>(utf8 s: C) throws(AddressError) -> IPPrefix {
        let slash = s.firstIndex(of: UInt8(ascii: "/"))
        guard let address = IPAddress.parse(utf8: s[..<(slash ?? s.endIndex)]) else {
            throw .malformed(String(decoding: s, as: UTF8.self))
        }
        guard let slash else { return try IPPrefix(address: address, length: address.family.bitWidth) }
        let digits = s[s.index(after: slash)...]
        guard (1...3).contains(digits.count), digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else {
            throw .malformed(String(decoding: s, as: UTF8.self))
        }
        let n = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard n <= address.family.bitWidth else {
            throw .badPrefixLength(String(decoding: s, as: UTF8.self), max: address.family.bitWidth)
        }
        return try IPPrefix(address: address, length: n)
    }

    /// Parses a comma-separated list (`10.244.0.0/16,fd00:10:244::/48`), one flag or ConfigMap value
    /// for both families; spaces around an item are allowed, an empty item is malformed.
    public static func list(_ text: some StringProtocol) throws(AddressError) -> [IPPrefix] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { (item) throws(AddressError) in
            try IPPrefix(item.trimmingWhitespace)
        }
    }

    public var family: IPFamily { address.family }

    /// The prefix of one address: /32 or /128.
    public static func host(_ address: IPAddress) -> IPPrefix {
        try! IPPrefix(address: address, length: address.family.bitWidth)
    }

    /// The mask as a value in the family's width.
    var mask: UInt128 {
        let w = family.bitWidth
        if length == 0 { return 0 }
        let ones: UInt128 = w == 128 ? .max : (UInt128(1) << w) - 1
        return ones & ~((UInt128(1) << (w - length)) &- 1) & ones
    }

    /// The first address of the prefix (host bits cleared).
    public var network: IPAddress { IPAddress(family: family, value: address.value & mask) }
    /// The last address of the prefix.
    public var last: IPAddress {
        let hostBits = family.bitWidth - length
        let hostMask: UInt128 = hostBits == 128 ? .max : (UInt128(1) << hostBits) - 1
        return IPAddress(family: family, value: network.value | hostMask)
    }

    /// The prefix with host bits cleared.
    public var canonical: IPPrefix { try! IPPrefix(address: network, length: length) }
    /// True when no host bits are set.
    public var isCanonical: Bool { address == network }

    public var description: String { "\(address)/\(length)" }

    /// True when `other` lies inside this prefix.
    public func contains(_ other: IPAddress) -> Bool {
        other.family == family && other.value & mask == network.value
    }

    /// True when `other` lies wholly inside this prefix.
    public func contains(_ other: IPPrefix) -> Bool {
        other.family == family && other.length >= length && contains(other.address)
    }

    /// True when the two prefixes share at least one address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        contains(other) || other.contains(self)
    }

    /// Number of sub-prefixes of `newLength` inside this one, or nil when that count exceeds UInt64.
    public func subnetCount(newLength: Int) -> UInt64? {
        guard newLength >= length, newLength <= family.bitWidth else { return 0 }
        let bits = newLength - length
        return bits >= 64 ? nil : UInt64(1) << bits
    }

    /// The `index`-th sub-prefix of `newLength`, counting from the lowest.
    public func subnet(newLength: Int, index: UInt64) throws(AddressError) -> IPPrefix {
        guard newLength >= length, newLength <= family.bitWidth else {
            throw .badPrefixLength("\(self) split into /\(newLength)", max: family.bitWidth)
        }
        if let count = subnetCount(newLength: newLength), index >= count {
            throw .malformed("\(self) has no subnet #\(index) of length /\(newLength)")
        }
        let shift = family.bitWidth - newLength
        let v = network.value | (UInt128(index) << shift)
        return try IPPrefix(address: IPAddress(family: family, value: v), length: newLength)
    }

    /// Position of `sub` among this prefix's sub-prefixes of `sub.length`, or nil if it is not one.
    public func subnetIndex(of sub: IPPrefix) -> UInt64? {
        guard contains(sub), sub.isCanonical else { return nil }
        let shift = family.bitWidth - sub.length
        let offset = (sub.address.value - network.value) >> shift
        return offset > UInt128(UInt64.max) ? nil : UInt64(offset)
    }

    /// Splits into the two halves one bit longer.
    public func split() -> (IPPrefix, IPPrefix)? {
        guard length < family.bitWidth else { return nil }
        return (try! subnet(newLength: length + 1, index: 0), try! subnet(newLength: length + 1, index: 1))
    }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool {
        (a.address, a.length) < (b.address, b.length)
    }
}
