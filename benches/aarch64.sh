#!/usr/bin/env bash
# tah against llama.cpp on the phones' instruction set, on this x86 machine:
# both cross-built for aarch64 and run under qemu-aarch64 (-cpu max with
# 128-bit SVE, as phones have) with an instruction-counting TCG plugin, on
# the same random Qwen3-0.6B-shaped Q4_K file, one thread. A benchmark, not
# a test: it prints numbers and writes them to $WORK/results.md.
#
# Per token, from differences of whole runs (loading and warm-up cancel):
#   prefill   = (insns of a 128-token prompt - of a 64-token one) / 64
#   decode    = (insns of 32 generated tokens - of 16) / 16
# plus each engine's peak RSS (GNU time's maximum resident set of the qemu
# process, so the emulator's own memory is in both). llama.cpp runs its
# `llama-bench` built with CMake for armv8.6-a+dotprod+i8mm, load-time
# repack on (its default) and off; tah runs the TaH file in `never` mode and
# in `decider` mode with 6% of tokens forced hard; llama.cpp runs the
# file's plain-Qwen3 twin (`tah init-random --base-only`, byte-identical base
# tensors). Under emulation a 0.6B model runs at well under a token per
# second, so the whole script takes a few hours; the builds are reused.
#
#   benches/aarch64.sh [--work DIR] [--reuse-llama]
#
# DIR defaults to target/bench-aarch64. --reuse-llama takes llama.cpp's
# counts from DIR's previous run (same llama-bench build, same file: the
# counts are deterministic) and measures only tah, in about a third of the
# time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/target/bench-aarch64
REUSE_LLAMA=0
while [ $# -gt 0 ]; do
    case $1 in
        --work) WORK=$2; shift 2 ;;
        --reuse-llama) REUSE_LLAMA=1; shift ;;
        *) echo "usage: $0 [--work DIR] [--reuse-llama]" >&2; exit 2 ;;
    esac
done
mkdir -p "$WORK"
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
CPU=max,sve-default-vector-length=16

# --- tools -------------------------------------------------------------------
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
need=()
for tool in aarch64-linux-gnu-g++:crossbuild-essential-arm64 qemu-aarch64:qemu-user \
    cmake:cmake /usr/bin/time:time; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
gcc -shared -fPIC -O2 -o "$WORK/libinsn.so" "$ROOT/../shared/tools/qemu-insn/insn.c"

# --- llama.cpp's llama-bench for aarch64 ----------------------------------------
LLAMA_SRC=$("$ROOT/benches/llama-sources.sh" "$WORK/llama")
LLAMA_BUILD=$WORK/llama/build-aarch64
if [ ! -x "$LLAMA_BUILD/bin/llama-bench" ]; then
    cat > "$WORK/llama/aarch64.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH $SYSROOT)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
EOF
    cmake -S "$LLAMA_SRC" -B "$LLAMA_BUILD" -DCMAKE_TOOLCHAIN_FILE="$WORK/llama/aarch64.cmake" \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
        -DGGML_CPU_ARM_ARCH=armv8.6-a+dotprod+i8mm+fp16 -DGGML_OPENMP=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
    cmake --build "$LLAMA_BUILD" --target llama-bench -j "$(nproc)" >/dev/null
fi
LLAMA_BENCH=$LLAMA_BUILD/bin/llama-bench

# --- tah: the aarch64 CLI as shipped (release profile), and a host one ---------
cd "$ROOT"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    cargo build --release --target "$TARGET" -p tah-cli
cargo build --release -p tah-cli
TAH=$ROOT/target/$TARGET/release/tah
HOST_TAH=$ROOT/target/release/tah

# --- the model files -----------------------------------------------------------
MODEL=$WORK/qwen3-0.6b-q4_k.gguf
BASE=$WORK/qwen3-0.6b-q4_k-base.gguf
[ -f "$MODEL" ] || "$HOST_TAH" init-random --quant q4_k --out "$MODEL"
[ -f "$BASE" ] || "$HOST_TAH" init-random --quant q4_k --base-only --out "$BASE"

# --- counting ------------------------------------------------------------------
# count NAME CMD...: executed instructions of CMD (to $WORK/NAME.insns), its
# stdout to $WORK/NAME.out.
count() {
    local name=$1
    shift
    if [ "$REUSE_LLAMA" = 1 ] && [[ $name == llama-* ]] && [ -s "$WORK/$name.insns" ]; then
        awk '{print $2}' "$WORK/$name.insns"
        return
    fi
    rm -f "$WORK/$name.insns"
    INSN_OUT=$WORK/$name.insns qemu-aarch64 -L "$SYSROOT" -cpu "$CPU" \
        -plugin "$WORK/libinsn.so" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    awk '{print $2}' "$WORK/$name.insns"
}
# rss NAME CMD...: peak resident set (KiB) of the qemu process running CMD.
rss() {
    local name=$1
    shift
    if [ "$REUSE_LLAMA" = 1 ] && [[ $name == llama-* ]] && [ -s "$WORK/$name.rss" ]; then
        cat "$WORK/$name.rss"
        return
    fi
    /usr/bin/time -f %M -o "$WORK/$name.rss" qemu-aarch64 -L "$SYSROOT" -cpu "$CPU" "$@" \
        >/dev/null 2>"$WORK/$name.rss.err"
    cat "$WORK/$name.rss"
}
per_token() { python3 -c "print(($2 - $1) / $3)"; }

