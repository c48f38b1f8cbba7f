import Agent
import Foundation
import Kube
import TestSupport
import Synchronization
import WGMeshCore

/// The kernel as the agent sees it, in memory: WireGuard and routes from ModelKernel, links and
/// addresses, and an nftables table. Test code only.
final class FakeKernel: WireGuardInterfaces, WireGuardDevice, LinkTable, RouteTable, PacketFilter, @unchecked Sendable {
    let lock = NSLock()
    let model = ModelKernel(state: DeviceState(name: "wgmesh0"), routes: [])
    var links: [String: LinkState] = [:]
    var addressTable: [UInt32: [IPPrefix]] = [:]
    var ruleset: String?
    var counted: (packets: UInt64, bytes: UInt64) = (0, 0)
    var configureCalls = 0
    /// How many of the next configure calls fail, as a kernel refusing a request would.
    var failingConfigures = 0
    /// Every call the agent makes to this kernel, by name, reads included.
    var calls: [String] = []
    /// Routes of other programs, by key, as `ip route` shows them: wgmesh never sees them, and adding a route
    /// with their key fails.
    var foreignRoutes: [RouteKey: String] = [:]

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    var kernel: MeshAgent.Kernel { MeshAgent.Kernel(interfaces: self, wireGuard: self, network: self, filter: self) }

    // WireGuardInterfaces
    var backend: String { "kernel" }
    func ensure(named name: String, mtu: UInt32) throws -> Bool {
        if try link(named: name) != nil { return false }
        _ = try createWireGuardLink(named: name, mtu: mtu)
        return true
    }
    func remove(named name: String) throws -> Bool {
        guard let link = try link(named: name) else { return false }
        try deleteLink(index: link.index)
        return true
    }
    /// Set: the interface is another process's that does not answer yet (--external-wireguard-go).
    var unavailableReason: String?
    func unavailable(named name: String) -> String? { locked { unavailableReason } }

    // WireGuardDevice
    func device(named name: String) throws -> DeviceState {
        try locked {
            calls.append("device")
            guard let link = links[name] else { throw FakeError.noDevice(name) }
            var s = model.state
            s.name = name
            s.interfaceIndex = link.index
            s.publicKey = try s.privateKey.map { try WireGuardKeyPair(privateKey: $0).publicKey }
            return s
        }
    }
    func configure(_ name: String, _ config: DeviceConfig) throws {
        try locked {
            guard links[name] != nil else { throw FakeError.noDevice(name) }
            if failingConfigures > 0 {
                failingConfigures -= 1
                throw FakeError.refused
            }
            configureCalls += 1
            calls.append("configure")
            try model.configure(name, config)
        }
    }

    // LinkTable
    func link(named name: String) throws -> LinkState? {
        locked {
            calls.append("link")
            return links[name]
        }
    }
    func createWireGuardLink(named name: String, mtu: UInt32?) throws -> LinkState {
        addLink(named: name, kind: "wireguard", mtu: mtu ?? 1420)
    }
    /// A link of any kind, as another program (or the CNI bridge plugin) makes one.
    func addLink(named name: String, kind: String, mtu: UInt32 = 1500) -> LinkState {
        locked {
            let link = LinkState(name: name, index: UInt32(10 + links.count), mtu: mtu, isUp: false, kind: kind)
            links[name] = link
            return link
        }
    }
    func setLink(index: UInt32, mtu: UInt32?, up: Bool?) throws {
        locked {
            guard let name = links.first(where: { $0.value.index == index })?.key else { return }
            if let mtu { links[name]!.mtu = mtu }
            if let up { links[name]!.isUp = up }
        }
    }
    func deleteLink(index: UInt32) throws {
        locked {
            let wireGuard = links.values.contains { $0.index == index && $0.kind == "wireguard" }
            links = links.filter { $0.value.index != index }
            addressTable[index] = nil
            if wireGuard { model.state = DeviceState(name: "wgmesh0") }
            model.table.removeAll { $0.interfaceIndex == index }
        }
    }
    func interface(carrying address: IPAddress) throws -> LinkState? {
        locked {
            calls.append("interface")
            return LinkState(name: "eth0", index: 2, mtu: 1500, isUp: true, kind: nil)
        }
    }
    func addresses(ofLinkIndex index: UInt32) throws -> [IPPrefix] {
        locked {
            calls.append("addresses")
            return addressTable[index] ?? []
        }
    }
    func addAddress(_ address: IPPrefix, toLinkIndex index: UInt32, scope: AddressScope) throws {
        locked { addressTable[index, default: []].append(address) }
    }
    func removeAddress(_ address: IPPrefix, fromLinkIndex index: UInt32) throws {
        locked { addressTable[index]?.removeAll { $0 == address } }
    }

    // RouteTable
    func routes(family: IPFamily?) throws -> [Route] {
        try locked {
            calls.append("routes")
            return try model.routes(family: family)
        }
    }
    func add(_ route: Route) throws {
        try locked {
            calls.append("add")
            if let holder = foreignRoutes[route.key] { throw RouteTaken(route: route, holder: holder) }
            try model.add(route)
        }
    }
    func replace(_ route: Route) throws {
        try locked {
            calls.append("replace")
            try model.replace(route)
        }
    }
    func delete(_ route: Route) throws {
        try locked {
            calls.append("delete")
            try model.delete(route)
        }
    }

    // PacketFilter
    func apply(_ ruleset: String) throws {
        locked {
            self.ruleset = ruleset
            counted = (0, 0)
        }
    }
    func remove() throws { locked { ruleset = nil } }
    func unencrypted() throws -> (packets: UInt64, bytes: UInt64)? {
        locked {
            calls.append("unencrypted")
            return ruleset == nil ? nil : counted
        }
    }

    enum FakeError: Error { case noDevice(String), refused }
}

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "wgmesh-agent-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
