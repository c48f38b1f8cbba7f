import Crypto
// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension Annotation {
    /// *agent*: the cluster CIDRs the agent routes into the tunnel (its `--cluster-cidr`), comma-separated.
    public static let clusterCIDRs = prefix + "cluster-cidrs"
    /// *agent*: `true` or `false`, the agent's strict mode.
    public static let strict = prefix + "strict"
    /// *agent*: `sha256:HEX` of the public keys the interface routes Pod CIDRs to (`AppliedPeers`): anyone who
    /// reads every Node can tell whether this node runs every peer's current key.
    public static let appliedPeers = prefix + "applied-peers"
    /// *agent*: the Pod packets the node's nftables table counted leaving by another interface than the
    /// tunnel (dropped in strict mode), as `UnencryptedDrops` writes them.
    public static let unencryptedDrops = prefix + "unencrypted-drops"

    /// Every key an agent writes on its own Node, and removes with `--cleanup`.
    public static let agentOwned = [
        enrollmentKey, appliedKeyGeneration, clusterCIDRs, strict, appliedPeers, unencryptedDrops,
    ]
}

/// What an agent reports about its node beyond `MeshNode`: read leniently, since a malformed report
/// changes nothing in the mesh; each malformed value is named in `problems`.
public struct AgentReport: Sendable, Hashable {
    /// nil: not reported (no agent, or one older than these annotations) or malformed.
    public var clusterCIDRs: [IPPrefix]?
    public var strict: Bool?
    public var appliedPeers: String?
    public var unencryptedDrops: UnencryptedDrops?
    public var problems: [String] = []

    public init(
        clusterCIDRs: [IPPrefix]? = nil, strict: Bool? = nil, appliedPeers: String? = nil,
        unencryptedDrops: UnencryptedDrops? = nil
    ) {
        self.clusterCIDRs = clusterCIDRs
        self.strict = strict
        self.appliedPeers = appliedPeers
        self.unencryptedDrops = unencryptedDrops
    }

    public init(annotations: [String: String]) {
        func value(_ key: String) -> String? { annotations[key].flatMap { $0.isEmpty ? nil : $0 } }
        if let v = value(Annotation.clusterCIDRs) {
            do {
                clusterCIDRs = try v.split(separator: ",").map { text throws -> IPPrefix in
                    let cidr = try IPPrefix(text.trimmingWhitespace)
                    guard cidr.isCanonical else { throw AddressError.malformed("\(cidr) has host bits set") }
                    return cidr
                }
            } catch {
                problems.append("\(Annotation.clusterCIDRs)=\"\(v)\" is not a list of CIDRs: \(error)")
            }
        }
        if let v = value(Annotation.strict) {
            strict = ["true": true, "false": false][v]
            if strict == nil { problems.append("\(Annotation.strict)=\"\(v)\" is neither true nor false") }
        }
        appliedPeers = value(Annotation.appliedPeers)
        if let v = value(Annotation.unencryptedDrops) {
            unencryptedDrops = UnencryptedDrops(v)
            if unencryptedDrops == nil {
                problems.append("\(Annotation.unencryptedDrops)=\"\(v)\" is not packets=N,counter=N[,last=TIME]")
            }
        }
    }

    /// The settings annotations of an agent with these flags.
    public static func settings(clusterCIDRs: [IPPrefix], strict: Bool) -> [String: String] {
        [
            Annotation.clusterCIDRs: clusterCIDRs.map(\.description).joined(separator: ","),
            Annotation.strict: String(strict),
        ]
    }
}

/// The peers a node's interface runs, as one value: `sha256:` and the hex SHA-256 of the sorted base64
/// public keys of the peers with allowed IPs, one per line. Pre-staged next keys (no allowed IPs) are not
/// in it. Constant in size whatever the cluster's, and it changes whenever any peer's key does.
public enum AppliedPeers {
    public static func digest(_ keys: some Sequence<WireGuardKey>) -> String {
        let text = keys.map(\.base64).sorted().map { $0 + "\n" }.joined()
        return "sha256:" + sha256Hex(text)
    }

    /// What node `name`'s agent publishes once its interface runs the current key of every peer its plan
    /// has, computed from the same Nodes with the same plan the agent computes.
    public static func expected(for name: String, nodes: [MeshNode], clusterCIDRs: [IPPrefix]) -> String {
        let plan = MeshPlan(
            localNode: name, settings: ClusterSettings(clusterCIDRs: clusterCIDRs), nodes: nodes, interfaceIndex: 0)
        return digest(plan.routedNodeKeys)
    }
}

/// The unencrypted Pod packets a node's nftables table counted, kept by the agent across table rewrites
/// and agent restarts: `packets` in all, the table `counter` reading they include (so a restarted agent
/// adds only what the table counted since), and when `packets` last grew.
/// Written `packets=17,counter=5,last=2026-11-27T10:00:00Z` (`last` absent while no packet was counted).
public struct UnencryptedDrops: Sendable, Hashable, CustomStringConvertible {
    public var packets: UInt64
    public var counter: UInt64
    public var last: Date?

    public init(packets: UInt64 = 0, counter: UInt64 = 0, last: Date? = nil) {
        self.packets = packets
        self.counter = counter
        self.last = last
    }

    /// Parses the annotation; nil when `packets` or `counter` is missing or any known field is malformed
    /// (unknown fields are ignored, for later additions).
    public init?(_ text: String) {
        var fields: [Substring: Substring] = [:]
        for item in text.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, fields.updateValue(kv[1], forKey: kv[0]) == nil else { return nil }
        }
        func integer(_ s: Substring?) -> UInt64? {
            s.flatMap { $0.allSatisfy { $0.isASCII && $0.isNumber } ? UInt64($0) : nil }
        }
        guard let packets = integer(fields["packets"]), let counter = integer(fields["counter"]) else { return nil }
        self.packets = packets
        self.counter = counter
        if let l = fields["last"] {
            guard let date = RFC3339.parse(String(l)) else { return nil }
            last = date
        }
    }

    public var description: String {
        "packets=\(packets),counter=\(counter)" + (last.map { ",last=" + RFC3339.format($0) } ?? "")
    }

    /// After the table's counter read `reading` at `now`: a reading below the last one means the table was
    /// written anew (its counter restarts at zero), so all of it is new.
    public func observing(counter reading: UInt64, at now: Date) -> UnencryptedDrops {
        let new = reading >= counter ? reading - counter : reading
        let (sum, overflow) = packets.addingReportingOverflow(new)
        return UnencryptedDrops(packets: overflow ? .max : sum, counter: reading, last: new > 0 ? now : last)
    }
}

/// The lowercase hex SHA-256 of `text`'s UTF-8 bytes.
public func sha256Hex(_ text: String) -> String {
    sha256Hex(bytes: Array(text.utf8))
}

/// The lowercase hex SHA-256 of `bytes`.
public func sha256Hex(bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}
