// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What the controller should do for one Node: one annotation patch, at most one keypair to make,
/// notices for Events and logs, and when to look again.
public struct NodeIssuance: Sendable, Equatable {
    public enum KeyAction: Sendable, Equatable {
        /// A keypair of this generation, sealed to `enrollmentKey`, becomes the node's key.
        case issue(generation: UInt64, enrollmentKey: WireGuardKey)
        /// Rotation phase 1: a keypair of this generation is published as the next key.
        case stage(generation: UInt64, enrollmentKey: WireGuardKey)
    }

    /// Something worth an Event on the Node and a log line. Never carries key material.
    public struct Notice: Sendable, Equatable {
        /// The Event's reason; the raw value is what Kubernetes shows (CamelCase, as Event reasons are).
        public enum Reason: String, Sendable {
            case podCIDRAllocated = "PodCIDRAllocated", podCIDRAssigned = "PodCIDRAssigned", podCIDRExhausted =
                "PodCIDRExhausted"
            case podCIDRPending = "PodCIDRPending", podCIDRInvalid = "PodCIDRInvalid", podCIDRConflict =
                "PodCIDRConflict"
            case podCIDRMismatch = "PodCIDRMismatch", podCIDRUnmanaged = "PodCIDRUnmanaged"
            case keyIssued = "KeyIssued", enrollmentKeyInvalid = "EnrollmentKeyInvalid", invalidAnnotation =
                "InvalidAnnotation"
            case enrollmentKeyChanged = "EnrollmentKeyChanged"
            case keyRotationStaged = "KeyRotationStaged", keyRotated = "KeyRotated", rotationQueued = "RotationQueued"
            case rotationDeferred = "RotationDeferred"
            case endpointUnknown = "EndpointUnknown"
            case publicKeyConflict = "PublicKeyConflict"

            /// The Event's `action`: what the controller was doing.
            public var action: String {
                switch self {
                case .podCIDRAllocated, .podCIDRAssigned, .podCIDRExhausted, .podCIDRPending, .podCIDRInvalid:
                    return "AllocatePodCIDR"
                case .podCIDRConflict, .podCIDRMismatch, .podCIDRUnmanaged: return "CheckPodCIDR"
                case .publicKeyConflict: return "CheckPublicKey"
                case .keyRotationStaged, .keyRotated, .rotationQueued, .rotationDeferred: return "RotateKey"
                case .endpointUnknown: return "ChooseEndpoint"
                case .keyIssued, .enrollmentKeyInvalid, .invalidAnnotation, .enrollmentKeyChanged: return "IssueKey"
                }
            }
        }

        public var warning: Bool
        public var reason: Reason
        public var note: String
        /// Another node the same Event is about (the other side of an overlap).
        public var otherNode: String?

        public init(warning: Bool, reason: Reason, note: String, otherNode: String? = nil) {
            self.warning = warning
            self.reason = reason
            self.note = note
            self.otherNode = otherNode
        }
    }

    /// Annotation changes: a value sets the key, nil removes it.
    public var annotations: [String: String?] = [:]
    public var key: KeyAction?
    public var notices: [Notice] = []
    /// Look at the node again then (a grace period or a key age ends).
    public var revisitAt: Date?
    /// A staged rotation whose staging time was lost: its grace starts now.
    public var restartGrace = false
    /// The node was left alone because of a malformed annotation.
    public var skipped = false
    /// The node's annotations as read (nil when they do not).
    public var node: MeshNode?
    /// A family waits a short while (`specWait`) for `spec.podCIDRs`.
    var waitsForSpec = false

    /// Nothing to write.
    public var writesNothing: Bool { annotations.isEmpty && key == nil }

