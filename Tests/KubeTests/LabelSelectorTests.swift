import Foundation
import Kube
@testable import KubeTestSupport
import XCTest

/// The test server's `labelSelector`, with kube-apiserver's grammar and meaning, on lists and watches.
final class LabelSelectorTests: XCTestCase {
    let labels = ["pool": "blue", "zone": "a", "kubernetes.io/hostname": "n1", "empty": ""]

    func matches(_ selector: String) throws -> Bool { try LabelSelector(selector).matches(labels) }

    func testTheGrammarAndItsMeaning() throws {
        let cases: [(String, Bool)] = [
            ("", true), ("pool", true), ("!pool", false), ("!gpu", true), ("gpu", false),
            ("pool=blue", true), ("pool==blue", true), ("pool=green", false), ("pool!=green", true),
            ("pool!=blue", false),
            ("gpu!=yes", true),  // != holds without the label, as in the API
            ("pool in (green,blue)", true), ("pool in (green)", false), ("pool notin (green)", true),
            ("gpu notin (x)", true),
            ("gpu in (x)", false), ("pool=blue,zone=a", true), ("pool=blue,zone=b", false),
            (" pool = blue , zone in ( a , b ) ", true),
            ("kubernetes.io/hostname=n1", true), ("empty=", true), ("pool=", false),
        ]
        for (selector, expected) in cases { XCTAssertEqual(try matches(selector), expected, selector) }
        for bad in [
            "pool blue", "pool=blue,", ",pool", "pool in green", "pool in (green", "pool in ()", "pool=a b",
            "bad key!=x", "pool=-x", "=x",
        ] {
            XCTAssertThrowsError(try LabelSelector(bad), bad) { error in
                XCTAssertEqual((error as? Status)?.code, 400, bad)
                XCTAssertTrue((error as? Status)?.message?.contains("unable to parse requirement") ?? false, bad)
            }
        }
    }

    func testListsAndWatchesSeeOnlyMatchingNodes() async throws {
        try await withServer { server, client in
            try server.withStore(.nodes) { store in
                for (name, pool) in [("n1", "blue"), ("n2", "green"), ("n3", "blue")] {
                    _ = try store.create(
                        .object([
                            "metadata": .object(["name": .string(name), "labels": .object(["pool": .string(pool)])])
                        ]))
                }
            }
            let blue = try await client.listAll(.nodes, pageSize: 1, labelSelector: "pool=blue")
            XCTAssertEqual(blue.items.map(\.metadata.name), ["n1", "n3"], "paged, filtered")
            let notBlue = try await client.listAll(.nodes, metadataOnly: true, labelSelector: "pool notin (blue)")
            XCTAssertEqual(notBlue.items.map(\.metadata.name), ["n2"])
            do {
                _ = try await client.listAll(.nodes, labelSelector: "pool in blue")
                XCTFail("a malformed selector is refused")
            } catch {
                XCTAssertEqual((error as? KubeError)?.code, 400)
            }

            // A node that starts matching arrives as ADDED, one that stops as DELETED, others not at all.
            let stream = try await client.watch(
                .nodes, namespace: nil,
                options: .init(
                    resourceVersion: blue.resourceVersion, allowBookmarks: false,
                    labelSelector: "pool=blue"))
            func relabel(_ name: String, _ pool: String) throws {
                try server.withStore(.nodes) {
                    _ = try $0.mergePatch(
                        name, .object(["metadata": .object(["labels": .object(["pool": .string(pool)])])]))
                }
            }
            try relabel("n2", "red")
            try relabel("n2", "blue")
            try relabel("n1", "green")
            try relabel("n3", "blue")
            var seen: [String] = []
            for try await event in stream {
                switch event {
                case .added(let o): seen.append("ADDED \(o.metadata.name)")
                case .modified(let o): seen.append("MODIFIED \(o.metadata.name)")
                case .deleted(let o): seen.append("DELETED \(o.metadata.name)")
                default: break
                }
                if seen.count == 3 { break }
            }
            XCTAssertEqual(seen, ["ADDED n2", "DELETED n1", "MODIFIED n3"])
        }
    }
}
