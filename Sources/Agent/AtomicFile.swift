#if canImport(Glibc)
    import Glibc
#endif

/// Files the agent owns, written so that a reader (the kubelet, a restarted agent) never sees half of one:
/// a temporary file with the final mode, fsync, rename over the old one, fsync of the directory.
enum AtomicFile {
    /// The file's bytes; nil when it does not exist. At most `limit` bytes are read.
    static func read(_ path: String, limit: Int = 1 << 20) throws(StateFileError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StateFileError(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while out.count < limit {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 { throw StateFileError(path: path, operation: "read", errno: errno) }
            if n == 0 { break }
            out += buffer[..<n]
        }
        return out
    }

    static func write(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(StateFileError) {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try makeDirectories(directory.isEmpty ? "/" : directory)
        let temporary = path + ".wgmesh-tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw StateFileError(path: temporary, operation: "create", errno: errno) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let e = errno
        // The exact mode, whatever the umask: a CNI plugin must come out 0755.
        let moded = fchmod(fd, mode)
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, moded == 0, synced == 0 else {
            unlink(temporary)
            throw StateFileError(path: temporary, operation: "write", errno: written < 0 ? e : errno)
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw StateFileError(path: path, operation: "rename into place", errno: e)
        }
        let dir = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }

    /// Writes into an existing file in place (a sysctl under /proc/sys, which cannot be renamed over).
    static func overwrite(_ path: String, _ bytes: [UInt8]) throws(StateFileError) {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw StateFileError(path: path, operation: "open for writing", errno: errno) }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw StateFileError(path: path, operation: "write", errno: errno) }
    }

    /// Removes the file; true when there was one.
    static func remove(_ path: String) throws(StateFileError) -> Bool {
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw StateFileError(path: path, operation: "remove", errno: errno)
    }

    static func makeDirectories(_ directory: String) throws(StateFileError) {
        var path = ""
        for part in directory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o755) != 0, errno != EEXIST {
                throw StateFileError(path: path, operation: "create directory", errno: errno)
            }
        }
    }
}

/// A file the agent keeps could not be read or written.
public struct StateFileError: Error, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var errno: Int32
    public var description: String { "\(operation) \(path): \(String(cString: strerror(errno)))" }
}
