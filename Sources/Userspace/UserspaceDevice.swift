import Logging
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// `wgmesh userspace-device`: one interface's wireguard-go, run and supervised by a process of its own (the
/// wgmesh-device DaemonSet's container), so that the data plane does not end when the agent's container
/// does. It starts wireguard-go when nothing answers on the interface's socket and again when its own dies;
/// a wireguard-go of another process that answers (one an agent without --external-wireguard-go started) is
/// left as it is, and replaced only once it stops answering. The agent configures whichever runs.
/// Starting, probing and ending wireguard-go are `WireGuardGo`'s, as in the agent.
public final class UserspaceDevice: @unchecked Sendable {
    public let interface: String
    let go: WireGuardGo
    let logger: Logger
    let pollInterval: Duration
    let stopped = Atomic(false)

    /// `go` must start wireguard-go here (`Launch.here`).
    public init(interface: String, go: WireGuardGo, logger: Logger, pollInterval: Duration = .milliseconds(100)) {
        precondition(go.launch == .here, "UserspaceDevice starts wireguard-go itself")
        self.interface = interface
        self.go = go
        self.logger = logger
        self.pollInterval = pollInterval
    }

    /// Asks `run` to end its wireguard-go and return (a signal handler may call it).
    public func stop() { stopped.store(true, ordering: .relaxed) }

    /// Until `stop()`: keeps a wireguard-go answering on the interface's socket. Then ends the one it
    /// started (the interface goes with it, as it would with the container) and returns.
    public func run() {
        var adopted = false
        var failures = 0
        while !stopped.load(ordering: .relaxed) {
            if go.child(of: interface) == nil {
                // Another process's wireguard-go: probed with a bare connection, cheap at any number of peers.
                if go.device.accepts(interface) {
                    if !adopted {
                        logger.notice(
                            """
                            another wireguard-go answers on \(go.device.socketPath(interface)): left running; \
                            this one starts its own when it stops answering
                            """,
                            metadata: ["interface": "\(interface)"])
                        adopted = true
                    }
                } else {
                    if adopted {
                        logger.warning(
                            "the other wireguard-go stopped answering: starting this one's",
                            metadata: ["interface": "\(interface)"])
                        adopted = false
                    }
                    do {
                        _ = try go.ensure(named: interface, mtu: 0)
                        failures = 0
                    } catch {
                        failures += 1
                        let delay = Duration.milliseconds(250) * (1 << min(failures - 1, 7))  // up to 32 s
                        logger.error(
                            "cannot start wireguard-go; trying again",
                            metadata: [
                                "interface": "\(interface)", "error": "\(error)",
                                "retryIn": "\(delay)",
                            ])
                        sleep(for: delay)
                        continue
                    }
                }
            }
            sleep(for: pollInterval)
        }
        go.stop(named: interface)
    }

    /// Sleeps `duration`, or less once `stop()` is called.
    func sleep(for duration: Duration) {
        let end = ContinuousClock.now + duration
        while !stopped.load(ordering: .relaxed) && ContinuousClock.now < end {
            let left = min(end - ContinuousClock.now, .milliseconds(100))
            let us = left.components.seconds * 1_000_000 + left.components.attoseconds / 1_000_000_000_000
            if us > 0 { usleep(useconds_t(us)) }
        }
    }
}
