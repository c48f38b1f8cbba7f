import Logging
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// The node's enrollment keypair: its private half lives in one 0600 file under the state directory
/// and never leaves the node; the public half is what the agent publishes as `wgmesh.dev/enrollment-key`.
public struct EnrollmentKeyStore: Sendable {
    public let directory: String
    public var path: String { directory + "/enrollment.key" }

    public init(directory: String) { self.directory = directory }

    /// The stored keypair, or a new one when the file is missing or unreadable (the controller then
    /// issues a new keypair sealed to it; the log says why).
    public func loadOrCreate(logger: Logger) throws -> WireGuardKeyPair {
        switch read() {
        case .success(let pair):
            return pair
        case .failure(let why):
            if case .missing = why {
                logger.info("no enrollment key yet: making one", metadata: ["file": "\(path)"])
            } else {
                logger.warning(
                    """
                    the enrollment key file is unusable: making a new one, and the controller will issue a new \
                    keypair
                    """,
                    metadata: ["file": "\(path)", "reason": "\(why)"])
            }
            let pair = WireGuardKeyPair.generate()
            try write(pair.privateKey)
            return pair
        }
    }

    enum ReadFailure: Error, CustomStringConvertible {
        case missing
        case unreadable(StateFileError)
        case malformed

        var description: String {
            switch self {
            case .missing: return "missing"
            case .unreadable(let e): return "\(e)"
            case .malformed: return "does not hold a base64 X25519 private key"
            }
        }
    }

    func read() -> Result<WireGuardKeyPair, ReadFailure> {
        let bytes: [UInt8]
        do {
            guard let b = try AtomicFile.read(path, limit: 4096) else { return .failure(.missing) }
            bytes = b
        } catch {
            return .failure(.unreadable(error))
        }
        let text = String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
        guard let key = try? WireGuardKey(base64: text), let pair = try? WireGuardKeyPair(privateKey: key) else {
            return .failure(.malformed)
        }
        return .success(pair)
    }

    /// Mode 0600: only root on the node reads it.
    func write(_ key: WireGuardKey) throws {
        try AtomicFile.write(path, Array((key.base64 + "\n").utf8), mode: 0o600)
    }

    /// Removes the key (`--cleanup`).
    func remove() throws -> Bool { try AtomicFile.remove(path) }
}
