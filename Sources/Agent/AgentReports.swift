import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MeshAgent {
    // MARK: reporting

    /// The unencrypted-packet count after the table's counter read `reading`: it goes on from the count this
    /// process has, else from the one this node published (a restarted agent adds only what the table
    /// counted since).
    func countDrops(_ reading: UInt64, published: String?) -> UnencryptedDrops {
        state.withLock { m in
            let next = (m.drops ?? published.flatMap(UnencryptedDrops.init) ?? UnencryptedDrops()).observing(
                counter: reading, at: Date())
            m.drops = next
            return next
        }
    }

    /// What the node runs, in one annotation patch of the values that changed: `applied-key-generation`,
    /// `applied-peers` (the keys the interface routes to, so that `wgmesh rotate-keys --wait` can tell every
    /// peer moved to a new key) and `unencrypted-drops`. Every agent watches every Node, so a value that
    /// changes with every join or every pass would make each write a pass on every node: `applied-peers`
    /// is written at once when a peer moved to another key and otherwise at most once per resync period,
    /// and `unencrypted-drops` at most once per resync period while it grows.
    func publishReport(
        keys: NodeKeys?, routedKeys: () -> [WireGuardKey], drops: UnencryptedDrops?, published: [String: String]
    ) async throws {
        let keysMoved = state.withLock { $0.keysMoved }
        var changes: [String: String] = [:]
        if let keys { changes[Annotation.appliedKeyGeneration] = String(keys.generation) }
        let now = ContinuousClock.now
        func due(_ last: ContinuousClock.Instant?) -> Bool {
            last.map { now - $0 >= configuration.resyncPeriod } ?? true
        }
        if keysMoved || due(state.withLock { $0.peersPublished }) {
            changes[Annotation.appliedPeers] = AppliedPeers.digest(routedKeys())
        }
        if let drops, due(state.withLock { $0.dropsPublished }) {
            changes[Annotation.unencryptedDrops] = drops.description
        }
        changes = changes.filter { published[$0.key] != $0.value }
        if !changes.isEmpty {
            let patch = Patch.annotations(changes)
            _ = try await api.patch(.nodes, namespace: nil, name: configuration.nodeName, patch, subresource: nil)
        }
        state.withLock { $0.keysMoved = false }
        guard !changes.isEmpty else { return }
        if changes[Annotation.appliedPeers] != nil { state.withLock { $0.peersPublished = now } }
        if changes[Annotation.unencryptedDrops] != nil { state.withLock { $0.dropsPublished = now } }
        if let generation = changes[Annotation.appliedKeyGeneration] {
            logger.info("the interface runs key generation \(generation)", metadata: ["generation": "\(generation)"])
        }
        if let value = changes[Annotation.unencryptedDrops], drops?.packets ?? 0 > 0 {
            logger.warning("Pod packets counted leaving unencrypted", metadata: ["unencryptedDrops": "\(value)"])
        }
    }

    /// The `WireGuardMeshReady` condition, through the status subresource, only when it changes.
    func writeCondition(_ condition: MeshCondition) async throws {
        guard state.withLock({ $0.condition }) != condition else { return }
        let now = RFC3339.format(Date())
        let entry: JSON = .object([
            "type": .string(MeshCondition.type), "status": .string(condition.ready ? "True" : "False"),
            "reason": .string(condition.reason), "message": .string(condition.message),
            "lastTransitionTime": .string(now), "lastHeartbeatTime": .string(now),
        ])
        // Strategic merge: conditions merge by type, so the kubelet's own conditions stay.
        _ = try await api.patch(
            .nodes, namespace: nil, name: configuration.nodeName,
            .condition(entry), subresource: "status")
        state.withLock { $0.condition = condition }
        logger.info(
            "condition \(MeshCondition.type)=\(condition.ready ? "True" : "False")",
            metadata: ["reason": "\(condition.reason)", "message": "\(condition.message)"])
    }

    /// An Event about this node and a log line, once per process for the same text (of the last
    /// `reportedLimit`). Other nodes' problems are the controller's to report: one reporter per problem.
    func report(_ object: KubeObject, warning: Bool, reason: String, note: String) async {
        let key = reason + "\u{0}" + note
        let new = state.withLock { m in
            guard !m.reported.contains(key) else { return false }
            m.reported.append(key)
            if m.reported.count > Self.reportedLimit { m.reported.removeFirst() }
            return true
        }
        guard new else { return }
        if warning {
            logger.warning("\(reason)", metadata: ["about": "\(object.metadata.name)", "note": "\(note)"])
        } else {
            logger.info("\(reason)", metadata: ["about": "\(object.metadata.name)", "note": "\(note)"])
        }
        // A metadata-only object says PartialObjectMetadata; the Event is about the Node.
        var json = object.json.object ?? [:]
        json["kind"] = "Node"
        json["apiVersion"] = "v1"
        let node = (try? KubeObject(json: .object(json))) ?? object
        await events.record(about: node, warning: warning, reason: reason, action: "Reconcile", note: note)
    }

    /// A diff of more changes than this is logged as one line of counts, the changes themselves at debug
    /// level: a node joining a 5,000-node cluster logs one line, not 10,000.
    static let loggedChangeLimit = 20

    /// One line per peer and route change (the forced keepalives of a key switch are not changes); `owners`
    /// names the node of each key.
    func log(_ diff: MeshDiff, owners: [WireGuardKey: String]) {
        let peers = diff.device.peers
        let changes = peers.count + diff.routesToAdd.count + diff.routesToReplace.count + diff.routesToDelete.count
        let level: Logger.Level = changes > Self.loggedChangeLimit ? .debug : .info
        if level == .debug {
            let added = peers.filter { !$0.remove && !$0.updateOnly }.count
            let removed = peers.filter(\.remove).count
            logger.info(
                "\(changes) changes applied",
                metadata: [
                    "peersAdded": "\(added)", "peersUpdated": "\(peers.count - added - removed)",
                    "peersRemoved": "\(removed)",
                    "routesAdded": "\(diff.routesToAdd.count)", "routesReplaced": "\(diff.routesToReplace.count)",
                    "routesDeleted": "\(diff.routesToDelete.count)",
                ])
        }
        for peer in peers {
            let who = owners[peer.publicKey] ?? "a node no longer in the plan"
            let what = peer.remove ? "peer removed" : peer.updateOnly ? "peer updated" : "peer added"
            logger.log(
                level: level, "\(what)",
                metadata: [
                    "peer": "\(who)", "allowedIPs": "\(peer.allowedIPs.map(\.description).joined(separator: ","))",
                ])
        }
        for r in diff.routesToAdd { logger.log(level: level, "route added", metadata: ["route": "\(r.destination)"]) }
        for r in diff.routesToReplace {
            logger.log(level: level, "route replaced", metadata: ["route": "\(r.destination)"])
        }
        for r in diff.routesToDelete {
            logger.log(level: level, "route deleted", metadata: ["route": "\(r.destination)"])
        }
    }
}
