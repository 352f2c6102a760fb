// swift-tools-version:5.10
// The TaH SDK for iOS: TahSDK (the uniffi-generated bindings and the Swift
// facade, from bindings/swift through the Sources/TahSDK symlink) over the
// static library in TahFFI.xcframework (built by build-xcframework.sh), and
// TahAppCore, the sample app's logic without UI.
import PackageDescription

let package = Package(
    name: "TahKit",
    platforms: [.iOS(.v17)],
    products: [
        .library(name: "TahSDK", targets: ["TahSDK"]),
        .library(name: "TahAppCore", targets: ["TahAppCore"]),
    ],
    targets: [
        .binaryTarget(name: "TahFFI", path: "TahFFI.xcframework"),
        .target(
            name: "TahSDK",
            dependencies: ["TahFFI"],
            path: "Sources/TahSDK",
            // What the Rust static library needs from the system beyond libSystem
            // (build-xcframework.sh prints rustc's list): libiconv, which the libc
            // crate names on Apple targets, and the frameworks wgpu's Metal
            // backend uses (the GPU path, default builds; unused by `--cpu-only`
            // builds). Not linked here yet: compare with the script's printed list.
            linkerSettings: [
                .linkedLibrary("iconv"), .linkedFramework("Metal"), .linkedFramework("QuartzCore"),
                .linkedFramework("Foundation"),
            ]
        ),
        .target(name: "TahAppCore", dependencies: ["TahSDK"], path: "Sources/TahAppCore"),
    ]
)
