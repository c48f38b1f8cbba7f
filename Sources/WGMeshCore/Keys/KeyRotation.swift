// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The controller's per-node key rotation, two-phase (docs/architecture.md, "Key rotation without a gap"):
/// stage the next key so every peer accepts it, wait the grace period, then switch.
public enum KeyRotation {
    public enum Phase: Sendable, Hashable {
        /// One current key, no rotation running.
        case idle
        /// `next-public-key` is published; `since` is when (nil after a controller restart: the grace restarts).
        case staged(since: Date?)
    }

    public struct Policy: Sendable, Hashable {
        /// How long peers get to pre-stage the next key before the switch.
        public var grace: TimeInterval
        /// Rotate keys older than this; nil turns age-based rotation off.
        public var maxKeyAge: TimeInterval?

        public init(grace: TimeInterval = 10, maxKeyAge: TimeInterval? = nil) {
            self.grace = grace
            self.maxKeyAge = maxKeyAge
        }
    }

    public enum Step: Sendable, Hashable {
        /// Nothing to do; look again at `until` (nil: only when something changes).
        case wait(until: Date?)
        /// Generate the next keypair and publish `next-public-key` and its sealed private key.
        case stage(reason: String)
        /// Move `public-key` to the next key, bump the generation, clear the `next-` annotations.
        case switchKeys
        /// A staged rotation whose grace restarts now (the staging time was lost).
        case restartGrace
    }

    /// The phase a node is in, read from its annotations.
    public static func phase(of node: MeshNode, stagedAt: Date?) -> Phase {
        node.nextPublicKey == nil ? .idle : .staged(since: stagedAt)
    }

    /// What to do next for a node with a key issued at `issuedAt`. `request` is a rotation request not
    /// answered yet; one that arrives during a rotation is answered by the next one.
    public static func next(phase: Phase, issuedAt: Date, request: String?, now: Date, policy: Policy) -> Step {
        switch phase {
        case .idle:
            if let request {
                return .stage(reason: "rotation request \"\(request.prefix(80))\"")
            }
            if let maxAge = policy.maxKeyAge {
                let due = issuedAt.addingTimeInterval(maxAge)
                return now >= due ? .stage(reason: "key older than \(Int(maxAge)) s") : .wait(until: due)
            }
            return .wait(until: nil)
        case .staged(since: nil):
            return .restartGrace
        case .staged(since: let since?):
            let due = since.addingTimeInterval(policy.grace)
            return now >= due ? .switchKeys : .wait(until: due)
        }
    }
}
