// swift-tools-version:6.1
import PackageDescription

// Libraries linked by shimd (one process per container) must stay free of full
// Foundation, NIO and gRPC (README, "Memory budget"): a node runs one shimd per container.
let package = Package(
  name: "crisp",
  // crisp runs on Linux only. The macOS floor is there so that the package resolves and
  // type-checks on a developer's Mac: Synchronization's Mutex and Swift Testing need 15.
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "cri-frontd", targets: ["cri-frontd"]),
    .executable(name: "imaged", targets: ["imaged"]),
    .executable(name: "netd", targets: ["netd"]),
    .executable(name: "shimd", targets: ["shimd"]),
    .executable(name: "crisp-pause", targets: ["crisp-pause"]),
    .executable(name: "crisp-launcher", targets: ["crisp-launcher"]),
    .executable(name: "crispctl", targets: ["crispctl"]),
    .executable(name: "crisp-bench", targets: ["crisp-bench"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0", traits: []),
    .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
    .package(url: "https://github.com/LebJe/TOMLKit.git", exact: "0.6.0"),
    .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
    .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
    .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
    .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
    // Tracing (CrispTracing only: frontd, imaged, netd): the API, the OTLP/HTTP exporter.
    .package(url: "https://github.com/apple/swift-distributed-tracing.git", exact: "1.7.3"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
    .package(url: "https://github.com/swift-otel/swift-otel.git", exact: "1.6.0", traits: ["OTLPHTTP"]),
    // Prometheus metrics of cri-frontd (/metrics): the swift-metrics API, the registry that serves it.
    .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
  ],
  targets: [
    // C libraries and the few Linux calls Glibc does not expose to Swift.
    .systemLibrary(name: "CNNG", path: "Shared/CNNG"),
    .systemLibrary(name: "CCap", path: "Shared/CCap"),
    .systemLibrary(name: "CSeccomp", path: "Shared/CSeccomp"),
    .systemLibrary(name: "CArchive", path: "Shared/CArchive"),
    .systemLibrary(name: "CZlib", path: "Shared/CZlib"),
    .target(
      name: "CCrispSys", path: "Shared/CCrispSys", linkerSettings: [.linkedLibrary("cap"), .linkedLibrary("seccomp")]),

    // Foundation-free libraries (linked by shimd).
    .target(
      name: "CrispCore",
      dependencies: [.product(name: "Logging", package: "swift-log")],
      path: "Shared/CrispCore"),
    .target(
      name: "CrispLinux",
      dependencies: ["CCrispSys", "CCap", "CSeccomp", "CrispCore"],
      path: "Shared/CrispLinux"),
    // The OCI image and runtime specs, and the image config a container is made from:
    // plain Swift, no import at all.
    .target(name: "CrispOCI", path: "Shared/CrispOCI"),
    .target(
      name: "CrispIPC",
      dependencies: ["CNNG", "CrispCore", "CrispOCI"],
      path: "Shared/CrispIPC"),
    .target(
      name: "CrispDaemon",
      dependencies: [
        "CrispCore", "CrispIPC", "CrispLinux", "CCrispSys", "CSeccomp", .product(name: "Logging", package: "swift-log"),
      ],
      path: "Shared/CrispDaemon"),

    // Libraries for the singleton daemons.
    // The strict TOML reader crisp.toml and registries.conf are read with.
    .target(
      name: "StrictTOML", dependencies: [.product(name: "TOMLKit", package: "TOMLKit")], path: "Shared/StrictTOML"),
    .target(
      name: "CrispConfig",
      dependencies: [
        "CrispCore", "CrispLinux", "CrispDaemon", "StrictTOML",
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Shared/CrispConfig"),
    // OpenTelemetry export (swift-otel, OTLP/HTTP): linked by frontd, imaged and netd only.
    .target(
      name: "CrispTracing",
      dependencies: [
        "CrispCore", "CrispConfig", "CrispIPC",
        .product(name: "OTel", package: "swift-otel"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Shared/CrispTracing"),
    // The command line and the start-to-stop of the singleton daemons imaged and netd
    // (cri-frontd takes the same command line).
    .target(
      name: "CrispSingletonDaemon",
      dependencies: [
        "CrispCore", "CrispConfig", "CrispDaemon", "CrispIPC", "CrispLinux", "CrispTracing",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Shared/CrispSingletonDaemon"),
    // cgroup v1/v2 discovery and the stats readers (CPU, memory, tasks): Foundation-free.
    .target(name: "CrispCgroups", path: "Shared/CrispCgroups"),
    .target(
      name: "CrispStorage",
      dependencies: ["CrispCore", .product(name: "GRDB", package: "GRDB.swift")],
      path: "Shared/CrispStorage"),
    .target(
      name: "CRIAPI",
      dependencies: [
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Shared/CRIAPI",
      exclude: ["api.proto", "LICENSE", "generate-defaults.py"]),

    // The daemons.
    // frontd's work: the pod and container lifecycle over in-memory records written
    // through to SQLite, its peers behind protocols, and one thin file per CRI RPC; a
    // library so that its tests can run it with fake peers, without root or daemons.
    .target(
      name: "FrontdKit",
      dependencies: [
        "CrispCore", "CrispConfig", "CrispIPC", "CrispDaemon", "CrispLinux", "CRIAPI", "CrispStorage", "CrispOCI",
        "SpecBuilder", "Streaming", "CrispCgroups", "CrispTracing", "CCrispSys",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      path: "Services/cri-frontd/FrontdKit"),
    .executableTarget(
      name: "cri-frontd",
      dependencies: [
        "FrontdKit", "CrispCore", "CrispConfig", "CrispSingletonDaemon",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Services/cri-frontd/Daemon"),
    // CRI container config + image config + pod → OCI runtime spec: a pure function,
    // in a library of its own so that its tests need no daemon.
    .target(
      name: "SpecBuilder",
      dependencies: ["CRIAPI", "CrispOCI", "CrispCore"],
      path: "Services/cri-frontd/SpecBuilder"),
    // The streaming server (HTTP upgrade, SPDY/3.1, WebSocket, remotecommand, port-forward) and
    // the backend protocol it drives; a library so that its tests need no daemon.
    .target(
      name: "Streaming",
      dependencies: [
        "CrispCore", "CZlib",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/cri-frontd/Streaming"),
    // imaged's work (registry client, pull pipeline, stores, unpacking), kept in a
    // library so that its tests can reach it without the daemon.
    .target(
      name: "ImagedKit",
      dependencies: [
        "CArchive", "CCrispSys", "CrispCore", "CrispOCI", "CrispIPC", "CrispLinux", "CrispStorage", "StrictTOML",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/imaged/ImagedKit"),
    .executableTarget(
      name: "imaged",
      dependencies: [
        "ImagedKit", "CrispCore", "CrispConfig", "CrispIPC", "CrispDaemon", "CrispLinux", "CrispSingletonDaemon",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/imaged/Daemon"),
    // netd's work (pod namespaces, CNI, port forwarding, its IPC calls), a library under
    // a thin main.
    .target(
      name: "NetdKit",
      dependencies: [
        "CrispCore", "CrispConfig", "CrispIPC", "CrispDaemon", "CrispLinux", "CCrispSys",
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/netd/NetdKit"),
    .executableTarget(
      name: "netd",
      dependencies: [
        "NetdKit", "CrispCore", "CrispConfig", "CrispSingletonDaemon",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Services/netd/Daemon"),
    // shimd's work (the container's monitor: runc, stdio, CRI log, exit record, exec and
    // attach sessions), a Foundation-free library under a thin main.
    .target(
      name: "ShimdKit",
      dependencies: [
        "CrispCore", "CrispIPC", "CrispDaemon", "CrispLinux", "CCrispSys", "CrispCgroups",
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/shimd/ShimdKit"),
    .executableTarget(
      name: "shimd",
      dependencies: [
        "ShimdKit", "CrispCore",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Services/shimd/Daemon",
      // One shimd runs per container: private memory under 1 MB (README, "Memory budget").
      // Static Swift runtime + FoundationEssentials, the C libraries (NNG, mbedTLS, libstdc++,
      // libcap, libseccomp) from their static archives (StaticLibs/ links to Debian's, searched
      // before the system directories), no PIE: no relocated data pages copied per process.
      // glibc stays shared.
      linkerSettings: [
        .unsafeFlags([
          "-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims",
          "-Xclang-linker", "-no-pie",
          "-L\(Context.packageDirectory)/Services/shimd/StaticLibs", "-lmbedtls", "-lmbedx509", "-lmbedcrypto",
        ])
      ]),

    // PID 1 of pods that share one PID namespace: C, static, nothing else in its rootfs.
    .executableTarget(
      name: "crisp-pause", path: "Services/crisp-pause",
      linkerSettings: [
        .unsafeFlags([
          "-static-executable", "-nostartfiles", "-Xclang-linker", "-no-pie", "-Xlinker", "--gc-sections", "-Xlinker",
          "-s",
        ])
      ]),
    // cri-frontd's privileged hand: runs shimd and the runtime for a frontd that has
    // no capability and a seccomp filter its children would inherit. C, static.
    .executableTarget(
      name: "crisp-launcher", path: "Services/crisp-launcher",
      linkerSettings: [
        .unsafeFlags([
          "-static-executable", "-nostartfiles", "-Xclang-linker", "-no-pie", "-Xlinker", "--gc-sections", "-Xlinker",
          "-s",
        ])
      ]),

    .executableTarget(
      name: "crispctl",
      dependencies: [
        "CrispCore", "CrispConfig", "CrispIPC", "CrispLinux",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Services/crispctl"),

    .executableTarget(
      name: "crisp-bench",
      dependencies: [
        "CrispCore", "CrispIPC", "CRIAPI", "CNNG", "CrispTestSupport", "CrispCgroups",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "bench/crisp-bench"),

    .target(name: "CrispTestSupport", path: "Tests/TestSupport"),
    .testTarget(
      name: "CrispIPCTests",
      dependencies: ["CrispTestSupport", "CrispIPC", "CrispCore", "CNNG"],
      path: "Tests/CrispIPCTests"),
    .testTarget(
      name: "CrispConfigTests",
      dependencies: ["CrispTestSupport", "CrispConfig", "CrispCore", "CrispLinux"],
      path: "Tests/CrispConfigTests"),
    .testTarget(
      name: "CrispLinuxTests",
      dependencies: ["CrispTestSupport", "CrispLinux", "CCrispSys"],
      path: "Tests/CrispLinuxTests"),
    .testTarget(
      name: "ShimdTests",
      dependencies: ["CrispTestSupport", "CrispIPC", "CrispCore", "CNNG"],
      path: "Tests/ShimdTests"),
    .testTarget(
      name: "CrispCoreTests",
      dependencies: ["CrispCore"],
      path: "Tests/CrispCoreTests"),
    .testTarget(
      name: "CrispCgroupsTests",
      dependencies: ["CrispCgroups"],
      path: "Tests/CrispCgroupsTests",
      exclude: ["Fixtures"]),
    .testTarget(
      name: "SpecBuilderTests",
      dependencies: ["CrispTestSupport", "SpecBuilder", "CRIAPI", "CrispOCI", "CrispCore"],
      path: "Tests/SpecBuilderTests"),
    .testTarget(
      name: "ImagedTests",
      dependencies: ["CrispTestSupport", "ImagedKit", "CArchive", "CrispCore", "CrispOCI"],
      path: "Tests/ImagedTests"),
    .testTarget(
      name: "StreamingTests",
      dependencies: [
        "CrispTestSupport", "Streaming", "CZlib", "CrispCore",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ],
      path: "Tests/StreamingTests",
      exclude: ["Fixtures"]),
    // frontd's lifecycle with fake peers: no root, no daemons, seconds.
    .testTarget(
      name: "FrontdKitTests",
      dependencies: [
        "FrontdKit", "CRIAPI", "CrispCore", "CrispIPC", "CrispConfig", "CrispTestSupport",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Tests/FrontdKitTests"),
    .testTarget(
      name: "EndToEndTests",
      dependencies: [
        "CrispTestSupport", "CrispCgroups",
        "CrispCore", "CrispIPC", "CRIAPI", "CrispConfig", "CrispLinux",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
      ],
      path: "Tests/EndToEndTests"),
  ],
  swiftLanguageModes: [.v6]
)
