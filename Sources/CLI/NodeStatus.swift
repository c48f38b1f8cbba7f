import WGMeshCore

// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One row of `wgmesh status`: what wgmesh knows of a Node, in values a script can read back.
public struct NodeStatus: Sendable, Hashable, Codable {
    public var name: String
    public var podCIDRs: [String]
    /// The endpoint peers dial (the override when set).
    public var endpoint: String?
    public var publicKey: String?
    public var keyGeneration: UInt64?
    public var keyIssuedAt: String?
    public var keyAgeSeconds: Int64?
    /// The generation the node's interface runs, as its agent reports.
    public var appliedKeyGeneration: UInt64?
    /// `requested` (not answered yet) or `staged` (the next key is published); nil when none runs.
    public var rotation: String?
    /// `WireGuardMeshReady`: `True`, `False`, or `Unknown` when the node has no such condition.
    public var ready: String
    public var reason: String?
    public var message: String?
    public var peersReady: Int?
    public var peersTotal: Int?
    public var inMesh: Bool
    public var leftOutBecause: String?
    public var strict: Bool?
    public var unencryptedPackets: UInt64?

    /// The rows for `nodes`, sorted by name, ages as of `now`.
    public static func rows(_ nodes: [ObservedNode], now: Date) -> [NodeStatus] {
        let leftOut = Membership.leftOut(nodes)
        return nodes.sorted { $0.name < $1.name }.map { node in
            let m = node.meshNode
            let c = node.condition
            let counts = c?.peerCounts
            return NodeStatus(
                name: node.name, podCIDRs: m?.podCIDRs.map(\.description) ?? [],
                endpoint: m?.effectiveEndpoint?.description,
                publicKey: m?.publicKey?.base64, keyGeneration: m?.keyGeneration,
                keyIssuedAt: m?.keyIssuedAt.map(RFC3339.format),
                keyAgeSeconds: m?.keyIssuedAt.map { Int64(now.timeIntervalSince($0).rounded(.down)) },
                appliedKeyGeneration: m?.appliedKeyGeneration,
                rotation: m.flatMap { $0.nextPublicKey != nil ? "staged" : $0.rotationRequested ? "requested" : nil },
                ready: c?.status ?? "Unknown", reason: c?.reason,
                message: c?.message ?? "no \(MeshCondition.type) condition: no agent has reported on this node",
                peersReady: counts?.ready, peersTotal: counts?.total, inMesh: leftOut[node.name] == nil,
                leftOutBecause: leftOut[node.name],
                strict: node.report.strict, unencryptedPackets: node.report.unencryptedDrops?.packets)
        }
    }

    /// `kubectl get`'s table: NAME READY PEERS POD-CIDRS ENDPOINT KEY-GEN APPLIED KEY-AGE, and with `wide`
    /// ROTATION STRICT UNENCRYPTED REASON LEFT-OUT.
    public static func table(_ rows: [NodeStatus], wide: Bool) -> String {
        func show(_ v: (some CustomStringConvertible)?) -> String { v.map(\.description) ?? "<none>" }
        var header = ["NAME", "READY", "PEERS", "POD-CIDRS", "ENDPOINT", "KEY-GEN", "APPLIED", "KEY-AGE"]
        if wide { header += ["ROTATION", "STRICT", "UNENCRYPTED", "REASON", "LEFT-OUT"] }
        let cells = rows.map { r in
            var row = [
                r.name, r.ready, r.peersTotal.map { "\(r.peersReady ?? 0)/\($0)" } ?? "<unknown>",
                r.podCIDRs.isEmpty ? "<none>" : r.podCIDRs.joined(separator: ","), show(r.endpoint),
                show(r.keyGeneration),
                show(r.appliedKeyGeneration), r.keyAgeSeconds.map { HumanDuration.format(seconds: $0) } ?? "<none>",
            ]
            if wide {
                row += [
                    show(r.rotation), show(r.strict), show(r.unencryptedPackets), show(r.reason),
                    show(r.leftOutBecause),
                ]
            }
            return row
        }
        return TextTable.render(header: header, rows: cells)
    }
}

/// `wgmesh status -o json|yaml`: the rows as a list object, as kubectl prints a list.
public struct NodeStatusList: Sendable, Hashable, Codable {
    public var apiVersion = "wgmesh.dev/v1"
    public var kind = "NodeStatusList"
    public var items: [NodeStatus]
    /// The outside peers; nil when the cluster does not serve them (or the caller may not list them).
    public var peers: [Peers.Row]?

    public init(items: [NodeStatus], peers: [Peers.Row]? = nil) {
        self.items = items
        self.peers = peers
    }

    /// Every node reports `WireGuardMeshReady` True: the exit status of `wgmesh status`.
    public var allReady: Bool { items.allSatisfy { $0.ready == "True" } }
}
