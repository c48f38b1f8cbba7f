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
        let list = NodeStatusList(
            items: NodeStatus.rows(try await observedNodes(api, labelSelector: labelSelector), now: now))
        switch format {
        case .table, .wide:
            return (
                list.items.isEmpty ? "No Nodes found.\n" : NodeStatus.table(list.items, wide: format == .wide),
                list.allReady
            )
        case .json, .yaml:
            return (try format.encode(list), list.allReady)
        }
    }
}
