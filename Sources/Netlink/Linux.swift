import WGMeshCore

/// Linux address family numbers as they appear on the wire.
enum AddressFamily {
    static let inet: UInt16 = 2
    static let inet6: UInt16 = 10

    static func of(_ family: IPFamily) -> UInt16 { family == .v4 ? inet : inet6 }
    static func ipFamily(_ value: UInt16) -> IPFamily? { value == inet ? .v4 : value == inet6 ? .v6 : nil }
}

/// Linux's rules for interface names (`dev_valid_name`).
enum InterfaceName {
    /// IFNAMSIZ - 1.
    static let maxLength = 15

    /// Checks an interface name the way the kernel will, before anything is sent.
    static func validate(_ name: String, operation: String) throws {
        if name.isEmpty {
            throw NetlinkError.invalid(operation, "the interface name is empty: give a name such as wgmesh0")
        }
        if name.utf8.count > maxLength {
            throw NetlinkError.invalid(
                operation, "interface name \"\(name)\" is \(name.utf8.count) bytes; Linux allows at most \(maxLength)")
        }
        if name == "." || name == ".." || name.contains("/") || name.contains(":")
            || name.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value == 0 })
        {
            throw NetlinkError.invalid(
                operation,
                "interface name \"\(name)\" contains a character Linux forbids ('/', ':', whitespace) or is '.'/'..'")
        }
    }
}
