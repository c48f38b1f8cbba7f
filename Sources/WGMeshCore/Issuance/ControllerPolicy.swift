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

    /// What to do when a node that has keys publishes another enrollment key: it was reinstalled, or
    /// someone took its place.
    public enum EnrollmentChange: String, Sendable, CaseIterable {
        /// Issue a keypair sealed to the new key at once (with a Warning).
        case reissue
        /// Keep the node's keys (with a Warning) until an operator accepts the new key with
        /// `wgmesh.dev/accept-enrollment`.
        case hold
    }

    public var cidrSource: CIDRSource
    public var enrollmentChange: EnrollmentChange
    /// Node address types in order of preference (`InternalIP`, `ExternalIP`).
    public var endpointAddressTypes: [String]
    public var listenPort: UInt16
    public var rotation: KeyRotation.Policy
    /// `auto`: how long after a Node's creation wgmesh waits for `spec.podCIDRs` before it allocates a
    /// family that no Node has in `spec.podCIDRs` (kube-controller-manager sets it within a second).
    public var specWait: TimeInterval

    public init(
        cidrSource: CIDRSource = .auto, endpointAddressTypes: [String] = ["InternalIP", "ExternalIP"],
        listenPort: UInt16 = 51820, rotation: KeyRotation.Policy = .init(), specWait: TimeInterval = 15,
        enrollmentChange: EnrollmentChange = .reissue
    ) {
        self.cidrSource = cidrSource
        self.enrollmentChange = enrollmentChange
        self.endpointAddressTypes = endpointAddressTypes
        self.listenPort = listenPort
        self.rotation = rotation
        self.specWait = specWait
    }
}
