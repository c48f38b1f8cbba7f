import WGMeshCore

// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh audit`: the evidence a compliance team files, made from the Nodes as read at one moment.
/// No secret goes into it: no sealed key, no enrollment key, nothing but what any Node reader sees.
public struct AuditReport: Sendable, Hashable, Codable {
    public struct Cluster: Sendable, Hashable, Codable {
        /// The API server's URL.
        public var server: String
        /// The kubeconfig context, when one chose the server.
        public var context: String?

        public init(server: String, context: String?) {
            self.server = server
            self.context = context
        }
    }

    public struct Node: Sendable, Hashable, Codable {
        public var name: String
        public var inMesh: Bool
        public var leftOutBecause: String?
        public var keyGeneration: UInt64?
        public var appliedKeyGeneration: UInt64?
        public var keyIssuedAt: String?
        public var keyAgeSeconds: Int64?
        /// `WireGuardMeshReady`'s status, `Unknown` when the node has none.
        public var condition: String
        public var conditionReason: String?
        public var conditionMessage: String?
        public var strict: Bool?
        public var clusterCIDRs: [String]?
        /// Unencrypted Pod packets the node's table counted in all, and when the last one was.
        public var unencryptedPackets: UInt64?
        public var lastUnencryptedPacket: String?
        /// Agent-written values that do not read, each named with its value.
        public var malformed: [String]?

        /// Why the agent reports no value under `key`: a malformed one, else none at all.
        func missing(_ key: String, _ what: String) -> String {
            malformed?.first { $0.hasPrefix(key + "=") }.map { "\(name): \($0)" }
                ?? "\(name): reports no \(what) (\(key)): no agent runs there, or one older than this report"
        }
    }

    public struct Check: Sendable, Hashable, Codable {
        public var name: String
        public var passed: Bool
        /// One line per finding (failing nodes, counts).
        public var details: [String]
    }

    public var generatedAt: String
    public var cluster: Cluster
    /// The cluster CIDRs the agents report.
    public var clusterCIDRs: [String]
    /// `on` when every node's agent reports strict mode, else which nodes do not.
    public var strictMode: String
    public var maxKeyAgeSeconds: Int64
    /// Unencrypted packets counted from this time on fail the report.
    public var windowStart: String
    public var nodes: [Node]
    /// The outside peers (Peer objects); nil when the cluster does not serve them.
    public var peers: [Peers.Row]?
    public var checks: [Check]
    public var passed: Bool

    /// The report for `nodes` at `now`: keys older than `maxKeyAge` seconds fail, and so does any unencrypted
    /// packet counted at or after `windowStart`.
    public init(
        nodes observed: [ObservedNode], cluster: Cluster, now: Date, maxKeyAge: Int64, windowStart: Date,
        peers: [Peers.Row]? = nil
    ) {
        self.peers = peers
        generatedAt = RFC3339.format(now)
        self.cluster = cluster
        maxKeyAgeSeconds = maxKeyAge
        self.windowStart = RFC3339.format(windowStart)
        let sorted = observed.sorted { $0.name < $1.name }
        let leftOut = Membership.leftOut(sorted)
        let reported = Set(sorted.flatMap { $0.report.clusterCIDRs ?? [] })
        clusterCIDRs = reported.sorted().map(\.description)
        nodes = sorted.map { o in
            let m = o.meshNode
            let drops = o.report.unencryptedDrops
            return Node(
                name: o.name, inMesh: leftOut[o.name] == nil, leftOutBecause: leftOut[o.name],
                keyGeneration: m?.keyGeneration,
                appliedKeyGeneration: m?.appliedKeyGeneration, keyIssuedAt: m?.keyIssuedAt.map(RFC3339.format),
                keyAgeSeconds: m?.keyIssuedAt.map { Int64(now.timeIntervalSince($0).rounded(.down)) },
                condition: o.condition?.status ?? "Unknown", conditionReason: o.condition?.reason,
                conditionMessage: o.condition?.message,
                strict: o.report.strict, clusterCIDRs: o.report.clusterCIDRs?.map(\.description),
                unencryptedPackets: drops?.packets, lastUnencryptedPacket: drops?.last.map(RFC3339.format),
                malformed: o.report.problems.isEmpty ? nil : o.report.problems)
        }
        let notStrict = nodes.filter { $0.strict != true }.map(\.name)
        strictMode =
            notStrict.isEmpty
            ? "on" : "not on for \(notStrict.count) of \(nodes.count) nodes: \(notStrict.joined(separator: ", "))"
        checks = [
            Self.encrypting(nodes),
            Self.keyAge(nodes, maxKeyAge: maxKeyAge),
            Self.conflicts(sorted.compactMap(\.meshNode)),
            Self.strict(nodes),
            Self.unencrypted(nodes, windowStart: windowStart),
        ]
        if let peers, !peers.isEmpty { checks.append(Self.outsidePeers(peers)) }
        passed = checks.allSatisfy(\.passed)
    }

