import Dispatch
// Process (running the plugin) is in Foundation, not FoundationEssentials.
import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// A client-go credential plugin (`users[].user.exec`), run as kubectl runs it: the command with its
/// args and env, `KUBERNETES_EXEC_INFO` describing the request, standard input only for an interactive
/// plugin on a terminal. Its token or client certificate is kept until `expirationTimestamp`, and the
/// plugin runs again after the server answered 401. One run at a time, however many requests wait.
public actor ExecCredentialPlugin {
    /// What the kubeconfig's `exec` stanza says (client-go's ExecConfig).
    public struct Configuration: Sendable {
        public enum APIVersion: String, Sendable, CaseIterable {
            case v1 = "client.authentication.k8s.io/v1"
            case v1beta1 = "client.authentication.k8s.io/v1beta1"
        }
        public enum InteractiveMode: String, Sendable, CaseIterable {
            /// Never needs standard input: it runs without a terminal.
            case never = "Never"
            /// Gets standard input when it is a terminal, and runs without it otherwise.
            case ifAvailable = "IfAvailable"
            /// Needs a terminal on standard input: without one it is an error.
            case always = "Always"
        }

        /// A file name, or a path (made absolute against the kubeconfig's folder when relative).
        public var command: String
        public var args: [String]
        /// Added to wgmesh's own environment, later entries winning.
        public var env: [(name: String, value: String)]
        public var apiVersion: APIVersion
        public var interactiveMode: InteractiveMode
        /// Shown when the command is missing (how to install it).
        public var installHint: String?
        /// `spec.cluster` of `KUBERNETES_EXEC_INFO`; nil unless `provideClusterInfo` is set.
        public var cluster: JSON?
        /// The kubeconfig file and the field (`users[NAME].user.exec`), for error messages.
        public var source: String
        public var field: String

        public init(
            command: String, args: [String] = [], env: [(name: String, value: String)] = [],
            apiVersion: APIVersion = .v1,
            interactiveMode: InteractiveMode = .never, installHint: String? = nil, cluster: JSON? = nil,
            source: String, field: String
        ) {
            self.command = command
            self.args = args
            self.env = env
            self.apiVersion = apiVersion
            self.interactiveMode = interactiveMode
            self.installHint = installHint
            self.cluster = cluster
            self.source = source
            self.field = field
        }
    }

    /// What one run of the plugin returned. Its description never shows the secrets.
    public struct Credential: Sendable, CustomStringConvertible {
        public var token: String?
        public var clientCertificatePEM: [UInt8]?
        public var clientKeyPEM: [UInt8]?
        /// nil: valid until the server refuses it.
        public var expiration: Date?
        /// Counts the plugin's runs: a 401 for an older credential does not run it again.
        public let generation: Int

        public var description: String {
            let kind =
                token != nil
                ? (clientCertificatePEM != nil ? "token and client certificate" : "token") : "client certificate"
            return "\(kind) #\(generation)" + (expiration.map { ", expires \($0.formatted(.iso8601))" } ?? "")
        }
    }

    public nonisolated let configuration: Configuration
    let now: @Sendable () -> Date
    let stdinIsTerminal: @Sendable () -> Bool
    var cached: Credential?
    var running: Task<Result<Credential, KubeConfigError>, Never>?
    var runs = 0

    /// `now` and `stdinIsTerminal` are the real ones outside tests.
    public init(
        _ configuration: Configuration, now: @escaping @Sendable () -> Date = { Date() },
        stdinIsTerminal: @escaping @Sendable () -> Bool = { isatty(STDIN_FILENO) != 0 }
    ) {
        self.configuration = configuration
        self.now = now
        self.stdinIsTerminal = stdinIsTerminal
    }

    /// The cached credential while it has not expired; otherwise the plugin's next answer.
    public func credential() async throws(KubeConfigError) -> Credential {
        if let cached, cached.expiration.map({ now() < $0 }) ?? true { return cached }
        let task: Task<Result<Credential, KubeConfigError>, Never>
        if let running {
            task = running
        } else {
            runs += 1
            let (configuration, generation, interactive) = (configuration, runs, stdinIsTerminal())
            task = Task.detached {
                await ExecCredentialPlugin.run(configuration, generation: generation, stdinIsTerminal: interactive)
            }
            running = task
        }
        let result = await task.value
        if running == task { running = nil }
        if case .success(let credential) = result, credential.generation > (cached?.generation ?? 0) {
            cached = credential
        }
        return try result.get()
    }

    /// After a 401: forget the credential that request carried, so that the next one runs the plugin.
    public func refused(_ credential: Credential) {
        if cached?.generation == credential.generation { cached = nil }
    }

    // MARK: running the command

    /// Runs the plugin once (off the cooperative pool: it may wait for a person at a terminal).
    static func run(_ configuration: Configuration, generation: Int, stdinIsTerminal: Bool) async -> Result<
        Credential, KubeConfigError
    > {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    returning: Result { () throws(KubeConfigError) in
                        try runBlocking(configuration, generation: generation, stdinIsTerminal: stdinIsTerminal)
                    })
            }
        }
    }

    static func runBlocking(_ c: Configuration, generation: Int, stdinIsTerminal: Bool) throws(KubeConfigError)
        -> Credential
    {
        func failure(_ why: String) -> KubeConfigError { .field(c.source, c.field, why) }
        let interactive: Bool
        switch c.interactiveMode {
        case .never: interactive = false
        case .ifAvailable: interactive = stdinIsTerminal
        case .always:
            guard stdinIsTerminal else {
                throw failure(
                    """
                    has interactiveMode Always, and standard input is not a terminal: run wgmesh from a terminal, \
                    or set interactiveMode to IfAvailable if the plugin can do without one
                    """)
            }
            interactive = true
        }
        let environment = ProcessInfo.processInfo.environment
        guard let executable = locate(c.command, path: environment["PATH"]) else {
            var why =
                "runs \"\(c.command)\", which is not "
                + (c.command.contains("/") ? "an executable file" : "an executable file on $PATH")
                + ": install it, or correct exec.command"
            if let hint = c.installHint, !hint.isEmpty { why += "\n\n" + hint }
            throw failure(why)
        }
        var env = environment
        for (name, value) in c.env { env[name] = value }
        env["KUBERNETES_EXEC_INFO"] = execInfo(c, interactive: interactive).description

        let output: ProcessOutput
        do {
            output = try ProcessOutput(
                executable: executable, arguments: c.args, environment: env, interactive: interactive)
        } catch {
            throw failure("runs \"\(executable)\", which could not be started: \(error)")
        }
        let stderr = output.stderrTail.isEmpty ? "" : "; it wrote: " + output.stderrTail
        guard output.status == 0 else {
            throw failure("runs \"\(executable)\", which failed (\(output.exit))\(stderr)")
        }
        do {
            return try credential(from: output.stdout, apiVersion: c.apiVersion, generation: generation)
        } catch {
            throw failure("runs \"\(executable)\", which \(error.why)\(stderr)")
        }
    }

    /// `KUBERNETES_EXEC_INFO`: an ExecCredential with only its spec, as client-go writes it.
    static func execInfo(_ c: Configuration, interactive: Bool) -> JSON {
        var spec: [String: JSON] = ["interactive": .bool(interactive)]
        if let cluster = c.cluster { spec["cluster"] = cluster }
        return .object(["apiVersion": .string(c.apiVersion.rawValue), "kind": "ExecCredential", "spec": .object(spec)])
    }

    /// The command as exec.LookPath finds it: a name is looked up on $PATH, a path is taken as it is.
    static func locate(_ command: String, path: String?) -> String? {
        func executable(_ p: String) -> Bool {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: p, isDirectory: &isDirectory) && !isDirectory.boolValue
                && FileManager.default.isExecutableFile(atPath: p)
        }
        if command.isEmpty { return nil }
        if command.contains("/") { return executable(command) ? command : nil }
        for folder in (path ?? "").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (folder.isEmpty ? "." : String(folder)) + "/" + command
            if executable(candidate) { return candidate }
        }
        return nil
    }

    /// Why the plugin's answer is unusable; never quotes what it printed, which may hold a secret.
    struct AnswerError: Error { var why: String }

    /// Reads the ExecCredential the plugin printed: its apiVersion, and a token or a certificate and key.
    static func credential(from stdout: [UInt8], apiVersion: Configuration.APIVersion, generation: Int)
        throws(AnswerError) -> Credential
    {
        guard let json = try? JSON.parse(stdout), json.object != nil else {
            throw AnswerError(
                why:
                    """
                    printed \(stdout.count) bytes that are not an ExecCredential JSON object: \
                    the plugin must print one on standard output
                    """)
        }
        guard json["kind"]?.string == "ExecCredential" else {
            throw AnswerError(why: "printed an object of kind \"\(json["kind"]?.string ?? "")\", not an ExecCredential")
        }
        guard let version = json["apiVersion"]?.string, version == apiVersion.rawValue else {
            throw AnswerError(
                why:
                    """
                    answered with apiVersion "\(json["apiVersion"]?.string ?? "")" while the kubeconfig asks for \
                    \(apiVersion.rawValue): set exec.apiVersion to the version the plugin speaks
                    """)
        }
        guard let status = json["status"], status.object != nil else {
            throw AnswerError(why: "printed an ExecCredential without a status")
        }
        let token = status["token"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let certificate = status["clientCertificateData"]?.string.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        let key = status["clientKeyData"]?.string.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        guard (certificate == nil) == (key == nil) else {
            let missing =
                certificate == nil
                ? "clientKeyData without clientCertificateData" : "clientCertificateData without clientKeyData"
            throw AnswerError(why: "returned \(missing): a client certificate needs both")
        }
        guard token != nil || certificate != nil else {
            throw AnswerError(why: "returned neither a token nor clientCertificateData and clientKeyData")
        }
        var expiration: Date?
        if let text = status["expirationTimestamp"]?.string {
            guard let date = parseTimestamp(text) else {
                throw AnswerError(why: "returned expirationTimestamp \"\(text)\", which is not an RFC 3339 time")
            }
            expiration = date
        }
        return Credential(
            token: token, clientCertificatePEM: certificate, clientKeyPEM: key, expiration: expiration,
            generation: generation)
    }

    /// RFC 3339, with or without fractional seconds (metav1.Time writes none, but accepts them).
    static func parseTimestamp(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601))
            ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
}

