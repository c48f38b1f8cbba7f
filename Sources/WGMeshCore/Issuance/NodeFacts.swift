// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

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
    /// `metadata.creationTimestamp`; nil when unknown (the Node counts as old).
    public var created: Date?

    public init(
        name: String, annotations: [String: String], addresses: [Address] = [], specPodCIDRs: [String] = [],
        created: Date? = nil
    ) {
        self.name = name
        self.annotations = annotations
        self.addresses = addresses
        self.specPodCIDRs = specPodCIDRs
        self.created = created
    }

    /// Every CIDR the Node publishes, in its `pod-cidrs` annotation and in `spec.podCIDRs`, none of which
    /// may go to another node. From a malformed value, each address in it stands for itself (a /32 or
    /// /128), which keeps the block it lies in taken without letting a garbled prefix length reserve more.
    public var publishedCIDRs: [IPPrefix] {
        var out: [IPPrefix] = []
        func addresses(_ text: Substring) {
            for part in text.split(whereSeparator: { !($0.isHexDigit || $0 == "." || $0 == ":" || $0 == "/") }) {
                guard let address = try? IPAddress(part.split(separator: "/", omittingEmptySubsequences: false)[0])
                else { continue }
                out.append(try! IPPrefix(address: address, length: address.family.bitWidth))
            }
        }
        let annotation = annotations[Annotation.podCIDRs] ?? ""
        if let node = try? MeshNode(name: name, annotations: [Annotation.podCIDRs: annotation]) {
            out += node.podCIDRs
        } else {
            addresses(annotation[...])
        }
        for item in specPodCIDRs {
            if let cidr = try? IPPrefix(item) { out.append(cidr.canonical) } else { addresses(item[...]) }
        }
        return out
    }
}
