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
