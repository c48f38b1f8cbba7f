// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How the controller hands out CIDRs, endpoints and keys.
public struct ControllerPolicy: Sendable {
    public enum CIDRSource: String, Sendable, CaseIterable {
        /// `spec.podCIDRs` when the cluster assigns them, wgmesh's allocator otherwise.
        case auto
        /// Only `spec.podCIDRs` (kube-controller-manager's `--allocate-node-cidrs`).
        case nodeSpec = "node-spec"
        /// Only wgmesh's allocator.
        case wgmesh
    }

    public var cidrSource: CIDRSource
    /// Node address types in order of preference (`InternalIP`, `ExternalIP`).
    public var endpointAddressTypes: [String]
    public var listenPort: UInt16
    public var rotation: KeyRotation.Policy

    public init(cidrSource: CIDRSource = .auto, endpointAddressTypes: [String] = ["InternalIP", "ExternalIP"],
                listenPort: UInt16 = 51820, rotation: KeyRotation.Policy = .init()) {
        self.cidrSource = cidrSource
        self.endpointAddressTypes = endpointAddressTypes
        self.listenPort = listenPort
        self.rotation = rotation
    }
}

/// What the controller reads from a Node.
public struct NodeFacts: Sendable, Hashable {
    public struct Address: Sendable, Hashable {
        public var type: String
        public var address: String
        public init(type: String, address: String) {
            self.type = type
            self.address = address
        }
    }

    public var name: String
    public var annotations: [String: String]
    public var addresses: [Address]
    /// `spec.podCIDRs` as the cluster assigned them.
    public var specPodCIDRs: [String]

