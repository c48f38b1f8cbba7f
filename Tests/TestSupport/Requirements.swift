import XCTest

/// A need of a test that this machine does not meet, where the suite requires it.
public struct RequirementUnmet: Error, CustomStringConvertible {
    public let description: String
}

/// What a test throws when the machine lacks something it needs (`what` says which, and where it comes from):
/// a skip that says so, or, where the environment sets `variable` to 1 (scripts/test.sh for wireguard-go and nft,
/// scripts/vm-test.sh for the kernel), a failure.
public func unmetNeed(_ what: String, requiredBy variable: String) -> Error {
    if ProcessInfo.processInfo.environment[variable] == "1" {
        return RequirementUnmet(description: "\(variable)=1, and \(what)")
    }
    return XCTSkip(what)
}
