// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ClientProxyRouter",
    products: [
        .library(name: "Router", targets: ["Router"]),
        .library(name: "Plugins", targets: ["Plugins"]),
        .executable(name: "routerctl", targets: ["routerctl"]),
    ],
    targets: [
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CIDN", pkgConfig: "libidn", providers: [.apt(["libidn-dev"])]),
        .systemLibrary(name: "CLinux"),
        .target(
            name: "Router",
            dependencies: ["CLibXML2", "CYAML", "COpenSSL", "CIDN", "CLinux"]
        ),
        .target(name: "Plugins", dependencies: ["Router", "COpenSSL"]),
        .executableTarget(name: "routerctl", dependencies: ["Router", "Plugins"]),
        .executableTarget(name: "routerbench", dependencies: ["Router", "Plugins"], path: "Benchmarks/LoadGenerator"),
        .testTarget(name: "RouterTests", dependencies: ["Router", "Plugins"]),
    ],
    swiftLanguageModes: [.v6]
)
