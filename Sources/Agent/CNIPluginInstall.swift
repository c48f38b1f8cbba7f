import WGMeshCore

/// A CNI plugin's release version, major.minor.patch: what an upstream build prints about itself
/// ("CNI bridge plugin v1.4.1"), or the upstream part of a Debian package version ("1.1.1+ds1-3+b5").
public struct CNIPluginVersion: Sendable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    /// Parses "1.1.1", "v1.4.0", "1.4.0-rc1", "1.1.1+ds1-3+b5" and "1:1.1.1-2" (a Debian epoch is dropped); nil
    /// for anything that does not start with three dot-separated numbers.
    public init?(_ text: some StringProtocol) {
        var rest = Substring(text)
        if let colon = rest.firstIndex(of: ":"), rest[..<colon].allSatisfy(\.isASCII),
            rest[..<colon].allSatisfy(\.isNumber)
        {
            rest = rest[rest.index(after: colon)...]
        }
        if rest.first == "v" { rest = rest.dropFirst() }
        var numbers: [Int] = []
        while numbers.count < 3 {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, digits.count <= 9, let n = Int(digits) else { return nil }
            numbers.append(n)
            rest = rest.dropFirst(digits.count)
            if numbers.count < 3 {
                guard rest.first == "." else { return nil }
                rest = rest.dropFirst()
            }
        }
        // "1.2.3.4" or "1.2.34x" is not a version this knows how to order.
        if let next = rest.first, next == "." || next.isNumber || next.isLetter { return nil }
        self.init(numbers[0], numbers[1], numbers[2])
    }

    /// The version a plugin prints on its first line when run without `CNI_COMMAND`
    /// (`CNI bridge plugin v1.4.1`); nil when it says `version unknown`, as Debian's builds do, or prints
    /// something else. The second line's "CNI protocol versions supported: 0.1.0, …" are spec versions, not
    /// the plugin's, and are never read.
    public static func reported(by output: String) -> CNIPluginVersion? {
        guard let line = output.split(separator: "\n", omittingEmptySubsequences: true).first else { return nil }
        let words = line.split(separator: " ")
        guard words.count >= 4, words.first == "CNI", words[words.count - 2] == "plugin", words.last?.first == "v"
        else { return nil }
        return CNIPluginVersion(words[words.count - 1])
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: CNIPluginVersion, b: CNIPluginVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }
}

/// One line of the list `wgmesh install-cni` keeps in the destination directory: a plugin it wrote, with
/// the version and the content it wrote. The file counts as wgmesh's only while it still has that content.
public struct CNIPluginRecord: Sendable, Equatable {
    public var name: String
    public var version: CNIPluginVersion
    /// Lowercase hex SHA-256 of the plugin's bytes.
    public var sha256: String

    public init(name: String, version: CNIPluginVersion, sha256: String) {
        self.name = name
        self.version = version
        self.sha256 = sha256
    }
}

/// What `wgmesh install-cni` does with one plugin of the image, given what the node has.
public enum CNIPluginAction: Sendable, Equatable, CustomStringConvertible {
    /// The node has no file of that name.
    case install
    /// The node's file has the image's content already.
    case unchanged
    /// wgmesh wrote the node's file (it still has the recorded content), at this version, no newer than the image's.
    case updateOwn(installed: CNIPluginVersion)
    /// wgmesh wrote the node's file at a newer version than the image's (a newer wgmesh ran here): no downgrade.
    case keepOwnNewer(installed: CNIPluginVersion)
    /// Not wgmesh's file, but the plugin says it is older than the image's.
    case replaceOlder(reported: CNIPluginVersion)
    /// Not wgmesh's file, and it says it is as new or newer, or says no version (nil), or is no plain file.
    case keepForeign(reported: CNIPluginVersion?)

    /// Whether the image's plugin is copied over the node's.
    public var copies: Bool {
        switch self {
        case .install, .updateOwn, .replaceOlder: true
        case .unchanged, .keepOwnNewer, .keepForeign: false
        }
    }

    public var description: String {
        switch self {
        case .install: "installed: the node had none"
        case .unchanged: "up to date: the node's file has the image's content"
        case .updateOwn(let v): "updated wgmesh's own copy of version \(v)"
        case .keepOwnNewer(let v): "kept: wgmesh installed a newer version (\(v)) here"
        case .replaceOlder(let v):
            "replaced: the node's plugin, not installed by wgmesh, reports an older version (\(v))"
        case .keepForeign(let v?): "kept: the node's plugin, not installed by wgmesh, reports version \(v), not older"
        case .keepForeign(nil): "kept: the node's plugin was not installed by wgmesh and reports no version"
        }
    }
}

