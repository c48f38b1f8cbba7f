import CMnl
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// Link changes as rtnetlink announces them (the `RTMGRP_LINK` group), so that the agent repairs its
/// interface as soon as someone deletes it or sets it down, not at the next resync.
/// One thread reads it at a time (`@unchecked Sendable`: handed to the thread that reads it).
public final class LinkMonitor: @unchecked Sendable {
    public enum Change: Sendable, Hashable {
        case removed(LinkState)
        case changed(LinkState)
        /// The kernel dropped notifications (this socket's buffer was full): anything may have changed.
        case lost
    }

    private let socket: NetlinkSocket

    /// Listens inside the network namespace at `namespacePath` when given.
    public init(namespacePath: String? = nil) throws {
        socket = try NetlinkSocket(protocol: NETLINK_ROUTE, namespacePath: namespacePath, groups: UInt32(RTMGRP_LINK))
    }

    /// The changes announced within `timeout` (none if nothing changed).
    public func next(timeout: Duration = .seconds(1)) throws -> [Change] {
        var changes: [Change] = []
        let complete = try socket.receiveNotifications(timeout: timeout) { message in
            var reply = message
            let removed = message.type == UInt16(RTM_DELLINK)
            if removed { reply = ReceivedMessage(type: UInt16(RTM_NEWLINK), flags: message.flags, body: message.body) }
            guard let link = KernelNetwork.decodeLink(reply) else { return }
            changes.append(removed ? .removed(link) : .changed(link))
        }
        return complete ? changes : changes + [.lost]
    }
}

extension LinkMonitor.Change {
    /// Whether the interface named `interface` needs the agent now: deleted, set down, or unknown.
    public func needsRepair(of interface: String) -> Bool {
        switch self {
        case .removed(let link): link.name == interface
        case .changed(let link): link.name == interface && !link.isUp
        case .lost: true
        }
    }
}