llama=("$LLAMA_BENCH" -m "$BASE" -t 1 -r 1 --no-warmup)
tah=("$TAH" bench --child --model "$MODEL" -t 1 --reps 1)
# Passes per token of the decode tokens the difference counts (17..32): from
# each run's passes per generated token.
tah_passes() {
    python3 -c "import json
p = lambda n: json.load(open('$WORK/tah-$1-n%d.out' % n))[0]['passes_per_token'] * n
print((p(32) - p(16)) / 16)"
}

declare -A result
echo "llama.cpp (repack on / off) and tah (never / decider at 6% hard), -cpu $CPU, 1 thread"
for repack in 1 0; do
    p64=$(count llama-r$repack-p64 "${llama[@]}" --repack $repack -p 64 -n 0)
    p128=$(count llama-r$repack-p128 "${llama[@]}" --repack $repack -p 128 -n 0)
    n16=$(count llama-r$repack-n16 "${llama[@]}" --repack $repack -p 0 -n 16)
    n32=$(count llama-r$repack-n32 "${llama[@]}" --repack $repack -p 0 -n 32)
    result[llama$repack,prefill]=$(per_token "$p64" "$p128" 64)
    result[llama$repack,decode]=$(per_token "$n16" "$n32" 16)
    result[llama$repack,rss]=$(rss llama-r$repack "${llama[@]}" --repack $repack -p 0 -n 16)
    echo "llama.cpp repack=$repack: prefill ${result[llama$repack,prefill]}, decode ${result[llama$repack,decode]} insns/token, peak RSS ${result[llama$repack,rss]} KiB"
done
for mode in never decider; do
    extra=()
    [ "$mode" = decider ] && extra=(--hard-rate 0.06)
    p64=$(count tah-$mode-p64 "${tah[@]}" --mode "$mode" "${extra[@]}" -p 64 -n 0)
    p128=$(count tah-$mode-p128 "${tah[@]}" --mode "$mode" "${extra[@]}" -p 128 -n 0)
    n16=$(count tah-$mode-n16 "${tah[@]}" --mode "$mode" "${extra[@]}" -p 0 -n 16)
    n32=$(count tah-$mode-n32 "${tah[@]}" --mode "$mode" "${extra[@]}" -p 0 -n 32)
    result[$mode,prefill]=$(per_token "$p64" "$p128" 64)
    result[$mode,decode]=$(per_token "$n16" "$n32" 16)
    result[$mode,passes]=$(tah_passes "$mode")
    result[$mode,rss]=$(rss tah-$mode "${tah[@]}" --mode "$mode" "${extra[@]}" -p 0 -n 16)
    echo "tah $mode: prefill ${result[$mode,prefill]}, decode ${result[$mode,decode]} insns/token, ${result[$mode,passes]} passes/token, peak RSS ${result[$mode,rss]} KiB"
done

python3 - "$WORK/results.md" <<EOF
import sys
r = {
    "llama1": (${result[llama1,prefill]}, ${result[llama1,decode]}, ${result[llama1,rss]}),
    "llama0": (${result[llama0,prefill]}, ${result[llama0,decode]}, ${result[llama0,rss]}),
    "never": (${result[never,prefill]}, ${result[never,decode]}, ${result[never,rss]}),
    "decider": (${result[decider,prefill]}, ${result[decider,decode]}, ${result[decider,rss]}),
}
passes = ${result[decider,passes]}
ref = r["llama1"]
lines = [
    "| engine | prefill M insns/token | decode M insns/token | peak RSS MiB | prefill vs llama.cpp | decode vs llama.cpp | RSS vs llama.cpp |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]
names = {"llama1": "llama.cpp (repack on)", "llama0": "llama.cpp (repack off)",
         "never": "tah never", "decider": f"tah decider (6% hard; {passes:.4f} passes per decode token counted)"}
for key, (p, d, m) in r.items():
    lines.append(f"| {names[key]} | {p/1e6:.1f} | {d/1e6:.1f} | {m/1024:.0f} | {p/ref[0]:.2f} | {d/ref[1]:.2f} | {m/ref[2]:.2f} |")
ratio = r["decider"][1] / (r["never"][1] * passes)
lines.append("")
lines.append(f"decider decode / (never decode x passes per token) = {ratio:.3f} (target <= 1.02)")
text = "\n".join(lines)
print(text)
open(sys.argv[1], "w").write(text + "\n")
EOF
