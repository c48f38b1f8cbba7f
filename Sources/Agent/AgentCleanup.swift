import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `--cleanup` refused, changing nothing: Pods on this node still have addresses from wgmesh's network.
public struct CleanupRefused: Error, CustomStringConvertible {
    public var node: String
    public var addresses: [String]

    public var description: String {
        let listed = addresses.prefix(5).joined(separator: ", ") + (addresses.count > 5 ? ", …" : "")
        return """
            node \(node): nothing was removed: \(addresses.count) Pod\(addresses.count == 1 ? "" : "s") on this node \
            still \(addresses.count == 1 ? "has an address" : "have addresses") from wgmesh's network (\(listed)), \
            and the container runtime tears a Pod's network down through the CNI configuration that the cleanup \
            removes: delete those Pods (or drain the \
            node), then run the cleanup again
            """
    }
}

extension MeshAgent {
    /// The Pod addresses host-local still holds for wgmesh's network under `ipamDirectory` (its `dataDir`,
    /// `/var/lib/cni/networks` by default): one file per address, named by it, until the Pod's network is
    /// torn down.
    public static func podAddresses(ipamDirectory: String) -> [String] {
        let folder = ipamDirectory + "/" + CNIConfig.networkName
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { (try? IPAddress($0)) != nil }.sorted()
    }

    /// Removes exactly what the agent made on this node: the interface, every route with wgmesh's
    /// route protocol, the CNI bridge its configuration names, the nftables table, the CNI file, the enrollment key
    /// file, its own annotations and
    /// the `WireGuardMeshReady` condition. Returns one line per thing removed. With `ipamDirectory`, refuses
    /// (`CleanupRefused`), removing nothing, while Pods on the node still hold addresses from wgmesh's network.
    public func cleanup(ipamDirectory: String? = nil) async throws -> [String] {
        if let ipamDirectory {
            let held = Self.podAddresses(ipamDirectory: ipamDirectory)
            guard held.isEmpty else { throw CleanupRefused(node: configuration.nodeName, addresses: held) }
        }
        var removed: [String] = []
        let network = kernel.network
        for route in try network.routes(family: nil) {
            try network.delete(route)
            removed.append("route \(route.destination)")
        }
        if try kernel.interfaces.remove(named: configuration.interface) {
            removed.append("interface \(configuration.interface)")
        }
        // The CNI bridge and its gateway addresses: left behind, a reinstall that hands this node another Pod
        // CIDR finds the old gateway on it, which the bridge plugin refuses.
        if let bridge = try network.link(named: CNIConfig.bridge), bridge.kind == "bridge" {
            try network.deleteLink(index: bridge.index)
            removed.append("bridge \(CNIConfig.bridge)")
        }
        if try kernel.filter.unencrypted() != nil {
            try kernel.filter.remove()
            removed.append("nftables table inet \(FirewallRuleset.table)")
        }
        if try AtomicFile.remove(configuration.cniFile) { removed.append("CNI configuration \(configuration.cniFile)") }
        if try EnrollmentKeyStore(directory: configuration.stateDirectory).remove() {
            removed.append("enrollment key file")
        }

        let name = configuration.nodeName
        let node = try await api.get(.nodes, namespace: nil, name: name)
        let mine = Annotation.agentOwned.filter { node.metadata.annotations[$0] != nil }
        if !mine.isEmpty {
            let patch: [String: String?] = Dictionary(uniqueKeysWithValues: mine.map { ($0, nil) })
            _ = try await api.patch(.nodes, namespace: nil, name: name, .annotations(patch), subresource: nil)
            removed += mine.map { "annotation \($0)" }
        }
        if try await api.removeNodeCondition(MeshCondition.type, node: name) {
            removed.append("condition \(MeshCondition.type)")
        }
        return removed
    }

    /// What a pass would do on this node, changing nothing: the plan (peers by node, routes, nodes left
    /// out and why) and the diff against the kernel.
    public func dryRun(_ objects: [KubeObject], peers: [KubeObject] = []) throws -> String {
        let (read, invalid) = meshNodes(objects)
        // The outside peers as a pass plans them: held here, or routed to their gateway.
        let outside = OutsidePlan(peers: peers, localNode: configuration.nodeName, now: Date())
        let nodes = read.map(outside.adding) + outside.held.values
        var lines = invalid.map { "invalid: \($0.1)" }
        guard let local = nodes.first(where: { $0.name == configuration.nodeName }) else {
            return
                (lines + [
                    """
                    node \(configuration.nodeName) is not in the API or its wgmesh annotations are unreadable: \
                    nothing would change
                    """
                ])
                .joined(separator: "\n")
        }
        let link = try kernel.network.link(named: configuration.interface)
        let device =
            link == nil
            ? DeviceState(name: configuration.interface) : try kernel.wireGuard.device(named: configuration.interface)
        let mtu = try tunnelMTU(local)
        let plan = plan(local: local, nodes: nodes, interfaceIndex: link?.index ?? 0, mtu: mtu)
        let diff = MeshDiff(
            plan: plan, actual: device, actualRoutes: link == nil ? [] : try kernel.network.routes(family: nil))
        lines.append(
            "interface \(configuration.interface): \(link == nil ? "would be created" : "exists"), MTU \(mtu), "
                + "addresses "
                + TunnelAddressing.addresses(podCIDRs: local.podCIDRs).map(\.description).joined(separator: ", "))
        lines.append("plan: \(plan.peers.count) peers, \(plan.routes.count) routes")
        for peer in plan.peers {
            let allowed = peer.allowedIPs.map(\.description).joined(separator: ",")
            let endpoint = peer.endpoint.map(\.description) ?? "(from its handshakes)"
            lines.append(
                "  peer \(peer.node) endpoint \(endpoint) allowed-ips "
                    + (peer.allowedIPs.isEmpty ? "(pre-staged next key)" : allowed))
        }
        for route in plan.routes {
            lines.append("  route \(route.destination)\(route.metric > 1024 ? " (strict)" : "")")
        }
        for e in plan.excluded { lines.append("  left out: \(e.node): \(e.reason)") }
        let owners = Dictionary(plan.peers.map { ($0.publicKey, $0.node) }, uniquingKeysWith: { a, _ in a })
        lines.append(diff.isEmpty ? "diff: nothing to change" : "diff:")
        if diff.device.privateKey != nil { lines.append("  set the private key") }
        if let port = diff.device.listenPort { lines.append("  set listen port \(port)") }
        for p in diff.device.peers {
            let action = p.remove ? "remove" : p.updateOnly ? "update" : "add"
            lines.append("  \(action) peer \(owners[p.publicKey] ?? "(not planned)")")
        }
        for r in diff.routesToAdd { lines.append("  add route \(r.destination)") }
        for r in diff.routesToReplace { lines.append("  replace route \(r.destination)") }
        for r in diff.routesToDelete { lines.append("  delete route \(r.destination)") }
        return lines.joined(separator: "\n")
    }
}
