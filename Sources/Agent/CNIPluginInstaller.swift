import Logging
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// Copies the image's CNI plugins into the node's plugin directory by `CNIPluginInstall`'s rule: each one
/// atomically (a temporary file in the destination, fsync, mode 0755, rename), so the runtime never runs
/// half a plugin; the record of what wgmesh wrote is rewritten the same way. Removes nothing.
public struct CNIPluginInstaller {
    public var sourceDirectory: String
    public var destinationDirectory: String
    /// A file holding the version of the source plugins that report none themselves (Debian's builds say
    /// "version unknown"); a missing file means every source plugin must report its own.
    public var sourceVersionFile: String
    /// How long a plugin may take to print its version.
    public var probeTimeoutMilliseconds: Int32 = 5000

    public init(sourceDirectory: String, destinationDirectory: String, sourceVersionFile: String) {
        self.sourceDirectory = sourceDirectory
        self.destinationDirectory = destinationDirectory
        self.sourceVersionFile = sourceVersionFile
    }

    /// Decides for every plugin first, and fails before copying anything if a source plugin cannot be read
    /// or has no version; then copies. Returns each plugin's action, sorted by name.
    @discardableResult
    public func run(logger: Logger) throws(CNIPluginInstallError) -> [(name: String, action: CNIPluginAction)] {
        let sourceVersion = try readSourceVersion()
        let names = try pluginNames(in: sourceDirectory)
        guard !names.isEmpty else {
            throw CNIPluginInstallError(
                "no CNI plugins in \(sourceDirectory): give --from the directory that holds them")
        }
        try wrap { () throws(StateFileError) in try AtomicFile.makeDirectories(destinationDirectory) }
        let recordPath = destinationDirectory + "/" + CNIPluginInstall.recordFileName
        var previous: [String: CNIPluginRecord] = [:]
        if let bytes = try wrap({ () throws(StateFileError) in try AtomicFile.read(recordPath) }) {
            do {
                previous = try CNIPluginInstall.parse(String(decoding: bytes, as: UTF8.self))
            } catch {
                // Unreadable: every plugin there counts as someone else's, which is the safe side.
                logger.warning(
                    "ignoring the record of installed plugins; treating every plugin there as not wgmesh's",
                    metadata: ["file": "\(recordPath)", "error": "\(error)"])
            }
        }

        var sources: [String: [UInt8]] = [:]
        var versions: [String: CNIPluginVersion] = [:]
        var hashes: [String: String] = [:]
        var actions: [(name: String, action: CNIPluginAction)] = []
        for name in names {
            let path = sourceDirectory + "/" + name
            guard
                let bytes = try wrap({ () throws(StateFileError) in try AtomicFile.read(path, limit: Self.sizeLimit) })
            else {
                throw CNIPluginInstallError("\(path) disappeared while installing")
            }
            guard
                let version = CNIPluginProbe.reportedVersion(path, timeoutMilliseconds: probeTimeoutMilliseconds)
                    ?? sourceVersion
            else {
                throw CNIPluginInstallError(
                    """
                    \(path) reports no version of its own and none was given: write its release version (e.g. \
                    1.1.1) to \(sourceVersionFile)
                    """
                )
            }
            let sha256 = CNIPluginInstall.sha256(bytes)
            (sources[name], versions[name], hashes[name]) = (bytes, version, sha256)
            let destination = destinationDirectory + "/" + name
            let action = CNIPluginInstall.decide(
                sourceVersion: version, sourceSHA256: sha256, destinationSHA256: try hash(ofFileAt: destination),
                record: previous[name],
                reportedVersion: {
                    CNIPluginProbe.reportedVersion(destination, timeoutMilliseconds: probeTimeoutMilliseconds)
                })
            actions.append((name, action))
        }

        for (name, action) in actions where action.copies {
            try wrap { () throws(StateFileError) in
                try AtomicFile.write(destinationDirectory + "/" + name, sources[name]!, mode: 0o755)
            }
        }
        let records = CNIPluginInstall.records(
            after: actions, sourceVersions: versions, sourceHashes: hashes, previous: previous)
        if records != previous {
            try wrap { () throws(StateFileError) in
                try AtomicFile.write(recordPath, Array(CNIPluginInstall.render(records).utf8), mode: 0o644)
            }
        }
        for (name, action) in actions {
            logger.info(
                "\(action)",
                metadata: ["plugin": "\(name)", "version": "\(versions[name]!)", "to": "\(destinationDirectory)"])
        }
        return actions
    }

