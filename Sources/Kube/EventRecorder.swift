import Logging
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Writes events.k8s.io/v1 Events about objects. A failed write is logged, never thrown: an Event is
/// a courtesy to the operator and must not stop the work it describes.
public struct EventRecorder: Sendable {
    let api: any KubeAPI
    /// `wgmesh.dev/controller`.
    public let reportingController: String
    /// This replica (its Pod name).
    public let reportingInstance: String
    let logger: Logger

    public init(api: any KubeAPI, reportingController: String, reportingInstance: String, logger: Logger) {
        self.api = api
        self.reportingController = reportingController
        self.reportingInstance = reportingInstance
        self.logger = logger
    }

    /// Records an Event about `object`; cluster-scoped objects' Events go to `default`, as client-go does.
    /// `at` is when it happened (now by default).
    public func record(about object: KubeObject, warning: Bool, reason: String, action: String, note: String, at now: Date = Date()) async {
        let meta = object.metadata
        var regarding: [String: JSON] = ["kind": .string(object.kind ?? "Node"), "name": .string(meta.name),
                                         "apiVersion": .string(object.apiVersion ?? "v1")]
        regarding["uid"] = meta.uid.map(JSON.string)
        regarding["namespace"] = meta.namespace.map(JSON.string)
        // client-go names Events "<object>.<unix nanoseconds in hex>"; several Events about one object
        // can share a time here, so random digits follow.
        let nanos = UInt64(now.timeIntervalSince1970 * 1_000_000_000)
        let unique = String(nanos, radix: 16) + String(UInt64.random(in: 0..<(1 << 32)) | (1 << 32), radix: 16).dropFirst()
        let event: JSON = .object([
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": .object(["name": .string("\(meta.name).\(unique)")]),
            "eventTime": .string(MicroTime.format(now)),
            "reportingController": .string(reportingController), "reportingInstance": .string(reportingInstance),
            "action": .string(action), "reason": .string(reason), "type": .string(warning ? "Warning" : "Normal"),
            // The API caps a note at 1 kB.
            "note": .string(String(note.prefix(1024))),
            "regarding": .object(regarding),
        ])
        do {
            _ = try await api.create(.events, namespace: meta.namespace ?? "default", event)
        } catch {
            guard !error.isCancelled else { return }
            logger.warning("could not record an Event", metadata: ["object": "\(meta.name)", "reason": "\(reason)", "error": "\(error)"])
        }
    }
}
