#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time and prints, per target, the
# executions, the coverage reached and the findings. Works on the stable
# toolchain: libFuzzer's coverage instrumentation needs no nightly flags, only
# the sanitizers do, so targets are built with `-s none` (no ASan; Rust's own
# bounds and overflow checks still trap, and `-O` keeps debug assertions).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
#
# Seeds are fuzz/corpus/<target>/ (committed, small); new corpus entries go to
# a scratch dir and are dropped. A finding is written to fuzz/artifacts/<target>/;
# once fixed, copy it to fuzz/regressions/<target>/ so that
# `cargo test -p tah-core --test fuzz_corpus` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
# A shared CARGO_TARGET_DIR would mix instrumented and plain builds.
unset CARGO_TARGET_DIR
# One compute thread: libFuzzer runs inputs one at a time, and on a busy
# machine rayon's hand-offs made a tiny model's run 10-20x slower (false
# timeouts).
export RAYON_NUM_THREADS=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
cargo fuzz build -s none -O
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  # Known crash reproducers first: each must now run clean.
  for repro in regressions/"$target"/*; do
    [ -e "$repro" ] || continue
    cargo fuzz run -s none -O "$target" "$repro" -- -runs=1 >/dev/null 2>&1 ||
      { echo "$target: regression $repro fails"; status=1; }
  done
  log=$(mktemp)
  scratch=$(mktemp -d)
  # Crashes, timeouts, OOMs and leaks count; `slow-unit-*` files (slow only
  # because the machine was busy, so far) do not.
  count() { find "artifacts/$target" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l; }
  before=$(count)
  if cargo fuzz run -s none -O "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FINDING: $(grep -Eo 'Test unit written to .*' "$log" | tail -1)"; status=1
  fi
  findings=$(($(count) - before))
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  printf '%-20s %10s execs in %4ss  %-22s findings: %d  %s\n' \
    "$target" "$runs" "$seconds" "${cov:-cov: ?}" "$findings" "$result"
  rm -rf "$scratch" "$log"
done
exit $status
