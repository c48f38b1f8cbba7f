import Foundation
import Logging
import Synchronization

/// Every log line the code under test wrote, to check what it said and scan it for secrets. Test code
/// only. `WGMESH_TEST_LOG=1` also prints the lines.
public final class LogCapture: Sendable {
    public let lines = Mutex<[String]>([])

    public init() {}

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let line =
                "\(event.level) \(event.message) "
                + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.lines.withLock { $0.append(line) }
            if ProcessInfo.processInfo.environment["WGMESH_TEST_LOG"] != nil { print(line) }
        }
    }

    public func logger(_ label: String) -> Logger { Logger(label: label) { _ in Handler(capture: self) } }
}
