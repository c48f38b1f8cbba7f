/// How far a requested key rotation has come, read from every Node's annotations.
///
/// Done means: the controller answered the request (`rotate-answered` is its token) and switched
/// (`next-public-key` is gone); the node's agent runs the new key (`applied-key-generation` equals
/// `key-generation`); and every peer the node has in its plan runs it too: each peer's
/// `applied-peers` equals the digest of the keys that peer's plan has now (`AppliedPeers.expected`).
public enum RotationProgress: Sendable, Hashable, CustomStringConvertible {
    /// The request is not answered yet (a rotation that runs, or `--max-concurrent-rotations`, or no enrollment key).
    case notAnswered
    /// The next key is published; the controller switches after its grace period.
    case staged(generation: UInt64)
    /// The controller switched; the node's agent does not run the new key yet.
    case applying(generation: UInt64, applied: UInt64?)
    /// The node runs the new key; these peers do not yet.
    case peersPending(generation: UInt64, peers: [String])
    case done(generation: UInt64, peers: Int)
    /// The Node was deleted.
    case gone
    /// The node's annotations do not read.
    case unreadable(String)

    public var isDone: Bool {
        if case .done = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .notAnswered:
            return
                """
                the controller has not answered the request (another rotation runs, --max-concurrent-rotations is \
                reached, or the node has no enrollment key: see the Node's Events)
                """
        case .staged(let g):
            return "next key generation \(g) is staged; the controller switches after its rotation grace"
        case .applying(let g, let applied):
            return
                """
                its agent does not run key generation \(g) yet (\(Annotation.appliedKeyGeneration) is \
                \(applied.map(String.init) ?? "not set"))
                """
        case .peersPending(let g, let peers):
            let shown =
                peers.prefix(MeshCondition.namedNodeLimit).joined(separator: ", ")
                + (peers.count > MeshCondition.namedNodeLimit
                    ? " and \(peers.count - MeshCondition.namedNodeLimit) more" : "")
            return
                """
                runs key generation \(g), but \(peers.count == 1 ? "peer" : "peers") \(shown) \
                \(peers.count == 1 ? "does" : "do") not run it yet (\(Annotation.appliedPeers) differs from the \
                plan)
                """
        case .done(let g, let peers):
            return "key generation \(g) runs on the node and on its \(peers == 1 ? "1 peer" : "\(peers) peers")"
        case .gone:
            return "the Node was deleted"
        case .unreadable(let why):
            return why
        }
    }

    /// The progress of each request, by node name (`requests`: node name to the token written).
    public static func evaluate(requests: [String: String], nodes: [ObservedNode]) -> [String: RotationProgress] {
        let byName = Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let valid = nodes.compactMap(\.meshNode)
        var expected: [String: String] = [:]
        func upToDate(_ peer: String) -> Bool {
            guard let node = byName[peer] else { return true }
            let cidrs = node.report.clusterCIDRs ?? Membership.everyAddress
            if expected[peer] == nil {
                expected[peer] = AppliedPeers.expected(for: peer, nodes: valid, clusterCIDRs: cidrs)
            }
            return node.report.appliedPeers == expected[peer]
        }
        var progress: [String: RotationProgress] = [:]
        for (name, token) in requests {
            guard let observed = byName[name] else {
                progress[name] = .gone
                continue
            }
            let node: MeshNode
            switch observed.mesh {
            case .success(let m): node = m
            case .failure(let e):
                progress[name] = .unreadable("\(e)")
                continue
            }
            guard node.rotateAnswered == token, let generation = node.keyGeneration else {
                progress[name] = .notAnswered
                continue
            }
            if node.nextPublicKey != nil {
                progress[name] = .staged(generation: generation + 1)
                continue
            }
            guard node.appliedKeyGeneration == generation else {
                progress[name] = .applying(generation: generation, applied: node.appliedKeyGeneration)
                continue
            }
            let plan = MeshPlan(
                localNode: name,
                settings: ClusterSettings(clusterCIDRs: observed.report.clusterCIDRs ?? Membership.everyAddress),
                nodes: valid, interfaceIndex: 0)
            let peers = Set(plan.peers.filter { !$0.allowedIPs.isEmpty }.map(\.node)).sorted()
            let pending = peers.filter { !upToDate($0) }
            progress[name] =
                pending.isEmpty
                ? .done(generation: generation, peers: peers.count)
                : .peersPending(generation: generation, peers: pending)
        }
        return progress
    }
}
