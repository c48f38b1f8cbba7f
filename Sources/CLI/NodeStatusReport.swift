import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh status`: one row per Node, as `kubectl get` prints them.
public enum NodeStatusReport {
    /// The text to print and whether every node is ready (the exit status).
    public static func run(_ api: any KubeAPI, format: OutputFormat, labelSelector: String? = nil, now: Date = Date())
        async throws -> (text: String, allReady: Bool)
    {
        // Peers are shown when they can be read: a person without the right to list them still sees the Nodes.
        let peers = (try? await Peers.list(api)).flatMap { $0.map { Peers.rows($0, now: now) } }
        let list = NodeStatusList(
            items: NodeStatus.rows(try await observedNodes(api, labelSelector: labelSelector), now: now),
            peers: labelSelector == nil ? peers : nil)
        switch format {
        case .table, .wide:
            var text = list.items.isEmpty ? "No Nodes found.\n" : NodeStatus.table(list.items, wide: format == .wide)
            if let rows = list.peers, !rows.isEmpty { text += "\n" + Peers.table(rows, now: now) }
            return (text, list.allReady)
        case .json, .yaml:
            return (try format.encode(list), list.allReady)
        }
    }
}
