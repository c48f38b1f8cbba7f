import CSpawn
import Logging
import Synchronization
import WGMeshCore
#if canImport(Glibc)
import Glibc
#endif

/// Userspace WireGuard interfaces: `wireguard-go -f NAME` started and supervised by the agent. A
/// wireguard-go already answering on the interface's socket (left by an earlier agent) is adopted as it
/// is; one that dies is started again, and `exited` asks the agent for a pass, which re-applies the
/// whole plan to the new, empty device.
public final class WireGuardGo: WireGuardInterfaces, @unchecked Sendable {
    public let program: String
    public let device: UserspaceWireGuard
    /// Used by the agent's passes only, one at a time; the watcher threads touch `children` alone.
    let network: any LinkTable
    let logger: Logger
    let exited: @Sendable () -> Void
    let children = Mutex<[String: pid_t]>([:])

    public var backend: String { "userspace" }

    public init(program: String = "wireguard-go", device: UserspaceWireGuard, network: any LinkTable, logger: Logger,
                exited: @escaping @Sendable () -> Void = {}) {
        self.program = program
        self.device = device
        self.network = network
        self.logger = logger
        self.exited = exited
    }

    public func ensure(named name: String, mtu: UInt32) throws -> Bool {
        if device.answers(name) { return false }
        if let link = try network.link(named: name) {
            // A tun device nobody serves (its wireguard-go died): remove it so a new one can take the name.
            guard link.kind == "tun" else { throw InterfaceError.notWireGuard(name, kind: link.kind) }
            try network.deleteLink(index: link.index)
        }
        unlink(device.socketPath(name))
        let pid = try spawn([program, "-f", name])
        children.withLock { $0[name] = pid }
        logger.info("wireguard-go started", metadata: ["interface": "\(name)", "pid": "\(pid)"])
        for _ in 0..<200 {
            if device.answers(name) {
                watch(pid, name)
                return true
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                children.withLock { _ = $0.removeValue(forKey: name) }
                throw UserspaceError(operation: "start \(program) for \(name)", errno: nil,
                                     detail: "it exited with status \(status >> 8) before its socket answered; its output is in the agent's log")
            }
            usleep(50_000)
        }
        kill(pid, SIGTERM)
        throw UserspaceError(operation: "start \(program) for \(name)", errno: nil, detail: "its socket \(device.socketPath(name)) did not answer within 10 s")
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

    /// Waits for the child on a thread of its own; its exit is logged and reported.
    func watch(_ pid: pid_t, _ name: String) {
        Thread.detach { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let ours = children.withLock { c in c[name] == pid ? c.removeValue(forKey: name) != nil : false }
            guard ours else { return }
            logger.error("wireguard-go exited; starting it again and re-applying the whole configuration",
                         metadata: ["interface": "\(name)", "pid": "\(pid)", "status": "\(status)"])
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
            throw UserspaceError(operation: "start \(argv[0])", errno: rc,
                                 detail: rc == ENOENT ? "\(argv[0]) is not installed (Debian: apt-get install wireguard-go)" : "posix_spawnp failed")
        }
        return pid
    }
}

/// A detached thread for a blocking wait, without Foundation.
enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { raw in
            let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
            box.body()
            return nil
        }, box)
        pthread_detach(thread)
    }
}
