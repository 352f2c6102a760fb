#!/usr/bin/env bash
# Builds libtah_ffi.so (release) for the Android ABIs the AAR ships,
# arm64-v8a and x86_64, with cargo-ndk, into tah/src/main/jniLibs/<abi>/,
# with the GPU path (tah-ffi's `gpu` feature: WGSL kernels on Vulkan, chosen
# per model with ModelOptions.device; `--cpu-only` leaves it out).
#
# Needs: rustup targets aarch64-linux-android and x86_64-linux-android,
# cargo-ndk (`cargo install cargo-ndk`), and an NDK (ANDROID_NDK_HOME, or
# Android Studio's SDK Manager: ANDROID_HOME/ndk/<version>). See README.md.
#
# The bindings in bindings/kotlin are generated from the same Rust sources
# (scripts/gen-bindings.sh), so they match this library.
set -euo pipefail
cd "$(dirname "$0")"
android=$PWD
cd ..

# The API level the library links against: the app's minSdk.
min_sdk=$(sed -n 's/^minSdk = "\([0-9]*\)"/\1/p' "$android/gradle/libs.versions.toml")
[ -n "$min_sdk" ] || { echo "no minSdk in gradle/libs.versions.toml" >&2; exit 1; }

for target in aarch64-linux-android x86_64-linux-android; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
command -v cargo-ndk >/dev/null || { echo "cargo-ndk missing: cargo install cargo-ndk" >&2; exit 1; }

# Own target directory: the Android builds share nothing with host builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/android}
# Symbols are not needed at run time (the bindings are generated from a host build).
export CARGO_PROFILE_RELEASE_STRIP=symbols
# 16 KB pages (required on Android 15+ devices that use them; NDK r28+ does
# this by default, older NDKs do not).
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,max-page-size=16384"

features=(--features gpu)
case "${1:-}" in
    "") ;;
    --cpu-only) features=() ;;
    *) echo "usage: $0 [--cpu-only]" >&2; exit 2 ;;
esac

cargo ndk -t arm64-v8a -t x86_64 -P "$min_sdk" -o "$android/tah/src/main/jniLibs" \
    build --release -p tah-ffi ${features[@]+"${features[@]}"}

ls -l "$android"/tah/src/main/jniLibs/*/libtah_ffi.so
