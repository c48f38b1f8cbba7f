import CLI
import Foundation
import Kube
import KubeTestSupport
import WGMeshCore
import XCTest

/// `wgmesh peer` against the test API server serving the Peer CRD, with the real controller and the agents
/// played by the test: the wg-quick file, refusals that leave nothing behind, and what status and audit say.
final class PeerCommandTests: XCTestCase {
    func testAddWritesTheGatewaysConfigAndARefusedPeerIsDeletedAgain() async throws {
        let c = try await CLICluster(nodes: ["n1", "n2"], peerCIDRs: ["10.250.0.0/16", "fd00:10:250::/112"])
        c.startAgents()
        await c.waitUntilSettled()
        let keys = WireGuardKeyPair.generate()
        var request = Peers.Request(name: "laptop")
        request.expiresAt = Date().addingTimeInterval(3600)
        let printed = Printed()
        let text = try await Peers.add(
            c.client, request, keys: keys, serviceCIDRs: [try IPPrefix("10.96.0.0/12")], timeout: .seconds(30),
            progress: printed.callAsFunction)
        XCTAssertTrue(printed.lines.withLock { $0.first?.contains("Peer laptop created") == true })
        let peer = Peer(try await c.client.get(.peers, namespace: nil, name: "laptop"))
        let gateway = try XCTUnwrap(peer.gateway)
        let node = try MeshNode(name: gateway, annotations: try await c.annotations(gateway))
        for line in [
            "PrivateKey = \(keys.privateKey.base64)", "Address = 10.250.0.1/32, fd00:10:250::1/128",
            "PublicKey = \(node.publicKey!.base64)", "Endpoint = \(node.endpoint!)",
            "AllowedIPs = 10.244.0.0/16, fd00:10:244::/48, 10.96.0.0/12", "PersistentKeepalive = 25",
        ] {
            XCTAssertTrue(text.contains("\n" + line + "\n"), "\(line) in:\n\(text)")
        }
        XCTAssertEqual(text.components(separatedBy: "[Peer]").count, 2, "one [Peer]: the gateway")
        XCTAssertFalse(text.contains("ListenPort"), "a laptop without an endpoint listens where wg picks:\n\(text)")

        // A site the gateway dials (an endpoint) listens on its endpoint's port.
        var site = Peers.Request(name: "site")
        site.endpoint = "192.0.2.150:51821"
        site.allowedIPs = ["192.168.77.0/24"]
        let siteKeys = WireGuardKeyPair.generate()
        let siteText = try await Peers.add(
            c.client, site, keys: siteKeys, serviceCIDRs: [], timeout: .seconds(30), progress: { _ in })
        XCTAssertTrue(siteText.contains("\nListenPort = 51821\n"), siteText)
        try await Peers.remove(c.client, name: "site")

        // Again, without the private key; with another peer's key, refused.
        let again = try await Peers.config(c.client, name: "laptop", privateKey: nil, serviceCIDRs: [])
        XCTAssertFalse(again.contains(keys.privateKey.base64))
        XCTAssertTrue(again.contains("# PrivateKey = (never in the cluster"))
        do {
            _ = try await Peers.config(
                c.client, name: "laptop", privateKey: WireGuardKeyPair.generate().privateKey, serviceCIDRs: [])
            XCTFail("another key's private half was accepted")
        } catch { XCTAssertTrue("\(error)".contains("that private key is not Peer laptop's"), "\(error)") }

        // A Peer the controller refuses (its network overlaps the Pod network) is deleted again, and says why.
        var pods = Peers.Request(name: "pods")
        pods.allowedIPs = ["10.244.9.0/24"]
        do {
            _ = try await Peers.add(
                c.client, pods, keys: WireGuardKeyPair.generate(), serviceCIDRs: [], timeout: .seconds(30)
            ) { _ in }
            XCTFail("a Peer over the Pod network was admitted")
        } catch {
            XCTAssertTrue("\(error)".contains("not admitted, and is deleted again: Conflict:"), "\(error)")
            XCTAssertTrue("\(error)".contains("overlaps the cluster CIDR 10.244.0.0/16"), "\(error)")
        }
        let left = try await Peers.list(c.client)?.map(\.metadata.name)
        XCTAssertEqual(left, ["laptop"])
        // Refused before anything is sent: a network with host bits set.
        var sloppy = Peers.Request(name: "sloppy")
        sloppy.allowedIPs = ["192.168.1.1/24"]
        do {
            _ = try await Peers.add(
                c.client, sloppy, keys: WireGuardKeyPair.generate(), serviceCIDRs: [], timeout: .seconds(1)
            ) { _ in }
            XCTFail("accepted")
        } catch { XCTAssertTrue("\(error)".contains("write the network, 192.168.1.0/24"), "\(error)") }

        // status lists it; audit flags an admitted Peer that never made a handshake.
        let (status, _) = try await NodeStatusReport.run(c.client, format: .table)
        XCTAssertTrue(status.contains("LAST-HANDSHAKE") && status.contains("laptop"), status)
        let (report, passed) = try await Audit.run(
            c.client, cluster: .init(server: "https://test", context: nil), json: false, maxKeyAge: 86400,
            windowStart: Date().addingTimeInterval(-60))
        XCTAssertFalse(passed)
        XCTAssertTrue(report.contains("- FAIL: Outside peers"), report)
        XCTAssertTrue(report.contains("laptop: admitted (gateway \(gateway)) but no handshake seen"), report)
        XCTAssertTrue(report.contains("## Outside peers"), report)

        try await Peers.remove(c.client, name: "laptop")
        do {
            try await Peers.remove(c.client, name: "laptop")
            XCTFail("removed twice")
        } catch { XCTAssertTrue("\(error)".contains("there is no Peer laptop"), "\(error)") }
        await c.stopAgents()
        try await c.stop()
    }

    func testWithoutTheCRDThePeerCommandsSaySoAndStatusStillWorks() async throws {
        let c = try await CLICluster(nodes: ["n1"])
        do {
            _ = try await Peers.add(
                c.client, Peers.Request(name: "laptop"), keys: WireGuardKeyPair.generate(), serviceCIDRs: [],
                timeout: .seconds(1)
            ) { _ in }
            XCTFail("created a Peer where none is served")
        } catch { XCTAssertTrue("\(error)".contains("does not serve peers.wgmesh.dev"), "\(error)") }
        let listed = try await Peers.list(c.client)
        XCTAssertNil(listed)
        let (status, _) = try await NodeStatusReport.run(c.client, format: .table)
        XCTAssertFalse(status.contains("LAST-HANDSHAKE"))
        try await c.stop()
    }
}
