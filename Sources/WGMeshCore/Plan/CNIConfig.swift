/// The CNI network configuration the agent writes for the node's container runtime.
public enum CNIConfig {
    /// The file name under the CNI configuration directory (`/etc/cni/net.d`); `10-` sorts it before most others.
    public static let fileName = "10-wgmesh.conflist"
    /// The bridge the configuration's Pods attach to: wgmesh's, removed with `agent --cleanup`.
    public static let bridge = "cni0"
    /// The network's name, under which host-local keeps the addresses it gave out (`/var/lib/cni/networks/wgmesh`).
    public static let networkName = "wgmesh"

    /// The node's CNI network configuration list (CNI spec 1.0.0) as JSON text ending in a newline.
    ///
    /// A bridge with host-local IPAM (one range set per Pod CIDR, IPv4 first, and a default route per family)
    /// and portmap. The text depends only on the arguments, so a caller can compare it byte for byte with
    /// the file on disk and rewrite only on change.
    ///
    /// Caller contract: `podCIDRs` is never empty; the agent writes no conflist until the node has a Pod CIDR
    /// (with none, the ranges come out empty and host-local refuses every Pod).
    public static func conflist(
        podCIDRs: [IPPrefix], mtu: UInt32, bridge: String = CNIConfig.bridge,
        networkName: String = CNIConfig.networkName
    ) -> String {
        let cidrs = Set(podCIDRs.map(\.canonical)).sorted()
        let families = Set(cidrs.map(\.family)).sorted()
        let ipam: JSONText = .object([
            ("type", .string("host-local")),
            ("ranges", .array(cidrs.map { .array([.object([("subnet", .string($0.description))])]) })),
            ("routes", .array(families.map { .object([("dst", .string($0 == .v4 ? "0.0.0.0/0" : "::/0"))]) })),
        ])
        let document: JSONText = .object([
            ("cniVersion", .string("1.0.0")),
            ("name", .string(networkName)),
            (
                "plugins",
                .array([
                    .object([
                        ("type", .string("bridge")),
                        ("bridge", .string(bridge)),
                        ("isGateway", .bool(true)),
                        // wgmesh's own nftables table masquerades, and never Pod-to-Pod traffic.
                        ("ipMasq", .bool(false)),
                        ("hairpinMode", .bool(true)),
                        ("mtu", .number(UInt64(mtu))),
                        ("ipam", ipam),
                    ]),
                    .object([
                        ("type", .string("portmap")),
                        ("capabilities", .object([("portMappings", .bool(true))])),
                    ]),
                ])
            ),
        ])
        var out = ""
        document.write(to: &out, indent: "")
        return out + "\n"
    }
}

/// A JSON value with its object keys in the order given, written with 2-space indentation.
enum JSONText {
    case string(String)
    case number(UInt64)
    case bool(Bool)
    indirect case array([JSONText])
    indirect case object([(String, JSONText)])

    func write(to out: inout String, indent: String) {
        let inner = indent + "  "
        switch self {
        case .string(let s): JSONText.quote(s, to: &out)
        case .number(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .array(let items):
            guard !items.isEmpty else {
                out += "[]"
                return
            }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += inner
                item.write(to: &out, indent: inner)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let members):
            guard !members.isEmpty else {
                out += "{}"
                return
            }
            out += "{\n"
            for (i, (key, value)) in members.enumerated() {
                out += inner
                JSONText.quote(key, to: &out)
                out += ": "
                value.write(to: &out, indent: inner)
                out += i == members.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        }
    }

    /// RFC 8259 string escaping: quote, backslash and control characters.
    static func quote(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
