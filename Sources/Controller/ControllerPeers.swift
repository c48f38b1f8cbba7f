import Kube
import Logging
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MeshController {
    /// The outside peers, during the same term as the Nodes: restores every Peer's addresses from its status
    /// before anything new is handed out (so a restart or a failover never hands an address out twice), then,
    /// whenever a Peer or a Node changes and when the next Peer expires, decides every Peer's status
    /// (`PeerIssuance`) and writes those that differ, each with a resourceVersion precondition.
    func runPeers(nodes: Informer, nodeChanges: AsyncStream<Void>) async {
        let c = configuration
        guard !c.peerCIDRs.isEmpty,
            var issuance = try? PeerIssuance(peerCIDRs: c.peerCIDRs, clusterCIDRs: c.clusterCIDRs)
        else { return }
        var informerConfiguration = self.informerConfiguration
        informerConfiguration.transform = nil
        informerConfiguration.metadataOnly = false
        let peers = Informer(api: api, resource: .peers, configuration: informerConfiguration, logger: logger)
        let (ticks, tick) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await peers.run() }
            group.addTask {
                for await _ in peers.events { tick.yield() }
                tick.finish()
            }
            group.addTask { for await _ in nodeChanges { tick.yield() } }
            await peers.waitUntilSynced()
            await nodes.waitUntilSynced()
            var known: Set<String> = []
            for object in Self.oldestFirst(peers.list()) {
                let peer = Peer(object)
                let name = object.metadata.name
                known.insert(name)
                let refused = issuance.restore(name, addresses: peer.addresses.compactMap { try? IPAddress($0) })
                if !refused.isEmpty {
                    logger.warning(
                        "Peer addresses not restored: held by an older Peer or outside --peer-cidr; it gets new ones",
                        metadata: ["peer": "\(name)", "addresses": "\(refused.map(\.description))"])
                }
            }
            logger.info("Peer addresses restored", metadata: ["peers": "\(known.count)"])
            var expiryWakeup: Task<Void, Never>?
            tick.yield()
            for await _ in ticks {
                if Task.isCancelled { break }
                let objects = Self.oldestFirst(peers.list())
                let names = Set(objects.map(\.metadata.name))
                for gone in known.subtracting(names) {
                    // Freed only now that the Peer is gone: an address is never reused while its Peer exists.
                    logger.info("Peer deleted, addresses freed", metadata: ["peer": "\(gone)"])
                    issuance.release(gone)
                }
                known = names
                // Without a Peer, a Node's change decides nothing: no Node is read.
                if objects.isEmpty { continue }
                let now = self.now()
                let outcomes = issuance.decide(
                    objects.map(Self.peerInput), candidates: Self.gatewayCandidates(nodes.list()), now: now)
                var retry = false
                for object in objects {
                    guard let outcome = outcomes[object.metadata.name] else { continue }
                    if await !writeStatus(object, outcome, now: now) { retry = true }
                }
                expiryWakeup?.cancel()
                let next = objects.compactMap { Peer($0).expiresAt.flatMap(RFC3339.parse) }.filter { $0 > now }.min()
                if let at = retry ? now.addingTimeInterval(2) : next {
                    expiryWakeup = Task {
                        try? await Task.sleep(for: .seconds(max(0, at.timeIntervalSince(self.now())) + 0.05))
                        if !Task.isCancelled { tick.yield() }
                    }
                }
                // Node events come in bursts: a pass a second is enough for gateways.
                try? await Task.sleep(for: .seconds(1))
            }
            expiryWakeup?.cancel()
            group.cancelAll()
        }
    }

    static func oldestFirst(_ objects: [KubeObject]) -> [KubeObject] {
        objects.map { (($0.metadata.creationTimestamp ?? "", $0.metadata.name), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    static func peerInput(_ object: KubeObject) -> PeerIssuance.Input {
        let peer = Peer(object)
        let name = object.metadata.name
        let spec = Result { () throws(PeerSpecError) -> OutsidePeer in
            try OutsidePeer(
                name: name, publicKey: peer.publicKey, endpoint: peer.endpoint,
                persistentKeepalive: peer.persistentKeepalive, allowedIPs: peer.allowedIPs, expiresAt: peer.expiresAt)
        }
        var status = OutsidePeer.Status()
        status.gateway = peer.gateway
        return PeerIssuance.Input(name: name, spec: spec, status: status)
    }

    static func gatewayCandidates(_ nodes: [KubeObject]) -> [PeerIssuance.Candidate] {
        nodes.compactMap { object in
            guard let node = try? MeshNode(name: object.metadata.name, annotations: object.metadata.annotations)
            else { return nil }
            return .init(node: node, labelled: object.metadata.labels[PeerIssuance.gatewayLabel] == "true")
        }
    }

    /// Writes `outcome` into the Peer's status when it differs from what the status says, with an Event
    /// when its Ready reason changes. False when the write failed (the next pass tries again).
    func writeStatus(_ object: KubeObject, _ outcome: PeerIssuance.Outcome, now: Date) async -> Bool {
        let peer = Peer(object)
        let name = object.metadata.name
        let generation = object.metadata.generation ?? 0
        let ready = peer.conditions.first { $0.type == PeerIssuance.readyCondition }
        let addresses = outcome.addresses.map(\.description)
        let status = outcome.ready ? "True" : "False"
        if peer.addresses == addresses, peer.gateway == outcome.gateway, ready?.status == status,
            ready?.reason == outcome.reason.rawValue, ready?.message == outcome.message,
            object.json["status"]?["observedGeneration"]?.int == generation
        {
            return true
        }
        let transition =
            ready?.status == status ? (ready?.lastTransitionTime ?? RFC3339.format(now)) : RFC3339.format(now)
        let patch: JSON = .object([
            "metadata": .object(["resourceVersion": .string(object.metadata.resourceVersion ?? "")]),
            "status": .object([
                "addresses": .array(addresses.map(JSON.string)),
                "gateway": outcome.gateway.map(JSON.string) ?? .null,
                "observedGeneration": .integer(generation),
                "conditions": .array([
                    .object([
                        "type": .string(PeerIssuance.readyCondition), "status": .string(status),
                        "reason": .string(outcome.reason.rawValue), "message": .string(outcome.message),
                        "lastTransitionTime": .string(transition), "observedGeneration": .integer(generation),
                    ])
                ]),
            ]),
        ])
        do {
            _ = try await api.patch(.peers, namespace: nil, name: name, .merge(patch), subresource: "status")
        } catch {
            // A conflict means the Peer changed: its watch event brings the next pass.
            logger.warning("could not write a Peer's status", metadata: ["peer": "\(name)", "error": "\(error)"])
            return false
        }
        logger.info(
            "Peer \(outcome.reason.rawValue)",
            metadata: ["peer": "\(name)", "gateway": "\(outcome.gateway ?? "-")", "message": "\(outcome.message)"])
        if ready?.reason != outcome.reason.rawValue {
            // A list's items come without kind and apiVersion, which the Event's `regarding` needs.
            var fields = object.json.object ?? [:]
            fields["kind"] = .string(APIResource.peers.kind)
            fields["apiVersion"] = .string(APIResource.peers.apiVersion)
            let regarding = (try? KubeObject(json: .object(fields))) ?? object
            let reason = "Peer" + outcome.reason.rawValue
            await events.record(
                about: regarding, warning: outcome.reason.warning, reason: reason, action: "AdmitPeer",
                note: "Peer \(name): \(outcome.message)", at: now)
        }
        return true
    }
}
