#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time and prints executions and
# findings per target. Works on the stable toolchain: libFuzzer's coverage
# instrumentation needs no nightly flags, only the sanitizer does, so targets
# are built with `-s none` (no ASan; Rust's own bounds checks still trap).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; CI uses a few seconds)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
cargo fuzz build -s none -O
status=0
for target in $(cargo fuzz list); do
  corpus="corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  # Known crash reproducers first: each must now run clean.
  for repro in regressions/"$target"/*; do
    [ -e "$repro" ] || continue
    cargo fuzz run -s none -O "$target" "$repro" -- -runs=1 >/dev/null 2>&1 || { echo "$target: regression $repro fails"; status=1; }
  done
  log=$(mktemp)
  # Fresh corpus entries stay in a scratch dir; only the seeds are committed.
  scratch=$(mktemp -d)
  if cargo fuzz run -s none -O "$target" "$scratch" "$corpus" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    result=ok
  else
    result="FINDING (see fuzz/artifacts/$target)"; status=1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  printf '%-22s %10s execs in %ss  %s\n' "$target" "$runs" "$seconds" "$result"
  rm -rf "$scratch" "$log"
done
exit $status