    /// Decides for one node. Every CIDR the node publishes is claimed in `allocator` first, so that
    /// none of it goes to another node, whatever else is wrong with the node; an allocation made here
    /// stays with the node (also when the write fails, so that a retry reuses it). `specFamilies` are
    /// the families that some Node has in `spec.podCIDRs`: the cluster assigns those itself. `stagedAt`
    /// is when this controller staged the node's next key, if it remembers; `mayStartRotation` is false
    /// while the concurrent-rotation limit is reached.
    public static func decide(
        _ facts: NodeFacts, allocator: inout PodCIDRAllocator, specFamilies: Set<IPFamily> = [],
        policy: ControllerPolicy,
        stagedAt: Date?, mayStartRotation: Bool, now: Date
    ) -> NodeIssuance {
        var out = NodeIssuance()
        allocator.claim(node: facts.name, cidrs: facts.publishedCIDRs)
        let overlaps = allocator.overlaps(of: facts.name)
        out.report(overlaps, of: facts.name, allocator)
        let node: MeshNode
        do {
            node = try MeshNode(name: facts.name, annotations: facts.annotations)
        } catch {
            out.notices.append(Notice(warning: true, reason: .invalidAnnotation, note: "\(error)"))
            out.skipped = true
            return out
        }
        if let error = node.problems.first(where: { $0.key == Annotation.enrollmentKey }) {
            let what =
                node.publicKey == nil
                ? "no keypair is issued, so the node stays out of the mesh until its agent publishes a valid key"
                : """
                no new keypair is issued; the node keeps its current keys, Pod CIDR and place in the mesh until \
                its agent publishes a valid key
                """
            out.notices.append(
                Notice(
                    warning: true, reason: .enrollmentKeyInvalid,
                    note:
                        """
                        node \(facts.name): annotation \(error.key)=\"\(error.shownValue)\" is invalid: \
                        \(error.reason); \(what)
                        """
                ))
        }
        out.node = node
        out.decideCIDRs(
            facts, node, allocator: &allocator, overlapping: Set(overlaps.map(\.cidr)), specFamilies: specFamilies,
            policy: policy, now: now)
        out.decideEndpoint(facts, node, policy: policy)
        out.decideKeys(node, policy: policy, stagedAt: stagedAt, mayStartRotation: mayStartRotation, now: now)
        if out.waitsForSpec, node.podCIDRs.isEmpty, out.annotations[Annotation.podCIDRs] == nil {
            // A node without a Pod CIDR cannot run Pods: its keys and endpoint wait for the CIDR, so that the
            // node is written once, not twice (and every agent's watch hears of it once). Warnings still go out.
            out.annotations = [:]
            out.key = nil
            out.notices.removeAll { !$0.warning }
        }
        return out
    }

    mutating func revisit(at date: Date) {
        revisitAt = min(revisitAt ?? date, date)
    }

    mutating func decideEndpoint(_ facts: NodeFacts, _ node: MeshNode, policy: ControllerPolicy) {
        var chosen: Endpoint?
        search: for type in policy.endpointAddressTypes {
            for a in facts.addresses where a.type == type {
                if let ip = try? IPAddress(a.address) {
                    chosen = Endpoint(address: ip, port: policy.listenPort)
                    break search
                }
            }
        }
        if let chosen {
            if chosen != node.endpoint { annotations[Annotation.endpoint] = chosen.description }
        } else if node.endpoint == nil, node.endpointOverride == nil {
            notices.append(
                Notice(
                    warning: true, reason: .endpointUnknown,
                    note:
                        """
                        the Node has no address of type \(policy.endpointAddressTypes.joined(separator: " or ")); \
                        set \(Annotation.endpointOverride) or change --endpoint-address-type
                        """
                ))
        }
    }