    /// The version in `sourceVersionFile` (its first word); nil when there is no such file.
    func readSourceVersion() throws(CNIPluginInstallError) -> CNIPluginVersion? {
        guard let bytes = try wrap({ () throws(StateFileError) in try AtomicFile.read(sourceVersionFile, limit: 4096) })
        else { return nil }
        let text =
            String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
        guard let version = CNIPluginVersion(text) else {
            throw CNIPluginInstallError(
                """
                \(sourceVersionFile) holds \(text.debugDescription), not a version: write the plugins' release \
                version there, e.g. 1.1.1
                """
            )
        }
        return version
    }

    /// Plugins are a few MB; a file far larger than that is no plugin.
    static let sizeLimit = 512 << 20

    /// The regular files (or links to them) in `directory` whose names a runtime would run, sorted.
    func pluginNames(in directory: String) throws(CNIPluginInstallError) -> [String] {
        guard let dir = opendir(directory) else {
            throw CNIPluginInstallError(
                "cannot read the plugin directory \(directory): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard CNIPluginInstall.isName(name) else { continue }
            var info = stat()
            if stat(directory + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG { names.append(name) }
        }
        return names.sorted()
    }

    /// The node file's SHA-256; nil when there is none, "" when it is no regular file (a directory, a dangling link).
    func hash(ofFileAt path: String) throws(CNIPluginInstallError) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw CNIPluginInstallError("cannot inspect \(path): \(String(cString: strerror(errno)))")
        }
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return "" }
        guard let bytes = try wrap({ () throws(StateFileError) in try AtomicFile.read(path, limit: Self.sizeLimit) })
        else { return nil }
        return CNIPluginInstall.sha256(bytes)
    }

    private func wrap<T>(_ body: () throws(StateFileError) -> T) throws(CNIPluginInstallError) -> T {
        do { return try body() } catch { throw CNIPluginInstallError("\(error)") }
    }
}

/// Installing the CNI plugins failed; the message names the file and what to do.
public struct CNIPluginInstallError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a CNI plugin without `CNI_COMMAND`, with an empty environment and no input, so that it only prints
/// what it is ("CNI bridge plugin v1.4.1"), and reads the version off that.
enum CNIPluginProbe {
    static func reportedVersion(_ path: String, timeoutMilliseconds: Int32) -> CNIPluginVersion? {
        output(of: path, timeoutMilliseconds: timeoutMilliseconds).flatMap(CNIPluginVersion.reported(by:))
    }

    /// What the program writes to stdout and stderr together (at most 64 KiB); nil when it cannot be started.
    /// One still running at the deadline is killed.
    static func output(of path: String, timeoutMilliseconds: Int32) -> String? {
        var output: [Int32] = [-1, -1]
        var input: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { return nil }
        guard pipe(&input) == 0 else {
            close(output[0])
            close(output[1])
            return nil
        }
        // The child gets them as 0, 1 and 2 only (pipe2 needs _GNU_SOURCE, which Swift's Glibc lacks).
        for fd in output + input { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        defer { free(argv[0]) }
        var environment: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let started = posix_spawn(&pid, path, &actions, nil, &argv, &environment)
        close(input[0])
        close(input[1])
        close(output[1])
        defer { close(output[0]) }
        guard started == 0 else { return nil }

        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while bytes.count < 64 * 1024 {
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else { break }
            var fd = pollfd(fd: output[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, Int32(left))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { break }
            let n = read(output[0], &buffer, buffer.count)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[..<n]
        }
        // Done or not, it has had its time: a plugin that still runs is not waited for.
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func monotonicMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
