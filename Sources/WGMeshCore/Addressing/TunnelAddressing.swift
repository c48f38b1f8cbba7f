/// The WireGuard interface's own addresses and MTU, derived from the node as flannel's WireGuard backend does.
public enum TunnelAddressing {
    /// One single-address prefix per Pod CIDR: its network address (/32 or /128), which host-local never hands out (as
    /// flannel's WireGuard backend does).
    public static func addresses(podCIDRs: [IPPrefix]) -> [IPPrefix] {
        // Sorted and unique, so that comparing with the addresses the kernel reports is a plain equality.
        Set(podCIDRs.map { try! IPPrefix(address: $0.network, length: $0.family.bitWidth) }).sorted()
    }

    /// The tunnel addresses' scope: link, so that no packet leaving by the underlay ever carries one as its
    /// source (a WireGuard message did, from a node whose underlay address was being changed).
    public static let scope = AddressScope.link

    /// WireGuard overhead over IPv6: 40 (IPv6) + 8 (UDP) + 32 (WireGuard) bytes.
    public static let overhead: UInt32 = 80

    /// The smallest MTU IPv6 allows on a link (RFC 8200).
    public static let minimumMTU: UInt32 = 1280

    /// The tunnel MTU for an underlay interface MTU, never below 1280.
    public static func mtu(underlayMTU: UInt32) -> UInt32 {
        // Below 1280 IPv6 cannot run on the tunnel at all; the underlay fragments instead.
        underlayMTU > minimumMTU + overhead ? underlayMTU - overhead : minimumMTU
    }
}