    /// Outside access that should not stand: a Peer past its `expiresAt` still present (every node has dropped
    /// it, but the object grants it again if someone moves the date), and an admitted Peer that never made a
    /// handshake (access nobody uses).
    static func outsidePeers(_ peers: [Peers.Row]) -> Check {
        var details: [String] = []
        for p in peers {
            if p.expired {
                details.append(
                    """
                    \(p.name): expired at \(p.expiresAt ?? "?") but still present: remove it (wgmesh peer remove \
                    \(p.name))
                    """)
            } else if p.ready == "True", p.lastHandshakeTime == nil {
                details.append(
                    """
                    \(p.name): admitted (gateway \(p.gateway ?? "?")) but no handshake seen: access nobody uses; \
                    remove it if it is not about to be used
                    """)
            }
        }
        let passed = details.isEmpty
        if passed {
            let ready = peers.filter { $0.ready == "True" }.count
            details.append("\(peers.count) Peers, \(ready) admitted, each with a handshake; none expired")
        }
        return Check(
            name: "Outside peers: no expired Peer still present, no admitted Peer without a handshake",
            passed: passed, details: details)
    }

    static func encrypting(_ nodes: [Node]) -> Check {
        var details: [String] = []
        for n in nodes {
            if let why = n.leftOutBecause {
                details.append("\(n.name): left out of the mesh: \(why)")
            } else if n.keyGeneration == nil || n.appliedKeyGeneration != n.keyGeneration {
                details.append(
                    """
                    \(n.name): runs key generation \(n.appliedKeyGeneration.map(String.init) ?? "none"), issued \
                    \(n.keyGeneration.map(String.init) ?? "none")
                    """
                )
            } else if n.condition != "True" {
                details.append(
                    """
                    \(n.name): \(MeshCondition.type) is \
                    \(n.condition)\(n.conditionReason.map { " (\($0))" } ?? ""): \
                    \(n.conditionMessage ?? "no agent has reported on this node")
                    """
                )
            }
        }
        if nodes.isEmpty { details.append("the cluster has no Node") }
        let passed = details.isEmpty
        if passed {
            details.append(
                """
                \(nodes.count) of \(nodes.count) nodes in the mesh, running their issued key, \
                \(MeshCondition.type) True
                """
            )
        }
        return Check(name: "Every node encrypts its Pod traffic", passed: passed, details: details)
    }

    static func keyAge(_ nodes: [Node], maxKeyAge: Int64) -> Check {
        let old = nodes.filter { ($0.keyAgeSeconds ?? 0) > maxKeyAge }.map {
            """
            \($0.name): key generation \($0.keyGeneration.map(String.init) ?? "?") issued \
            \($0.keyIssuedAt ?? "?") is \(HumanDuration.format(seconds: $0.keyAgeSeconds ?? 0)) old
            """
        }
        let oldest = nodes.compactMap(\.keyAgeSeconds).max()
        return Check(
            name: "No key older than \(HumanDuration.flag(seconds: maxKeyAge))", passed: old.isEmpty,
            details: old.isEmpty
                ? ["oldest key: \(oldest.map { HumanDuration.format(seconds: $0) } ?? "no node has a key")"] : old)
    }