/// A finished child process: its exit, its standard output, and the end of its standard error.
struct ProcessOutput {
    var status: Int32
    var exit: String
    var stdout: [UInt8]
    /// The last few KB, trimmed: enough to say why, never an endless log.
    var stderrTail: String

    static let stderrLimit = 4096

    /// Runs `executable` to the end. Standard input is the terminal only when `interactive`; standard error
    /// then also goes to wgmesh's own, so that a person sees the plugin's prompts.
    init(executable: String, arguments: [String], environment: [String: String], interactive: Bool) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = interactive ? FileHandle.standardInput : FileHandle.nullDevice
        try process.run()
        // Both pipes are drained at once, so that a plugin that writes much to one never blocks on the other.
        let stderr = Mutex<[UInt8]>([])
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let handle = err.fileHandleForReading
            while case let chunk = handle.availableData, !chunk.isEmpty {
                if interactive { FileHandle.standardError.write(chunk) }
                stderr.withLock { buffer in
                    buffer.append(contentsOf: chunk)
                    if buffer.count > 2 * ProcessOutput.stderrLimit {
                        buffer.removeFirst(buffer.count - ProcessOutput.stderrLimit)
                    }
                }
            }
            drained.signal()
        }
        stdout = Array(out.fileHandleForReading.readDataToEndOfFile())
        drained.wait()
        process.waitUntilExit()
        status = process.terminationStatus
        exit = process.terminationReason == .exit ? "exit status \(status)" : "killed by signal \(status)"
        stderrTail =
            String(decoding: stderr.withLock { $0.suffix(ProcessOutput.stderrLimit) }, as: UTF8.self).trimmingSpaces
        if process.terminationReason != .exit { status = -1 }
    }
}
