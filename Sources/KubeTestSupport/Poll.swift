#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Checks `condition` every `interval` until it holds (true) or `timeout` has passed (false): for
/// tests waiting on state that travels through the network.
public func poll(timeout: Duration, interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool)
    async rethrows -> Bool
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return false
}