    static func conflicts(_ nodes: [MeshNode]) -> Check {
        let found = MeshPlan.conflicts(among: nodes).sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        return Check(
            name: "No public key or Pod CIDR claimed twice", passed: found.isEmpty,
            details: found.isEmpty ? ["\(nodes.count) nodes, every key and Pod CIDR distinct"] : found)
    }

    static func strict(_ nodes: [Node]) -> Check {
        var details = nodes.compactMap { n -> String? in
            switch n.strict {
            case true?: return nil
            case false?: return "\(n.name): strict mode is off: Pod traffic with no peer would leave unencrypted"
            case nil: return n.missing(Annotation.strict, "strict mode")
            }
        }
        // Strict mode routes the cluster CIDRs into the tunnel: every node must route the same ones.
        let sets = Dictionary(grouping: nodes.filter { $0.clusterCIDRs != nil }, by: { $0.clusterCIDRs! })
        if sets.count > 1 {
            details.append(
                "the agents route different cluster CIDRs: "
                    + sets.sorted { $0.key.joined() < $1.key.joined() }.map {
                        "\($0.key.joined(separator: ",")) (\($0.value.map(\.name).joined(separator: ", ")))"
                    }.joined(separator: "; "))
        }
        if nodes.isEmpty { details.append("the cluster has no Node") }
        let passed = details.isEmpty
        if passed {
            details.append(
                """
                \(nodes.count) of \(nodes.count) nodes, cluster CIDRs \
                \(sets.keys.first?.joined(separator: ", ") ?? "")
                """
            )
        }
        return Check(name: "Strict mode on every node", passed: passed, details: details)
    }

    static func unencrypted(_ nodes: [Node], windowStart: Date) -> Check {
        var failing: [String] = []
        var before: [String] = []
        for n in nodes {
            guard let packets = n.unencryptedPackets else {
                failing.append(n.missing(Annotation.unencryptedDrops, "count"))
                continue
            }
            guard packets > 0 else { continue }
            let line =
                "\(n.name): \(packets) packets in all, the last at \(n.lastUnencryptedPacket ?? "an unknown time")"
            if let last = n.lastUnencryptedPacket.flatMap(RFC3339.parse), last < windowStart {
                before.append(line)
            } else {
                failing.append(line)
            }
        }
        let since = RFC3339.format(windowStart)
        let passed = failing.isEmpty && !nodes.isEmpty
        var details = failing
        if nodes.isEmpty { details.append("the cluster has no Node") }
        if passed { details.append("0 packets since \(since)") }
        if !before.isEmpty { details += before.map { $0 + " (before \(since))" } }
        return Check(
            name: "No Pod packet dropped for leaving unencrypted since \(since)", passed: passed, details: details)
    }

    // MARK: rendering

    /// The Markdown a compliance team files; its last line is the SHA-256 of every line before it
    /// (`sed '$d' report.md | sha256sum`).
    public var markdown: String {
        let body = markdownBody
        return body + "SHA-256 of the lines above: \(sha256Hex(body))\n"
    }

