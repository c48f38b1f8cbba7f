import Foundation
import Kube
import KubeTestSupport
import Synchronization
import XCTest

/// The Peer custom resource (manifests/peer-crd.yaml) served by the test server as kube-apiserver serves it:
/// 404 until the CRD exists, the schema's refusals in its words, pruning, generation, the status subresource.
final class CustomResourceTests: XCTestCase {
    /// base64 of 32 bytes, as `wg pubkey` prints one.
    static let key = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="

    static func peer(_ name: String = "laptop", spec: [String: JSON] = [:], extra: [String: JSON] = [:]) -> JSON {
        var s: [String: JSON] = ["publicKey": .string(key)]
        s.merge(spec) { $1 }
        var o: [String: JSON] = [
            "apiVersion": "wgmesh.dev/v1alpha1", "kind": "Peer", "metadata": .object(["name": .string(name)]),
            "spec": .object(s),
        ]
        o.merge(extra) { $1 }
        return .object(o)
    }

    /// The Status of a refused request, or a failure when it was not refused.
    func refusal(
        file: StaticString = #filePath, line: UInt = #line, _ request: () async throws(KubeError) -> KubeObject
    ) async -> Status? {
        do {
            let o = try await request()
            XCTFail("accepted: \(o.json)", file: file, line: line)
            return nil
        } catch {
            XCTAssertNotNil(error.status, "\(error)", file: file, line: line)
            return error.status
        }
    }

