#!/usr/bin/env bash
# Benchmark-only comparison of `tah bench` with llama.cpp's own `llama-bench`
# on the same random Qwen3-0.6B-shaped weights, written by `tah init-random`
# (the TaH file and its base-only twin, same seed, so the same base tensors).
# llama-bench is built with CMake from the llama.cpp sources vendored in the
# PyPI sdist of llama-cpp-python (benches/llama-sources.sh; the version the
# aarch64 comparison uses too). Writes benches/results.md. Not part of the
# SDK, not run in CI.
#
#   benches/compare-llama.sh [--threads N] [--rounds N] [--reps N] [--quant q4_k] [--seed S]
#
# The engines run in --rounds interleaved rounds (default 3: llama-bench,
# then every tah mode, --reps repetitions each, default 1), so a slow spell
# of a shared machine hits both engines; the report gives each round's
# ratios and their median.
#   benches/compare-llama.sh --setup-only    # only build llama-bench
#   benches/compare-llama.sh --report-only   # rewrite results.md from the last run
#
# Environment: TAH_BENCH_CACHE (llama.cpp sources and build, models, logs;
# default ~/.cache/tah-bench), CARGO_TARGET_DIR (where `tah` is built in
# release), LLAMA_CMAKE_ARGS, TAH_AMX (0: tah without AMX).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${TAH_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tah-bench}
LLAMA_BUILD="$CACHE_DIR/llama/build-$(uname -m)"
LLAMA_BENCH="$LLAMA_BUILD/bin/llama-bench"

# An optimized CPU build for this machine: Release (-O3), static libraries
# (llama-bench is one self-contained process), no OpenMP (ggml's own thread
# pool; at 1 thread no worker threads at all), no BLAS/GPU backends.
# On x86 the ISA flags are the CPU's own (what -march=native gives) except
# AMX: llama.cpp 0.3.36's AMX build died with SIGILL on its first `tilezero`
# on an AMX machine here (gdb: in ggml_backend_amx_mul_mat, no tile
# configuration loaded on that thread, also when the process was granted AMX
# state by arch_prctl beforehand), and ggml's AMX buffer holds a second,
# repacked copy of the weights. tah uses AMX where the CPU has it;
# `TAH_AMX=0` in the environment runs it without, for a like-for-like
# comparison.
x86_isa_args() {
    local args="-DGGML_NATIVE=OFF" pair
    for pair in avx:AVX avx2:AVX2 bmi2:BMI2 fma:FMA f16c:F16C avx_vnni:AVX_VNNI \
        avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
        if grep -qw "${pair%%:*}" /proc/cpuinfo; then
            args+=" -DGGML_${pair##*:}=ON"
        else
            args+=" -DGGML_${pair##*:}=OFF"
        fi
    done
    echo "$args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}

default_cmake_args() {
    local isa="-DGGML_NATIVE=ON"
    [[ $(uname -m) == x86_64 ]] && isa=$(x86_isa_args)
    echo "-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF $isa -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF"
}
LLAMA_CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-$(default_cmake_args)}

# Whether tah multiplies many rows on AMX tiles (one word, for the settings
# file): the CPU's AMX flags, unless TAH_AMX=0 turns it off (tah also needs
# the kernel's grant, which it asks for itself and which this cannot see).
tah_amx() {
    if [[ ${TAH_AMX:-} == 0 ]]; then
        echo "off_(TAH_AMX=0)"
    elif grep -qw amx_bf16 /proc/cpuinfo && grep -qw amx_tile /proc/cpuinfo; then
        echo "on_(bf16_tiles_for_many-row_products;_CPU_flags)"
    else
        echo "not_on_this_CPU"
    fi
}

# The build directory is the cache: llama-bench is rebuilt only when the
# sources or the flags change (the stamp holds both).
setup_llama_bench() {
    local src stamp="$LLAMA_BUILD/.tah-build-flags" wanted
    src=$("$ROOT/benches/llama-sources.sh" "$CACHE_DIR/llama")
    wanted="$src $LLAMA_CMAKE_ARGS"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$LLAMA_BENCH" ]]; then
        echo "llama-bench: cached in $LLAMA_BUILD"
        return
    fi
    command -v cmake >/dev/null || { echo "cmake is needed (apt-get install cmake)" >&2; exit 1; }
    echo "building llama-bench from $src (takes a while on two cores) into $LLAMA_BUILD"
    echo "  $LLAMA_CMAKE_ARGS"
    rm -rf "$LLAMA_BUILD"
    # shellcheck disable=SC2086 # LLAMA_CMAKE_ARGS is a list of flags
    { cmake -S "$src" -B "$LLAMA_BUILD" $LLAMA_CMAKE_ARGS \
        && nice -n 10 cmake --build "$LLAMA_BUILD" --target llama-bench -j "$(nproc)"; } \
        >"$CACHE_DIR/llama-bench-build.log" 2>&1 \
        || { echo "build failed; see $CACHE_DIR/llama-bench-build.log" >&2; exit 1; }
    echo "$wanted" >"$stamp"
}