    var markdownBody: String {
        func cell(_ s: String) -> String { s.replacing("|", with: "\\|").replacing("\n", with: " ") }
        let failed = checks.filter { !$0.passed }.count
        var out = """
            # wgmesh audit

            - Generated at: \(generatedAt)
            - Cluster: \(cluster.server)\(cluster.context.map { " (context \($0))" } ?? "")
            - Cluster CIDRs: \(clusterCIDRs.isEmpty ? "none reported" : clusterCIDRs.joined(separator: ", "))
            - Strict mode: \(strictMode)
            - Key age policy: at most \(HumanDuration.flag(seconds: maxKeyAgeSeconds))
            - Unencrypted packets counted since: \(windowStart)
            - Result: \
            \(passed ? "PASS (all \(checks.count) checks passed)" : "FAIL (\(failed) of \(checks.count) checks failed)")

            ## Checks


            """
        for check in checks {
            out += "- \(check.passed ? "PASS" : "FAIL"): \(check.name)\n"
            for d in check.details { out += "  - \(d)\n" }
        }
        out += """

            ## Nodes

            | Node | In the mesh | Key generation | Applied | Key age | \(MeshCondition.type) | Strict | Unencrypted \
            packets |
            |---|---|---|---|---|---|---|---|

            """
        for n in nodes {
            let mesh = n.leftOutBecause.map { "no: \($0)" } ?? "yes"
            let condition = n.condition + (n.conditionReason.map { " (\($0))" } ?? "")
            let drops =
                n.unencryptedPackets.map { p in p == 0 ? "0" : "\(p), the last at \(n.lastUnencryptedPacket ?? "?")" }
                ?? "not reported"
            let cells = [
                n.name, mesh, n.keyGeneration.map(String.init) ?? "none",
                n.appliedKeyGeneration.map(String.init) ?? "none",
                n.keyAgeSeconds.map { HumanDuration.format(seconds: $0) } ?? "none", condition,
                n.strict.map { $0 ? "on" : "off" } ?? "not reported", drops,
            ]
            out += "| " + cells.map(cell).joined(separator: " | ") + " |\n"
        }
        if let peers, !peers.isEmpty {
            out += """

                ## Outside peers

                | Peer | Addresses | Gateway | Ready | Expires | Last handshake |
                |---|---|---|---|---|---|

                """
            for p in peers {
                let cells = [
                    p.name, p.addresses.joined(separator: ", "), p.gateway ?? "none",
                    p.ready + (p.reason.map { " (\($0))" } ?? ""), p.expiresAt ?? "never",
                    p.lastHandshakeTime ?? "none",
                ]
                out += "| " + cells.map(cell).joined(separator: " | ") + " |\n"
            }
        }
        return out + "\n"
    }

    /// `{"report": …, "sha256": …}`: the SHA-256 of the report as `canonicalJSON` writes it.
    public var json: String {
        let hash = sha256Hex(canonicalJSON)
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        let body = (try? e.encode(Signed(report: self, sha256: hash))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return body + "\n"
    }

    /// Compact JSON with sorted keys: the bytes the JSON form's `sha256` is computed over.
    public var canonicalJSON: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    struct Signed: Codable {
        var report: AuditReport
        var sha256: String
    }

    /// Whether a filed report, Markdown or JSON, is unchanged: its SHA-256 matches its body. Returns why not.
    public static func verify(_ text: String) -> Result<Void, VerificationError> {
        if text.first == "{" {
            guard let signed = try? JSONDecoder().decode(Signed.self, from: Data(text.utf8)) else {
                return .failure(.unreadable("not a wgmesh audit JSON report"))
            }
            let actual = sha256Hex(signed.report.canonicalJSON)
            return actual == signed.sha256 ? .success(()) : .failure(.mismatch(expected: signed.sha256, actual: actual))
        }
        let prefix = "SHA-256 of the lines above: "
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        guard let last = lines.last, last.hasPrefix(prefix) else {
            return .failure(.unreadable("the last line is not \"\(prefix)HEX\""))
        }
        let body = lines.dropLast().map { $0 + "\n" }.joined()
        let expected = String(last.dropFirst(prefix.count))
        let actual = sha256Hex(body)
        return actual == expected ? .success(()) : .failure(.mismatch(expected: expected, actual: actual))
    }

    public enum VerificationError: Error, Equatable, CustomStringConvertible {
        case unreadable(String)
        case mismatch(expected: String, actual: String)

        public var description: String {
            switch self {
            case .unreadable(let why): return "cannot check the report: \(why)"
            case .mismatch(let e, let a):
                return "the report was changed after it was made: it says SHA-256 \(e), its body has \(a)"
            }
        }
    }
}
