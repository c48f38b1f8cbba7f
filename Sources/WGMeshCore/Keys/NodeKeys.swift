/// The node's own WireGuard private keys, opened on the agent side from its sealed-key annotations.
public struct NodeKeys: Sendable, Equatable {
    /// The private key the interface runs: opened from `sealed-private-key`.
    public var privateKey: WireGuardKey
    public var generation: UInt64
    /// Opened from `next-sealed-private-key` during a rotation, checked against `next-public-key`.
    public var nextPrivateKey: WireGuardKey?

    public init(privateKey: WireGuardKey, generation: UInt64, nextPrivateKey: WireGuardKey? = nil) {
        self.privateKey = privateKey
        self.generation = generation
        self.nextPrivateKey = nextPrivateKey
    }

    /// Opens and checks the node's sealed keys with its enrollment private key. nil when the controller has not issued
    /// a keypair for this enrollment key yet (no keys, or `sealed-to` names another enrollment key).
    public static func open(_ node: MeshNode, enrollmentPrivateKey: WireGuardKey) throws(NodeKeyError) -> NodeKeys? {
        guard let publicKey = node.publicKey, let sealed = node.sealedPrivateKey, let generation = node.keyGeneration
        else { return nil }
        func fail(_ annotation: String, _ generation: UInt64, _ problem: NodeKeyError.Problem) -> NodeKeyError {
            NodeKeyError(node: node.name, annotation: annotation, generation: generation, problem: problem)
        }
        guard let enrollment = try? WireGuardKeyPair.publicKey(for: enrollmentPrivateKey) else {
            throw fail(Annotation.sealedPrivateKey, generation, .invalidEnrollmentKey)
        }
        // Sealed to an enrollment key this node no longer holds: the controller issues a new keypair.
        guard node.sealedTo == enrollment else { return nil }

        func openChecked(
            _ box: SealedKey, _ annotation: String, _ generation: UInt64, against published: WireGuardKey,
            _ publicAnnotation: String
        ) throws(NodeKeyError) -> WireGuardKey {
            let key: WireGuardKey
            do { key = try box.open(with: enrollmentPrivateKey, nodeName: node.name, generation: generation) } catch {
                throw fail(annotation, generation, .cannotOpen)
            }
            // A key whose public half is not the published one would give a running interface no working peer.
            guard (try? WireGuardKeyPair.publicKey(for: key)) == published else {
                throw fail(annotation, generation, .publicKeyMismatch(publicAnnotation))
            }
            return key
        }
        var keys = NodeKeys(
            privateKey: try openChecked(
                sealed, Annotation.sealedPrivateKey, generation, against: publicKey, Annotation.publicKey),
            generation: generation)
        if let nextPublic = node.nextPublicKey, let nextSealed = node.nextSealedPrivateKey {
            // No generation follows UInt64.max, so no key can have been sealed for it.
            guard generation < .max else { throw fail(Annotation.nextSealedPrivateKey, generation, .cannotOpen) }
            keys.nextPrivateKey = try openChecked(
                nextSealed, Annotation.nextSealedPrivateKey, generation + 1, against: nextPublic,
                Annotation.nextPublicKey)
        }
        return keys
    }
}

/// A sealed key of this node that the agent cannot use; never carries key material.
public struct NodeKeyError: Error, Equatable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable {
        /// The box does not open: sealed for another node name, generation or enrollment key, or altered.
        case cannotOpen
        /// The box opens, but the key's public half is not the one in the named annotation.
        case publicKeyMismatch(String)
        /// The node's enrollment private key is not a usable X25519 key.
        case invalidEnrollmentKey
    }

    public var node: String
    /// The sealed-key annotation at fault (`wgmesh.dev/sealed-private-key` or `wgmesh.dev/next-sealed-private-key`).
    public var annotation: String
    /// The key generation the box was opened for.
    public var generation: UInt64
    public var problem: Problem

    public init(node: String, annotation: String, generation: UInt64, problem: Problem) {
        self.node = node
        self.annotation = annotation
        self.generation = generation
        self.problem = problem
    }

    public var description: String {
        let what: String
        switch problem {
        case .cannotOpen:
            what =
                """
                it does not open with this node's enrollment key: it was sealed for another node, generation or \
                enrollment key, or altered
                """
        case .publicKeyMismatch(let published): what = "the key it holds is not the private half of \(published)"
        case .invalidEnrollmentKey: what = "the node's enrollment private key is not a valid X25519 key"
        }
        return
            """
            node \(node): cannot use \(annotation) of key generation \(generation): \(what); the interface is \
            left untouched. To get a new keypair, remove the enrollment key file under /var/lib/wgmesh on the \
            node and restart the agent: it publishes a new enrollment key, and the controller issues a keypair \
            sealed to it
            """
    }
}