# benches/results.md from the files of the last run in $1.
write_report() {
    local run=$1 quant seed threads reps pp tg hard_rate rounds amx llama_flags
    read -r quant seed threads reps pp tg hard_rate rounds amx <"$run/settings"
    rounds=${rounds:-1}
    amx=${amx:-unrecorded}
    # The compiler flags ggml's CPU backend was built with (from CMake's output).
    llama_flags=$(sed -n 's/^-- Adding CPU backend variant ggml-cpu: *//p' "$CACHE_DIR/llama-bench-build.log" 2>/dev/null | head -1)
    python3 "$ROOT/benches/compare.py" report --tah "$run/tah.json" --llama "$run/llama.json" \
        --llama-log "$run/llama.log" --pp "$pp" --tg "$tg" --threads "$threads" --rounds "$rounds" --out "$ROOT/benches/results.md" \
        --meta "date=$(date -u -r "$run/tah.json" '+%Y-%m-%d %H:%M UTC')" \
        --meta "machine=$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(uname -sr)" \
        --meta "tah=$(cat "$run/tah-version"), release build; AMX ${amx//_/ }" \
        --meta "llama.cpp=\`llama-bench\` built from $(cat "$run/llama-version"), CMake args \`$LLAMA_CMAKE_ARGS\`, target llama-bench only; run as \`$(cat "$run/llama-command")\` (weight repacking on, llama.cpp's default, and off: two processes)" \
        --meta "llama.cpp CPU backend compile flags=\`${llama_flags:-unrecorded}\`" \
        --meta "model=random Qwen3-0.6B shapes (vocab 151936, hidden 1024, 28 layers, 16/8 heads, head_dim 128, FFN 3072, tied embedding): \`tah init-random --quant $quant --seed $seed\`; llama.cpp runs the \`--base-only\` twin (byte-identical base tensors)" \
        --meta "files=TaH $(du -m "$run/qwen3-0.6b-$quant-seed$seed-tah.gguf" | cut -f1) MiB, base-only $(du -m "$run/qwen3-0.6b-$quant-seed$seed-base.gguf" | cut -f1) MiB" \
        --meta "threads=$threads" \
        --meta "repetitions=$rounds interleaved round(s) x $reps (median, min-max)" \
        --meta "hard rate=$hard_rate in decider mode (seeded-hash-chosen positions take the second pass; the decider runs on every token)"
    cat "$ROOT/benches/results.md"
}

# Everything runs from here, so editing this file never affects a running copy.
main() {
    local threads=1 rounds=3 reps=1 quant=q4_k seed=0 setup_only=0
    local pp=512 tg=64 hard_rate=0.06
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --threads) threads=$2; shift 2 ;;
            --rounds) rounds=$2; shift 2 ;;
            --reps) reps=$2; shift 2 ;;
            --quant) quant=$2; shift 2 ;;
            --seed) seed=$2; shift 2 ;;
            --setup-only) setup_only=1; shift ;;
            --report-only) write_report "$CACHE_DIR/run"; return ;;
            *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
        esac
    done

    mkdir -p "$CACHE_DIR"
    setup_llama_bench
    [[ $setup_only == 1 ]] && return

    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    echo "building tah (release) into $target"
    (cd "$ROOT" && cargo build --release --quiet -p tah-cli)
    local tah="$target/release/tah"

    local run="$CACHE_DIR/run" dirty=""
    mkdir -p "$run"
    git -C "$ROOT" diff --quiet HEAD || dirty=" (uncommitted changes)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD)$dirty" >"$run/tah-version"
    echo "$quant $seed $threads $reps $pp $tg $hard_rate $rounds $(tah_amx)" >"$run/settings"
    local tah_model="$run/qwen3-0.6b-$quant-seed$seed-tah.gguf"
    local base_model="$run/qwen3-0.6b-$quant-seed$seed-base.gguf"
    "$tah" init-random --shape qwen3-0.6b --quant "$quant" --seed "$seed" --out "$tah_model" --force
    "$tah" init-random --shape qwen3-0.6b --quant "$quant" --seed "$seed" --out "$base_model" --force --base-only

    # -v: llama.cpp's log (buffer sizes) goes to llama.log; it logs at load
    # and when it builds a graph, not per token.
    local llama_args=(-m "$base_model" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o json -v)
    echo "vendor/llama.cpp of llama-cpp-python $(sed -n 's/^VERSION=//p' "$ROOT/benches/llama-sources.sh") (PyPI sdist)" >"$run/llama-version"
    echo "llama-bench ${llama_args[*]} --repack 1|0" | sed "s|$run/||" >"$run/llama-command"
    : >"$run/llama.log"
    local i llama_rounds=() tah_rounds=()
    for ((i = 1; i <= rounds; i++)); do
        # Repacking on (llama.cpp's default) and off, each in its own process
        # (its own peak RSS).
        for repack in 1 0; do
            echo "round $i/$rounds: llama-bench pp$pp, tg$tg, $threads thread(s), $reps repetition(s), --repack $repack"
            python3 "$ROOT/benches/compare.py" run "$run/llama-bench-repack$repack.json.$i" -- \
                "$LLAMA_BENCH" "${llama_args[@]}" --repack "$repack" 2>>"$run/llama.log" \
                || { tail -20 "$run/llama.log" >&2; exit 1; }
        done
        python3 "$ROOT/benches/compare.py" llama-bench "$run/llama.json.$i" \
            "$run/llama-bench-repack1.json.$i" "$run/llama-bench-repack0.json.$i"
        echo "round $i/$rounds: tah never, decider (--hard-rate $hard_rate), always"
        python3 "$ROOT/benches/compare.py" run "$run/tah.json.$i" -- \
            "$tah" bench --model "$tah_model" --threads "$threads" -p "$pp" -n "$tg" \
            --mode never,decider,always --hard-rate "$hard_rate" --reps "$reps" --json
        llama_rounds+=("$run/llama.json.$i")
        tah_rounds+=("$run/tah.json.$i")
    done
    python3 "$ROOT/benches/compare.py" merge "$run/llama.json" "${llama_rounds[@]}"
    python3 "$ROOT/benches/compare.py" merge "$run/tah.json" "${tah_rounds[@]}"

    write_report "$run"
}

main "$@"; exit
