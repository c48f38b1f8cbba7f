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
    /// A decided write, on its way to the API while the controller decides for other nodes.
    struct PendingWrite: Sendable {
        /// The node as decided on: its resourceVersion is the write's precondition.
        var object: KubeObject
        var decision: NodeIssuance
        var decidedAt: Date
        /// The write stages a rotation whose slot was taken when it was decided: freed if it does not happen.
        var takesRotationSlot: Bool
        /// The generation of the keypair it carries, once made.
        var issued: String?
    }

    /// A write's outcome: when it landed (or, when sealing left nothing to write, when it was decided), or why
    /// it failed.
    struct WriteOutcome: Sendable {
        var write: PendingWrite
        var landed: Result<Date, KubeError>
        var wrote: Bool
        /// The node's resourceVersion after the write.
        var resourceVersion: String? = nil
    }

    /// Makes and seals the keypair the decision asks for, then writes the decision's annotations in one merge
    /// patch with a resourceVersion precondition. Touches no state, so that several run at once: `landed` takes
    /// the outcome back on the controller's loop.
    func send(_ write: PendingWrite) async -> WriteOutcome {
        var write = write
        let name = write.object.metadata.name
        switch write.decision.key {
        case .issue(let generation, let enrollment)?:
            write.issued = seal(name, generation, enrollment, write.decidedAt, into: &write.decision, current: true)
        case .stage(let generation, let enrollment)?:
            write.issued = seal(name, generation, enrollment, write.decidedAt, into: &write.decision, current: false)
        case nil:
            break
        }
        if write.decision.annotations.isEmpty {
            return WriteOutcome(write: write, landed: .success(write.decidedAt), wrote: false)
        }
        let body = Patch.annotations(write.decision.annotations)
        let written: KubeObject
        do {
            written = try await api.patch(
                .nodes, namespace: nil, name: name,
                body.precondition(resourceVersion: write.object.metadata.resourceVersion ?? ""),
                subresource: nil)
        } catch {
            return WriteOutcome(write: write, landed: .failure(error), wrote: false)
        }
        return WriteOutcome(
            write: write, landed: .success(self.now()), wrote: true,
            resourceVersion: written.metadata.resourceVersion)
    }

    /// Notes what a write changed (a rotation staged or ended) and announces it; a failed write is retried.
    func landed(
        _ outcome: WriteOutcome, _ state: inout State, _ wakeups: NodeWakeups, lookup: (String) -> KubeObject?
    ) {
        let object = outcome.write.object
        let name = object.metadata.name
        var decision = outcome.write.decision
        let issued = outcome.write.issued
        let written: Date
        switch outcome.landed {
        case .failure(let error):
            if outcome.write.takesRotationSlot { state.rotating.remove(name) }
            // A node deleted meanwhile has been forgotten: nothing to retry.
            if lookup(name) != nil { retry(name, error, &state, wakeups) }
            return
        case .success(let at):
            written = at
        }
        guard outcome.wrote else {
            // Sealing failed and left nothing to write: its Warning goes out as any decision's.
            if outcome.write.takesRotationSlot { state.rotating.remove(name) }
            announce(object, decision, at: written, &state, lookup: lookup)
            if let at = decision.revisitAt { wakeups.schedule(name, at: at, now: self.now()) }
            return
        }
        let changes = decision.annotations
        stats.withLock { s in
            s.patches += 1
            if issued != nil { s.keysIssued += 1 }
        }
        guard lookup(name) != nil else {
            if outcome.write.takesRotationSlot { state.rotating.remove(name) }
            return
        }
        state.retries[name] = nil
        // Until the watch brings the node as written, the cached one is stale: deciding on it again would
        // only make a write that the precondition refuses. (A write that changed nothing brings no event.)
        if let over = object.metadata.resourceVersion, outcome.resourceVersion != over {
            state.writtenOver[name] = over
        }
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
        announce(object, decision, at: written, &state, lookup: lookup)
        if let at = decision.revisitAt { wakeups.schedule(name, at: at, now: self.now()) }
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
