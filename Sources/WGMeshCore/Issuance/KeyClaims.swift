/// Which nodes publish each WireGuard public key (current or next). A key published by two nodes takes both
/// out of every agent's mesh (`MeshPlan.conflicts`); the controller says so once, on both Nodes.
public struct KeyClaims: Sendable {
    private var owners: [WireGuardKey: Set<String>] = [:]
    private var claimed: [String: [WireGuardKey]] = [:]

    public init() {}

    /// Records the keys `node` publishes now (nil: its annotations do not read, so it claims none), in place of
    /// those it published before; returns a Warning for each key another node publishes too.
    public mutating func claim(_ node: MeshNode?, named name: String) -> [NodeIssuance.Notice] {
        forget(name)
        guard let node else { return [] }
        let keys = node.claimedKeys
        claimed[name] = keys
        for key in keys { owners[key, default: []].insert(name) }
        return keys.compactMap { key in
            let all = owners[key, default: []].sorted()
            guard all.count > 1, let other = all.first(where: { $0 != name }) else { return nil }
            return NodeIssuance.Notice(
                warning: true, reason: .publicKeyConflict,
                note: """
                    public key \(key) is published by nodes \(all.joined(separator: ", ")): every agent leaves them \
                    out of the mesh; a key is issued to one node only, so remove \(Annotation.publicKey) and \
                    \(Annotation.sealedPrivateKey) from the node it was copied to (the controller issues that node a \
                    keypair of its own)
                    """,
                otherNode: other)
        }
    }

    /// A node deleted: its keys are no one's claim any more.
    public mutating func forget(_ name: String) {
        for key in claimed.removeValue(forKey: name) ?? [] {
            owners[key]?.remove(name)
            if owners[key]?.isEmpty == true { owners[key] = nil }
        }
    }
}
