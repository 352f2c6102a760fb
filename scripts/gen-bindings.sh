#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift bindings of tah-ffi from an
# unstripped test-profile build of the library (uniffi reads its metadata
# symbols); scripts/test-bindings.sh runs its suites against that library.
#   bindings/kotlin/src/main/kotlin/ai/tah/sdk/tah_ffi.kt
#   bindings/swift/Sources/TahSDK/TahSDK.swift
#   bindings/swift/Sources/TahFFI/{TahFFI.h,TahFFI.modulemap}
# CI runs this and fails if `git diff --exit-code bindings/` finds a change.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

# The README's test command (`cargo test --workspace`) builds the library
# and uniffi's `cli` feature already; building every target of the
# workspace in its profile resolves the same features, so after it this
# only links the generator (seconds). `cargo build -p tah-ffi` and
# `-p uniffi-bindgen` apart each resolve other features and rebuild the
# dependencies (the two took ~630 s in CI).
# uniffi's `cli` feature reaching tah-ffi here is harmless: the shipped
# library is built with `-p tah-ffi` (android/build-rust.sh, ios/).
cargo build --quiet --workspace --all-targets --profile test
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
