#!/usr/bin/env bash
# Engine speed before/after a change, in one session: two engine_bench binaries run interleaved (A B A B ...) on
# SmolLM2 Q4_1, prompt 128 + decode 128, $THREADS threads (default 2; 1 is the least noisy on a shared VM); medians,
# minima and maxima of prompt and decode tok/s.
#
#   git worktree add /tmp/base <rev> && (cd /tmp/base && CARGO_TARGET_DIR=$PWD/../main/target/bench-native \
#       cargo build --release -p medforge-engine --example engine_bench) && cp .../engine_bench /tmp/engine_bench_base
#   bench/engine_ab.sh /tmp/engine_bench_base target/bench-native/release/examples/engine_bench [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
A="$1" B="$2" RUNS="${3:-10}"
MODEL="$(scripts/fetch_model.sh)"
THREADS="${THREADS:-2}"
export RAYON_NUM_THREADS="$THREADS" MEDFORGE_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
out="$(mktemp)"
for _ in $(seq 1 "$RUNS"); do
    echo "A $("$A" speed "$MODEL" 128 128)" >> "$out"
    echo "B $("$B" speed "$MODEL" 128 128)" >> "$out"
done
python3 - "$out" <<'PY'
import json, statistics as st, sys
runs = {"A": [], "B": []}
for line in open(sys.argv[1]):
    k, j = line.split(" ", 1)
    runs[k].append(json.loads(j))
for k, rs in runs.items():
    pp = [r["pp_tok_s"] for r in rs]
    tg = [r["tg_tok_s"] for r in rs]
    print(f"{k}: prompt median {st.median(pp):.1f} tok/s (min {min(pp):.1f}, max {max(pp):.1f}); "
          f"decode median {st.median(tg):.1f} tok/s (min {min(tg):.1f}, max {max(tg):.1f}); n={len(rs)}")
PY
rm -f "$out"