/// The rule `wgmesh install-cni` follows to put the image's CNI plugins on a node, as flannel's
/// install-cni-plugin does, without ever taking away a plugin someone else put there:
///
/// - a plugin the node lacks is installed;
/// - a file wgmesh wrote (listed in `.wgmesh-cni-plugins` with the content it still has) is replaced by the
///   image's unless it is a newer version than the image's;
/// - any other file is replaced only when the plugin, run without `CNI_COMMAND`, reports a version older
///   than the image's; one that reports none (Debian's builds) is kept;
/// - nothing is ever removed.
public enum CNIPluginInstall {
    /// The list of the plugins wgmesh wrote, in the destination directory (a dot file: no runtime runs it).
    public static let recordFileName = ".wgmesh-cni-plugins"

    /// What to do with the image's plugin `name` (version `sourceVersion`, content `sourceSHA256`), given the
    /// node's file's hash (nil: no such file; "" : something other than a plain file) and wgmesh's record of it.
    /// `reportedVersion` runs the node's plugin; it is called only for a file wgmesh did not write.
    public static func decide(
        sourceVersion: CNIPluginVersion, sourceSHA256: String, destinationSHA256: String?,
        record: CNIPluginRecord?, reportedVersion: () -> CNIPluginVersion?
    ) -> CNIPluginAction {
        guard let destination = destinationSHA256 else { return .install }
        if destination == sourceSHA256 { return .unchanged }
        if let record, !destination.isEmpty, record.sha256 == destination {
            return record.version > sourceVersion
                ? .keepOwnNewer(installed: record.version) : .updateOwn(installed: record.version)
        }
        guard !destination.isEmpty, let reported = reportedVersion() else { return .keepForeign(reported: nil) }
        return reported < sourceVersion ? .replaceOlder(reported: reported) : .keepForeign(reported: reported)
    }

    /// The records after a run: a plugin copied now, or one of wgmesh's found with the image's content, is
    /// recorded with the image's version and hash; every other record stays as it was (a record whose file
    /// has changed since counts for nothing, so a stale one is harmless).
    public static func records(
        after actions: [(name: String, action: CNIPluginAction)], sourceVersions: [String: CNIPluginVersion],
        sourceHashes: [String: String], previous: [String: CNIPluginRecord]
    ) -> [String: CNIPluginRecord] {
        var records = previous
        for (name, action) in actions {
            guard let version = sourceVersions[name], let sha256 = sourceHashes[name] else { continue }
            if action.copies || (action == .unchanged && previous[name] != nil) {
                records[name] = CNIPluginRecord(name: name, version: version, sha256: sha256)
            }
        }
        return records
    }

    /// The record file's text: a comment, then `name version sha256` per plugin, sorted by name.
    public static func render(_ records: [String: CNIPluginRecord]) -> String {
        var text = "# The CNI plugins `wgmesh install-cni` wrote here: name, version, SHA-256 of what it wrote.\n"
        for record in records.values.sorted(by: { $0.name < $1.name }) {
            text += "\(record.name) \(record.version) \(record.sha256)\n"
        }
        return text
    }

    /// Reads the record file's text; a line that is not `name version sha256` throws, naming the line.
    public static func parse(_ text: String) throws(CNIPluginRecordError) -> [String: CNIPluginRecord] {
        var records: [String: CNIPluginRecord] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty || fields[0].hasPrefix("#") { continue }
            guard fields.count == 3, let version = CNIPluginVersion(fields[1]), isName(fields[0]), isSHA256(fields[2])
            else {
                throw CNIPluginRecordError(line: index + 1, text: String(line))
            }
            records[String(fields[0])] = CNIPluginRecord(
                name: String(fields[0]), version: version, sha256: String(fields[2]))
        }
        return records
    }

    /// Lowercase hex SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> String {
        sha256Hex(bytes: bytes)
    }

    /// A plugin's file name as the runtime looks it up: no slash, no leading dot, nothing outside [A-Za-z0-9._-].
    public static func isName(_ name: some StringProtocol) -> Bool {
        !name.isEmpty && name.first != "."
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    private static func isSHA256(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 64 && text.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }
}

/// A line of `.wgmesh-cni-plugins` that is not `name version sha256`.
public struct CNIPluginRecordError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var description: String {
        "\(CNIPluginInstall.recordFileName) line \(line) is not `name version sha256`: \(text.debugDescription)"
    }
}