    func testAGoodPeerIsCreatedAndReadBackAtGeneration1() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            let spec: [String: JSON] = [
                "endpoint": "203.0.113.7:51820", "persistentKeepalive": .integer(25),
                "allowedIPs": .array(["192.168.50.0/24", "fd00:50::/64"]), "expiresAt": "2030-01-02T03:04:05Z",
            ]
            let created = try await client.create(.peers, namespace: nil, Self.peer(spec: spec))
            let read = try await client.get(.peers, namespace: nil, name: "laptop")
            XCTAssertEqual(read, created)
            XCTAssertEqual(read.kind, "Peer")
            XCTAssertEqual(read.apiVersion, "wgmesh.dev/v1alpha1")
            XCTAssertEqual(read.metadata.generation, 1)
            XCTAssertNotNil(read.metadata.uid)
            XCTAssertNotNil(read.metadata.creationTimestamp)
            XCTAssertEqual(read.json["spec"], Self.peer(spec: spec)["spec"])
            let list = try await client.listAll(.peers)
            XCTAssertEqual(list.items.map(\.metadata.name), ["laptop"])
        }
    }

    func testWhatTheSchemaRefusesIsRefusedWith422InKubeApiserversWords() async throws {
        let pattern = "'^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$'"
        let badKey = String(Self.key.dropLast(2)) + "B="
        let seventeen = JSON.array((0..<17).map { .string("10.\($0).0.0/16") })
        let cases: [(spec: [String: JSON], field: String, message: String)] = [
            (
                ["publicKey": "abc"], "spec.publicKey",
                "spec.publicKey: Invalid value: \"abc\": spec.publicKey in body should match \(pattern)"
            ),
            (
                ["publicKey": .string(badKey)], "spec.publicKey",
                "spec.publicKey: Invalid value: \"\(badKey)\": spec.publicKey in body should match \(pattern)"
            ),
            (
                ["allowedIPs": .array(["10.0.0.0/33"])], "spec.allowedIPs[0]",
                """
                spec.allowedIPs[0]: Invalid value: "10.0.0.0/33": spec.allowedIPs[0] in body must be of type cidr: \
                "10.0.0.0/33"
                """
            ),
            (
                ["allowedIPs": .array(["10.1.0.0/24", "not-a-cidr"])], "spec.allowedIPs[1]",
                """
                spec.allowedIPs[1]: Invalid value: "not-a-cidr": spec.allowedIPs[1] in body must be of type cidr: \
                "not-a-cidr"
                """
            ),
            (
                ["allowedIPs": .array(["10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24"])], "spec.allowedIPs[2]",
                "spec.allowedIPs[2]: Duplicate value: \"10.1.0.0/24\""
            ),
            (["allowedIPs": seventeen], "spec.allowedIPs", "spec.allowedIPs: Too many: 17: must have at most 16 items"),
            (
                ["persistentKeepalive": .integer(-1)], "spec.persistentKeepalive",
                """
                spec.persistentKeepalive: Invalid value: -1: spec.persistentKeepalive in body should be greater \
                than or equal to 0
                """
            ),
            (
                ["persistentKeepalive": .integer(65536)], "spec.persistentKeepalive",
                """
                spec.persistentKeepalive: Invalid value: 65536: spec.persistentKeepalive in body should be less \
                than or equal to 65535
                """
            ),
            (
                ["persistentKeepalive": "25"], "spec.persistentKeepalive",
                """
                spec.persistentKeepalive: Invalid value: "string": spec.persistentKeepalive in body must be of \
                type integer: "string"
                """
            ),
            (
                ["expiresAt": "tomorrow"], "spec.expiresAt",
                """
                spec.expiresAt: Invalid value: "tomorrow": spec.expiresAt in body must be of type date-time: \
                "tomorrow"
                """
            ),
            (
                ["expiresAt": "2030-02-30T00:00:00Z"], "spec.expiresAt",
                """
                spec.expiresAt: Invalid value: "2030-02-30T00:00:00Z": spec.expiresAt in body must be of type \
                date-time: "2030-02-30T00:00:00Z"
                """
            ),
            (
                ["endpoint": .string(String(repeating: "a", count: 262) + ":1")], "spec.endpoint",
                "spec.endpoint: Too long: may not be more than 261 bytes"
            ),
        ]
        try await withServer { server, client in
            try server.installPeerCRD()
            for c in cases {
                guard
                    let status = await refusal({ () async throws(KubeError) in
                        try await client.create(.peers, namespace: nil, Self.peer(spec: c.spec))
                    })
                else { continue }
                XCTAssertEqual(status.code, 422, "\(c.spec)")
                XCTAssertEqual(status.reason, "Invalid")
                XCTAssertEqual(status.message, "Peer.wgmesh.dev \"laptop\" is invalid: " + c.message)
                XCTAssertEqual(status.causes.map(\.field), [c.field])
                XCTAssertEqual(status.details?["group"], "wgmesh.dev")
                XCTAssertEqual(status.details?["kind"], "Peer")
            }
            let stored = try await client.listAll(.peers)
            XCTAssertEqual(stored.items, [], "a refused Peer was stored")
        }
    }

    func testSeveralFailuresAreJoinedAsKubeApiserverJoinsThem() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            var peer = Self.peer(spec: ["persistentKeepalive": .integer(-5)]).object!
            peer["spec"] = .object(["persistentKeepalive": .integer(-5)])
            let status = await refusal({ () async throws(KubeError) in
                try await client.create(.peers, namespace: nil, .object(peer))
            })
            XCTAssertEqual(
                status?.message,
                """
                Peer.wgmesh.dev "laptop" is invalid: [spec.persistentKeepalive: Invalid value: -5: \
                spec.persistentKeepalive in body should be greater than or equal to 0, spec.publicKey: Required value]
                """)
            XCTAssertEqual(status?.causes.map(\.reason), ["FieldValueInvalid", "FieldValueRequired"])
            let noSpec = await refusal({ () async throws(KubeError) in
                try await client.create(
                    .peers, namespace: nil, .object(["metadata": .object(["name": "bare"])]))
            })
            XCTAssertEqual(noSpec?.message, "Peer.wgmesh.dev \"bare\" is invalid: spec: Required value")
        }
    }

    func testCIDRsAreWhatGosParseCIDRAccepts() async throws {
        let accepted = [
            "10.0.0.0/8", "10.0.0.1/24", "0.0.0.0/0", "10.0.0.0/032", "fd00::/64", "::/0", "2001:db8::1/128",
            "::ffff:10.0.0.0/104", "1:2:3:4:5:6:7:8/128", "1:2:3:4:5:6:1.2.3.4/128",
        ]
        let refused = [
            "10.0.0.0", "010.0.0.0/8", "10.0.0/8", "10.0.0.256/32", "10.0.0.0/-1", "10.0.0.0/ 8", "fd00::/129",
            "fd00:::/64", "1:2:3:4:5:6:7:8::/128", "1:2:3:4:5:6:7/128", "fe80::1%eth0/64", "12345::/16", ":1::/16",
            "1::2::/16", "",
        ]
        try await withServer { server, client in
            try server.installPeerCRD()
            for (i, cidr) in accepted.enumerated() {
                _ = try await client.create(
                    .peers, namespace: nil, Self.peer("ok-\(i)", spec: ["allowedIPs": .array([.string(cidr)])]))
            }
            for cidr in refused {
                let status = await refusal({ () async throws(KubeError) in
                    try await client.create(
                        .peers, namespace: nil, Self.peer(spec: ["allowedIPs": .array([.string(cidr)])]))
                })
                XCTAssertEqual(status?.causes.first?.field, "spec.allowedIPs[0]", cidr)
                XCTAssertEqual(status?.causes.first?.reason, "FieldValueTypeInvalid", cidr)
            }
        }
    }

    func testStatusIsWrittenThroughTheStatusSubresourceOnly() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            let status: JSON = .object(["gateway": "node-1", "addresses": .array(["100.64.0.1"])])
            let created = try await client.create(.peers, namespace: nil, Self.peer(extra: ["status": status]))
            XCTAssertNil(created.json["status"], "a create set the status")

            var withStatus = created.json.object!
            withStatus["status"] = status
            let updated = try await client.update(.peers, namespace: nil, .object(withStatus), subresource: nil)
            XCTAssertNil(updated.json["status"], "a write of the Peer set the status")

            let patched = try await client.patch(
                .peers, namespace: nil, name: "laptop",
                .merge(.object(["status": status, "spec": .object(["persistentKeepalive": .integer(5)])])),
                subresource: "status")
            XCTAssertEqual(patched.json["status"], status)
            XCTAssertNil(patched.json["spec"]?["persistentKeepalive"], "a write of the status changed the spec")
            XCTAssertEqual(patched.metadata.generation, 1)

            let again = try await client.patch(
                .peers, namespace: nil, name: "laptop", .merge(.object(["status": .object(["gateway": "node-2"])])),
                subresource: nil)
            XCTAssertEqual(again.json["status"], status, "a patch of the Peer changed the status")
        }
    }

    func testGenerationCountsChangesOfAnythingButMetadata() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            _ = try await client.create(.peers, namespace: nil, Self.peer())
            let labelled = try await client.patch(
                .peers, namespace: nil, name: "laptop",
                .merge(.object(["metadata": .object(["labels": .object(["site": "home"])])])), subresource: nil)
            XCTAssertEqual(labelled.metadata.generation, 1)
            let changed = try await client.patch(
                .peers, namespace: nil, name: "laptop",
                .merge(.object(["spec": .object(["persistentKeepalive": .integer(25)])])),
                subresource: nil)
            XCTAssertEqual(changed.metadata.generation, 2)
            var body = changed.json.object!
            body["metadata"] = APIStore.mergePatch(body["metadata"]!, .object(["generation": .integer(9)]))
            let same = try await client.update(.peers, namespace: nil, .object(body), subresource: nil)
            XCTAssertEqual(same.metadata.generation, 2, "the client set the generation")
            _ = try await client.patch(
                .peers, namespace: nil, name: "laptop", .merge(.object(["status": .object(["gateway": "n"])])),
                subresource: "status")
            let read = try await client.get(.peers, namespace: nil, name: "laptop")
            XCTAssertEqual(read.metadata.generation, 2, "a status write changed the generation")
        }
    }

    func testUnknownFieldsArePrunedAndMetadataIsKept() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            let created = try await client.create(
                .peers, namespace: nil,
                Self.peer(spec: ["color": "blue"], extra: ["extra": .integer(1)]).merged([
                    "metadata": .object(["name": "laptop", "annotations": .object(["a": "b"])])
                ]))
            XCTAssertNil(created.json["extra"])
            XCTAssertNil(created.json["spec"]?["color"])
            XCTAssertEqual(created.json["spec"]?["publicKey"], .string(Self.key))
            XCTAssertEqual(created.metadata.annotations, ["a": "b"])
            let patched = try await client.patch(
                .peers, namespace: nil, name: "laptop",
                .merge(
                    .object([
                        "status": .object([
                            "gateway": "node-1",
                            "conditions": .array([.object(["type": "Ready", "status": "True", "shade": "green"])]),
                        ])
                    ])), subresource: "status")
            XCTAssertEqual(
                patched.json["status"],
                .object(["gateway": "node-1", "conditions": .array([.object(["type": "Ready", "status": "True"])])]))
        }
    }

    func testStatusIsValidatedToo() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            _ = try await client.create(.peers, namespace: nil, Self.peer())
            let conditions: JSON = .array([
                .object(["type": "Ready", "status": "Maybe"]), .object(["type": "Ready", "status": "True"]),
            ])
            let status = await refusal({ () async throws(KubeError) in
                try await client.patch(
                    .peers, namespace: nil, name: "laptop",
                    .merge(.object(["status": .object(["conditions": conditions])])),
                    subresource: "status")
            })
            XCTAssertEqual(
                status?.message,
                """
                Peer.wgmesh.dev "laptop" is invalid: [status.conditions[0].status: Unsupported value: "Maybe": \
                supported values: "True", "False", "Unknown", status.conditions[1]: Duplicate value: \
                map[string]interface {}{"type":"Ready"}]
                """)
        }
    }

    func testPeersAre404UntilTheCRDExistsAndAfterItIsDeleted() async throws {
        try await withServer { server, client in
            func assertNotServed(_ when: String) async {
                for status in [
                    await refusal({ () async throws(KubeError) in
                        try await client.get(.peers, namespace: nil, name: "laptop")
                    }),
                    await refusal({ () async throws(KubeError) in
                        try await client.create(.peers, namespace: nil, Self.peer())
                    }),
                ] {
                    XCTAssertEqual(status?.code, 404, when)
                    XCTAssertEqual(status?.message, "the server could not find the requested resource", when)
                }
            }
            await assertNotServed("before the CRD")
            try server.installPeerCRD()
            _ = try await client.create(.peers, namespace: nil, Self.peer())
            let crd = try await client.get(.customResourceDefinitions, namespace: nil, name: "peers.wgmesh.dev")
            XCTAssertEqual(
                crd.json["status"]?["conditions"]?.array?.map { $0["type"] }, ["NamesAccepted", "Established"])
            try await client.delete(.customResourceDefinitions, namespace: nil, name: "peers.wgmesh.dev")
            await assertNotServed("after the CRD is deleted")
            try server.installPeerCRD()
            let list = try await client.listAll(.peers)
            XCTAssertEqual(list.items, [], "the Peers outlived their CRD")
        }
    }

    func testACRDWithAKeywordTheServerDoesNotEnforceIsRefused() async throws {
        try await withServer { server, _ in
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("manifests/peer-crd.yaml")
            let yaml = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(
                of: "maxLength: 261", with: "minLength: 1")
            XCTAssertThrowsError(try server.createCustomResourceDefinitions(yaml: yaml)) { error in
                let status = error as? Status
                XCTAssertEqual(status?.code, 422)
                let field = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[endpoint].minLength"
                XCTAssertEqual(status?.causes.map(\.field), [field])
                XCTAssertTrue(status?.message?.contains(field + ": Forbidden") ?? false, "\(error)")
            }
            XCTAssertThrowsError(
                try server.createCustomResourceDefinitions(
                    yaml: yaml.replacingOccurrences(of: "minLength: 1", with: "maxLength: 1").replacingOccurrences(
                        of: "format: cidr", with: "format: ipv4")))
        }
    }

    func testAWatchSeesPeerEvents() async throws {
        try await withServer { server, client in
            try server.installPeerCRD()
            let events = Mutex<[String]>([])
            let watch = try await client.watch(.peers, namespace: nil, options: WatchOptions(timeoutSeconds: 30))
            let reader = Task {
                for try await event in watch {
                    switch event {
                    case .added(let o):
                        events.withLock { $0.append("ADDED \(o.metadata.name) \(o.metadata.generation ?? 0)") }
                    case .modified(let o):
                        events.withLock { $0.append("MODIFIED \(o.metadata.name) \(o.metadata.generation ?? 0)") }
                    case .deleted(let o): events.withLock { $0.append("DELETED \(o.metadata.name)") }
                    default: break
                    }
                    if events.withLock({ $0.count }) == 3 { return }
                }
            }
            _ = try await client.create(.peers, namespace: nil, Self.peer())
            _ = try await client.patch(
                .peers, namespace: nil, name: "laptop",
                .merge(.object(["spec": .object(["persistentKeepalive": .integer(25)])])),
                subresource: nil)
            try await client.delete(.peers, namespace: nil, name: "laptop")
            await eventually("the watch saw three events") { events.withLock { $0.count } == 3 }
            reader.cancel()
            XCTAssertEqual(events.withLock { $0 }, ["ADDED laptop 1", "MODIFIED laptop 2", "DELETED laptop"])
        }
    }

    func testPeerWritesAreRecordedForTheAdmissionReplay() async throws {
        let records = Mutex<[JSON]>([])
        try await withServer(.init(recordNodeWrite: { r in records.withLock { $0.append(r) } })) { server, client in
            try server.installPeerCRD()
            _ = try await client.create(.peers, namespace: nil, Self.peer())
            _ = try await client.patch(
                .peers, namespace: nil, name: "laptop", .merge(.object(["status": .object(["gateway": "n"])])),
                subresource: "status")
            _ = try await client.get(.peers, namespace: nil, name: "laptop")
        }
        let seen = records.withLock { $0 }
        XCTAssertEqual(seen.map { $0["operation"] }, ["CREATE", "UPDATE"])
        XCTAssertEqual(seen.map { $0["subResource"] }, ["", "status"])
        XCTAssertEqual(
            seen.first?["resource"], .object(["group": "wgmesh.dev", "version": "v1alpha1", "resource": "peers"]))
        XCTAssertEqual(seen.last?["object"]?["status"]?["gateway"], "n")
    }
}

extension JSON {
    /// The object with `other`'s keys replacing its own.
    fileprivate func merged(_ other: [String: JSON]) -> JSON {
        .object((object ?? [:]).merging(other) { $1 })
    }
}
