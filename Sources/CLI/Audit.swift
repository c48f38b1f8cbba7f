import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh audit`: the report, made from every Node as read once.
public enum Audit {
    /// The report as Markdown or JSON, and whether every check passed (the exit status).
    public static func run(
        _ api: any KubeAPI, cluster: AuditReport.Cluster, json: Bool, maxKeyAge: Int64, windowStart: Date,
        now: Date = Date()
    ) async throws -> (text: String, passed: Bool) {
        let peers = try await Peers.list(api).map { Peers.rows($0, now: now) }
        let report = AuditReport(
            nodes: try await observedNodes(api), cluster: cluster, now: now, maxKeyAge: maxKeyAge,
            windowStart: windowStart, peers: peers)
        return (json ? report.json : report.markdown, report.passed)
    }
}
