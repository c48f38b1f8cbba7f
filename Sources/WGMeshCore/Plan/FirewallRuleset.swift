// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// wgmesh's nftables table, written whole in one `nft -f` transaction as kube-proxy's nftables mode does:
/// it counts (and in strict mode drops) Pod-to-Pod packets that would leave a node unencrypted, and
/// masquerades Pod traffic leaving the cluster CIDRs.
public enum FirewallRuleset {
    /// The nftables family and table wgmesh owns: `inet wgmesh`.
    public static let table = "wgmesh"
    /// The named counter of Pod packets that would have left a node unencrypted.
    public static let counterName = "unencrypted"

    /// The whole `nft -f` input that replaces wgmesh's table in one transaction.
    ///
    /// `interface` is the WireGuard interface, a valid Linux interface name (the caller checks it): it is
    /// written inside double quotes. A family without a cluster CIDR gets no rules; `strict` false counts the
    /// unencrypted packets and lets them pass.
    public static func ruleset(interface: String, localPodCIDRs: [IPPrefix], clusterCIDRs: [IPPrefix], strict: Bool)
        -> String
    {
        // Creating the table first makes the delete succeed on a host that has none yet.
        var lines = [
            "table inet \(table) {}", "delete table inet \(table)", "table inet \(table) {",
            "  counter \(counterName) {", "  }",
        ]
        for family in IPFamily.allCases {
            lines += set(named: "cluster", family: family, prefixes: clusterCIDRs)
            lines += set(named: "local", family: family, prefixes: localPodCIDRs)
        }
        let families = IPFamily.allCases.filter { f in clusterCIDRs.contains { $0.family == f } }
        let verdict = strict ? "drop" : "accept"
        // Priority filter - 10: count before any other filter chain accepts or drops the packet.
        for hook in ["forward", "output"] {
            lines += ["", "  chain \(hook) {", "    type filter hook \(hook) priority filter - 10; policy accept;"]
            for f in families {
                let (ip, n) = (f.nftMatch, f.setSuffix)
                lines.append(
                    """
                        \(ip) saddr @cluster\(n) \(ip) daddr @cluster\(n) \(ip) daddr != @local\(n) oifname != \
                    \"\(interface)\" counter name \(counterName) \(verdict)
                    """
                )
            }
            lines.append("  }")
        }
        lines += ["", "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
        for f in families {
            // Only traffic leaving the cluster CIDRs: Pod-to-Pod is never NATed.
            lines.append(
                "    \(f.nftMatch) saddr @local\(f.setSuffix) \(f.nftMatch) daddr != @cluster\(f.setSuffix) masquerade")
        }
        lines += ["  }", "}"]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The `nft -f` input that removes wgmesh's table, whether or not it exists.
    public static let removal = "table inet \(table) {}\ndelete table inet \(table)\n"

    /// The packet and byte counts of `counterName` from `nft -j list counter inet wgmesh unencrypted` output; nil if
    /// absent or unreadable.
    public static func counter(fromJSON text: String) -> (packets: UInt64, bytes: UInt64)? {
        struct Document: Decodable { var nftables: [Entry] }
        // Other entries (metainfo, counters of other tables) decode with `counter` nil.
        struct Entry: Decodable { var counter: Counter? }
        struct Counter: Decodable {
            var family: String
            var table: String
            var name: String
            var packets: UInt64
            var bytes: UInt64
        }
        guard let document = try? JSONDecoder().decode(Document.self, from: Data(text.utf8)) else { return nil }
        let found = document.nftables.lazy.compactMap(\.counter).first {
            $0.family == "inet" && $0.table == table && $0.name == counterName
        }
        return found.map { ($0.packets, $0.bytes) }
    }

    /// An interval set of one family's prefixes; without `elements` when there are none, since `elements = { }` is a
    /// syntax error.
    static func set(named name: String, family: IPFamily, prefixes: [IPPrefix]) -> [String] {
        let own = Set(prefixes.filter { $0.family == family }.map(\.canonical))
        // An interval set refuses overlapping elements, so a prefix inside another one is left out.
        let outer = own.filter { p in !own.contains { $0 != p && $0.contains(p) } }.sorted()
        var lines = [
            "", "  set \(name)\(family.setSuffix) {", "    type \(family == .v4 ? "ipv4_addr" : "ipv6_addr")",
            "    flags interval",
        ]
        if !outer.isEmpty { lines.append("    elements = { \(outer.map(\.description).joined(separator: ", ")) }") }
        lines.append("  }")
        return lines
    }
}

extension IPFamily {
    /// The nftables payload expression of this family's header: `ip` or `ip6`.
    var nftMatch: String { self == .v4 ? "ip" : "ip6" }
    /// The digit that ends the names of wgmesh's sets of this family.
    var setSuffix: String { self == .v4 ? "4" : "6" }
}
