import Agent
import ArgumentParser
import Dispatch
import Kube
import Logging
import Netlink
import ServiceLifecycle
import Synchronization
import Userspace
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// `wgmesh agent`: the DaemonSet's process on every Node.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract:
            """
            Turn every Node's wgmesh annotations into this node's WireGuard interface, peers, routes, firewall \
            table and CNI configuration.
            """,
        discussion: """
            Runs on every Node with the host's network (a DaemonSet). On first start it makes the node's enrollment \
            key under --state-dir and publishes its public half; the controller seals the node's WireGuard key to it. \
            In strict mode (the default) the cluster CIDRs are routed into the tunnel before anything else, and \
            nftables drops Pod traffic that would leave unencrypted. SIGTERM stops watching and leaves the data plane \
            working; SIGHUP runs the periodic full resync at once; \
            --cleanup removes what the agent made.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Option(help: "This Node's name (default: $NODE_NAME, as the downward API gives it).")
    var nodeName: String?

    @Option(
        name: .customLong("cluster-cidr"),
        help:
            """
            The cluster CIDRs, as the controller's, separated by commas or in repeated flags (e.g. \
            10.244.0.0/16,fd00:10:244::/48).
            """
    )
    var clusterCIDRs: [String] = []

    @Option(
        name: .customLong("peer-cidr"),
        help:
            """
            The outside peers' address ranges, as the controller's --peer-cidr: routed into the tunnel in strict \
            mode and never masqueraded. An empty value: Peers are not read.
            """
    )
    var peerCIDRs: [String] = [Flags.defaultPeerCIDRs]

    @Option(help: "The WireGuard interface.")
    var interface = "wgmesh0"

    @Option(
        help:
            """
            kernel (WireGuard in the kernel, over generic netlink), userspace (wireguard-go, over its UAPI \
            socket), or auto: the kernel when it has WireGuard. (default: auto)
            """,
        transform: Backend.parse)
    var backend = Backend.auto

    @Flag(
        name: .customLong("external-wireguard-go"),
        help: """
            With the userspace backend: wireguard-go comes from `wgmesh userspace-device` (the wgmesh-device \
            DaemonSet), whose container does not end with the agent's. The agent never starts one: it waits, not \
            ready, until one answers on the \
            interface's socket.
            """)
    var externalWireGuardGo = false

    @Option(help: "Where the enrollment key is kept (mode 0600).")
    var stateDir = "/var/lib/wgmesh"

    @Option(help: "Where the CNI configuration 10-wgmesh.conflist is written.")
    var cniConfDir = "/etc/cni/net.d"

    @Option(
        help:
            "Route the cluster CIDRs into the tunnel and drop Pod traffic that would leave another way (true or false)."
    )
    var strict = true

    @Option(help: "The tunnel MTU (default: the endpoint interface's MTU less 80).")
    var mtu: UInt32?

    @Option(
        help: "Seconds between keepalives to each peer (0 turns them off); they keep handshakes fresh on idle links.")
    var persistentKeepalive: UInt16 = 25

    @Option(help: "A full pass this often even when nothing changes, repairing changes made by hand (e.g. 60s).")
    var resyncPeriod = "60s"

    @Option(help: "Where /metrics, /healthz and /readyz listen (host:port; :9586 is every address).")
    var metricsBindAddress = ":9586"

    @Flag(
        help:
            """
            Remove what the agent made on this node (interface, routes, CNI bridge, nftables table, CNI file, \
            enrollment key, its annotations and condition), then exit.
            """
    )
    var cleanup = false

    @Option(
        help: """
            host-local's data folder (its dataDir): --cleanup removes nothing while a Pod on this node still holds an \
            address from wgmesh's network there, since the container runtime tears a Pod's network down through the \
            CNI configuration.
            """)
    var ipamDir = "/var/lib/cni/networks"

    @Flag(
        help: """
            With --cleanup: while Pods still hold addresses, try again every 10 s instead of failing; once done, stay \
            until \
            SIGTERM instead of exiting (the wgmesh-cleanup DaemonSet, manifests/cleanup/).
            """)
    var waitAfterCleanup = false

    @Flag(help: "Print the plan and the diff this node would apply, change nothing, and exit.")
    var dryRun = false

    @Flag(
        help:
            """
            Turn IPv4 and IPv6 forwarding on and exit, needing no other flag: the DaemonSet's privileged init \
            container, since /proc/sys is read-only in the agent's own.
            """
    )
    var forwardingOnly = false

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func run() async throws {
        if forwardingOnly {
            return try MeshAgent.enableForwarding(
                logger: makeLogger("wgmesh.agent", level: logLevel, identity: ProcessInfo.processInfo.hostName))
        }
        let env = ProcessInfo.processInfo.environment
        guard let name = nodeName ?? env["NODE_NAME"], !name.isEmpty else {
            throw ValidationError("--node-name is required (or $NODE_NAME, from the downward API's spec.nodeName)")
        }
        let cidrs = try Flags.clusterCIDRs(clusterCIDRs)
        guard !cidrs.isEmpty else {
            throw ValidationError("--cluster-cidr is required: the ranges the controller allocates Pod CIDRs from")
        }
        let peers = try Flags.peerCIDRs(peerCIDRs, clusterCIDRs: cidrs)
        let resync = try Flags.seconds(resyncPeriod, flag: "--resync-period")
        let (host, port) = try Flags.bindAddress(metricsBindAddress)
        let logger = makeLogger("wgmesh.agent", level: logLevel, identity: name)
        let client = try kube.client(userAgent: "wgmesh-agent/\(name)", fieldManager: MeshAgent.fieldManager)
        do {
            try await run(
                client: client, name: name, clusterCIDRs: cidrs, peerCIDRs: peers, resync: resync, host: host,
                port: port, logger: logger)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    /// `--cleanup`, `--dry-run`, or the agent until SIGTERM.
    func run(
        client: KubeClient, name: String, clusterCIDRs cidrs: [IPPrefix], peerCIDRs: [IPPrefix], resync: Double,
        host: String?, port: Int, logger: Logger
    ) async throws {
        let network = try KernelNetwork()
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let kernel = try Self.kernel(
            backend: backend, externalWireGuardGo: externalWireGuardGo, network: network, logger: logger
        ) { wake.yield() }
        let agent = MeshAgent(
            api: client, kernel: kernel,
            configuration: .init(
                nodeName: name, interface: interface, stateDirectory: stateDir, cniConfDirectory: cniConfDir,
                clusterCIDRs: cidrs,
                strict: strict, mtu: mtu, persistentKeepalive: persistentKeepalive,
                resyncPeriod: .milliseconds(Int64(resync * 1000)), peerCIDRs: peerCIDRs), logger: logger)

        if cleanup { return try await runCleanup(agent, logger: logger) }
        if dryRun {
            let nodes = try await client.listAll(.nodes, metadataOnly: true).items
            // Without the Peer CRD (a 404), there is no Peer to plan.
            let peers = peerCIDRs.isEmpty ? [] : ((try? await client.listAll(.peers, namespace: nil).items) ?? [])
            print(try agent.dryRun(nodes, peers: peers))
            return
        }
        logger.info(
            "starting",
            metadata: [
                "clusterCIDRs": "\(cidrs.map(\.description).joined(separator: ","))", "strict": "\(strict)",
                "metrics": "\(metricsBindAddress)",
            ])
        // SIGHUP: a full pass now, as the periodic resync makes (reads the kernel, repairs drift).
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP)
        hangup.setEventHandler { wake.yield() }
        hangup.resume()
        defer { hangup.cancel() }
        // The interface deleted or set down by hand: a full pass now, not at the next resync.
        let stopWatching = Atomic(false)
        let monitor = try LinkMonitor()
        // A queue of its own: the read blocks its thread for up to a second at a time.
        DispatchQueue(label: "wgmesh.link-watch").async { [interface] in
            while !stopWatching.load(ordering: .relaxed) {
                do {
                    if try monitor.next().contains(where: { $0.needsRepair(of: interface) }) { wake.yield() }
                } catch {
                    logger.error(
                        "stopped watching link changes; the resync still repairs the interface",
                        metadata: ["error": "\(error)"])
                    return
                }
            }
        }
        defer { stopWatching.store(true, ordering: .relaxed) }
        // SIGTERM and SIGINT shut down gracefully: the watching stops, the data plane stays.
        let group = ServiceGroup(
            services: [
                AgentService(agent, wakeups: wakeups),
                HealthService(host: host, port: port, agent: agent, logger: logger),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }

    /// `--cleanup`: refused while Pods hold addresses (retried every 10 s with `--wait-after-cleanup`, which then
    /// stays until SIGTERM, so that a DaemonSet's Pod neither exits nor cleans up again and again).
    func runCleanup(_ agent: MeshAgent, logger: Logger) async throws {
        let (terminated, terminate) = AsyncStream<Void>.makeStream()
        signal(SIGTERM, SIG_IGN)
        let sigterm = DispatchSource.makeSignalSource(signal: SIGTERM)
        sigterm.setEventHandler { terminate.yield() }
        sigterm.resume()
        defer { sigterm.cancel() }
        /// Waits `duration` or until SIGTERM; false after SIGTERM.
        func wait(_ duration: Duration?) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await _ in terminated { return false }
                    return false
                }
                if let duration { group.addTask { (try? await Task.sleep(for: duration)) != nil } }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        }
        while true {
            do {
                for line in try await agent.cleanup(ipamDirectory: ipamDir) { print("removed \(line)") }
                break
            } catch let refused as CleanupRefused where waitAfterCleanup {
                logger.warning("cleanup waits for the node's Pods to go", metadata: ["why": "\(refused)"])
                guard await wait(.seconds(10)) else { return }
            }
        }
        guard waitAfterCleanup else { return }
        print("cleanup done: waiting for SIGTERM (delete the wgmesh-cleanup DaemonSet once `wgmesh uninstall` has run)")
        _ = await wait(nil)
    }

    /// The WireGuard backend: the kernel's, or wireguard-go's; links, addresses, routes and nftables
    /// are the kernel's either way.
    /// With `externalWireGuardGo`, wireguard-go is another process's (the wgmesh-device DaemonSet's).
    static func kernel(
        backend: Backend, externalWireGuardGo: Bool = false, network: KernelNetwork, logger: Logger,
        wake: @escaping @Sendable () -> Void
    ) throws -> MeshAgent.Kernel {
        let started =
            externalWireGuardGo
            ? "started by `wgmesh userspace-device`, as --external-wireguard-go says" : "started by the agent"
        func userspace() -> MeshAgent.Kernel {
            let device = UserspaceWireGuard()
            return MeshAgent.Kernel(
                interfaces: WireGuardGo(
                    device: device, network: network, logger: logger,
                    launch: externalWireGuardGo ? .elsewhere : .here, exited: wake),
                wireGuard: device, network: network, filter: NFTables())
        }
        switch backend {
        case .userspace:
            logger.info(
                "WireGuard backend: userspace (wireguard-go), as --backend says",
                metadata: ["wireguard-go": "\(started)"])
            return userspace()
        case .kernel, .auto:
            do {
                let kernel = MeshAgent.Kernel(
                    interfaces: KernelInterfaces(network: network), wireGuard: try KernelWireGuard(), network: network,
                    filter: NFTables())
                logger.info(
                    "WireGuard backend: kernel",
                    metadata: ["why": "\(backend == .auto ? "the kernel has WireGuard" : "--backend kernel")"])
                return kernel
            } catch  where backend == .auto {
                logger.info(
                    "WireGuard backend: userspace (wireguard-go)",
                    metadata: [
                        "why": "the kernel has no WireGuard: \(error)",
                        "wireguard-go": "\(started)",
                    ])
                return userspace()
            } catch {
                throw ValidationError(
                    "--backend kernel: \(error). Use --backend userspace (wireguard-go) on a kernel without WireGuard")
            }
        }
    }

}
