import Foundation
import XCTest
@testable import Kube

/// Decodes every response captured from a real kube-apiserver (Samples/, a test resource; its README.md says
/// how they were captured).
final class SampleTests: XCTestCase {
    struct Section {
        var title: String
        var code: Int?
        var body: String
    }

    static let folder: URL = Bundle.module.resourceURL!.appendingPathComponent("Samples")

    /// Splits a capture into responses: each `HTTP/` status line starts one (several may share one
    /// `== request` title), headers run to the blank line, the body to the next title or status line.
    /// A title followed by text without a status line (an excerpt) is a section with no code.
    static func sections(_ name: String) throws -> [Section] {
        // The status line and headers end in CRLF, as HTTP sends them, and "\r\n" is one Character
        // in Swift: drop the CR bytes (JSON bodies escape theirs) before splitting into lines.
        let raw = try Data(contentsOf: folder.appendingPathComponent(name))
        // A body without a final newline runs straight into the next "== " title.
        let lines = String(decoding: raw.filter { $0 != 0x0d }, as: UTF8.self)
            .replacingOccurrences(of: "}== ", with: "}\n== ").replacingOccurrences(of: "]== ", with: "]\n== ")
            .components(separatedBy: "\n")
        var out: [Section] = []
        var title = ""
        var inHeaders = false
        for line in lines {
            if line.hasPrefix("== ") {
                title = String(line.dropFirst(3))
                out.append(Section(title: title, code: nil, body: ""))
                inHeaders = false
            } else if line.hasPrefix("HTTP/") {
                let code = Int(line.split(separator: " ")[1])
                if let last = out.last, last.code == nil, last.body.isEmpty, last.title == title { out.removeLast() }
                out.append(Section(title: title, code: code, body: ""))
                inHeaders = true
            } else if inHeaders {
                if line.isEmpty { inHeaders = false }
            } else if !out.isEmpty {
                out[out.count - 1].body += (out[out.count - 1].body.isEmpty ? "" : "\n") + line
            }
        }
        for i in out.indices { out[i].body = out[i].body.trimmingCharacters(in: .whitespacesAndNewlines) }
        return out
    }

    /// The capture tool cut some long bodies: marked "...(body cut)", or the file ends mid-body.
    static func isCut(_ s: Section, last: Bool) -> Bool {
        if s.body.contains("...(body cut)") { return true }
        guard last else { return false }
        // A watch body is one JSON object per line.
        let documents = s.title.contains("watch=1") ? s.body.split(separator: "\n").map(String.init) : [s.body]
        return documents.contains { (try? JSON.parse(Data($0.utf8))) == nil }
    }

    func json(_ s: Section) throws -> JSON { try JSON.parse(Data(s.body.utf8)) }

    func watchEvents(_ s: Section) throws -> [WatchEvent] {
        try s.body.split(separator: "\n").map { try WatchEvent(json: try JSON.parse(Data($0.utf8))) }
    }

