#!/usr/bin/env bash
# Benchmark-only comparison of `tah bench` with llama.cpp (through PyPI's
# llama-cpp-python) on the same random Qwen3-0.6B-shaped weights, written by
# `tah init-random` (the TaH file and its base-only twin, same seed, so the
# same base tensors). Writes benches/results.md. Not part of the SDK, not run
# in CI.
#
#   benches/compare-llama.sh [--threads N] [--rounds N] [--reps N] [--quant q4_k] [--seed S]
#
# The engines run in --rounds interleaved rounds (default 3: llama.cpp, then
# every tah mode, --reps repetitions each, default 1), so a slow spell of a
# shared machine hits both engines; the report gives each round's ratios
# and their median.
#   benches/compare-llama.sh --setup-only    # only build llama-cpp-python
#   benches/compare-llama.sh --report-only   # rewrite results.md from the last run
#
# Environment: TAH_BENCH_CACHE (venv, models, logs; default
# ~/.cache/tah-bench), CARGO_TARGET_DIR (where `tah` is built in release),
# LLAMA_CPP_PYTHON_VERSION, LLAMA_CMAKE_ARGS, TAH_AMX (0: tah without AMX).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE_DIR=${TAH_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tah-bench}
VENV="$CACHE_DIR/venv-llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION"

# An optimized CPU build for this machine: no OpenMP (ggml's own thread pool;
# at 1 thread no worker threads at all), no BLAS/GPU backends, no multimodal
# library (unused; saves build time); scikit-build-core builds Release (-O3).
# On x86 the ISA flags are the CPU's own (what -march=native gives) except
# AMX: llama-cpp-python 0.3.36 built with AMX dies with SIGILL on its first
# `tilezero` here (gdb: in ggml_backend_amx_mul_mat, no tile configuration
# loaded on that thread, also when the process was granted AMX state by
# arch_prctl beforehand), and ggml's AMX buffer holds a second, repacked
# copy of the weights. tah uses AMX where the CPU has it; `TAH_AMX=0` in the
# environment runs it without, for a like-for-like comparison.
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
    echo "$isa -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DLLAVA_BUILD=OFF"
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

# The venv is the cache: rebuilt only when the version or the flags change.
setup_llama_cpp_python() {
    local stamp="$VENV/.tah-build-flags"
    local wanted="$LLAMA_CPP_PYTHON_VERSION $LLAMA_CMAKE_ARGS"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
        && "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
        echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION: cached in $VENV"
        return
    fi
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (llama.cpp from source; takes a while) into $VENV"
    echo "  CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS, so a cached wheel
    # could carry other flags.
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        nice -n 10 "$VENV/bin/pip" install --no-cache-dir --verbose \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >"$CACHE_DIR/llama-cpp-python-build.log" 2>&1 \
        || { echo "build failed; see $CACHE_DIR/llama-cpp-python-build.log" >&2; exit 1; }
    echo "$wanted" >"$stamp"
}

# benches/results.md from the files of the last run in $1.
write_report() {
    local run=$1 quant seed threads reps pp tg hard_rate rounds amx llama_cpu
    read -r quant seed threads reps pp tg hard_rate rounds amx <"$run/settings"
    rounds=${rounds:-1}
    amx=${amx:-unrecorded}
    llama_cpu=$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())' 2>/dev/null \
        | sed 's/^CPU : //; s/ = 1//g; s/ | /, /g; s/[ |,]*$//')
    python3 "$ROOT/benches/compare.py" report --tah "$run/tah.json" --llama "$run/llama.json" \
        --llama-log "$run/llama.log" --pp "$pp" --tg "$tg" --threads "$threads" --rounds "$rounds" --out "$ROOT/benches/results.md" \
        --meta "date=$(date -u -r "$run/tah.json" '+%Y-%m-%d %H:%M UTC')" \
        --meta "machine=$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(uname -sr)" \
        --meta "tah=$(cat "$run/tah-version"), release build; AMX ${amx//_/ }" \
        --meta "llama.cpp=llama-cpp-python $LLAMA_CPP_PYTHON_VERSION, CMAKE_ARGS \`$LLAMA_CMAKE_ARGS\`, weight repacking on (llama.cpp's default)" \
        --meta "llama.cpp CPU features=$llama_cpu" \
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
    setup_llama_cpp_python
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

    : >"$run/llama.log"
    local i llama_rounds=() tah_rounds=()
    for ((i = 1; i <= rounds; i++)); do
        echo "round $i/$rounds: llama.cpp pp$pp, tg$tg, $threads thread(s), $reps repetition(s)"
        python3 "$ROOT/benches/compare.py" run "$run/llama.json.$i" -- \
            "$VENV/bin/python" "$ROOT/benches/llama_bench.py" --model "$base_model" \
            --threads "$threads" -p "$pp" -n "$tg" --reps "$reps" 2>>"$run/llama.log" \
            || { tail -20 "$run/llama.log" >&2; exit 1; }
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
