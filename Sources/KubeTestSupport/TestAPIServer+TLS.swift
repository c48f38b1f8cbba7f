import NIOSSL
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    /// The server side of TLS when `options.tls`: the test server certificate, and client certificates
    /// signed by the test CA accepted but not required.
    static func sslContext(_ options: Options) throws -> NIOSSLContext? {
        try options.tls
            ? {
                let (certificate, key) =
                    options.nameOnlyCertificate
                    ? (TestCertificates.namedServerCertificate, TestCertificates.namedServerKey)
                    : (TestCertificates.serverCertificate, TestCertificates.serverKey)
                var tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map {
                        .certificate($0)
                    },
                    privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)))
                // Ask for a client certificate, but let token clients in too.
                tls.certificateVerification = .optionalVerification
                tls.trustRoots = .certificates(
                    try NIOSSLCertificate.fromPEMBytes(Array(TestCertificates.caCertificate.utf8)))
                return try NIOSSLContext(configuration: tls)
            }() : nil
    }
}