    func testEveryCapturedResponseDecodes() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter {
            $0.hasSuffix(".txt")
        }.sorted()
        XCTAssertEqual(files.count, 14, "samples folder: \(Self.folder.path)")
        var decoded = 0
        var cut = 0
        for file in files {
            let sections = try Self.sections(file)
            for (i, s) in sections.enumerated() where s.code != nil && !s.body.isEmpty {
                if Self.isCut(s, last: i == sections.count - 1) {
                    cut += 1
                    continue
                }
                let code = try XCTUnwrap(s.code)
                if code >= 400 {
                    let status = try Status(json: try json(s))
                    XCTAssertEqual(status.code, code, "\(file): \(s.title)")
                } else if s.title.contains("watch=1") {
                    XCTAssertFalse(try watchEvents(s).isEmpty, "\(file): \(s.title)")
                } else {
                    let j = try json(s)
                    if j["items"] != nil { _ = try ObjectList(json: j) } else { _ = try KubeObject(json: j) }
                }
                decoded += 1
            }
        }
        XCTAssertEqual(decoded + cut, 17, "17 responses in the captures")
        XCTAssertEqual(decoded, 15)
        XCTAssertEqual(cut, 2, "09's node body and 06's are cut in the capture; every other body must decode")
        print("decoded \(decoded) captured responses; \(cut) bodies were cut in the capture")
    }

    func testListPaging() throws {
        let pages = try Self.sections("01-list-paged.txt").filter { $0.code == 200 }
        XCTAssertEqual(pages.count, 2)
        let first = try ObjectList(json: try json(pages[0]))
        XCTAssertEqual(first.kind, "NodeList")
        XCTAssertEqual(first.items.count, 2)
        XCTAssertNotNil(first.continueToken)
        XCTAssertEqual(first.remainingItemCount, 1)
        XCTAssertEqual(first.resourceVersion, "216")
        let node = Node(first.items[0])
        XCTAssertEqual(node.metadata.name, "node-1")
        XCTAssertEqual(node.podCIDRs, ["10.244.1.0/24", "fd00:10:244:1::/64"])
        XCTAssertEqual(node.metadata.annotations["wgmesh.dev/enrollment-key"], "dGVzdA==")
        XCTAssertFalse(node.addresses.isEmpty)
        let second = try ObjectList(json: try json(pages[1]))
        XCTAssertNil(second.continueToken, "the last page has no continue token")
    }

    func testMetadataOnlyListAndWatch() throws {
        let list = try ObjectList(
            json: try json(try XCTUnwrap(Self.sections("02-list-metadata.txt").first { $0.code == 200 })))
        XCTAssertEqual(list.kind, "PartialObjectMetadataList")
        XCTAssertTrue(
            list.items.allSatisfy {
                $0.kind == "PartialObjectMetadata" && $0.json["spec"] == nil && !$0.metadata.name.isEmpty
            })
        let events = try watchEvents(try XCTUnwrap(Self.sections("04-watch-metadata.txt").first))
        XCTAssertTrue(
            events.contains {
                if case .modified(let o) = $0 { return o.kind == "PartialObjectMetadata" } else { return false }
            })
    }

    func testWatchWithBookmarks() throws {
        let events = try watchEvents(try XCTUnwrap(Self.sections("03-watch.txt").first))
        var kinds: [String] = []
        for e in events {
            switch e {
            case .added: kinds.append("ADDED")
            case .modified: kinds.append("MODIFIED")
            case .deleted: kinds.append("DELETED")
            case .bookmark(let rv, _):
                kinds.append("BOOKMARK")
                XCTAssertFalse(rv.isEmpty)
            case .error: kinds.append("ERROR")
            }
        }
        XCTAssertTrue(Set(kinds).isSuperset(of: ["MODIFIED", "DELETED", "BOOKMARK"]), "\(kinds)")
    }

    func testTooOldWatchIsAnErrorEventInsideA200AndTooOldListIsA410() throws {
        let sections = try Self.sections("12-watch-too-old-410.txt")
        XCTAssertEqual(sections[0].code, 200)
        let events = try watchEvents(sections[0])
        XCTAssertEqual(events.count, 1)
        guard case .error(let status) = events[0] else { return XCTFail("expected an ERROR event") }
        XCTAssertEqual(status.code, 410)
        XCTAssertEqual(status.reason, "Expired")
        XCTAssertEqual(sections[1].code, 410)
        XCTAssertEqual(try Status(json: try json(sections[1])).reason, "Expired")
    }

    func testStreamingListEndsWithAnInitialEventsEndBookmark() throws {
        let events = try watchEvents(try XCTUnwrap(Self.sections("13-watchlist-metadata.txt").first))
        guard case .bookmark(let rv, let end) = try XCTUnwrap(events.last) else {
            return XCTFail("last event is a bookmark")
        }
        XCTAssertTrue(end)
        XCTAssertEqual(rv, "390")
        XCTAssertTrue(events.dropLast().allSatisfy { if case .added = $0 { return true } else { return false } })
    }

    func testConflictsNotFoundAndInvalid() throws {
        let conflict = try Status(json: try json(try Self.sections("05-patch-conflict-409.txt")[0]))
        XCTAssertEqual(conflict.code, 409)
        XCTAssertEqual(conflict.reason, "Conflict")
        XCTAssertEqual(try Status(json: try json(try Self.sections("07-get-404.txt")[0])).reason, "NotFound")
        let invalid = try Status(json: try json(try Self.sections("08-patch-invalid-422.txt")[0]))
        XCTAssertEqual(invalid.reason, "Invalid")
        XCTAssertFalse(invalid.causes.isEmpty)
        XCTAssertNotNil(invalid.causes[0].field)
        let lease = try Self.sections("10-lease.txt")
        XCTAssertEqual(lease.map(\.code), [201, 409, 409])
        XCTAssertEqual(try Status(json: try json(lease[1])).reason, "AlreadyExists")
        XCTAssertEqual(try Status(json: try json(lease[2])).reason, "Conflict")
        // Recorded lesson: an Event's generateName must itself be a valid DNS subdomain prefix.
        XCTAssertTrue(
            try Status(json: try json(try Self.sections("11-event.txt")[0])).causes.contains {
                $0.field == "metadata.generateName"
            })
    }

    func testMergePatchResultAndLease() throws {
        // 06's body is cut in the capture; its metadata, which carries the annotations, is whole.
        let body = try Self.sections("06-patch-ok.txt")[0].body
        let metadata = try XCTUnwrap(body.range(of: "\"managedFields\"")).lowerBound
        XCTAssertTrue(body[..<metadata].contains("\"wgmesh.dev/public-key\": \"BBBB\""))
        XCTAssertFalse(body[..<metadata].contains("wgmesh.dev/x"), "null deleted the annotation")
        let lease = Lease(try KubeObject(json: try json(try Self.sections("10-lease.txt")[0])))
        XCTAssertEqual(lease.holderIdentity, "controller-a")
        XCTAssertNotNil(lease.leaseDurationSeconds)
        XCTAssertEqual(lease.metadata.namespace, "wgmesh-system")
    }

    func testStatusConditionsExcerpt() throws {
        let excerpt = try XCTUnwrap(
            Self.sections("09-status-condition.txt").first { $0.code == nil && $0.body.hasPrefix("[") })
        let node = Node(try KubeObject(json: .object(["status": .object(["conditions": try json(excerpt)])])))
        XCTAssertEqual(node.conditions.first?.type, "WireGuardMeshReady")
        XCTAssertEqual(node.conditions.first?.status, "True")
    }

    func testUnknownFieldsSurviveARoundTrip() throws {
        let text = try Self.sections("01-list-paged.txt")[0].body
        XCTAssertTrue(text.hasSuffix("}"))
        let original = try JSON.parse(Data(text.utf8))
        XCTAssertEqual(try JSON.parse(original.data), original)
        XCTAssertNotNil(
            original["items"]?.array?.first?["metadata"]?["managedFields"], "kept, though this client never reads it")
    }
}
