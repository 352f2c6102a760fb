#!/usr/bin/env bash
# tah-core's tests on the phones' instruction set: cross-built for
# aarch64-unknown-linux-gnu (the ISA and kernels of Android's
# aarch64-linux-android and iOS's aarch64-apple-ios) and run under
# qemu-aarch64 on three emulated CPUs. Installs what it needs (the Rust
# target, Debian's cross linker and qemu-user) when missing.
#
#   -cpu max         (dotprod, i8mm, SVE at phones' 128 bits): every test of
#                    tah-core: conformance, GGUF and quantization agreement,
#                    sessions, KV precision, faults, malformed files, and
#                    every kernel's unit tests on every tier (neon, dotprod,
#                    i8mm);
#   -cpu cortex-a76  (dotprod, no i8mm): the unit tests (kernels on the
#                    neon and dotprod tiers, tier detection) and conformance;
#   -cpu cortex-a53  (ARMv8.0, no dotprod): the unit tests (the neon tier)
#                    and conformance, GGUF and sessions: the one library must
#                    run there without an instruction the core lacks.
#
# Each run sets TAH_EXPECT_TIER, so the tier-detection test fails if the
# library picks another tier than the emulated CPU has.
#
#   scripts/test-aarch64.sh [clippy|max|a76|a53 ...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq crossbuild-essential-arm64 qemu-user >/dev/null
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

# cargo test with the runner set to one emulated CPU.
on_cpu() {
    local cpu=$1 tier=$2
    shift 2
    echo "--- qemu-aarch64 -cpu $cpu (expects the $tier tier): cargo test $*"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT -cpu $cpu" \
        TAH_EXPECT_TIER=$tier \
        cargo test -p tah-core --target "$TARGET" "$@"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(clippy max a76 a53)
for step in "${steps[@]}"; do
    case $step in
        clippy)
            echo "--- cargo clippy --target $TARGET --workspace --all-targets -D warnings"
            cargo clippy --target "$TARGET" --workspace --all-targets -- -D warnings
            ;;
        max) on_cpu max,sve-default-vector-length=16 i8mm ;;
        a76) on_cpu cortex-a76 dotprod --lib --test conformance ;;
        a53) on_cpu cortex-a53 neon --lib --test conformance --test gguf --test sessions ;;
        *)
            echo "unknown step $step (clippy, max, a76, a53)" >&2
            exit 2
            ;;
    esac
done
