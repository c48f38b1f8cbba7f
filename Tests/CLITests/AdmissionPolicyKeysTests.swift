import Foundation
import WGMeshCore
import XCTest
import Yams

/// The admission policies' key lists (manifests/admission-policies.yaml) are the code's: a key the code
/// gives a writer but its policy does not would refuse the product's own writes on a real cluster.
final class AdmissionPolicyKeysTests: XCTestCase {
    static let manifest = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("manifests/admission-policies.yaml")

    /// Each policy's `*Keys` variables (CEL lists) and `*KeysText` variables (the same keys, for the messages).
    static func variables() throws -> [String: [String: String]] {
        let text = try String(contentsOf: manifest, encoding: .utf8)
        var policies: [String: [String: String]] = [:]
        for case let object as [String: Any] in try Yams.load_all(yaml: text)
        where object["kind"] as? String == "ValidatingAdmissionPolicy" {
            let name = (object["metadata"] as? [String: Any])?["name"] as? String ?? "?"
            let variables = (object["spec"] as? [String: Any])?["variables"] as? [[String: Any]] ?? []
            policies[name] = Dictionary(
                uniqueKeysWithValues: variables.compactMap { v in
                    (v["name"] as? String).flatMap { n in (v["expression"] as? String).map { (n, $0) } }
                })
        }
        return policies
    }

    /// The string literals of a CEL list (`['a', 'b']`), in order.
    static func celList(_ expression: String) -> [String]? {
        let trimmed = expression.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("["), trimmed.hasSuffix("]") else { return nil }
        return trimmed.dropFirst().dropLast().split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
    }

    /// The keys a `*KeysText` CEL string spells (`'a, b'`).
    static func celText(_ expression: String) -> [String] {
        expression.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(
            in: CharacterSet(charactersIn: "'")
        )
        .components(separatedBy: ", ")
    }

    /// What differs between a policy's list and the code's, one line each; empty when they hold the same keys.
    static func differences(_ found: [String], _ code: [String], _ what: String) -> [String] {
        let missing = code.filter { !found.contains($0) }
        let extra = found.filter { !code.contains($0) }
        var lines: [String] = []
        if !missing.isEmpty { lines.append("\(what) lacks \(missing.joined(separator: ", ")), which the code writes") }
        if !extra.isEmpty {
            lines.append("\(what) has \(extra.joined(separator: ", ")), which the code does not give this writer")
        }
        if found.count != Set(found).count { lines.append("\(what) names a key twice: \(found)") }
        return lines
    }

    func testEachPolicysKeyListsAreTheCodes() throws {
        let policies = try Self.variables()
        let expected: [(policy: String, variable: String, keys: [String])] = [
            ("wgmesh-agent-own-node", "agentKeys", Annotation.agentOwned),
            ("wgmesh-annotation-owners", "agentKeys", Annotation.agentOwned),
            ("wgmesh-annotation-owners", "controllerKeys", Annotation.controllerOwned),
            ("wgmesh-annotation-owners", "peopleKeys", Annotation.peopleOwned),
        ]
        // wgmesh-peer-status-writers (a Peer's status) holds no key list.
        XCTAssertEqual(Set(policies.keys), Set(expected.map(\.policy)).union(["wgmesh-peer-status-writers"]))
        for (policy, variable, keys) in expected {
            guard let list = policies[policy]?[variable].flatMap(Self.celList) else {
                XCTFail("policy \(policy) has no variable \(variable) holding a CEL list of keys")
                continue
            }
            for line in Self.differences(list, keys, "policy \(policy), variable \(variable)") { XCTFail(line) }
            guard let text = policies[policy]?[variable + "Text"] else {
                XCTFail("policy \(policy) has no variable \(variable)Text for its messages")
                continue
            }
            for line in Self.differences(Self.celText(text), keys, "policy \(policy), variable \(variable)Text") {
                XCTFail(line)
            }
        }
        // A key list the test does not know would go unchecked.
        for (policy, variables) in policies {
            for name in variables.keys where name.hasSuffix("Keys") || name.hasSuffix("KeysText") {
                let base = name.hasSuffix("Text") ? String(name.dropLast(4)) : name
                XCTAssertTrue(
                    expected.contains { $0.policy == policy && $0.variable == base },
                    "policy \(policy): variable \(name) is not checked against the code")
            }
        }
    }

    /// The checks above find a key the policy lacks, and one it has too many.
    func testAListThatDiffersIsFound() {
        XCTAssertEqual(Self.celList(" ['wgmesh.dev/a',\n 'wgmesh.dev/b'] "), ["wgmesh.dev/a", "wgmesh.dev/b"])
        XCTAssertEqual(Self.celText("'wgmesh.dev/a, wgmesh.dev/b'"), ["wgmesh.dev/a", "wgmesh.dev/b"])
        XCTAssertEqual(
            Self.differences(
                ["wgmesh.dev/a", "wgmesh.dev/c", "wgmesh.dev/c"], ["wgmesh.dev/a", "wgmesh.dev/b"], "list"),
            [
                "list lacks wgmesh.dev/b, which the code writes",
                "list has wgmesh.dev/c, wgmesh.dev/c, which the code does not give this writer",
                #"list names a key twice: ["wgmesh.dev/a", "wgmesh.dev/c", "wgmesh.dev/c"]"#,
            ])
        XCTAssertEqual(
            Self.differences(["wgmesh.dev/b", "wgmesh.dev/a"], ["wgmesh.dev/a", "wgmesh.dev/b"], "list"), [])
    }
}
