import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MeshController {
    /// Writes the decision's annotations in one merge patch with a resourceVersion precondition, and notes what
    /// it changed (a rotation staged or ended). Returns when the write landed; nil when it failed, and the node is
    /// retried.
    func write(
        _ object: KubeObject, _ decision: inout NodeIssuance, issued: String?, _ state: inout State,
        _ wakeups: NodeWakeups
    ) async -> Date? {
        let name = object.metadata.name
        let changes = decision.annotations
        let body = Patch.annotations(changes)
        do {
            _ = try await api.patch(
                .nodes, namespace: nil, name: name,
                body.precondition(resourceVersion: object.metadata.resourceVersion ?? ""),
                subresource: nil)
        } catch {
            retry(name, error, &state, wakeups)
            return nil
        }
        let written = self.now()
        stats.withLock { s in
            s.patches += 1
            if issued != nil { s.keysIssued += 1 }
        }
        state.retries[name] = nil
        if case .stage? = decision.key {
            state.rotating.insert(name)
            state.stagedAt[name] = written
            decision.revisitAt = written.addingTimeInterval(configuration.policy.rotation.grace)
        } else if changes.keys.contains(Annotation.nextPublicKey) {
            // A rotation ended (switched, or replaced by a new keypair): a slot is free.
            state.rotating.remove(name)
            state.stagedAt[name] = nil
            for waiting in state.waitingForRotation { wakeups.schedule(waiting, at: written, now: written) }
        }
        logger.info(
            "node updated",
            metadata: [
                "node": "\(name)", "annotations": "\(changes.keys.sorted().joined(separator: ","))",
                "generation": "\(issued ?? changes[Annotation.keyGeneration].flatMap { $0 } ?? "unchanged")",
            ])
        return written
    }

    /// The delay before a node's write is tried again after a failure other than a conflict: 0.4 s, doubling up to
    /// 30 s, each stretched by up to half.
    static let retryBackoff = Backoff(initial: .milliseconds(400), maximum: .seconds(30), jitter: 0.5)

    /// A write failed. The node's allocation stays reserved for it (the write may even have landed),
    /// and the node is looked at again: at once after a conflict, which the watch is about to explain,
    /// later after other failures.
    func retry(_ name: String, _ error: KubeError, _ state: inout State, _ wakeups: NodeWakeups) {
        if error.isNotFound || error.isCancelled { return }
        // Every failed write backs the node off further, a conflict included.
        var backoff = state.retries[name] ?? Self.retryBackoff
        let backedOff = backoff.next()
        state.retries[name] = backoff
        let attempt = backoff.attempts
        let delay: TimeInterval
        if error.isConflict {
            stats.withLock { $0.conflicts += 1 }
            delay = 0.05
        } else {
            stats.withLock { $0.failures += 1 }
            delay = Seconds(backedOff).value
        }
        logger.warning(
            "node update failed, retrying",
            metadata: [
                "node": "\(name)", "error": "\(error)", "attempt": "\(attempt)",
                "delay": "\(Seconds(delay))",
            ])
        let now = self.now()
        wakeups.schedule(name, at: now.addingTimeInterval(delay), now: now)
    }
}
