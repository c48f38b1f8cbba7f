import ArgumentParser
// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Netlink
import WGMeshCore

/// `wgmesh wg …`: inspect and set a kernel WireGuard interface through wgmesh's own netlink code.
struct WireGuardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wg",
        abstract: "Show or configure a kernel WireGuard interface through wgmesh's netlink code (like wg(8)).",
        subcommands: [Show.self, SetConf.self, SetPeer.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an interface's configuration and peers (private key hidden).")
        @Argument(help: "The WireGuard interface, for example wgmesh0.") var interface: String
        @OptionGroup var namespace: NamespaceOption

        func run() throws {
            let d = try KernelWireGuard(namespacePath: namespace.netns).device(named: interface)
            print("interface: \(d.name)")
            if let key = d.publicKey { print("  public key: \(key)") }
            print("  private key: \(d.privateKey == nil ? "(none)" : "(hidden)")")
            print("  listening port: \(d.listenPort)")
            if d.firewallMark != 0 { print("  fwmark: 0x\(String(d.firewallMark, radix: 16))") }
            for p in d.peers {
                print("\npeer: \(p.publicKey)")
                if p.presharedKey != nil { print("  preshared key: (hidden)") }
                if let e = p.endpoint { print("  endpoint: \(e)") }
                print(
                    """
                      allowed ips: \
                    \(p.allowedIPs.isEmpty ? "(none)" : p.allowedIPs.map(\.description).joined(separator: ", "))
                    """
                )
                if let h = p.lastHandshake { print("  latest handshake: \(h.seconds) (unix time)") }
                if p.receivedBytes + p.transmittedBytes > 0 {
                    print("  transfer: \(p.receivedBytes) B received, \(p.transmittedBytes) B sent")
                }
                if p.persistentKeepalive != 0 {
                    print("  persistent keepalive: every \(p.persistentKeepalive) seconds")
                }
            }
        }
    }

    struct SetConf: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "setconf",
            abstract: "Replace an interface's configuration with a wg(8) configuration file, as `wg setconf` does.")
        @Argument(help: "The WireGuard interface.") var interface: String
        @Argument(help: "A wg(8) configuration file ([Interface] and [Peer] sections).") var file: String
        @OptionGroup var namespace: NamespaceOption
        @Flag(help: "Print how many netlink messages were sent.") var stats = false
        @Option(help: ArgumentHelp("Largest netlink message in bytes (for benchmarks).", visibility: .hidden))
        var messageCapacity = KernelWireGuard.defaultMessageCapacity

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file): check the path and its permissions")
            }
            let config: DeviceConfig
            do { config = try WireGuardConfigFile.parse(String(decoding: data, as: UTF8.self)) } catch {
                throw ValidationError("\(file): \(error)")
            }
            let wg = try KernelWireGuard(namespacePath: namespace.netns, messageCapacity: messageCapacity)
            let started = ContinuousClock.now
            try wg.configure(interface, config)
            let elapsed = ContinuousClock.now - started
            if stats {
                let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                print("\(config.peers.count) peers in \(wg.setMessagesSent) netlink messages, \(Int(ms)) ms in netlink")
            }
        }
    }

    struct SetPeer: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-peer",
            abstract: "Add, change or remove one peer, in one netlink message.")
        @Argument(help: "The WireGuard interface.") var interface: String
        @Argument(help: "The peer's base64 public key.") var publicKey: String
        @Option(
            name: .customLong("allowed-ips"), help: "Replace the peer's allowed IPs with these (comma-separated CIDRs)."
        ) var allowedIPs: String?
        @Option(help: "The peer's endpoint, host:port (IPv6 in brackets).") var endpoint: String?
        @Option(help: "Persistent keepalive in seconds (0 turns it off).") var persistentKeepalive: UInt16?
        @Flag(help: "Change the peer only if it exists.") var updateOnly = false
        @Flag(help: "Remove the peer.") var remove = false
        @OptionGroup var namespace: NamespaceOption
        @Flag(help: "Print how many netlink messages were sent.") var stats = false

        func run() throws {
            var peer = PeerConfig(
                publicKey: try WireGuardKey(base64: publicKey), persistentKeepalive: persistentKeepalive,
                remove: remove, updateOnly: updateOnly)
            if let endpoint { peer.endpoint = try Endpoint(endpoint) }
            if let allowedIPs {
                peer.allowedIPs = try allowedIPs.split(separator: ",").map { try IPPrefix($0.filter { $0 != " " }) }
                peer.replaceAllowedIPs = true
            }
            let wg = try KernelWireGuard(namespacePath: namespace.netns)
            try wg.configure(interface, DeviceConfig(peers: [peer]))
            if stats { print("1 peer in \(wg.setMessagesSent) netlink message\(wg.setMessagesSent == 1 ? "" : "s")") }
        }
    }
}

/// `--netns`, shared by every `wgmesh wg` command.
struct NamespaceOption: ParsableArguments {
    @Option(help: "Open the interface inside this network namespace (a path such as /run/netns/NAME).") var netns:
        String?
}
