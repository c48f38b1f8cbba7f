// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "wgmesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "wgmesh", targets: ["wgmesh"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CMnl",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        .systemLibrary(
            name: "CNftables",
            pkgConfig: "libnftables",
            providers: [.apt(["libnftables-dev"])]
        ),
        .target(
            name: "WGMeshCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "Netlink",
            dependencies: ["CMnl", "WGMeshCore"]
        ),
        .target(
            name: "Kube",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KubeTestSupport",
            dependencies: [
                "Kube",
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "Controller",
            dependencies: ["WGMeshCore", "Kube", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "CSpawn"),
        .target(
            name: "Userspace",
            dependencies: ["WGMeshCore", "CSpawn", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "Agent",
            dependencies: [
                "WGMeshCore", "Kube", "CNftables",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The people's commands (status, rotate-keys, audit, uninstall) as a library, so that tests run them.
        .target(
            name: "CLI",
            dependencies: ["WGMeshCore", "Kube", .product(name: "Yams", package: "Yams")]
        ),
        .executableTarget(
            name: "wgmesh",
            dependencies: [
                "WGMeshCore", "Netlink", "Controller", "Agent", "Userspace", "Kube", "CLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Every page of the binary that a node's agent maps counts in its memory. swiftc exports every symbol
            // (--export-dynamic: 36,000, and their hash table and names are read at start) and gold writes one
            // 24-byte relocation per pointer (3 MB, all read and their targets dirtied at start); lld packs them
            // (RELR, glibc 2.36: Debian bookworm). 8 MB less resident at start; nothing looks symbols up in it.
            linkerSettings: [
                .unsafeFlags(
                    [
                        "-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker",
                        "pack-relative-relocs",
                    ],
                    .when(platforms: [.linux]))
            ]
        ),
        // Not shipped: the controller benchmark against the test API server (scripts/bench-controller.sh).
        .executableTarget(
            name: "BenchController",
            dependencies: [
                "Controller", "Kube", "KubeTestSupport", "WGMeshCore", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Not shipped: the agent benchmark's driver (scripts/bench-agent.sh).
        .executableTarget(
            name: "BenchAgent",
            dependencies: ["Kube", "WGMeshCore"]
        ),
        // Not shipped: the test API server as a process, for the multi-node scenarios and the demo.
        .executableTarget(
            name: "TestAPIServerTool",
            dependencies: ["KubeTestSupport"]
        ),
        // Test code shared by the test targets: a model of the kernel, the backend contract, a log capture.
        .target(
            name: "TestSupport", dependencies: ["WGMeshCore", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
        .testTarget(name: "WGMeshCoreTests", dependencies: ["WGMeshCore", "TestSupport"]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "WGMeshCore", "CMnl", "TestSupport"]),
        .testTarget(name: "UserspaceTests", dependencies: ["Userspace", "WGMeshCore", "TestSupport"]),
        .testTarget(
            name: "ControllerTests",
            dependencies: [
                "Controller", "WGMeshCore", "Kube", "KubeTestSupport", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "AgentTests",
            dependencies: [
                "Agent", "Controller", "WGMeshCore", "Kube", "KubeTestSupport", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The commands' flag parsing, through the executable module.
        .testTarget(
            name: "wgmeshTests",
            dependencies: ["wgmesh", "WGMeshCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "CLI", "Controller", "WGMeshCore", "Kube", "KubeTestSupport", "TestSupport",
                .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
            ]),
        .testTarget(
            name: "KubeTests",
            dependencies: [
                "Kube", "KubeTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [.copy("Samples")]),
    ]
)
