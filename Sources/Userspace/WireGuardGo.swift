import CSpawn
import Logging
import Synchronization
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// Userspace WireGuard interfaces: `wireguard-go -f NAME`, started and supervised here, or (`Launch.elsewhere`)
/// by another process whose socket is waited for. Started here: a wireguard-go already answering on the
/// interface's socket (left by an earlier agent, or the wgmesh-device DaemonSet's) is adopted as it is; one
/// of ours that dies is started again, and `exited` asks the agent for a pass, which re-applies the whole
/// plan to the new, empty device.
public final class WireGuardGo: WireGuardInterfaces, @unchecked Sendable {
    /// Who starts wireguard-go.
    public enum Launch: Sendable {
        /// This process: the agent without --external-wireguard-go, and `wgmesh userspace-device`. A
        /// wireguard-go started here ends with this process's container.
        case here
        /// Another process (`wgmesh userspace-device`, the wgmesh-device DaemonSet), whose container does
        /// not end with the agent's: `ensure` waits for its socket, and never starts or removes anything.
        case elsewhere
    }

    public let program: String
    public let device: UserspaceWireGuard
    public let launch: Launch
    /// Used by the agent's passes only, one at a time; the watcher threads touch `children` alone.
    let network: any LinkTable
    let logger: Logger
    let exited: @Sendable () -> Void
    /// What the log says follows when a wireguard-go of ours exits.
    let afterExit: String
    let children = Mutex<[String: pid_t]>([:])
    /// How long `ensure` waits for a socket to answer: one started here, or the other process's.
    let startTimeout: Duration

    public var backend: String { "userspace" }

    public init(
        program: String = "wireguard-go", device: UserspaceWireGuard, network: any LinkTable, logger: Logger,
        launch: Launch = .here, startTimeout: Duration = .seconds(10),
        afterExit: String = "starting it again and re-applying the whole configuration",
        exited: @escaping @Sendable () -> Void = {}
    ) {
        self.program = program
        self.device = device
        self.network = network
        self.logger = logger
        self.launch = launch
        self.startTimeout = startTimeout
        self.afterExit = afterExit
        self.exited = exited
    }

    /// Polls of 50 ms in `startTimeout`.
    var polls: Int { max(1, Int(startTimeout / .milliseconds(50))) }

    public func ensure(named name: String, mtu: UInt32) throws -> Bool {
        if device.answers(name) { return false }
        if launch == .elsewhere {
            // The other process starts it again after a crash: wait, and touch nothing. True when it was
            // not answering at first: a new device, empty.
            for _ in 0..<polls {
                usleep(50_000)
                if device.answers(name) { return true }
            }
            throw UserspaceError(
                operation: "wait for \(name)", errno: nil, detail: Self.waiting(for: device.socketPath(name)))
        }
        if let link = try network.link(named: name) {
            // A tun device nobody serves (its wireguard-go died): remove it so a new one can take the name.
            guard link.kind == "tun" else { throw InterfaceError.notWireGuard(name, kind: link.kind) }
            try network.deleteLink(index: link.index)
        }
        unlink(device.socketPath(name))
        let pid = try spawn([program, "-f", name])
        children.withLock { $0[name] = pid }
        logger.info("wireguard-go started", metadata: ["interface": "\(name)", "pid": "\(pid)"])
        for _ in 0..<polls {
            if device.answers(name) {
                watch(pid, name)
                return true
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                children.withLock { _ = $0.removeValue(forKey: name) }
                throw UserspaceError(
                    operation: "start \(program) for \(name)", errno: nil,
                    detail: "it \(Self.ended(status)) before its socket answered; its output is in this container's log"
                )
            }
            usleep(50_000)
        }
        children.withLock { _ = $0.removeValue(forKey: name) }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        throw UserspaceError(
            operation: "start \(program) for \(name)", errno: nil,
            detail: "its socket \(device.socketPath(name)) did not answer within \(startTimeout)")
    }

    /// With `Launch.elsewhere`: why the interface is not there yet, until its wireguard-go answers.
    public func unavailable(named name: String) -> String? {
        guard launch == .elsewhere, !device.answers(name) else { return nil }
        return Self.waiting(for: device.socketPath(name))
    }

