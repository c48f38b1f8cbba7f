/// A Node as the people's commands read it from the API: its name, its annotations and its
/// `WireGuardMeshReady` condition, with the annotations parsed once.
public struct ObservedNode: Sendable {
    /// The Node's `WireGuardMeshReady` condition as found.
    public struct Condition: Sendable, Hashable {
        /// `True`, `False` or `Unknown`.
        public var status: String
        public var reason: String?
        public var message: String?

        public init(status: String, reason: String? = nil, message: String? = nil) {
            self.status = status
            self.reason = reason
            self.message = message
        }

        /// Peers ready and in all, when the agent's message says.
        public var peerCounts: (ready: Int, total: Int)? {
            MeshCondition.peerCounts(reason: reason ?? "", message: message ?? "")
        }
    }

    public let name: String
    public let annotations: [String: String]
    public let condition: Condition?
    /// The `wgmesh.dev/` contract, or why it does not read.
    public let mesh: Result<MeshNode, AnnotationError>
    public let report: AgentReport

    public init(name: String, annotations: [String: String] = [:], condition: Condition? = nil) {
        self.name = name
        self.annotations = annotations
        self.condition = condition
        mesh = Result { () throws(AnnotationError) in try MeshNode(name: name, annotations: annotations) }
        report = AgentReport(annotations: annotations)
    }

    public var meshNode: MeshNode? { try? mesh.get() }

    /// The `wgmesh.dev/` annotations on the Node, sorted.
    public var wgmeshAnnotations: [String] { annotations.keys.filter { $0.hasPrefix(Annotation.prefix) }.sorted() }
}

/// Which nodes are in the mesh, judged as every agent judges (`MeshPlan`), over the cluster CIDRs the
/// agents report.
public enum Membership {
    /// Every address: the cluster CIDRs to judge by when no agent reports any.
    public static let everyAddress = [try! IPPrefix("0.0.0.0/0"), try! IPPrefix("::/0")]

    /// The cluster CIDRs the agents report, each once, sorted; every address when none reports.
    public static func clusterCIDRs(_ nodes: [ObservedNode]) -> [IPPrefix] {
        let reported = Set(nodes.flatMap { $0.report.clusterCIDRs ?? [] })
        return reported.isEmpty ? everyAddress : reported.sorted()
    }

    /// The nodes left out of the mesh, each with why: an annotation that does not read, no key, Pod CIDR or
    /// endpoint yet, a Pod CIDR outside the cluster CIDRs, or a key or CIDR claimed twice.
    public static func leftOut(_ nodes: [ObservedNode]) -> [String: String] {
        var why: [String: String] = [:]
        var valid: [MeshNode] = []
        for node in nodes {
            switch node.mesh {
            case .success(let m): valid.append(m)
            case .failure(let e): why[node.name] = "annotation \(e.key)=\"\(e.shownValue)\" is invalid: \(e.reason)"
            }
        }
        // Seen from no node in particular: "" is no Node's name.
        let plan = MeshPlan(
            localNode: "", settings: ClusterSettings(clusterCIDRs: clusterCIDRs(nodes)), nodes: valid, interfaceIndex: 0
        )
        for e in plan.excluded { why[e.node] = e.reason }
        return why
    }
}

/// Durations as kubectl prints ages (`45s`, `3m20s`, `5h`, `2d3h`, `400d`), the same rounding.
public enum HumanDuration {
    public static func format(seconds: Int64) -> String {
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 120 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 { return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s" }
        if minutes < 180 { return "\(minutes)m" }
        let hours = seconds / 3600
        if hours < 8 { return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m" }
        if hours < 48 { return "\(hours)h" }
        if hours < 24 * 8 { return hours % 24 == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(hours % 24)h" }
        if hours < 24 * 365 * 2 { return "\(hours / 24)d" }
        if hours < 24 * 365 * 8 {
            let days = (hours / 24) % 365
            return days == 0 ? "\(hours / 24 / 365)y" : "\(hours / 24 / 365)y\(days)d"
        }
        return "\(hours / 24 / 365)y"
    }

    /// A policy duration as a flag takes it: `720h`, `30m`, `45s`.
    public static func flag(seconds: Int64) -> String {
        seconds % 3600 == 0 ? "\(seconds / 3600)h" : seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }
}

/// Columns as kubectl aligns them: each as wide as its widest cell, three spaces between.
public enum TextTable {
    public static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 3)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}
