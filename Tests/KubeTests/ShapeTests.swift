import Foundation
@testable import Kube
import KubeTestSupport
import NIOCore
import XCTest

/// The test server answers the captured requests with the same shapes as the real kube-apiserver:
/// the same fields, nested the same way, with the same JSON types. Values (uids, times, versions,
/// generated names) are ignored, and so is `metadata.managedFields`, the server-side-apply
/// bookkeeping that the test server does not keep and wgmesh never reads.
final class ShapeTests: XCTestCase {
    typealias Shape = [String: String]

    static func shape(_ json: JSON) -> Shape {
        var out: Shape = [:]
        func walk(_ j: JSON, _ path: String) {
            if path.hasSuffix(".managedFields") { return }
            switch j {
            case .object(let o):
                out[path] = "object"
                for (k, v) in o { walk(v, path + "." + k) }
            case .array(let a):
                out[path] = "array"
                for v in a { walk(v, path + "[]") }
            case .string: out[path] = "string"
            case .integer, .double: out[path] = "number"
            case .bool: out[path] = "bool"
            case .null: out[path] = "null"
            }
        }
        walk(json, "")
        return out
    }

    func assertSameShape(
        _ captured: JSON, _ served: JSON, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let a = Self.shape(captured)
        let b = Self.shape(served)
        let differences = Set(a.keys).union(b.keys).sorted().filter { a[$0] != b[$0] }
            .map { "\($0): kube-apiserver \(a[$0] ?? "absent"), test server \(b[$0] ?? "absent")" }
        XCTAssertTrue(differences.isEmpty, "\(what):\n" + differences.joined(separator: "\n"), file: file, line: line)
        compared += 1
    }

    var compared = 0

    func sample(_ file: String, _ index: Int = 0) throws -> JSON {
        let s = try SampleTests.sections(file).filter { $0.code != nil }[index]
        return try JSON.parse(Data(s.body.utf8))
    }

    func sampleEvents(_ file: String) throws -> [JSON] {
        let s = try XCTUnwrap(SampleTests.sections(file).first)
        return try s.body.split(separator: "\n").map { try JSON.parse(Data($0.utf8)) }
    }

