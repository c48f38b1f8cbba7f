import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh rotate-keys`: writes rotation requests (`wgmesh.dev/rotate-request`) that the controller answers
/// with its two-phase rotation, and waits, when asked, until each node and every peer runs the new key.
public enum RotateKeys {
    /// Which nodes: named, every one, or those a label selector matches.
    public enum Selection: Sendable, Hashable {
        case nodes([String])
        case all
        case selector(String)

        /// Exactly one way of choosing, from the flags as given.
        public init(nodes: [String], all: Bool, selector: String?) throws(CLIError) {
            let ways = [nodes.isEmpty ? nil : "--node", all ? "--all" : nil, selector == nil ? nil : "--selector"]
                .compactMap { $0 }
            guard ways.count == 1 else {
                throw CLIError(
                    ways.isEmpty
                        ? "choose the nodes: --node NAME (repeat it for more), --all, or --selector LABELS"
                        : "\(ways.joined(separator: " and ")) choose nodes in different ways: give only one of them")
            }
            if let selector {
                guard !selector.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw CLIError("--selector is empty: give labels such as --selector pool=blue")
                }
                self = .selector(selector)
            } else {
                self = all ? .all : .nodes(nodes)
            }
        }
    }

    /// The names of the chosen Nodes, sorted; an unknown name, or a choice that finds nothing, is an error
    /// that names the value.
    public static func resolve(_ api: any KubeAPI, _ selection: Selection) async throws -> [String] {
        switch selection {
        case .nodes(let names):
            let known = Set(try await api.listAll(.nodes, metadataOnly: true).items.map(\.metadata.name))
            let unknown = Set(names).subtracting(known).sorted()
            guard unknown.isEmpty else {
                let some = known.sorted().prefix(10).joined(separator: ", ") + (known.count > 10 ? ", …" : "")
                throw CLIError(
                    """
                    no Node named \(unknown.joined(separator: ", ")) (the cluster has \
                    \(known.isEmpty ? "no Node" : some)): check the name with `kubectl get nodes`
                    """
                )
            }
            return Set(names).sorted()
        case .all:
            let names = try await api.listAll(.nodes, metadataOnly: true).items.map(\.metadata.name).sorted()
            guard !names.isEmpty else { throw CLIError("--all: the cluster has no Node") }
            return names
        case .selector(let selector):
            let names = try await api.listAll(.nodes, metadataOnly: true, labelSelector: selector).items.map(
                \.metadata.name
            ).sorted()
            guard !names.isEmpty else {
                throw CLIError(
                    "--selector \(selector) matches no Node: check it with `kubectl get nodes -l '\(selector)'`")
            }
            return names
        }
    }

    /// A new request token: the time and a random suffix, so that two requests in one second differ.
    public static func token(now: Date = Date()) -> String {
        RFC3339.format(now) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    /// Writes the request on each node (a merge patch of the one annotation); returns node to token.
    public static func request(_ api: any KubeAPI, nodes: [String], token: String, print: (String) -> Void) async throws
        -> [String: String]
    {
        var written: [String: String] = [:]
        for name in nodes {
            do {
                _ = try await api.patch(
                    .nodes, namespace: nil, name: name,
                    .annotations([Annotation.rotateRequest: token]), subresource: nil)
            } catch {
                let done = written.keys.sorted()
                throw CLIError(
                    "node \(name): the rotation request was not written: \(error)"
                        + (done.isEmpty
                            ? "" : " (it was written on \(done.joined(separator: ", ")), whose rotations go ahead)"))
            }
            written[name] = token
            print("\(name): rotation requested (\(Annotation.rotateRequest)=\(token))")
        }
        return written
    }

    /// Looks every `interval` until each requested rotation is done or `timeout` has passed; prints a line
    /// for each node as it finishes. Returns the progress of those that did not finish.
    public static func wait(
        _ api: any KubeAPI, requests: [String: String], timeout: Duration, interval: Duration = .seconds(1),
        print: (String) -> Void
    ) async -> [String: RotationProgress] {
        let clock = ContinuousClock()
        let start = clock.now
        var pending = requests
        var last: [String: RotationProgress] = [:]
        while true {
            do {
                last = RotationProgress.evaluate(
                    requests: pending, nodes: try await observedNodes(api, metadataOnly: true))
                for (name, progress) in last.sorted(by: { $0.key < $1.key }) where progress.isDone {
                    print(
                        """
                        \(name): \(progress) (after \
                        \(HumanDuration.format(seconds: (clock.now - start).components.seconds)))
                        """
                    )
                    pending[name] = nil
                    last[name] = nil
                }
            } catch {
                // A failed look keeps what the last one saw; a node never seen says why.
                for name in pending.keys where last[name] == nil {
                    last[name] = .unreadable("the Nodes could not be read: \(error)")
                }
            }
            if pending.isEmpty || clock.now - start >= timeout { break }
            try? await Task.sleep(for: min(interval, timeout - (clock.now - start)))
            if Task.isCancelled { break }
        }
        return last
    }

    /// The error for the rotations that did not finish in time, naming each node and where it stands.
    public static func unfinished(_ progress: [String: RotationProgress], timeout: String) -> CLIError {
        let lines = progress.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)" }
        return CLIError(
            "the rotation did not finish within \(timeout) on \(progress.count) node\(progress.count == 1 ? "" : "s"): "
                + progress.keys.sorted().joined(separator: ", ") + "\n" + lines.joined(separator: "\n"))
    }
}
