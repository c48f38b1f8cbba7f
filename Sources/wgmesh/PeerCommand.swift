import ArgumentParser
import CLI
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh peer`: machines outside the cluster that reach the Pod network over the mesh.
struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Let a machine outside the cluster (a laptop, a VM) reach the Pod network over WireGuard.",
        discussion: """
            A Peer (peers.wgmesh.dev) is one outside machine: the controller reserves its tunnel addresses from \
            --peer-cidr and chooses its gateway node (a node labelled wgmesh.dev/peer-gateway=true, else any); \
            the gateway holds it as a WireGuard peer and every other node routes its addresses through the gateway.
            """,
        subcommands: [PeerAddCommand.self, PeerConfigCommand.self, PeerListCommand.self, PeerRemoveCommand.self]
    )
}

struct PeerAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Make a keypair here, create the Peer, wait for its address, and write its wg-quick file.",
        discussion: """
            The private key is made on this machine and written only into the file (mode 0600); the cluster gets \
            the public key. Bring the tunnel up with `sudo wg-quick up ./NAME.conf`. When the controller refuses \
            the Peer (its key or networks conflict) or does not admit it within --timeout, the Peer is deleted \
            again and nothing is written.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Argument(help: "The Peer's name (a DNS subdomain; also the wg-quick interface's name, at most 15 characters).")
    var name: String

    @Option(
        name: .customLong("allowed-ip"),
        help: ArgumentHelp(
            "A network behind the peer, routed to it (a VM's or a site's); repeat for more.", valueName: "cidr"))
    var allowedIPs: [String] = []

    @Option(
        help: ArgumentHelp(
            "host:port where the gateway can reach the peer; leave out behind NAT.", valueName: "host:port"))
    var endpoint: String?

    @Option(help: "Seconds between keepalives, both ways (0: off); 25 keeps a NAT mapping open.")
    var persistentKeepalive: UInt16 = OutsidePeer.defaultKeepalive

    @Option(help: ArgumentHelp("When access ends (RFC 3339, e.g. 2026-12-31T18:00:00Z).", valueName: "time"))
    var expiresAt: String?

    @Option(help: ArgumentHelp("How long from now access lasts (e.g. 8h, 90m).", valueName: "duration"))
    var expiresIn: String?

    @Option(
        name: .customLong("service-cidr"),
        help: ArgumentHelp(
            "Also route the cluster's Service CIDR (e.g. 10.96.0.0/12) into the tunnel.", valueName: "cidr"))
    var serviceCIDRs: [String] = []

    @Option(
        name: [.short, .customLong("output")],
        help: ArgumentHelp("The wg-quick file (default: ./NAME.conf).", valueName: "path"))
    var output: String?

    @Option(help: "How long to wait for the controller to admit the Peer (e.g. 60s).")
    var timeout = "60s"

    func validate() throws {
        guard name.count <= 15,
            name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }),
            name.first?.isLetter == true || name.first?.isNumber == true
        else {
            throw ValidationError(
                """
                \(name) cannot name a Peer and its wg-quick interface: use at most 15 lowercase letters, digits, '-' \
                or '.'
                """
            )
        }
        if expiresAt != nil, expiresIn != nil { throw ValidationError("give --expires-at or --expires-in, not both") }
        _ = try expiry(now: Date())
        _ = try Flags.clusterCIDRs(serviceCIDRs, flag: "--service-cidr")
        _ = try Flags.seconds(timeout, flag: "--timeout")
    }

    func expiry(now: Date) throws -> Date? {
        if let expiresAt {
            guard let at = RFC3339.parse(expiresAt) else {
                throw ValidationError("--expires-at \(expiresAt): write an RFC 3339 time, e.g. 2026-12-31T18:00:00Z")
            }
            guard at > now else { throw ValidationError("--expires-at \(expiresAt) is in the past") }
            return at
        }
        return try expiresIn.map { now.addingTimeInterval(try Flags.seconds($0, flag: "--expires-in")) }
    }

    func run() async throws {
        let path = output ?? "./\(name).conf"
        // Before anything is created: a file in the way stops here, not after the Peer exists.
        guard !FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("\(path) exists: remove it, or write elsewhere with --output")
        }
        var request = Peers.Request(name: name)
        request.allowedIPs = allowedIPs
        request.endpoint = endpoint
        request.persistentKeepalive = persistentKeepalive
        request.expiresAt = try expiry(now: Date())
        let services = try Flags.clusterCIDRs(serviceCIDRs, flag: "--service-cidr")
        let seconds = try Flags.seconds(timeout, flag: "--timeout")
        let keys = WireGuardKeyPair.generate()
        let text = try await kube.withClient {
            try await Peers.add(
                $0, request, keys: keys, serviceCIDRs: services, timeout: .milliseconds(Int64(seconds * 1000))
            ) { print($0) }
        }
        try PeerAddCommand.writePrivate(text, to: path)
        print("wrote \(path): bring the tunnel up with `sudo wg-quick up \(path)`")
    }

    /// Creates `path` readable by its owner only, failing when it exists: it holds a private key.
    static func writePrivate(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else {
            throw CLIError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

struct PeerConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print a Peer's wg-quick file again (after its gateway moved, or a gateway's key rotated).",
        discussion: "The private key is not in the cluster: without --private-key-file, a comment stands in its place."
    )

    @OptionGroup var kube: KubeOptions

    @Argument(help: "The Peer's name.")
    var name: String

    @Option(
        help: ArgumentHelp(
            "A file holding the peer's private key (base64, as `wg genkey` writes it).", valueName: "path"))
    var privateKeyFile: String?

    @Option(name: .customLong("service-cidr"), help: ArgumentHelp("Also route the Service CIDR.", valueName: "cidr"))
    var serviceCIDRs: [String] = []

    func run() async throws {
        var key: WireGuardKey?
        if let privateKeyFile {
            guard let data = FileManager.default.contents(atPath: privateKeyFile) else {
                throw ValidationError("cannot read \(privateKeyFile): check the path")
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            do { key = try WireGuardKey(base64: text) } catch {
                throw ValidationError("\(privateKeyFile) does not hold a WireGuard private key: \(error)")
            }
        }
        let services = try Flags.clusterCIDRs(serviceCIDRs, flag: "--service-cidr")
        let text = try await kube.withClient {
            try await Peers.config($0, name: name, privateKey: key, serviceCIDRs: services)
        }
        print(text, terminator: "")
    }
}

struct PeerListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the Peers: addresses, gateway, Ready, expiry and last handshake.")

    @OptionGroup var kube: KubeOptions

    @Option(name: [.short, .customLong("output")], help: "json or yaml; a table when left out.")
    var output: String?

    func run() async throws {
        let format = try OutputFormat(flag: output)
        let now = Date()
        let objects = try await kube.withClient { try await Peers.list($0) }
        guard let objects else { throw CLIError(Peers.notServedMessage) }
        let rows = Peers.rows(objects, now: now)
        switch format {
        case .table, .wide: print(rows.isEmpty ? "No Peers found.\n" : Peers.table(rows, now: now), terminator: "")
        case .json, .yaml: print(try format.encode(rows), terminator: "")
        }
    }
}

struct PeerRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Delete a Peer: every node drops it, and the controller frees its addresses.")

    @OptionGroup var kube: KubeOptions

    @Argument(help: "The Peer's name.")
    var name: String

    func run() async throws {
        try await kube.withClient { try await Peers.remove($0, name: name) }
        print("Peer \(name) removed: every node drops it at its next pass")
    }
}
