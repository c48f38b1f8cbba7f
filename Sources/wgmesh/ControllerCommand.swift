import Agent
import ArgumentParser
import Controller
import Dispatch
import Kube
import Logging
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// `wgmesh controller`: Pod CIDRs, sealed keypairs, endpoints and key rotation for every Node.
struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract:
            "Give every Node a Pod CIDR, a WireGuard keypair sealed to it, and an endpoint; rotate keys without a gap.",
        discussion: """
            Runs as a Deployment with two replicas: one leads through a Lease, the other waits. All state lives in \
            Node annotations (wgmesh.dev/...) and is rebuilt from them on start, so a restart or a failover never \
            hands out a CIDR twice. SIGTERM releases the Lease for an immediate handover.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Option(
        name: .customLong("cluster-cidr"),
        help:
            """
            Ranges to allocate Pod CIDRs from, separated by commas or in repeated flags: one per IP family, or \
            more (e.g. 10.244.0.0/16,fd00:10:244::/48).
            """
    )
    var clusterCIDRs: [String] = []

    @Option(
        name: .customLong("peer-cidr"),
        help:
            """
            Ranges to reserve outside peers' tunnel addresses from (Peer objects), one per IP family, outside the \
            cluster and Service CIDRs; every agent gets the same value. An empty value turns Peers off.
            """
    )
    var peerCIDRs: [String] = [Flags.defaultPeerCIDRs]

    @Option(name: .customLong("node-cidr-mask-size-ipv4"), help: "The size of each node's IPv4 Pod CIDR.")
    var nodeMaskIPv4 = 24

    @Option(name: .customLong("node-cidr-mask-size-ipv6"), help: "The size of each node's IPv6 Pod CIDR.")
    var nodeMaskIPv6 = 64

    @Option(
        help:
            """
            Where Pod CIDRs come from: node-spec (spec.podCIDRs, kube-controller-manager --allocate-node-cidrs), \
            wgmesh (--cluster-cidr), or auto (spec.podCIDRs when set).
            """
    )
    var cidrSource: String = "auto"

    @Option(help: "Node address types to publish as the endpoint, in order of preference.")
    var endpointAddressType: String = "InternalIP,ExternalIP"

    @Option(help: "The WireGuard port every node listens on.")
    var listenPort: UInt16 = 51820

    @Option(help: "How long peers get to pre-stage a node's next key before it switches (e.g. 10s).")
    var rotationGrace: String = "10s"

    @Option(help: "Rotate keys older than this (e.g. 720h); 0 or not given: never.")
    var maxKeyAge: String?

    @Option(
        help:
            """
            When a node that has keys publishes another enrollment key (reinstalled, or taken over): reissue (a \
            keypair sealed to the new key at once, with a Warning) or hold (keep its keys, with a Warning, until \
            an operator sets wgmesh.dev/accept-enrollment to the new key's fingerprint).
            """
    )
    var enrollmentChangePolicy: String = "reissue"

    @Option(help: "How many nodes may be in a rotation at once.")
    var maxConcurrentRotations = 1

    @Option(help: "Namespace of the leader-election Lease (default: $POD_NAMESPACE, else wgmesh-system).")
    var leaseNamespace: String?

    @Option(help: "Name of the leader-election Lease.")
    var leaseName = "wgmesh-controller"

    @Option(
        help:
            """
            This replica's name in the Lease and in Events; it must differ between replicas (default: $POD_NAME, \
            else the host name, followed by a random UUID in the Lease).
            """
    )
    var identity: String?

    @Option(
        help:
            """
            With --cidr-source auto: how long after a Node's creation to wait for spec.podCIDRs before allocating \
            a family that no Node has in spec.podCIDRs (e.g. 15s).
            """
    )
    var podCIDRSpecWait: String = "15s"

    @Option(help: "Where /healthz and /readyz listen (host:port, e.g. :9587 for every address); not given: nowhere.")
    var healthBindAddress: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let source = ControllerPolicy.CIDRSource(rawValue: cidrSource) else {
            throw ValidationError("--cidr-source \(cidrSource) is not one of auto, node-spec, wgmesh")
        }
        let cidrs = try Flags.clusterCIDRs(clusterCIDRs)
        guard let enrollmentChange = ControllerPolicy.EnrollmentChange(rawValue: enrollmentChangePolicy) else {
            throw ValidationError("--enrollment-change-policy \(enrollmentChangePolicy) is not one of reissue, hold")
        }
        let grace = try Flags.seconds(rotationGrace, flag: "--rotation-grace")
        let maxAge = try Self.keyAgeLimit(maxKeyAge)
        guard maxConcurrentRotations >= 1 else {
            throw ValidationError("--max-concurrent-rotations must be at least 1")
        }
        let types = endpointAddressType.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard !types.isEmpty else {
            throw ValidationError("--endpoint-address-type needs at least one type, e.g. InternalIP")
        }
        let specWait = try Flags.seconds(podCIDRSpecWait, flag: "--pod-cidr-spec-wait", allowZero: true)
        let health = try healthBindAddress.map {
            try Flags.bindAddress($0, flag: "--health-bind-address", example: 9587)
        }
        let name = identity ?? env["POD_NAME"] ?? ProcessInfo.processInfo.hostName
        // As client-go does: two processes never share a Lease identity unless told to.
        let leaseIdentity = identity ?? "\(name)_\(UUID().uuidString.lowercased())"
        let logger = makeLogger("wgmesh.controller", level: logLevel, identity: leaseIdentity)

        // A request is cut off well inside the gap between renew deadline (10 s) and lease duration (15 s):
        // a deposed leader's write cannot land after its successor has started.
        let client = try kube.client(
            userAgent: "wgmesh-controller/\(name)", fieldManager: MeshController.fieldManager,
            requestTimeout: .seconds(4))
        let controller: MeshController
        do {
            controller = try MeshController(
                api: client,
                configuration: .init(
                    clusterCIDRs: cidrs, nodeMaskIPv4: nodeMaskIPv4, nodeMaskIPv6: nodeMaskIPv6,
                    policy: ControllerPolicy(
                        cidrSource: source, endpointAddressTypes: types, listenPort: listenPort,
                        rotation: .init(grace: grace, maxKeyAge: maxAge), specWait: specWait,
                        enrollmentChange: enrollmentChange),
                    maxConcurrentRotations: maxConcurrentRotations, identity: name,
                    peerCIDRs: try Flags.peerCIDRs(peerCIDRs, clusterCIDRs: cidrs)),
                logger: logger)
        } catch {
            throw ValidationError("\(error)")
        }
        let elector = LeaderElector(
            api: client,
            configuration: .init(
                namespace: leaseNamespace ?? env["POD_NAMESPACE"] ?? "wgmesh-system", name: leaseName,
                identity: leaseIdentity), logger: logger)
        logger.info(
            "starting",
            metadata: [
                "clusterCIDRs": "\(cidrs.map(\.description).joined(separator: ","))", "cidrSource": "\(cidrSource)",
            ])
        // Ready means this replica reaches the API server, leader or standby: a standby is a working
        // replica waiting for the Lease, and marking it unready would only stall a rolling update.
        var server: HealthServer?
        if let (host, port) = health {
            server = try await HealthServer.start(
                host: host, port: port, metrics: nil,
                readiness: { elector.isConnected ? nil : "not connected to the API server" })
            logger.info("health listening", metadata: ["port": "\(server?.port ?? port)"])
        }
        do {
            try await runUntilSignalled {
                try await elector.run { await controller.run() }
            }
        } catch {
            try? await server?.stop()
            try? await client.shutdown()
            throw error
        }
        try await server?.stop()
        try await client.shutdown()
    }

    /// `--max-key-age`: nil (never) when not given or 0.
    static func keyAgeLimit(_ text: String?) throws -> TimeInterval? {
        guard let text else { return nil }
        let age = try Flags.seconds(text, flag: "--max-key-age", allowZero: true)
        return age == 0 ? nil : age
    }
}

func makeLogger(_ label: String, level: String, identity: String? = nil) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: level) ?? .info
    if let identity { logger[metadataKey: "replica"] = "\(identity)" }
    return logger
}

/// Runs `body` until it returns or SIGTERM/SIGINT arrives; then cancels it and waits for it to wind
/// down (the leader releases its Lease on the way out).
func runUntilSignalled(_ body: @escaping @Sendable () async throws -> Void) async throws {
    let task = Task { try await body() }
    var sources: [DispatchSourceSignal] = []
    for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        sources.append(source)
    }
    defer { sources.forEach { $0.cancel() } }
    do {
        try await task.value
    } catch is CancellationError {
    }
}
