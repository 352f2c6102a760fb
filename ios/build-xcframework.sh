#!/usr/bin/env bash
# Builds TahFFI.xcframework: libtah_ffi.a (release) for iPhones
# (aarch64-apple-ios) and for the simulator on Apple-silicon Macs
# (aarch64-apple-ios-sim), each with the generated C header and module map,
# for ios/Package.swift.
#
#   ios/build-xcframework.sh           with the GPU path (tah-ffi's `gpu`
#                                      feature: WGSL kernels on Metal, chosen
#                                      per model with ModelOptions.device)
#   ios/build-xcframework.sh --cpu-only  without it (a smaller library)
#
# Needs macOS with Xcode (xcodebuild) and the two rustup targets (added here
# when missing). The Swift bindings in bindings/swift are generated from the
# same Rust sources (scripts/gen-bindings.sh), so they match this library.
# (Written for macOS's bash 3.2: empty arrays are expanded with ${a[@]+...}.)
set -euo pipefail
cd "$(dirname "$0")"
ios=$PWD
cd ..

features=(--features gpu)
case "${1:-}" in
    "") ;;
    --cpu-only) features=() ;;
    *) echo "usage: $0 [--cpu-only]" >&2; exit 2 ;;
esac

command -v xcodebuild >/dev/null || { echo "xcodebuild not found: this needs macOS with Xcode" >&2; exit 1; }
targets=(aarch64-apple-ios aarch64-apple-ios-sim)
for target in "${targets[@]}"; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

# Own target directory: nothing is shared with host builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/ios}
# The oldest iOS the library runs on: the package's platform.
export IPHONEOS_DEPLOYMENT_TARGET=17.0

# Headers/TahFFI/module.modulemap rather than Headers/module.modulemap: Xcode
# copies every XCFramework's headers into one folder, where two top-level
# module maps would collide; clang finds a module map in a subfolder named
# after the module.
headers=$(mktemp -d)
trap 'rm -rf "$headers"' EXIT
mkdir -p "$headers/TahFFI"
cp bindings/swift/Sources/TahFFI/TahFFI.h "$headers/TahFFI/"
cp bindings/swift/Sources/TahFFI/TahFFI.modulemap "$headers/TahFFI/module.modulemap"

args=()
for target in "${targets[@]}"; do
    echo "=== $target ${features[*]:-}"
    # Only the static library. --print native-static-libs lists what the final
    # link needs from the system (Package.swift's linkerSettings cover it).
    cargo rustc --release -p tah-ffi --target "$target" --crate-type staticlib ${features[@]+"${features[@]}"} \
        -- --print native-static-libs
    args+=(-library "$CARGO_TARGET_DIR/$target/release/libtah_ffi.a" -headers "$headers")
done

rm -rf "$ios/TahFFI.xcframework"
xcodebuild -create-xcframework "${args[@]}" -output "$ios/TahFFI.xcframework"
echo "wrote $ios/TahFFI.xcframework"
