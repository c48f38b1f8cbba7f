import Kube
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension APIStore {
    func validateAnnotations(_ object: JSON, name: String) throws(Status) {
        for key in (object["metadata"]?["annotations"]?.object ?? [:]).keys.sorted()
        where !APIStore.isQualifiedName(key) {
            throw invalid(
                "metadata.annotations",
                """
                Invalid value: "\(key)": name part must consist of alphanumeric characters, '-', '_' or '.', \
                and must start and end with an alphanumeric character \
                (e.g. 'MyName',  or 'my.name',  or '123-abc', \
                regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')
                """,
                name: name)
        }
    }

    /// An RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
    static func isDNSSubdomain(_ s: String) -> Bool {
        guard (1...253).contains(s.utf8.count) else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard let f = label.utf8.first, let l = label.utf8.last else { return false }
            func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
            return alnum(f) && alnum(l) && label.utf8.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
        }
    }

    /// A Kubernetes qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
    static func isQualifiedName(_ key: String) -> Bool {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, (1...63).contains(name.count) else { return false }
        func alnum(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber) }
        guard let f = name.first, let l = name.last, alnum(f), alnum(l),
            name.allSatisfy({ alnum($0) || $0 == "-" || $0 == "_" || $0 == "." })
        else { return false }
        if parts.count == 2 {
            let prefix = parts[0]
            guard (1...253).contains(prefix.count),
                prefix.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." })
            else { return false }
        }
        return true
    }
}
