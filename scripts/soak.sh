#!/usr/bin/env bash
# Full-size load and fault runs (CI runs the same tests at small sizes):
#   - soak: 10,000 tokens in one session through a 1,024-token context that
#     fills again and again (ContextFull, then ContextOverflow, then reset),
#     with VmRSS required to stay within 8 MiB of its post-warm-up value;
#   - faults: 1,000 cancels at random moments (each followed by a check that
#     the session still gives a fresh session's output), 8 concurrent
#     sessions, listeners that panic, stop or block (5 s), dropped handles,
#     concurrent loads.
# Prints the figures (tokens/s, RSS per turn, cancel outcomes). Runs niced.
#   scripts/soak.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export TAH_SOAK=1
exec nice -n 19 cargo test -p tah-core --test soak --test faults "$@" -- --nocapture --test-threads=1