    mutating func decideKeys(
        _ node: MeshNode, policy: ControllerPolicy, stagedAt: Date?, mayStartRotation: Bool, now: Date
    ) {
        guard let enrollment = node.enrollmentKey else {
            if node.rotationRequested {
                notices.append(
                    Notice(
                        warning: true, reason: .rotationDeferred,
                        note:
                            """
                            rotation request \"\(node.rotateRequest!.prefix(80))\" waits: the node has no valid \
                            \(Annotation.enrollmentKey) to seal a new key to; its agent must publish one
                            """
                    ))
            }
            return
        }
        let generation = node.keyGeneration ?? 0
        if node.publicKey != nil, let previous = node.sealedTo, previous != enrollment {
            // A security event: the node was reinstalled, or whoever could write its annotation took its place.
            let change =
                """
                node \(node.name) published enrollment key \(enrollment.fingerprint) in place of \
                \(previous.fingerprint), to which its keys are sealed
                """
            let accepted = node.acceptEnrollment == enrollment.fingerprint
            if policy.enrollmentChange == .hold && !accepted {
                notices.append(
                    Notice(
                        warning: true, reason: .enrollmentKeyChanged,
                        note: """
                            \(change): held (--enrollment-change-policy=hold): the node keeps its keys, which the new \
                            enrollment key cannot open, so \
                            it stays out of the mesh, and rotations wait. If the node was reinstalled, accept the new \
                            key: kubectl annotate node \
                            \(node.name) \(Annotation.acceptEnrollment)=\(enrollment.fingerprint)
                            """))
                return
            }
            notices.append(
                Notice(
                    warning: true, reason: .enrollmentKeyChanged,
                    note: accepted
                        ? """
                        \(change): accepted by \(Annotation.acceptEnrollment); issuing a keypair sealed to the \
                        new key
                        """
                        : """
                        \(change): issuing a keypair sealed to the new key (--enrollment-change-policy=reissue); \
                        if the node was not reinstalled, someone who can write its annotations may have taken its \
                        place
                        """
                ))
            if node.acceptEnrollment != nil { annotations[Annotation.acceptEnrollment] = .some(nil) }
        }
        guard node.publicKey != nil, node.sealedTo == enrollment, let issuedAt = node.keyIssuedAt else {
            // A new node, a new enrollment key (the old one is gone), or a keypair of unknown age.
            key = .issue(generation: generation + 1, enrollmentKey: enrollment)
            annotations[Annotation.nextPublicKey] = node.nextPublicKey == nil ? nil : .some(nil)
            annotations[Annotation.nextSealedPrivateKey] = node.nextSealedPrivateKey == nil ? nil : .some(nil)
            var why =
                node.publicKey == nil
                ? "a new node"
                : node.sealedTo != enrollment ? "the node published a new enrollment key" : "the key has no issue time"
            if node.rotationRequested {
                // A fresh keypair answers a pending request as well as a rotation would.
                annotations[Annotation.rotateAnswered] = node.rotateRequest
                why += "; this answers rotation request \"\(node.rotateRequest!.prefix(80))\""
            }
            notices.append(
                Notice(warning: false, reason: .keyIssued, note: "issued keypair generation \(generation + 1): \(why)"))
            if let maxAge = policy.rotation.maxKeyAge { revisit(at: now.addingTimeInterval(maxAge)) }
            return
        }
        let phase = KeyRotation.phase(of: node, stagedAt: stagedAt)
        let request = node.rotationRequested ? node.rotateRequest : nil
        switch KeyRotation.next(phase: phase, issuedAt: issuedAt, request: request, now: now, policy: policy.rotation) {
        case .wait(let until):
            if let until { revisit(at: until) }
        case .stage(let reason):
            guard mayStartRotation else {
                notices.append(
                    Notice(
                        warning: false, reason: .rotationQueued,
                        note: "rotation waits for a free slot (--max-concurrent-rotations): \(reason)"))
                return
            }
            key = .stage(generation: generation + 1, enrollmentKey: enrollment)
            // Answered in the write that stages the key: exactly once, whatever the clocks say.
            if let request { annotations[Annotation.rotateAnswered] = request }
            revisit(at: now.addingTimeInterval(policy.rotation.grace))
            notices.append(
                Notice(
                    warning: false, reason: .keyRotationStaged,
                    note:
                        """
                        published next key generation \(generation + 1) (\(reason)); switching in \
                        \(Int(policy.rotation.grace)) s
                        """
                ))
        case .restartGrace:
            restartGrace = true
            revisit(at: now.addingTimeInterval(policy.rotation.grace))
        case .switchKeys:
            guard let next = node.nextPublicKey, let sealed = node.nextSealedPrivateKey else { return }
            annotations[Annotation.publicKey] = next.base64
            annotations[Annotation.sealedPrivateKey] = sealed.base64
            annotations[Annotation.keyGeneration] = String(generation + 1)
            annotations[Annotation.keyIssuedAt] = RFC3339.format(now)
            annotations[Annotation.nextPublicKey] = .some(nil)
            annotations[Annotation.nextSealedPrivateKey] = .some(nil)
            notices.append(
                Notice(warning: false, reason: .keyRotated, note: "switched to key generation \(generation + 1)"))
            if let maxAge = policy.rotation.maxKeyAge { revisit(at: now.addingTimeInterval(maxAge)) }
        }
    }
}
