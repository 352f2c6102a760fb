#!/usr/bin/env bash
# tah-core's tests on the phones' instruction set: cross-built for
# aarch64-unknown-linux-gnu (the ISA and kernels of Android's
# aarch64-linux-android and iOS's aarch64-apple-ios) and run under
# qemu-aarch64 on three emulated CPUs. Installs what it needs (the Rust
# target, Debian's cross linker and qemu-user) when missing.
#
# What runs where (emulation runs floating point in software, so a test
# costs 10-20x its native time; the split keeps CI well inside its limit):
#   -cpu max         (dotprod, i8mm, SVE at phones' 128 bits): the unit
#                    tests (every kernel on every tier: neon, dotprod, i8mm,
#                    each against a scalar reference; tier detection), every
#                    conformance case, the f16 KV cache (the default) against
#                    f32, and the GGUF tests that run the int8 kernels on
#                    real files (quantization agreement of the trained model
#                    at q8_0, the plain Qwen3 file, hostile files, the
#                    mapped embedding);
#   -cpu cortex-a76  (dotprod, no i8mm): the unit tests (kernels on the
#                    neon and dotprod tiers, tier detection);
#   -cpu cortex-a53  (ARMv8.0, no dotprod): the unit tests (the neon tier),
#                    every conformance case and the session tests: the one
#                    library must run there without an instruction the core
#                    lacks.
# Not under emulation: the fault, soak and load tests (threads and
# cancellation, not the instruction set; CI runs them natively), and the
# slower GGUF agreement figures of the random fixtures.
#
# Each run sets TAH_EXPECT_TIER, so the tier-detection test fails if the
# library picks another tier than the emulated CPU has.
#
#   scripts/test-aarch64.sh [clippy|max|a76|a53 ...]   (default: all of them,
#                                                       the CPUs in two parallel lanes)
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

# -cpu max's runs, in two parts so that the lanes below end together.
max_cpu=max,sve-default-vector-length=16
max_kernels() {
    on_cpu $max_cpu i8mm --lib --test conformance
    on_cpu $max_cpu i8mm --test kv_precision -- f16_cache smaller_caches
}
max_files() {
    on_cpu $max_cpu i8mm --test gguf -- q8_0_keeps_top1 plain_qwen3 hostile_files quantized_embedding
}

# One CPU's runs.
run_step() {
    case $1 in
        max) max_kernels && max_files ;;
        a76) on_cpu cortex-a76 dotprod --lib ;;
        a53) on_cpu cortex-a53 neon --lib --test conformance --test sessions ;;
        *)
            echo "unknown step $1 (clippy, max, a76, a53)" >&2
            return 2
            ;;
    esac
}

clippy() {
    echo "--- cargo clippy --target $TARGET --workspace --all-targets -D warnings"
    cargo clippy --target "$TARGET" --workspace --all-targets -- -D warnings
}

if [ $# -gt 0 ]; then
    for step in "$@"; do
        if [ "$step" = clippy ]; then clippy; else run_step "$step"; fi
    done
    exit 0
fi

# Everything: clippy, one build of the test binaries, then the runs in two
# parallel lanes (an emulated test mostly keeps one core busy), each lane's
# output printed when it ends. In a clean clone's .ci/run on 2026-12-07
# the lanes took 545 s (max_kernels, a76) and 645 s (a53, max_files).
clippy
cargo test -p tah-core --target "$TARGET" --no-run
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
(max_kernels && run_step a76) >"$logs/lane1" 2>&1 &
lane1=$!
(run_step a53 && max_files) >"$logs/lane2" 2>&1 &
lane2=$!
status=0
wait $lane1 || status=1
cat "$logs/lane1"
wait $lane2 || status=1
cat "$logs/lane2"
[ $status = 0 ] || echo "aarch64 tests failed (see above)" >&2
exit $status
