import ArgumentParser
import Dispatch
import Logging
import Netlink
import Userspace
#if canImport(Glibc)
    import Glibc
#endif

/// `wgmesh userspace-device`: the wgmesh-device DaemonSet's process on every Node.
struct UserspaceDeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "userspace-device",
        abstract:
            """
            Run and supervise wireguard-go for the mesh interface where the kernel has no WireGuard, in a \
            container of its own.
            """,
        discussion: """
            The wgmesh-device DaemonSet (manifests/device.yaml): on a kernel without WireGuard it runs `wireguard-go \
            -f INTERFACE` in the foreground and starts it again when it dies, so that the tunnel does not end with \
            the agent's container; the agent, given --external-wireguard-go, configures it through its socket and \
            never starts one. A wireguard-go that already answers on the socket (one an agent started) is left \
            running, and replaced only when it stops answering. On a kernel with WireGuard it does nothing until \
            SIGTERM. SIGTERM ends its wireguard-go, and the interface with it.
            """
    )

    @Option(help: "The WireGuard interface: the agent's --interface.")
    var interface = "wgmesh0"

    @Option(
        help:
            """
            auto: nothing to do when the kernel has WireGuard (the agent's --backend auto uses it), else \
            wireguard-go; userspace: wireguard-go always; kernel: nothing to do. (default: auto)
            """,
        transform: Backend.parse)
    var backend = Backend.auto

    @Option(help: "The wireguard-go program (found on PATH).")
    var wireguardGo = "wireguard-go"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func run() throws {
        var logger = makeLogger("wgmesh.device", level: logLevel)
        logger[metadataKey: "interface"] = "\(interface)"
        let userspace: Bool
        let why: String
        switch backend {
        case .userspace: (userspace, why) = (true, "--backend userspace")
        case .kernel: (userspace, why) = (false, "--backend kernel")
        case .auto:
            do {
                _ = try KernelWireGuard()
                (userspace, why) = (false, "the kernel has WireGuard")
            } catch {
                (userspace, why) = (true, "the kernel has no WireGuard: \(error)")
            }
        }

        let device: UserspaceDevice?
        if userspace {
            let go = WireGuardGo(
                program: wireguardGo, device: UserspaceWireGuard(), network: try KernelNetwork(), logger: logger,
                launch: .here,
                afterExit: "starting it again (the agent re-applies its configuration to the new device)")
            device = UserspaceDevice(interface: interface, go: go, logger: logger)
        } else {
            device = nil
        }
        let terminated = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                device?.stop()
                terminated.signal()
            }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }

        guard let device else {
            logger.info("nothing to do: \(why), so the agent makes \(interface) in the kernel; waiting for SIGTERM")
            terminated.wait()
            return
        }
        logger.info("running wireguard-go for \(interface) until SIGTERM", metadata: ["why": "\(why)"])
        device.run()
        logger.info("stopped")
    }
}
