import Foundation

/// Runs a program (tests' set-up: namespaces, veth pairs, `nft -c`) and returns its exit status and
/// its output and error output together. Test code only.
public func runProgram(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs a shell command and returns its output; a non-zero exit status throws with that output,
/// unless `allowFailure`.
@discardableResult
public func sh(_ command: String, allowFailure: Bool = false) throws -> String {
    let (status, text) = try runProgram("/bin/sh", ["-c", command])
    if status != 0, !allowFailure {
        throw NSError(
            domain: "sh", code: Int(status), userInfo: [NSLocalizedDescriptionKey: "`\(command)` failed: \(text)"])
    }
    return text
}
