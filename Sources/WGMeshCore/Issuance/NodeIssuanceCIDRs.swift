// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Pod CIDRs: which the node keeps, which wgmesh allocates, and the Warnings for those claimed twice.
extension NodeIssuance {
    /// A Warning for every CIDR of another node that overlaps one of this node's, naming both nodes.
    mutating func report(_ overlaps: [PodCIDRAllocator.Overlap], of name: String, _ allocator: PodCIDRAllocator) {
        for o in overlaps {
            // The same words whichever side is looked at first, so that each side's Event is one Event.
            let sides = [(name, o.cidr), (o.otherNode, o.otherCIDR)].sorted { $0.0 < $1.0 }
            let what =
                o.cidr == o.otherCIDR
                ? "Pod CIDR \(o.cidr) is claimed by both node \(sides[0].0) and node \(sides[1].0)"
                : "Pod CIDR \(sides[0].1) of node \(sides[0].0) overlaps \(sides[1].1) of node \(sides[1].0)"
            // Only one of the two sides can be the one wgmesh allocated it to: a third node's claim is its own
            // conflict.
            let owner = [allocator.owner(of: o.cidr), allocator.owner(of: o.otherCIDR)].compactMap { $0 }.first {
                $0 == name || $0 == o.otherNode
            }
            let fix =
                owner.map {
                    """
                    wgmesh allocated it to node \($0): remove it from the other node's \(Annotation.podCIDRs) \
                    annotation or spec.podCIDRs
                    """
                }
                ?? "wgmesh allocated it to neither: remove it from one of them"
            notices.append(
                Notice(
                    warning: true, reason: .podCIDRConflict,
                    note:
                        """
                        \(what): their Pods could get the same addresses, and agents leave nodes whose \
                        \(Annotation.podCIDRs) overlap out of the mesh; \(fix)
                        """,
                    otherNode: o.otherNode))
        }
    }

    /// One Pod CIDR per family, each on its own: a published CIDR never changes; a missing family comes
    /// from `spec.podCIDRs` or from wgmesh's pool, never from both allocators racing.
    mutating func decideCIDRs(
        _ facts: NodeFacts, _ node: MeshNode, allocator: inout PodCIDRAllocator, overlapping: Set<IPPrefix>,
        specFamilies: Set<IPFamily>, policy: ControllerPolicy, now: Date
    ) {
        var spec: [IPPrefix] = []
        for text in facts.specPodCIDRs {
            guard let cidr = try? IPPrefix(text), cidr.isCanonical else {
                notices.append(
                    Notice(
                        warning: true, reason: .podCIDRInvalid,
                        note: "spec.podCIDRs has \"\(text)\", which is not a CIDR; fix the Node's spec"))
                spec = []
                break
            }
            spec.append(cidr)
        }
        let source = policy.cidrSource
        if source == .wgmesh { spec = [] }
        // Published CIDRs stay; each is recorded as the node's allocation where the pools allow.
        for cidr in node.podCIDRs {
            let fromSpec = spec.contains(cidr)
            if let other = spec.first(where: { $0.family == cidr.family && $0 != cidr }) {
                notices.append(
                    Notice(
                        warning: true, reason: .podCIDRMismatch,
                        note:
                            """
                            spec.podCIDRs gives \(other) but the node publishes \(cidr), which its Pods use; \
                            wgmesh keeps \(cidr). To move the node to \(other), drain it, delete its Node object \
                            and let it register again
                            """
                    ))
            }
            do {
                try allocator.restore(node: node.name, cidr: cidr)
            } catch .outsideClusterCIDRs where fromSpec || source == .nodeSpec {
                // The cluster assigned it from its own range: not wgmesh's to track.
            } catch .duplicate {
                // Reported as an overlap, on both nodes.
            } catch .nodeAlreadyHas(_, let held) {
                notices.append(
                    Notice(
                        warning: true, reason: .podCIDRMismatch,
                        note:
                            """
                            the node publishes \(cidr) but wgmesh allocated it \
                            \(held.map(\.description).joined(separator: ", ")); both stay reserved for it. Put \
                            the allocated value back, unless its Pods already use \(cidr)
                            """
                    ))
            } catch {
                notices.append(Notice(warning: true, reason: .podCIDRUnmanaged, note: "\(error)"))
            }
        }
        var result = node.podCIDRs
        var fromPool: [IPFamily] = []
        var waitingForSpec: [IPFamily] = []
        let families = Set(spec.map(\.family)).union(source == .nodeSpec ? [] : allocator.families).subtracting(
            result.map(\.family))
        for family in families.sorted() {
            if let s = spec.first(where: { $0.family == family }) {
                // another node publishes it (reported above): not published again
                if overlapping.contains(s) { continue }
                result.append(s)
                notices.append(
                    Notice(warning: false, reason: .podCIDRAssigned, note: "Pod CIDR \(s) from spec.podCIDRs"))
            } else if source == .auto && specFamilies.contains(family) {
                waitingForSpec.append(family)
            } else if source == .auto, let created = facts.created, now < created.addingTimeInterval(policy.specWait) {
                // Not yet: kube-controller-manager may be about to fill spec.podCIDRs.
                revisit(at: created.addingTimeInterval(policy.specWait))
                waitsForSpec = true
            } else {
                fromPool.append(family)
            }
        }
        if source == .nodeSpec, spec.isEmpty, result.isEmpty {
            notices.append(
                Notice(
                    warning: true, reason: .podCIDRPending,
                    note:
                        """
                        the Node has no spec.podCIDRs yet (--cidr-source=node-spec): start \
                        kube-controller-manager with --allocate-node-cidrs, or use --cidr-source=wgmesh
                        """
                ))
        }
        if !waitingForSpec.isEmpty {
            let due = (facts.created ?? now).addingTimeInterval(policy.specWait)
            if now >= due {
                let names = waitingForSpec.map(\.description).joined(separator: " and ")
                notices.append(
                    Notice(
                        warning: true, reason: .podCIDRPending,
                        note:
                            """
                            spec.podCIDRs has no \(names) CIDR \(Int(policy.specWait)) s after the Node was \
                            created, while other Nodes have one: the cluster (kube-controller-manager \
                            --allocate-node-cidrs) assigns this family, and wgmesh waits for it rather than race \
                            it; check kube-controller-manager (its --cluster-cidr range may be full), or run \
                            wgmesh with --cidr-source=wgmesh
                            """
                    ))
            } else {
                revisit(at: due)
            }
        }
        if !fromPool.isEmpty {
            let reserved = allocator.allocation(of: node.name) ?? []
            do {
                let cidrs = try allocator.allocate(node: node.name, families: fromPool)
                result += cidrs
                let new = cidrs.filter { !reserved.contains($0) }
                // A reserved CIDR is one whose earlier write did not land (or whose outcome is unknown): written again,
                // quietly.
                if !new.isEmpty {
                    notices.append(
                        Notice(
                            warning: false, reason: .podCIDRAllocated,
                            note: "allocated Pod CIDRs \(new.map(\.description).joined(separator: ", "))"))
                }
            } catch {
                notices.append(Notice(warning: true, reason: .podCIDRExhausted, note: "\(error)"))
            }
        }
        if result != node.podCIDRs {
            annotations[Annotation.podCIDRs] = result.sorted { $0.family < $1.family }.map(\.description).joined(
                separator: ",")
        }
    }
}
