import CMnl
import WGMeshCore

/// The kernel's WireGuard, configured over generic netlink.
public final class KernelWireGuard: WireGuardDevice {
    private let socket: NetlinkSocket
    private let familyID: UInt16
    private let messageCapacity: Int
    /// Largest SET message: ~115 simple peers, where `wg` (one page) sends ~30. In the VM kernel,
    /// 10,000 peers took 8.3-8.7 s in 16 KiB messages and 9.7 s in 32 KiB ones. Nested attribute
    /// lengths are 16-bit, so a message must stay under 64 KiB.
    public static let defaultMessageCapacity = 16 * 1024
    /// SET messages sent since this object was made (what a benchmark or a log reports).
    public private(set) var setMessagesSent = 0

    /// Connects to the kernel, inside the network namespace at `namespacePath` when given.
    public init(namespacePath: String? = nil, messageCapacity: Int = KernelWireGuard.defaultMessageCapacity) throws {
        socket = try NetlinkSocket(protocol: NETLINK_GENERIC, namespacePath: namespacePath)
        familyID = try GenericNetlink.resolveFamily(
            WG.familyName, on: socket,
            hint: "the kernel has no WireGuard: run `modprobe wireguard` (Linux 5.6 or later)")
        self.messageCapacity = messageCapacity
    }

    public func device(named name: String) throws -> DeviceState {
        let operation = "get wireguard device \"\(name)\""
        try InterfaceName.validate(name, operation: operation)
        let m = MessageBuilder(capacity: 256, type: familyID, flags: 0)
        m.putHeader(genlmsghdr(cmd: WG.cmdGetDevice, version: WG.version, reserved: 0))
        m.put(WG.deviceIfname, string: name)
        var device = DeviceState(name: name)
        var peers: [WireGuardMessages.PeerEntry] = []
        try socket.dump(m, operation: operation) { reply in
            try WireGuardMessages.merge(
                messageAttributes: reply.attributes(after: MemoryLayout<genlmsghdr>.size),
                into: &device, peers: &peers)
        }
        device.peers = peers.map(PeerState.init)
        return device
    }

    public func configure(_ name: String, _ config: DeviceConfig) throws {
        let messages = try WireGuardMessages.setDevice(
            family: familyID, name: name, config: config, capacity: messageCapacity)
        for (i, m) in messages.enumerated() {
            try socket.request(m, operation: Self.describe(name: name, config: config, message: i, of: messages.count))
            setMessagesSent += 1
        }
    }

    static func describe(name: String, config: DeviceConfig, message: Int, of count: Int) -> String {
        if config.peers.count == 1 {
            let p = config.peers[0]
            return "\(p.remove ? "remove" : "set") peer \(p.publicKey) on \(name)"
        }
        return "set wireguard device \(name) (message \(message + 1) of \(count), \(config.peers.count) peers)"
    }
}

/// Generic netlink's controller: name-to-id lookup of families.
enum GenericNetlink {
    static func resolveFamily(_ name: String, on socket: NetlinkSocket, hint: String) throws -> UInt16 {
        let m = MessageBuilder(capacity: 256, type: UInt16(GENL_ID_CTRL), flags: 0)
        m.putHeader(genlmsghdr(cmd: UInt8(CTRL_CMD_GETFAMILY), version: 1, reserved: 0))
        m.put(UInt16(CTRL_ATTR_FAMILY_NAME), string: name)
        var id: UInt16?
        do {
            try socket.request(m, operation: "resolve generic netlink family \(name)") { reply in
                id =
                    reply.attributes(after: MemoryLayout<genlmsghdr>.size).first {
                        $0.type == UInt16(CTRL_ATTR_FAMILY_ID)
                    }?.u16
            }
        } catch var error as NetlinkError where error.errno == ENOENT {
            error.detail = hint
            throw error
        }
        guard let id else {
            throw NetlinkError.invalid(
                "resolve generic netlink family \(name)", "the kernel's answer carried no family id")
        }
        return id
    }
}
