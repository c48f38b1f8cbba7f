import WGMeshCore

/// Kernel WireGuard links, made and removed over rtnetlink.
public struct KernelInterfaces: WireGuardInterfaces {
    let network: KernelNetwork
    public var backend: String { "kernel" }

    public init(network: KernelNetwork) { self.network = network }

    public func ensure(named name: String, mtu: UInt32) throws -> Bool {
        if let link = try network.link(named: name) {
            guard link.kind == "wireguard" else { throw InterfaceError.notWireGuard(name, kind: link.kind) }
            return false
        }
        _ = try network.createWireGuardLink(named: name, mtu: mtu)
        return true
    }

    public func remove(named name: String) throws -> Bool {
        guard let link = try network.link(named: name) else { return false }
        guard link.kind == "wireguard" else { throw InterfaceError.notWireGuard(name, kind: link.kind) }
        try network.deleteLink(index: link.index)
        return true
    }
}
