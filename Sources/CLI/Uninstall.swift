import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh uninstall`: removes every `wgmesh.dev/` annotation and the `WireGuardMeshReady` condition from
/// every Node, once the agents have removed their kernel state and the controller is gone.
public enum Uninstall {
    /// Why uninstalling now would leave a node half-configured or be undone, one line each; empty when it may run.
    ///
    /// An agent that ran `--cleanup` has removed its `enrollment-key` and its condition, and a running agent
    /// publishes its enrollment key again at once: a node with either has an agent that has not cleaned up.
    /// A controller that holds its Lease would write the annotations again.
    public static func refusals(_ nodes: [ObservedNode], controllerLease lease: Lease?, now: Date) -> [String] {
        var lines: [String] = []
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            let signs = [
                node.annotations[Annotation.enrollmentKey] != nil ? Annotation.enrollmentKey : nil,
                node.condition != nil ? "condition \(MeshCondition.type)" : nil,
            ].compactMap { $0 }
            if !signs.isEmpty {
                lines.append("node \(node.name) still has its agent's \(signs.joined(separator: " and "))")
            }
        }
        if !lines.isEmpty {
            lines.append(
                """
                delete the agent and wgmesh-device DaemonSets and run the cleanup on every node (kubectl apply -k \
                manifests/cleanup/): it removes the interface, routes, CNI bridge, nftables table and CNI file once \
                no Pod on the node holds an address from wgmesh's network
                """)
        }
        if let lease, let holder = lease.holderIdentity, !holder.isEmpty,
            let renewed = lease.renewTime.flatMap(RFC3339.parse),
            renewed.addingTimeInterval(Double(lease.leaseDurationSeconds ?? 15)) > now
        {
            lines.append(
                """
                the controller leads (Lease \(lease.metadata.namespace ?? "")/\(lease.metadata.name) held by \
                \(holder), renewed \(lease.renewTime ?? "")): delete its Deployment first, or it writes the \
                annotations again
                """
            )
        }
        return lines
    }

    /// Removes what wgmesh wrote on every Node, printing one line per node changed; refuses, changing
    /// nothing, while `refusals` finds a reason, unless `force`.
    public static func run(
        _ api: any KubeAPI, force: Bool, leaseNamespace: String, leaseName: String, now: Date = Date(),
        print: (String) -> Void
    ) async throws {
        let nodes = try await observedNodes(api)
        if !force {
            let lease = try await controllerLease(api, namespace: leaseNamespace, name: leaseName)
            let refusals = refusals(nodes, controllerLease: lease, now: now)
            guard refusals.isEmpty else {
                throw CLIError(
                    "nothing was removed:\n" + refusals.map { "  " + $0 }.joined(separator: "\n")
                        + """
                        \n(--force removes the annotations and the condition anyway, leaving any kernel state on \
                        the nodes)
                        """
                )
            }
        }
        var changed = 0
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            var removed = node.wgmeshAnnotations
            if !removed.isEmpty {
                let nulls: [String: String?] = Dictionary(uniqueKeysWithValues: removed.map { ($0, nil) })
                _ = try await api.patch(.nodes, namespace: nil, name: node.name, .annotations(nulls), subresource: nil)
            }
            if node.condition != nil, try await api.removeNodeCondition(MeshCondition.type, node: node.name) {
                removed.append("condition \(MeshCondition.type)")
            }
            guard !removed.isEmpty else { continue }
            changed += 1
            print("\(node.name): removed \(removed.joined(separator: ", "))")
        }
        print(
            changed == 0
                ? """
                nothing to remove: no Node has a \(Annotation.prefix) annotation or the \(MeshCondition.type) \
                condition
                """
                : "wgmesh removed from \(changed) node\(changed == 1 ? "" : "s")")
    }

    /// The controller's Lease; nil when there is none.
    static func controllerLease(_ api: any KubeAPI, namespace: String, name: String) async throws(KubeError) -> Lease? {
        do {
            return Lease(try await api.get(.leases, namespace: namespace, name: name))
        } catch  where error.isNotFound {
            return nil
        }
    }
}
