import Foundation
import Kube
import KubeTestSupport
import Logging
import XCTest

/// A running test server and a client for it, stopped after the test body.
func withServer(_ options: TestAPIServer.Options = .init(), clientCertificate: Bool = false, userAgent: String = "wgmesh-test",
                _ body: (TestAPIServer, KubeClient) async throws -> Void) async throws {
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
        status["addresses"] = .array([.object(["type": "InternalIP", "address": .string(internalIP)]),
                                      .object(["type": "Hostname", "address": .string(name)])])
    }
    return .object([
        "apiVersion": "v1", "kind": "Node",
        "metadata": .object(["name": .string(name), "labels": .object(["kubernetes.io/hostname": .string(name)]),
                             "annotations": .object(annotations.mapValues(JSON.string))]),
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
    l.logLevel = ProcessInfo.processInfo.environment["WGMESH_TEST_LOG"].map { Logger.Level(rawValue: $0) ?? .debug } ?? .critical
    return l
}()

/// Fails the test unless `condition` holds within `timeout`.
func eventually(_ what: String, timeout: Duration = .seconds(20), file: StaticString = #filePath, line: UInt = #line,
                _ condition: () async throws -> Bool) async rethrows {
    // State that travels through the network.
    if try await !poll(timeout: timeout, interval: .milliseconds(20), condition) { XCTFail("timed out waiting until \(what)", file: file, line: line) }
}
