import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MeshController {
    /// Logs the decision's notices and queues their Events: each once, unless the write they come with is new.
    func announce(
        _ object: KubeObject, _ decision: NodeIssuance, at written: Date, _ state: inout State,
        lookup: (String) -> KubeObject?
    ) {
        let name = object.metadata.name
        for notice in decision.notices {
            let key = Self.reportKey(notice.reason.rawValue, notice.note)
            if decision.annotations.isEmpty || notice.warning {
                // Notices without a write repeat on every resync; report each one once.
                guard state.noteReported(key, about: name) else { continue }
            }
            if notice.warning {
                logger.warning("\(notice.reason.rawValue)", metadata: ["node": "\(name)", "note": "\(notice.note)"])
            } else {
                logger.info("\(notice.reason.rawValue)", metadata: ["node": "\(name)", "note": "\(notice.note)"])
            }
            state.eventQueue?.yield(PendingEvent(object: object, notice: notice, at: written))
            // The other side of an overlap hears of it too, once.
            if let other = notice.otherNode, let otherObject = lookup(other),
                state.noteReported(key, about: other)
            {
                state.eventQueue?.yield(PendingEvent(object: otherObject, notice: notice, at: written))
            }
        }
    }
}
