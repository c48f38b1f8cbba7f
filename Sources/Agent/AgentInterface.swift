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
    // MARK: the interface

    /// The override, else the endpoint interface's MTU less WireGuard's overhead.
    func tunnelMTU(_ local: MeshNode) throws -> UInt32 {
        if let mtu = configuration.mtu { return mtu }
        guard let address = local.effectiveEndpoint?.address,
            let underlay = try kernel.network.interface(carrying: address)
        else {
            return Self.fallbackMTU
        }
        return TunnelAddressing.mtu(underlayMTU: underlay.mtu)
    }

    /// The WireGuard interface, created when missing and up; an existing one is adopted as it is.
    func ensureLink(mtu: UInt32, adjustMTU: Bool) throws -> LinkState {
        let name = configuration.interface
        let created = try kernel.interfaces.ensure(named: name, mtu: mtu)
        if created {
            logger.info(
                "interface created",
                metadata: ["interface": "\(name)", "backend": "\(kernel.interfaces.backend)", "mtu": "\(mtu)"])
        }
        guard var link = try kernel.network.link(named: name) else {
            throw InterfaceError.notWireGuard(name, kind: nil)
        }
        // A new interface always gets the MTU (wireguard-go makes its tun device with a default of
        // its own); one adopted at start-up keeps its MTU until the first pass knows the right one.
        let setMTU = link.mtu != mtu && (adjustMTU || created)
        if setMTU || !link.isUp {
            try kernel.network.setLink(index: link.index, mtu: setMTU ? mtu : nil, up: true)
            if setMTU { logger.info("interface MTU set", metadata: ["interface": "\(name)", "mtu": "\(mtu)"]) }
            link.mtu = setMTU ? mtu : link.mtu
            link.isUp = true
        }
        return link
    }

    /// Exactly `wanted` on the interface: it is wgmesh's own, so any other address goes.
    func ensureAddresses(_ wanted: [IPPrefix], link: LinkState) throws {
        let have = try kernel.network.addresses(ofLinkIndex: link.index)
        for address in have where !wanted.contains(address) {
            try kernel.network.removeAddress(address, fromLinkIndex: link.index)
            logger.info("interface address removed", metadata: ["address": "\(address)"])
        }
        for address in wanted where !have.contains(address) {
            try kernel.network.addAddress(address, toLinkIndex: link.index, scope: TunnelAddressing.scope)
            logger.info("interface address added", metadata: ["address": "\(address)"])
        }
    }

    /// Writes the table when it changed or is not `present` (deleted by hand, it comes back); true when written.
    func applyRuleset(localPodCIDRs: [IPPrefix], present: Bool) throws -> Bool {
        // The mesh's addresses: the cluster's, the outside peers' range and the networks behind them. Traffic
        // between them is never masqueraded, and in strict mode never leaves but by the tunnel.
        let networks = planning.withLock { $0.outside.networks }
        let ruleset = FirewallRuleset.ruleset(
            interface: configuration.interface, localPodCIDRs: localPodCIDRs,
            clusterCIDRs: configuration.clusterCIDRs + configuration.peerCIDRs + networks,
            strict: configuration.strict)
        guard !present || state.withLock({ $0.ruleset }) != ruleset else { return false }
        try kernel.filter.apply(ruleset)
        state.withLock { $0.ruleset = ruleset }
        logger.info(
            "nftables table inet \(FirewallRuleset.table) written",
            metadata: ["podCIDRs": "\(localPodCIDRs.map(\.description).joined(separator: ","))"])
        return true
    }

    /// Removes the addresses of the CNI bridge that lie in the cluster CIDRs but outside this node's Pod CIDRs:
    /// the gateways of an earlier install or allocation. The bridge plugin refuses to add a Pod to a bridge
    /// with another gateway ("already has an IP address different from …"), and their routes would keep a
    /// peer's Pod CIDR out of the tunnel. The bridge is wgmesh's: its CNI configuration names it.
    func removeStaleBridgeAddresses(podCIDRs: [IPPrefix]) throws {
        guard let bridge = try kernel.network.link(named: CNIConfig.bridge), bridge.kind == "bridge" else { return }
        for address in try kernel.network.addresses(ofLinkIndex: bridge.index)
        where configuration.clusterCIDRs.contains(where: { $0.contains(address.address) })
            && !podCIDRs.contains(where: { $0.contains(address.address) })
        {
            try kernel.network.removeAddress(address, fromLinkIndex: bridge.index)
            logger.info(
                "stale address removed from the CNI bridge",
                metadata: ["bridge": "\(CNIConfig.bridge)", "address": "\(address)"])
        }
    }

    /// The CNI configuration, written only when its content changes.
    func writeCNIConfig(podCIDRs: [IPPrefix], mtu: UInt32) throws {
        let path = configuration.cniFile
        let text = Array(CNIConfig.conflist(podCIDRs: podCIDRs, mtu: mtu).utf8)
        if try AtomicFile.read(path) == text { return }
        try AtomicFile.write(path, text, mode: 0o644)
        logger.info(
            "CNI configuration written",
            metadata: ["file": "\(path)", "podCIDRs": "\(podCIDRs.map(\.description).joined(separator: ","))"])
    }
}
