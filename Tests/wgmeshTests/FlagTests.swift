import ArgumentParser
@testable import wgmesh
import XCTest

/// The flags the manifests pass from the ConfigMap (manifests/config.yaml): one value for both IP
/// families, rotation by age off with 0, the controller's health address.
final class FlagTests: XCTestCase {
    func testClusterCIDRsTakeCommasAndRepeatedFlags() throws {
        XCTAssertEqual(
            try Flags.clusterCIDRs(["10.244.0.0/16,fd00:10:244::/48", " 10.245.0.0/16 "]).map(
                \.description),
            ["10.244.0.0/16", "fd00:10:244::/48", "10.245.0.0/16"])
        XCTAssertEqual(try Flags.clusterCIDRs([]), [])
        let agent = try AgentCommand.parse(["--cluster-cidr=10.244.0.0/16,fd00:10:244::/48", "--strict=false"])
        XCTAssertEqual(try Flags.clusterCIDRs(agent.clusterCIDRs).count, 2)
        XCTAssertFalse(agent.strict)
    }

    /// manifests/agent.yaml and device.yaml: wireguard-go in the wgmesh-device DaemonSet, the agent told so.
    func testTheUserspaceDeviceFlags() throws {
        XCTAssertTrue(
            try AgentCommand.parse(["--cluster-cidr=10.244.0.0/16", "--external-wireguard-go"]).externalWireGuardGo)
        XCTAssertFalse(
            try AgentCommand.parse(["--cluster-cidr=10.244.0.0/16"]).externalWireGuardGo,
            "without the flag the agent starts its own")
        let device = try UserspaceDeviceCommand.parse(["--interface=wgmesh0"])
        XCTAssertEqual(device.interface, "wgmesh0")
        XCTAssertEqual(device.backend, .auto)
        XCTAssertThrowsError(try UserspaceDeviceCommand.parse(["--backend", "bogus"]).run()) {
            XCTAssertTrue("\($0)".contains("--backend bogus is not one of auto, kernel, userspace"), "\($0)")
        }
    }

    func testABadClusterCIDRIsRefusedNamingTheValueAndTheItem() {
        let cases = [
            ("10.244.0.0/16,,fd00::/48", "--cluster-cidr 10.244.0.0/16,,fd00::/48: \"\" is not an IP address or CIDR"),
            ("10.244.0.0/16,", "--cluster-cidr 10.244.0.0/16,: \"\" is not an IP address or CIDR"),
            ("10.244.0.0/16;fd00::/48", "--cluster-cidr 10.244.0.0/16;fd00::/48: \"10.244.0.0/16;fd00::/48\" is not"),
            (
                "10.244.0.0/16,fd00::/129",
                "--cluster-cidr 10.244.0.0/16,fd00::/129: \"fd00::/129\" has a prefix length outside"
            ),
            ("10.244.0.1/16", "--cluster-cidr 10.244.0.1/16: 10.244.0.1/16 has host bits set; write 10.244.0.0/16"),
        ]
        for (bad, message) in cases {
            XCTAssertThrowsError(try Flags.clusterCIDRs(["10.0.0.0/8", bad]), bad) { error in
                XCTAssertTrue("\(error)".hasPrefix(message), "\(error)")
            }
        }
    }

    func testMaxKeyAgeZeroOrAbsentMeansNever() throws {
        XCTAssertNil(try ControllerCommand.keyAgeLimit(nil))
        XCTAssertNil(try ControllerCommand.keyAgeLimit("0"))
        XCTAssertNil(try ControllerCommand.keyAgeLimit("0s"))
        XCTAssertEqual(try ControllerCommand.keyAgeLimit("720h"), 720 * 3600)
        XCTAssertThrowsError(try ControllerCommand.keyAgeLimit("")) {
            XCTAssertTrue("\($0)".hasPrefix("--max-key-age "))
        }
        XCTAssertThrowsError(try ControllerCommand.keyAgeLimit("30d")) {
            XCTAssertTrue("\($0)".contains("--max-key-age 30d"))
        }
    }

    func testHealthBindAddress() throws {
        let controller = try ControllerCommand.parse(["--health-bind-address=:9587"])
        XCTAssertEqual(controller.healthBindAddress, ":9587")
        XCTAssertNil(try ControllerCommand.parse([]).healthBindAddress, "off unless asked for")
        let (host, port) = try Flags.bindAddress(":9587", flag: "--health-bind-address", example: 9587)
        XCTAssertNil(host)
        XCTAssertEqual(port, 9587)
        XCTAssertThrowsError(try Flags.bindAddress("9587", flag: "--health-bind-address", example: 9587)) {
            error in
            XCTAssertEqual("\(error)", "--health-bind-address 9587: use host:port, for example :9587 or 127.0.0.1:9587")
        }
    }
}