    public init(name: String, annotations: [String: String], addresses: [Address] = [], specPodCIDRs: [String] = []) {
        self.name = name
        self.annotations = annotations
        self.addresses = addresses
        self.specPodCIDRs = specPodCIDRs
    }
}

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
            case podCIDRAllocated = "PodCIDRAllocated", podCIDRAssigned = "PodCIDRAssigned", podCIDRExhausted = "PodCIDRExhausted"
            case podCIDRPending = "PodCIDRPending", podCIDRInvalid = "PodCIDRInvalid", podCIDRConflict = "PodCIDRConflict"
            case keyIssued = "KeyIssued", enrollmentKeyInvalid = "EnrollmentKeyInvalid", invalidAnnotation = "InvalidAnnotation"
            case keyRotationStaged = "KeyRotationStaged", keyRotated = "KeyRotated", rotationQueued = "RotationQueued"
            case endpointUnknown = "EndpointUnknown"

            /// The Event's `action`: what the controller was doing.
            public var action: String {
                switch self {
                case .podCIDRAllocated, .podCIDRAssigned, .podCIDRExhausted, .podCIDRPending, .podCIDRInvalid: return "AllocatePodCIDR"
                case .podCIDRConflict: return "Restore"
                case .keyRotationStaged, .keyRotated, .rotationQueued: return "RotateKey"
                case .endpointUnknown: return "ChooseEndpoint"
                case .keyIssued, .enrollmentKeyInvalid, .invalidAnnotation: return "IssueKey"
                }
            }
        }

        public var warning: Bool
        public var reason: Reason
        public var note: String

        public init(warning: Bool, reason: Reason, note: String) {
            self.warning = warning
            self.reason = reason
            self.note = note
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

    /// Nothing to write.
    public var writesNothing: Bool { annotations.isEmpty && key == nil }

    /// Decides for one node. `allocator` is nil when CIDRs come only from `spec.podCIDRs`; an
    /// allocation made here stays with the node (also when the write fails, so that a retry
    /// reuses it). `stagedAt` is when this controller staged the node's next key, if it remembers;
    /// `mayStartRotation` is false while the concurrent-rotation limit is reached.
    public static func decide(_ facts: NodeFacts, allocator: inout PodCIDRAllocator?, policy: ControllerPolicy,
                              stagedAt: Date?, mayStartRotation: Bool, now: Date) -> NodeIssuance {
        var out = NodeIssuance()
        var annotations = facts.annotations
        var node: MeshNode
        do {
            node = try MeshNode(name: facts.name, annotations: annotations)
        } catch where error.key == Annotation.enrollmentKey {
            out.notices.append(Notice(warning: true, reason: .enrollmentKeyInvalid, note: "\(error)"))
            annotations[Annotation.enrollmentKey] = nil
            do {
                node = try MeshNode(name: facts.name, annotations: annotations)
            } catch {
                out.notices.append(Notice(warning: true, reason: .invalidAnnotation, note: "\(error)"))
                out.skipped = true
                return out
            }
        } catch {
            out.notices.append(Notice(warning: true, reason: .invalidAnnotation, note: "\(error)"))
            out.skipped = true
            return out
        }
        out.decideCIDRs(facts, node, allocator: &allocator, policy: policy)
        out.decideEndpoint(facts, node, policy: policy)
        out.decideKeys(node, policy: policy, stagedAt: stagedAt, mayStartRotation: mayStartRotation, now: now)
        return out
    }

    mutating func decideCIDRs(_ facts: NodeFacts, _ node: MeshNode, allocator: inout PodCIDRAllocator?, policy: ControllerPolicy) {
        let useSpec = policy.cidrSource == .nodeSpec || (policy.cidrSource == .auto && !facts.specPodCIDRs.isEmpty)
        if useSpec {
            var spec: [IPPrefix] = []
            for text in facts.specPodCIDRs {
                guard let cidr = try? IPPrefix(text), cidr.isCanonical else {
                    notices.append(Notice(warning: true, reason: .podCIDRInvalid, note: "spec.podCIDRs has \"\(text)\", which is not a CIDR; fix the Node's spec"))
                    return
                }
                spec.append(cidr)
            }
            if spec.isEmpty {
                notices.append(Notice(warning: true, reason: .podCIDRPending, note: "the Node has no spec.podCIDRs yet (--cidr-source=node-spec): start kube-controller-manager with --allocate-node-cidrs, or use --cidr-source=wgmesh"))
            } else {
                // Ranges the cluster assigned inside wgmesh's pools are taken, so no other node gets them.
                try? allocator?.restore(node: node.name, cidrs: spec)
            }
            if !spec.isEmpty, spec != node.podCIDRs {
                annotations[Annotation.podCIDRs] = spec.map(\.description).joined(separator: ",")
                notices.append(Notice(warning: false, reason: .podCIDRAssigned, note: "Pod CIDRs \(spec.map(\.description).joined(separator: ", ")) from spec.podCIDRs"))
            }
            return
        }
        guard node.podCIDRs.isEmpty, allocator != nil else { return }
        if let reserved = allocator!.allocation(of: node.name) {
            // An earlier write of this allocation did not land (or its outcome is unknown): same CIDRs again.
            annotations[Annotation.podCIDRs] = reserved.map(\.description).joined(separator: ",")
            return
        }
        do {
            let cidrs = try allocator!.allocate(node: node.name)
            annotations[Annotation.podCIDRs] = cidrs.map(\.description).joined(separator: ",")
            notices.append(Notice(warning: false, reason: .podCIDRAllocated, note: "allocated Pod CIDRs \(cidrs.map(\.description).joined(separator: ", "))"))
        } catch {
            notices.append(Notice(warning: true, reason: .podCIDRExhausted, note: "\(error)"))
        }
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
            notices.append(Notice(warning: true, reason: .endpointUnknown, note: "the Node has no address of type \(policy.endpointAddressTypes.joined(separator: " or ")); set \(Annotation.endpointOverride) or change --endpoint-address-type"))
        }
    }

    mutating func decideKeys(_ node: MeshNode, policy: ControllerPolicy, stagedAt: Date?, mayStartRotation: Bool, now: Date) {
        guard let enrollment = node.enrollmentKey else { return }
        let generation = node.keyGeneration ?? 0
        guard node.publicKey != nil, node.sealedTo == enrollment, let issuedAt = node.keyIssuedAt else {
            // A new node, a new enrollment key (the old one is gone), or a keypair of unknown age.
            key = .issue(generation: generation + 1, enrollmentKey: enrollment)
            annotations[Annotation.nextPublicKey] = node.nextPublicKey == nil ? nil : .some(nil)
            annotations[Annotation.nextSealedPrivateKey] = node.nextSealedPrivateKey == nil ? nil : .some(nil)
            let why = node.publicKey == nil ? "a new node" : node.sealedTo != enrollment ? "the node published a new enrollment key" : "the key has no issue time"
            notices.append(Notice(warning: false, reason: .keyIssued, note: "issued keypair generation \(generation + 1): \(why)"))
            if let maxAge = policy.rotation.maxKeyAge { revisitAt = now.addingTimeInterval(maxAge) }
            return
        }
        let phase = KeyRotation.phase(of: node, stagedAt: stagedAt)
        switch KeyRotation.next(phase: phase, issuedAt: issuedAt, rotateRequestedAt: node.rotateRequestedAt, now: now, policy: policy.rotation) {
        case .wait(let until):
            revisitAt = until
        case .stage(let reason):
            guard mayStartRotation else {
                notices.append(Notice(warning: false, reason: .rotationQueued, note: "rotation waits for a free slot (--max-concurrent-rotations): \(reason)"))
                return
            }
            key = .stage(generation: generation + 1, enrollmentKey: enrollment)
            revisitAt = now.addingTimeInterval(policy.rotation.grace)
            notices.append(Notice(warning: false, reason: .keyRotationStaged, note: "published next key generation \(generation + 1) (\(reason)); switching in \(Int(policy.rotation.grace)) s"))
        case .restartGrace:
            restartGrace = true
            revisitAt = now.addingTimeInterval(policy.rotation.grace)
        case .switchKeys:
            guard let next = node.nextPublicKey, let sealed = node.nextSealedPrivateKey else { return }
            annotations[Annotation.publicKey] = next.base64
            annotations[Annotation.sealedPrivateKey] = sealed.base64
            annotations[Annotation.keyGeneration] = String(generation + 1)
            annotations[Annotation.keyIssuedAt] = RFC3339.format(now)
            annotations[Annotation.nextPublicKey] = .some(nil)
            annotations[Annotation.nextSealedPrivateKey] = .some(nil)
            notices.append(Notice(warning: false, reason: .keyRotated, note: "switched to key generation \(generation + 1)"))
            if let maxAge = policy.rotation.maxKeyAge { revisitAt = now.addingTimeInterval(maxAge) }
        }
    }
}
