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
    /// Decides for one node: returns the write to send, or nil when there is nothing to write (the notices are
    /// then announced here). `lookup` finds other nodes an Event is also about.
    func reconcile(_ object: KubeObject, _ state: inout State, _ wakeups: NodeWakeups, lookup: (String) -> KubeObject?)
        -> PendingWrite?
    {
        let name = object.metadata.name
        let facts = self.facts(object)
        noteSpec(facts, &state)
        let now = self.now()
        let specFamilies = Set(state.specNodes.filter { !$0.value.isEmpty }.keys)
        var decision = NodeIssuance.decide(
            facts, allocator: &state.allocator, specFamilies: specFamilies, policy: configuration.policy,
            stagedAt: state.stagedAt[name],
            mayStartRotation: state.rotating.count < configuration.maxConcurrentRotations
                || state.rotating.contains(name),
            now: now)
        if decision.restartGrace { state.stagedAt[name] = now }
        decision.notices += state.keyClaims.claim(decision.node, named: name)
        for (reason, waiting) in [
            (NodeIssuance.Notice.Reason.podCIDRExhausted, \State.waitingForCIDR),
            (.rotationQueued, \State.waitingForRotation),
        ] {
            if decision.notices.contains(where: { $0.reason == reason }) {
                state[keyPath: waiting].insert(name)
            } else {
                state[keyPath: waiting].remove(name)
            }
        }
        if !decision.annotations.isEmpty || decision.key != nil {
            // The keypair is made and sealed on the write's way, off this loop.
            var takesSlot = false
            if case .stage? = decision.key, !state.rotating.contains(name) {
                // Taken now, so that writes on their way never start more rotations than allowed.
                state.rotating.insert(name)
                takesSlot = true
            }
            return PendingWrite(object: object, decision: decision, decidedAt: now, takesRotationSlot: takesSlot)
        }
        announce(object, decision, at: now, &state, lookup: lookup)
        if let at = decision.revisitAt { wakeups.schedule(name, at: at, now: self.now()) }
        return nil
    }

    /// Makes a keypair, seals its private key to the node's enrollment key, and puts the public key
    /// and the sealed key into the patch. The private key lives only inside this call.
    func seal(
        _ name: String, _ generation: UInt64, _ enrollment: WireGuardKey, _ now: Date,
        into decision: inout NodeIssuance, current: Bool
    ) -> String? {
        let pair = WireGuardKeyPair.generate()
        let sealed: SealedKey
        do {
            sealed = try SealedKey.seal(pair.privateKey, to: enrollment, nodeName: name, generation: generation)
        } catch {
            decision.key = nil
            // A rotation request stays unanswered, and an accepted enrollment key accepted, until a key is really
            // issued.
            decision.annotations[Annotation.rotateAnswered] = nil
            decision.annotations[Annotation.acceptEnrollment] = nil
            decision.notices.removeAll { $0.reason == .keyIssued || $0.reason == .keyRotationStaged }
            decision.notices.append(
                .init(
                    warning: true, reason: .enrollmentKeyInvalid,
                    note: "node \(name): no keypair issued: \(error) (enrollment key \(enrollment.base64))"))
            return nil
        }
        if current {
            decision.annotations[Annotation.publicKey] = pair.publicKey.base64
            decision.annotations[Annotation.sealedPrivateKey] = sealed.base64
            decision.annotations[Annotation.keyGeneration] = String(generation)
            decision.annotations[Annotation.keyIssuedAt] = RFC3339.format(now)
            decision.annotations[Annotation.sealedTo] = enrollment.base64
        } else {
            decision.annotations[Annotation.nextPublicKey] = pair.publicKey.base64
            decision.annotations[Annotation.nextSealedPrivateKey] = sealed.base64
        }
        return String(generation)
    }
}
