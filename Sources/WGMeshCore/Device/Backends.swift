/// The kernel's WireGuard configuration interface (generic netlink in production).
public protocol WireGuardDevice {
    /// The device's whole configuration and peer statistics.
    func device(named name: String) throws -> DeviceState
    /// Applies a change; bad input is rejected before anything is sent.
    func configure(_ name: String, _ config: DeviceConfig) throws
}

/// A network interface as the kernel reports it.
public struct LinkState: Sendable, Hashable {
    public var name: String
    public var index: UInt32
    public var mtu: UInt32
    public var isUp: Bool
    /// The `IFLA_INFO_KIND` (for example `wireguard`, `veth`), nil for plain devices.
    public var kind: String?

    public init(name: String, index: UInt32, mtu: UInt32, isUp: Bool, kind: String?) {
        self.name = name
        self.index = index
        self.mtu = mtu
        self.isUp = isUp
        self.kind = kind
    }
}

/// Network interfaces and their addresses (rtnetlink in production).
public protocol LinkTable {
    /// The link called `name`, or nil when none exists.
    func link(named name: String) throws -> LinkState?
    /// Creates a WireGuard interface.
    func createWireGuardLink(named name: String, mtu: UInt32?) throws -> LinkState
    /// Sets MTU and administrative state; nil leaves a field as it is.
    func setLink(index: UInt32, mtu: UInt32?, up: Bool?) throws
    func deleteLink(index: UInt32) throws
    /// The link that has `address` (the node's own underlay address), or nil when none has.
    func interface(carrying address: IPAddress) throws -> LinkState?
    func addresses(ofLinkIndex index: UInt32) throws -> [IPPrefix]
    func addAddress(_ address: IPPrefix, toLinkIndex index: UInt32, scope: AddressScope) throws
    func removeAddress(_ address: IPPrefix, fromLinkIndex index: UInt32) throws
}

/// The routes wgmesh owns (rtnetlink in production). Implementations see and change only
/// routes tagged with wgmesh's route protocol number.
public protocol RouteTable {
    /// wgmesh's routes of `family` (both families when nil).
    func routes(family: IPFamily?) throws -> [Route]
    /// Adds a route; fails if one with the same key exists, with `RouteTaken` when another program's route
    /// holds that key (wgmesh never changes such a route).
    func add(_ route: Route) throws
    /// Adds a route or replaces the one with the same key.
    func replace(_ route: Route) throws
    /// Deletes a route of wgmesh's; never one another program installed.
    func delete(_ route: Route) throws
}

/// How the WireGuard interface comes to exist: a kernel link over rtnetlink, or `wireguard-go` with a
/// tun device. Links, addresses and routes stay on rtnetlink either way.
public protocol WireGuardInterfaces {
    /// `kernel` or `userspace`, for logs.
    var backend: String { get }
    /// Makes sure the interface exists and can be configured; true when it was made now (empty).
    func ensure(named name: String, mtu: UInt32) throws -> Bool
    /// Removes the interface; false when there was none.
    func remove(named name: String) throws -> Bool
    /// Why the interface cannot be had yet, when another process provides it (wireguard-go of the
    /// wgmesh-device DaemonSet) and it does not answer; nil when `ensure` can go ahead.
    func unavailable(named name: String) -> String?
}

extension WireGuardInterfaces {
    public func unavailable(named name: String) -> String? { nil }
}
