// swift-tools-version:6.1
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "streamgate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "streamgate", targets: ["streamgate"]),
        .library(name: "StreamgateClient", targets: ["StreamgateClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        // etcd's JSON gateway (placement directory): the server ecosystem's HTTP client, on the node's event loops.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // Spans of publishes and deliveries (async-http-client depends on it already).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // Metrics: the ecosystem's API, exposed at /metrics in Prometheus text format.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // jwt-kit's own dependency, named here because the token tests use its extra algorithms directly.
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CRDKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "StreamgateKafka",
            dependencies: [
                "CRDKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "StreamgateCore",
            dependencies: [],
            swiftSettings: strictSwift
        ),
        // The only code that speaks to etcd (v3 JSON gateway: KV, leases, watch).
        .target(
            name: "StreamgateEtcd",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "StreamgateServer",
            dependencies: [
                "StreamgateCore",
                "StreamgateKafka",
                "StreamgateEtcd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            // The console page and the browser client, served from the binary (no files beside it).
            resources: [
                .embedInCode("Static/index.html"), .embedInCode("Static/console.js"),
                .embedInCode("Static/streamgate.js"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "StreamgateClient",
            dependencies: [
                "StreamgateCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "StreamgateBench",
            dependencies: [
                "StreamgateClient",
                "StreamgateCore",
                "StreamgateKafka",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "streamgate",
            dependencies: [
                "StreamgateServer",
                "StreamgateKafka",
                "StreamgateCore",
                "StreamgateBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        // Fuzz targets: each feeds bytes to one parser of StreamgateCore. A plain build replays the corpus under
        // Tests/fuzz/; `ops/fuzz.sh` builds them for coverage-guided fuzzing (its flags) and fuzzes.
        .target(name: "FuzzSupport", path: "Sources/Fuzz/FuzzSupport", swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-frame", dependencies: ["StreamgateCore", "FuzzSupport"], path: "Sources/Fuzz/FuzzFrame",
                          swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-request", dependencies: ["StreamgateCore", "FuzzSupport"], path: "Sources/Fuzz/FuzzRequest",
                          swiftSettings: strictSwift),
        .executableTarget(name: "fuzz-handshake", dependencies: ["StreamgateCore", "FuzzSupport"], path: "Sources/Fuzz/FuzzHandshake",
                          swiftSettings: strictSwift),
        .testTarget(
            name: "StreamgateCoreTests",
            dependencies: ["StreamgateCore"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "StreamgateEtcdTests",
            dependencies: [
                "StreamgateEtcd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "StreamgateServerTests",
            dependencies: [
                "StreamgateServer",
                "StreamgateCore",
                "StreamgateKafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "StreamgateClientTests",
            dependencies: [
                "StreamgateClient",
                "StreamgateCore",
                "StreamgateServer",
                "StreamgateKafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "StreamgateIntegrationTests",
            dependencies: [
                "StreamgateServer",
                "StreamgateKafka",
                "StreamgateCore",
                "StreamgateClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
    ]
)
