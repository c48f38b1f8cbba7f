import Foundation
import WGMeshCore

/// A cluster as the people's commands read it, written by hand the way the controller and the agents
/// write it: per node, the annotations and the `WireGuardMeshReady` condition.
public struct ClusterFixture {
    public static let now = RFC3339.parse("2026-11-27T10:00:00Z")!
    public static let clusterCIDRs = [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")]

    public var annotations: [String: [String: String]] = [:]
    public var conditions: [String: ObservedNode.Condition] = [:]

    /// `names` in the mesh, dual-stack: keypairs of generation 1 issued an hour ago and applied, strict,
    /// no unencrypted packet, every peer's key applied, `WireGuardMeshReady` True.
    public init(_ names: [String]) {
        for (i, name) in names.enumerated() {
            let enrollment = WireGuardKeyPair.generate().publicKey
            let pair = WireGuardKeyPair.generate()
            var a = AgentReport.settings(clusterCIDRs: Self.clusterCIDRs, strict: true)
            a[Annotation.podCIDRs] = "10.244.\(i).0/24,fd00:10:244:\(i)::/64"
            a[Annotation.endpoint] = "[2001:db8::\(i + 1)]:51820"
            a[Annotation.enrollmentKey] = enrollment.base64
            a[Annotation.sealedTo] = enrollment.base64
            a[Annotation.publicKey] = pair.publicKey.base64
            a[Annotation.sealedPrivateKey] = try! SealedKey.seal(
                pair.privateKey, to: enrollment, nodeName: name, generation: 1
            ).base64
            a[Annotation.keyGeneration] = "1"
            a[Annotation.keyIssuedAt] = RFC3339.format(Self.now.addingTimeInterval(-3600))
            a[Annotation.appliedKeyGeneration] = "1"
            a[Annotation.unencryptedDrops] = UnencryptedDrops().description
            annotations[name] = a
            conditions[name] = .init(
                status: "True", reason: "AllPeersConnected",
                message: "all \(names.count - 1) peer\(names.count == 2 ? "" : "s") had a handshake in the last 180 s")
        }
        applyPeers()
    }

    /// Every agent runs every peer's current key: `applied-peers` as each would publish it now.
    public mutating func applyPeers(except: Set<String> = []) {
        let nodes = self.nodes.compactMap(\.meshNode)
        for name in annotations.keys where !except.contains(name) {
            annotations[name]![Annotation.appliedPeers] = AppliedPeers.expected(
                for: name, nodes: nodes, clusterCIDRs: Self.clusterCIDRs)
        }
    }

    public var nodes: [ObservedNode] {
        annotations.keys.sorted().map {
            ObservedNode(name: $0, annotations: annotations[$0]!, condition: conditions[$0])
        }
    }

    /// The controller's switch to a new keypair of the next generation, answering `token`.
    public mutating func rotate(_ name: String, answering token: String) {
        let pair = WireGuardKeyPair.generate()
        let enrollment = try! WireGuardKey(base64: annotations[name]![Annotation.enrollmentKey]!)
        let generation = UInt64(annotations[name]![Annotation.keyGeneration]!)! + 1
        annotations[name]![Annotation.publicKey] = pair.publicKey.base64
        annotations[name]![Annotation.sealedPrivateKey] = try! SealedKey.seal(
            pair.privateKey, to: enrollment, nodeName: name, generation: generation
        ).base64
        annotations[name]![Annotation.keyGeneration] = String(generation)
        annotations[name]![Annotation.keyIssuedAt] = RFC3339.format(Self.now)
        annotations[name]![Annotation.rotateRequest] = token
        annotations[name]![Annotation.rotateAnswered] = token
    }
}
