#!/usr/bin/env bash
# Speed of medforge-eval's metrics against the Python references on the same 10k pairs:
# sacrebleu (BLEU 13a/intl/char corpus+sentence, BLEU-1..4), rouge-score (1/2/L/Lsum, with and without
# stemmer), nltk METEOR (with WordNet), SQuAD EM/F1. Both sides single-threaded, same passes, run
# back to back (reference first, then medforge, then the reference again; the faster reference run
# counts). medforge is built in the release profile (`cargo build --release`, the build a user
# runs: the workspace's [profile.release], opt-level 3 with thin LTO), into $CARGO_TARGET_DIR
# when set. BENCH_ONLY=sacrebleu,... limits the medforge side to some groups (for profiling).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
VENV=${MEDFORGE_VERIFY_VENV:-.venv-verify}
metrics_venv "$VENV" --quiet
work=${1:-bench/out/metrics}
mkdir -p "$work/py1" "$work/py2"
WN=${MEDFORGE_WORDNET:-/usr/share/wordnet}
[ -f "$WN/index.noun" ] || WN=none
cargo build --release -q -p medforge-eval --example metrics_bench
# A copy, so that another build of the examples cannot swap the binary mid-run.
cp "${CARGO_TARGET_DIR:-target}/release/examples/metrics_bench" "$work/metrics_bench"
bin=$work/metrics_bench
# medforge runs 5 times (3 after the first reference run, 2 after the second), the reference twice:
# a medforge run takes a fraction of a second, so one run is at the mercy of whatever else the
# machine runs at that moment; each reference run takes seconds and averages over it. The table
# takes each side's fastest run and also prints medforge's median.
mf() { for i in "$@"; do RAYON_NUM_THREADS=1 "$bin" "$work/py1/pairs.jsonl" > "$work/medforge_$i.json"; done; }
"$VENV/bin/python" crates/medforge-eval/tests/parity/reference_metrics.py "$work/py1" --wordnet "$WN" >/dev/null 2>&1
mf 1 2 3
"$VENV/bin/python" crates/medforge-eval/tests/parity/reference_metrics.py "$work/py2" --pairs "$work/py1/pairs.jsonl" --wordnet "$WN" >/dev/null 2>&1
mf 4 5
"$VENV/bin/python" - "$work" <<'PY'
import json, sys, os, statistics
w = sys.argv[1]
p1 = json.load(open(f"{w}/py1/timings.json")); p2 = json.load(open(f"{w}/py2/timings.json"))
ms = [json.load(open(f"{w}/medforge_{i}.json")) for i in range(1, 6)]
keys = ["sacrebleu", "rouge_score", "nltk_meteor", "squad"]
m = {k: min(r[k] for r in ms) for k in keys + ["wordnet_load"]}
med = {k: statistics.median(r[k] for r in ms) for k in keys}
print(f"pairs: {ms[0]['pairs']}, cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")
print("| reference | Python (s) | medforge (s) | speed-up | medforge median (s) |")
print("|---|---:|---:|---:|---:|")
tp = tm = tmed = 0
for k in keys:
    py = min(p1[k], p2[k]); tp += py; tm += m[k]; tmed += med[k]
    print(f"| {k} | {py:.2f} | {m[k]:.3f} | {py/m[k]:.0f}x | {med[k]:.3f} ({py/med[k]:.0f}x) |")
print(f"| **all** | {tp:.2f} | {tm:.3f} | {tp/tm:.0f}x | {tmed:.3f} ({tp/tmed:.0f}x) |")
sep = min(r["squad_separate"] for r in ms); py = min(p1["squad"], p2["squad"])
print(f"| squad, EM and F1 as separate calls | {py:.2f} | {sep:.3f} | {py/sep:.0f}x | {statistics.median(r['squad_separate'] for r in ms):.3f} |")
print("(one thread each; Python: the faster of 2 runs; medforge: the fastest of 5, and their median)")
print("(squad: both scores from squad_scores, one normalisation of each string, as `medforge score` computes them;")
print(" the last row: exact_match() and token_f1() called separately, normalising twice like the script)")
print(f"(WordNet load, excluded on both sides: medforge {m['wordnet_load']:.2f} s)")
PY
