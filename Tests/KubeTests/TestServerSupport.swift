import Foundation
import Kube
import KubeTestSupport
import Logging
import XCTest

/// A running test server and a client for it, stopped after the test body.
func withServer(
    _ options: TestAPIServer.Options = .init(), clientCertificate: Bool = false, userAgent: String = "wgmesh-test",
    _ body: (TestAPIServer, KubeClient) async throws -> Void
) async throws {
    let server = try await TestAPIServer.start(options)
    let client = try KubeClient(config: server.kubeConfig(clientCertificate: clientCertificate), userAgent: userAgent)
    do {
        try await body(server, client)
    } catch {
        try? await client.shutdown()
        try? await server.stop()
        throw error
    }
    try await client.shutdown()
    try await server.stop()
}

func node(_ name: String, annotations: [String: String] = [:], internalIP: String? = nil) -> JSON {
    var status: [String: JSON] = [:]
    if let internalIP {
        status["addresses"] = .array([
            .object(["type": "InternalIP", "address": .string(internalIP)]),
            .object(["type": "Hostname", "address": .string(name)]),
        ])
    }
    return .object([
        "apiVersion": "v1", "kind": "Node",
        "metadata": .object([
            "name": .string(name), "labels": .object(["kubernetes.io/hostname": .string(name)]),
            "annotations": .object(annotations.mapValues(JSON.string)),
        ]),
        "spec": .object([:]), "status": .object(status),
    ])
}

extension TestAPIServer {
    @discardableResult
    func createNodes(_ names: [String]) throws -> [JSON] {
        try withStore(.nodes) { store in try names.map { try store.create(node($0)) } }
    }
}

let testLogger: Logger = {
    var l = Logger(label: "wgmesh.test")
    l.logLevel =
        ProcessInfo.processInfo.environment["WGMESH_TEST_LOG"].map { Logger.Level(rawValue: $0) ?? .debug } ?? .critical
    return l
}()

/// Fails the test unless `condition` holds within `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(20), file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    // State that travels through the network.
    if try await !poll(timeout: timeout, interval: .milliseconds(20), condition) {
        XCTFail("timed out waiting until \(what)", file: file, line: line)
    }
}

/// A test case with a fresh temporary folder, removed after each test.
class FolderTestCase: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "wgmesh-\(type(of: self))-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// The path of `name` in the folder.
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Writes `text` to `name` (folders made as needed) and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}
