#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift bindings of tah-ffi from an
# unstripped debug build of the library (uniffi reads its metadata symbols).
#   bindings/kotlin/src/main/kotlin/ai/tah/sdk/tah_ffi.kt
#   bindings/swift/Sources/TahSDK/TahSDK.swift
#   bindings/swift/Sources/TahFFI/{TahFFI.h,TahFFI.modulemap}
# CI runs this and fails if `git diff --exit-code bindings/` finds a change.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --quiet -p tah-ffi
# Built apart: in a shared build its `cli` feature would leak into tah-ffi.
cargo build --quiet -p uniffi-bindgen
lib="$target_dir/debug/libtah_ffi.so"
bindgen="$target_dir/debug/uniffi-bindgen"

kotlin_out=bindings/kotlin/src/main/kotlin
swift_gen=$(mktemp -d)
trap 'rm -rf "$swift_gen"' EXIT

rm -f "$kotlin_out/ai/tah/sdk/tah_ffi.kt"
"$bindgen" generate --no-format --library "$lib" --language kotlin \
    --out-dir "$kotlin_out" >/dev/null
"$bindgen" generate --no-format --library "$lib" --language swift \
    --out-dir "$swift_gen" >/dev/null

# SwiftPM layout: the Swift module and the C module it imports.
mkdir -p bindings/swift/Sources/TahSDK bindings/swift/Sources/TahFFI
cp "$swift_gen/TahSDK.swift" bindings/swift/Sources/TahSDK/TahSDK.swift
cp "$swift_gen/TahFFI.h" bindings/swift/Sources/TahFFI/TahFFI.h
cp "$swift_gen/TahFFI.modulemap" bindings/swift/Sources/TahFFI/TahFFI.modulemap
echo "bindings regenerated from $lib"
