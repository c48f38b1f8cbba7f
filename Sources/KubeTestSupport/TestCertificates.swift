/// Test-only TLS material for `TestAPIServer`: a CA, a server certificate for 127.0.0.1 and localhost,
/// one for a name only, and a client certificate for mutual TLS. Made once with openssl (EC P-256, valid
/// until 2126); it protects nothing but loopback test traffic.
public enum TestCertificates {
    public static let caCertificate = """
        -----BEGIN CERTIFICATE-----
        MIIBmTCCAT+gAwIBAgIUNEmMoRL7RIa7apt+GexyNewS3FAwCgYIKoZIzj0EAwIw
        GTEXMBUGA1UEAwwOd2dtZXNoLXRlc3QtY2EwIBcNMjYxMTI3MDQzOTU2WhgPMjEy
        NjExMDMwNDM5NTZaMBkxFzAVBgNVBAMMDndnbWVzaC10ZXN0LWNhMFkwEwYHKoZI
        zj0CAQYIKoZIzj0DAQcDQgAE7NG4jhwJCqIGXPw0ySG3qRddr6bauO+XBZ53jfKg
        lb3xD7ockhM9/TPO0TkrAcoP2tjwZQ+P7NyrsmTEXypCH6NjMGEwHQYDVR0OBBYE
        FB3A8Fb8qwSlRPEpw3mf80dMVEt6MB8GA1UdIwQYMBaAFB3A8Fb8qwSlRPEpw3mf
        80dMVEt6MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49
        BAMCA0gAMEUCIHC8tJw1q2gQ++C4XfZ3TGkO1N3g7fqsSk2ttutqFtIxAiEA+IR5
        on0Kf4XJb2oTluP510WSyQ64tjDxCx5o6Tg6y9E=
        -----END CERTIFICATE-----
        """
    public static let serverCertificate = """
        -----BEGIN CERTIFICATE-----
        MIIByDCCAW+gAwIBAgIUeVA6Xi6Yv+vILz1ZP2mWG2zSeUIwCgYIKoZIzj0EAwIw
        GTEXMBUGA1UEAwwOd2dtZXNoLXRlc3QtY2EwIBcNMjYxMTI3MDQzOTU2WhgPMjEy
        NjExMDMwNDM5NTZaMBQxEjAQBgNVBAMMCTEyNy4wLjAuMTBZMBMGByqGSM49AgEG
        CCqGSM49AwEHA0IABOg/9beU5xPkhZyldn0lX7v29yGl1VNcVZamXjVgqc/Ou3hd
        gHN3gXQ6RSfz8MGpBDh0mKNC5e8g/yKLxITSvMOjgZcwgZQwMgYDVR0RBCswKYcE
        fwAAAYIJbG9jYWxob3N0ghZrdWJlcm5ldGVzLmRlZmF1bHQuc3ZjMBMGA1UdJQQM
        MAoGCCsGAQUFBwMBMAkGA1UdEwQCMAAwHQYDVR0OBBYEFJuJOugg2zjoEhio9P7f
        Nmln66UOMB8GA1UdIwQYMBaAFB3A8Fb8qwSlRPEpw3mf80dMVEt6MAoGCCqGSM49
        BAMCA0cAMEQCIHHOtU6kR/X4yBN71TRsxE1jnVF0f6e8xIaRXmopOU8vAiB8UVpH
        nZvZT7P03QGX18Gj+G2xnn2EWFFeIVHqxgS2CQ==
        -----END CERTIFICATE-----
        """
    public static let serverKey = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggVgLLx1K2w/nYtcM
        yqlgyV7QcJE4lNCHDMM2MjtGXGChRANCAAToP/W3lOcT5IWcpXZ9JV+79vchpdVT
        XFWWpl41YKnPzrt4XYBzd4F0OkUn8/DBqQQ4dJijQuXvIP8ii8SE0rzD
        -----END PRIVATE KEY-----
        """
    public static let clientCertificate = """
        -----BEGIN CERTIFICATE-----
        MIIBtDCCAVqgAwIBAgIUeVA6Xi6Yv+vILz1ZP2mWG2zSeUMwCgYIKoZIzj0EAwIw
        GTEXMBUGA1UEAwwOd2dtZXNoLXRlc3QtY2EwIBcNMjYxMTI3MDQzOTU2WhgPMjEy
        NjExMDMwNDM5NTZaMDUxFzAVBgNVBAoMDnN5c3RlbTptYXN0ZXJzMRowGAYDVQQD
        DBF3Z21lc2gtdGVzdC1hZG1pbjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDkB
        2XdJOX/1DN09/841X1xFQjBklq6wScIxbux51Kdn3/JEqtCvohAuBA/jy0F2u46Y
        dNMXvUO0C3AyZzuuO4ajYjBgMBMGA1UdJQQMMAoGCCsGAQUFBwMCMAkGA1UdEwQC
        MAAwHQYDVR0OBBYEFIlbzFBc79tVkCmDu0oVIo13hrBFMB8GA1UdIwQYMBaAFB3A
        8Fb8qwSlRPEpw3mf80dMVEt6MAoGCCqGSM49BAMCA0gAMEUCIFvBmaEZpO/Q/eRJ
        wnun36bYf5Td5eQUjiteXWYvgZi8AiEA7VWG6AHCvC5UMuFafvLw+v/XehB69EWh
        vZV+8SfJHWM=
        -----END CERTIFICATE-----
        """
    public static let clientKey = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeMS8vv07ATgQjM3/
        QGRMMQHRGAhLNKovmFS9Baq+lGuhRANCAAQ5Adl3STl/9QzdPf/ONV9cRUIwZJau
        sEnCMW7sedSnZ9/yRKrQr6IQLgQP48tBdruOmHTTF71DtAtwMmc7rjuG
        -----END PRIVATE KEY-----
        """
    /// A server certificate for the name kubernetes.default.svc only, no address: reachable by IP
    /// only with `tls-server-name`.
    public static let namedServerCertificate = """
        -----BEGIN CERTIFICATE-----
        MIIBuTCCAV+gAwIBAgIUeVA6Xi6Yv+vILz1ZP2mWG2zSeUQwCgYIKoZIzj0EAwIw
        GTEXMBUGA1UEAwwOd2dtZXNoLXRlc3QtY2EwIBcNMjYxMTI3MDUxNDI1WhgPMjEy
        NjExMDMwNTE0MjVaMBUxEzARBgNVBAMMCmt1YmVybmV0ZXMwWTATBgcqhkjOPQIB
        BggqhkjOPQMBBwNCAAQ/zwfbMu03adLpRMfnXLj6T9bJdu2LhC2bgZHzda3hPppI
        jq6qapOvFAdRG4/9Ha0R84h56SbjKNw8BSuqPoLLo4GGMIGDMCEGA1UdEQQaMBiC
        Fmt1YmVybmV0ZXMuZGVmYXVsdC5zdmMwEwYDVR0lBAwwCgYIKwYBBQUHAwEwCQYD
        VR0TBAIwADAdBgNVHQ4EFgQUxeZkC/PIXMvcPz+ip65WuPGUKLUwHwYDVR0jBBgw
        FoAUHcDwVvyrBKVE8SnDeZ/zR0xUS3owCgYIKoZIzj0EAwIDSAAwRQIgIQ9eav++
        rkljYrl8+JqF6bnBM9/NFn8G+y1xH1I5ER0CIQDFLKEZf4+Z/8wKKqrl0hpVj0Q9
        nsIQD7nR+0Ryn2ubBA==
        -----END CERTIFICATE-----
        """
    public static let namedServerKey = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNiDprD2pN86Rx5HF
        yBSX66Hauv6rG1VlUnCK81rmxM2hRANCAAQ/zwfbMu03adLpRMfnXLj6T9bJdu2L
        hC2bgZHzda3hPppIjq6qapOvFAdRG4/9Ha0R84h56SbjKNw8BSuqPoLL
        -----END PRIVATE KEY-----
        """
}