    /// The three Nodes of the captures, as they were created (server-set fields left out).
    func seed(_ server: TestAPIServer) throws {
        let items = try ["01-list-paged.txt"].flatMap { f in
            try (0..<2).flatMap { try sample(f, $0)["items"]?.array ?? [] }
        }
        XCTAssertEqual(items.count, 3)
        try server.withStore(.nodes) { store in
            for item in items {
                var meta = item["metadata"]?.object ?? [:]
                for k in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] { meta[k] = nil }
                var o = item.object ?? [:]
                o["metadata"] = .object(meta)
                _ = try store.create(.object(o))
            }
        }
    }

    /// Status code and body as the test server sends them.
    func raw(
        _ client: KubeClient, _ method: String, _ path: String, query: [(String, String)] = [], body: JSON? = nil,
        contentType: String = "application/json", accept: String = "application/json"
    ) async throws -> (Int, String) {
        let request = KubeClient.Request(
            method: .init(rawValue: method), path: path, query: query, body: body,
            contentType: contentType, accept: accept, timeout: .seconds(10))
        let response = try await client.execute(request)
        return (Int(response.status.code), String(buffer: try await client.collect(request, response)))
    }

    func rawJSON(
        _ client: KubeClient, _ method: String, _ path: String, query: [(String, String)] = [], body: JSON? = nil,
        contentType: String = "application/json", accept: String = "application/json", expect code: Int
    ) async throws -> JSON {
        let (got, text) = try await raw(
            client, method, path, query: query, body: body, contentType: contentType, accept: accept)
        XCTAssertEqual(got, code, "\(method) \(path): \(text.prefix(300))")
        return try JSON.parse(Data(text.utf8))
    }

    func testTheTestServerAnswersLikeKubeAPIServer() async throws {
        try await withServer(.init(bookmarkInterval: .milliseconds(200))) { server, client in
            try seed(server)
            let metadataList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            let metadataItem = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

            // 01: two pages.
            let page1 = try await rawJSON(client, "GET", "/api/v1/nodes", query: [("limit", "2")], expect: 200)
            assertSameShape(try sample("01-list-paged.txt", 0), page1, "01 first page")
            let token = try XCTUnwrap(page1["metadata"]?["continue"]?.string)
            let page2 = try await rawJSON(
                client, "GET", "/api/v1/nodes", query: [("limit", "2"), ("continue", token)], expect: 200)
            assertSameShape(try sample("01-list-paged.txt", 1), page2, "01 second page")

            // 02: metadata-only list.
            assertSameShape(
                try sample("02-list-metadata.txt"),
                try await rawJSON(client, "GET", "/api/v1/nodes", accept: metadataList, expect: 200), "02 metadata list"
            )

            // 05: stale precondition; 07: not found; 08: invalid annotation key.
            assertSameShape(
                try sample("05-patch-conflict-409.txt"),
                try await rawJSON(
                    client, "PATCH", "/api/v1/nodes/node-1",
                    body: .object([
                        "metadata": .object(["resourceVersion": "1", "annotations": .object(["wgmesh.dev/x": "y"])])
                    ]),
                    contentType: "application/merge-patch+json", expect: 409), "05 conflict")
            assertSameShape(
                try sample("07-get-404.txt"), try await rawJSON(client, "GET", "/api/v1/nodes/nope", expect: 404),
                "07 not found")
            assertSameShape(
                try sample("08-patch-invalid-422.txt"),
                try await rawJSON(
                    client, "PATCH", "/api/v1/nodes/node-1",
                    body: .object(["metadata": .object(["annotations": .object(["wgmesh.dev/bad key!": "v"])])]),
                    contentType: "application/merge-patch+json", expect: 422), "08 invalid")

            // 10: Lease create, create again, stale update.
            let leaseSample = try sample("10-lease.txt", 0)
            var leaseBody = leaseSample.object ?? [:]
            leaseBody["metadata"] = .object(["name": "wgmesh-controller", "namespace": "wgmesh-system"])
            let leasePath = "/apis/coordination.k8s.io/v1/namespaces/wgmesh-system/leases"
            let created = try await rawJSON(client, "POST", leasePath, body: .object(leaseBody), expect: 201)
            assertSameShape(leaseSample, created, "10 lease create")
            assertSameShape(
                try sample("10-lease.txt", 1),
                try await rawJSON(client, "POST", leasePath, body: .object(leaseBody), expect: 409), "10 already exists"
            )
            var stale = created.object ?? [:]
            stale["metadata"] = APIStore.mergePatch(created["metadata"]!, .object(["resourceVersion": "1"]))
            assertSameShape(
                try sample("10-lease.txt", 2),
                try await rawJSON(client, "PUT", leasePath + "/wgmesh-controller", body: .object(stale), expect: 409),
                "10 stale update")

            // 11: an Event whose generateName is not a valid prefix.
            let event: JSON = .object([
                "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": .object(["generateName": "node-1."]),
                "eventTime": "2026-11-27T02:30:00.000000Z", "reportingController": "wgmesh.dev/controller",
                "reportingInstance": "a",
                "action": "Allocate", "reason": "PodCIDRAllocated", "type": "Normal", "note": "n",
                "regarding": .object(["kind": "Node", "name": "node-1", "apiVersion": "v1"]),
            ])
            assertSameShape(
                try sample("11-event.txt"),
                try await rawJSON(
                    client, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", body: event, expect: 422),
                "11 event")

            // 03 and 04: watch from a list's version: MODIFIED, DELETED, BOOKMARK, full and metadata-only.
            for (file, accept) in [("03-watch.txt", "application/json"), ("04-watch-metadata.txt", metadataItem)] {
                try seedAgainIfNeeded(server)
                let rv = try await client.listAll(.nodes).resourceVersion!
                async let served = Self.watchLines(
                    client, query: [("resourceVersion", rv), ("allowWatchBookmarks", "true"), ("timeoutSeconds", "2")],
                    accept: accept, until: "BOOKMARK", after: 2)
                try await Task.sleep(for: .milliseconds(50))
                _ = try await client.patch(
                    .nodes, namespace: nil, name: "node-1",
                    .merge(.object(["metadata": .object(["annotations": .object(["wgmesh.dev/public-key": "AAAA"])])])))
                try await client.delete(.nodes, namespace: nil, name: "node-3")
                try compareEvents(try sampleEvents(file), try await served, file)
            }

            // 13: streaming list, metadata only.
            try seedAgainIfNeeded(server)
            let streamed = try await Self.watchLines(
                client,
                query: [
                    ("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan"),
                    ("allowWatchBookmarks", "true"), ("timeoutSeconds", "2"),
                ],
                accept: metadataItem, until: "BOOKMARK", after: 0)
            try compareEvents(try sampleEvents("13-watchlist-metadata.txt"), streamed, "13")

            // 09 (after the watches, whose captures have no conditions): the status condition, patched by
            // strategic merge, read back.
            let excerpt = try XCTUnwrap(
                SampleTests.sections("09-status-condition.txt").first { $0.code == nil && $0.body.hasPrefix("[") })
            let conditions = try JSON.parse(Data(excerpt.body.utf8))
            _ = try await rawJSON(
                client, "PATCH", "/api/v1/nodes/node-1/status",
                body: .object(["status": .object(["conditions": conditions])]),
                contentType: "application/strategic-merge-patch+json", expect: 200)
            let node1 = try await rawJSON(client, "GET", "/api/v1/nodes/node-1", expect: 200)
            assertSameShape(conditions, try XCTUnwrap(node1["status"]?["conditions"]), "09 conditions")

            // 12: a watch from a compacted version, and an exact list at one.
            server.withStore(.nodes) { $0.compact(keepLast: 0) }
            let expired = try await Self.watchLines(
                client, query: [("resourceVersion", "100"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", "3")],
                accept: "application/json", until: "ERROR", after: 0)
            try compareEvents(try sampleEvents("12-watch-too-old-410.txt"), expired, "12 watch")
            assertSameShape(
                try sample("12-watch-too-old-410.txt", 1),
                try await rawJSON(
                    client, "GET", "/api/v1/nodes",
                    query: [("resourceVersion", "5"), ("resourceVersionMatch", "Exact")], expect: 410),
                "12 list")
            XCTAssertEqual(compared, 21, "every captured response with a whole body was compared")
        }
    }

    /// Puts node-3 back after a test deleted it.
    func seedAgainIfNeeded(_ server: TestAPIServer) throws {
        let missing = server.withStore(.nodes) { (try? $0.get("node-3")) == nil }
        if missing {
            let item = try sample("01-list-paged.txt", 1)["items"]!.array![0]
            var meta = item["metadata"]!.object!
            for k in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] { meta[k] = nil }
            try server.withStore(.nodes) {
                _ = try $0.create(APIStore.mergePatch(item, .object(["metadata": .object(meta)])))
            }
        }
    }

    /// Reads a watch's lines until `type` has been seen, after at least `after` other events.
    static func watchLines(
        _ client: KubeClient, query: [(String, String)], accept: String, until type: String, after: Int
    ) async throws -> [JSON] {
        let request = KubeClient.Request(
            method: .GET, path: "/api/v1/nodes", query: [("watch", "1")] + query, accept: accept, timeout: .seconds(10))
        let response = try await client.execute(request)
        XCTAssertEqual(response.status.code, 200)
        var events: [JSON] = []
        var pending = ""
        for try await chunk in response.body {
            pending += String(buffer: chunk)
            while let newline = pending.firstIndex(of: "\n") {
                let line = pending[..<newline]
                pending = String(pending[pending.index(after: newline)...])
                let event = try JSON.parse(Data(line.utf8))
                events.append(event)
                if event["type"]?.string == type, events.count > after { return events }
            }
        }
        return events
    }

    func compareEvents(_ captured: [JSON], _ served: [JSON], _ what: String) throws {
        for type in Set(captured.compactMap { $0["type"]?.string }).sorted() {
            let a = try XCTUnwrap(captured.first { $0["type"]?.string == type })
            let b = try XCTUnwrap(
                served.first { $0["type"]?.string == type }, "\(what): the test server sent no \(type) event: \(served)"
            )
            assertSameShape(a, b, "\(what) \(type)")
        }
    }
}
