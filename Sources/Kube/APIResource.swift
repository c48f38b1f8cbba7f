/// Where a resource type lives in the API, e.g. `/api/v1/nodes` or
/// `/apis/coordination.k8s.io/v1/namespaces/NS/leases`.
public struct APIResource: Sendable, Hashable, CustomStringConvertible {
    /// Empty for the core group.
    public var group: String
    public var version: String
    public var plural: String
    public var kind: String
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, kind: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
    }

    public static let nodes = APIResource(group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false)
    public static let leases = APIResource(
        group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true)
    public static let events = APIResource(
        group: "events.k8s.io", version: "v1", plural: "events", kind: "Event", namespaced: true)
    /// wgmesh's own custom resource (manifests/peer-crd.yaml): a machine outside the cluster that joins the mesh.
    public static let peers = APIResource(
        group: "wgmesh.dev", version: "v1alpha1", plural: "peers", kind: "Peer", namespaced: false)
    public static let customResourceDefinitions = APIResource(
        group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition", namespaced: false)

    /// `v1`, `coordination.k8s.io/v1`.
    public var apiVersion: String { group.isEmpty ? version : group + "/" + version }

    /// `nodes`, `leases.coordination.k8s.io`: how the API names the resource in messages.
    public var qualifiedName: String { group.isEmpty ? plural : plural + "." + group }

    /// The URL path of the collection, an object, or an object's subresource.
    public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace { p += "/namespaces/\(namespace)" }
        p += "/\(plural)"
        if let name { p += "/\(name)" }
        if let subresource { p += "/\(subresource)" }
        return p
    }

    public var description: String { qualifiedName }
}