    static func waiting(for socket: String) -> String {
        """
        no wireguard-go answers on \(socket) yet: with --external-wireguard-go it comes from `wgmesh \
        userspace-device` 
        """
            + "(the wgmesh-device DaemonSet, manifests/device.yaml); is its Pod running on this node?"
    }

    /// The wireguard-go this process started for the interface and still runs, if any.
    public func child(of name: String) -> pid_t? { children.withLock { $0[name] } }

    /// Ends the wireguard-go this process started for the interface (SIGTERM, then SIGKILL after
    /// `grace`), silently: it is not started again. False when there was none.
    @discardableResult
    public func stop(named name: String, grace: Duration = .seconds(10)) -> Bool {
        guard let pid = children.withLock({ $0.removeValue(forKey: name) }) else { return false }
        // Reaped here or by its watcher thread, whichever comes first (the other then gets ECHILD).
        func gone() -> Bool {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            return r == pid || (r < 0 && errno == ECHILD)
        }
        func wait(_ limit: Duration) -> Bool {
            let end = ContinuousClock.now + limit
            while !gone() {
                guard ContinuousClock.now < end else { return false }
                usleep(20_000)
            }
            return true
        }
        kill(pid, SIGTERM)
        if !wait(grace) {
            logger.warning(
                "wireguard-go still runs after SIGTERM: killed", metadata: ["interface": "\(name)", "pid": "\(pid)"])
            kill(pid, SIGKILL)
            _ = wait(.seconds(5))
        }
        logger.info("wireguard-go stopped", metadata: ["interface": "\(name)", "pid": "\(pid)"])
        return true
    }

    public func remove(named name: String) throws -> Bool {
        guard let link = try network.link(named: name) else { return false }
        guard link.kind == "tun" else { throw InterfaceError.notWireGuard(name, kind: link.kind) }
        // wireguard-go ends when its tun device goes, whoever started it.
        try network.deleteLink(index: link.index)
        if let pid = children.withLock({ $0.removeValue(forKey: name) }) {
            var status: Int32 = 0
            for _ in 0..<100 where waitpid(pid, &status, WNOHANG) == 0 { usleep(20_000) }
        }
        return true
    }

    /// How a child ended, from waitpid's status: "exited with status N" or "was killed by signal N".
    static func ended(_ status: Int32) -> String {
        status & 0x7f == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
    }

    /// Waits for the child on a thread of its own; its exit is logged and reported.
    func watch(_ pid: pid_t, _ name: String) {
        Thread.detach { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let ours = children.withLock { c in c[name] == pid ? c.removeValue(forKey: name) != nil : false }
            guard ours else { return }
            logger.error(
                "wireguard-go exited; \(afterExit)",
                metadata: ["interface": "\(name)", "pid": "\(pid)", "how": "\(Self.ended(status))"])
            exited()
        }
    }

    func spawn(_ argv: [String]) throws -> pid_t {
        var pid: pid_t = 0
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        let inherited: [String] = ["PATH", "HOME", "LOG_LEVEL"].compactMap { (k: String) -> String? in
            guard let v = getenv(k) else { return nil }
            return k + "=" + String(cString: v)
        }
        var cenv = (["WG_PROCESS_FOREGROUND=1"] + inherited).map { strdup($0) } + [nil]
        defer { for e in cenv { free(e) } }
        // Only stdin, stdout and stderr go to the child: it outlives the agent, and must not keep the
        // agent's sockets (the metrics port, API connections) open after it.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        wgmesh_spawn_close_from(&actions, 3)
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, &cargs, &cenv)
        guard rc == 0 else {
            throw UserspaceError(
                operation: "start \(argv[0])", errno: rc,
                detail: rc == ENOENT
                    ? "\(argv[0]) is not installed (Debian: apt-get install wireguard-go)" : "posix_spawnp failed")
        }
        return pid
    }
}

/// A detached thread for a blocking wait, without Foundation.
enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ b: @escaping @Sendable () -> Void) { body = b }
        }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(
            &thread, nil,
            { raw in
                let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
                box.body()
                return nil
            }, box)
        pthread_detach(thread)
    }
}
