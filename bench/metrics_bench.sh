#!/usr/bin/env bash
# Speed of medforge-eval's metrics against the Python references on the same 10k pairs:
# sacrebleu (BLEU 13a/intl/char corpus+sentence, BLEU-1..4), rouge-score (1/2/L/Lsum, with and without
# stemmer), nltk METEOR (with WordNet), SQuAD EM/F1. Both sides single-threaded, same passes, run
# back to back (reference first, then medforge, then the reference again; the faster reference run
# counts). medforge is built with opt-level 3 for medforge-eval (dependencies at the workspace's
# dev opt-level 2, no LTO: a conservative build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MEDFORGE_VERIFY_VENV:-.venv-verify}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sacrebleu, rouge_score, nltk" 2>/dev/null || "$VENV/bin/pip" install --quiet "sacrebleu==2.6.0" "rouge-score==0.1.2" "nltk==3.10.4"
work=${1:-bench/out/metrics}
mkdir -p "$work/py1" "$work/py2"
WN=${MEDFORGE_WORDNET:-/usr/share/wordnet}
[ -f "$WN/index.noun" ] || WN=none
OPT=(--config 'profile.dev.package.medforge-eval.opt-level=3' --config 'profile.dev.package.medforge-eval.debug-assertions=false' --config 'profile.dev.package.medforge-eval.overflow-checks=false')
cargo "${OPT[@]}" build -q -p medforge-eval --example metrics_bench
# A copy, so that another build of the examples (e.g. `cargo test`) cannot swap the binary mid-run.
cp "${CARGO_TARGET_DIR:-target}/debug/examples/metrics_bench" "$work/metrics_bench"
bin=$work/metrics_bench
"$VENV/bin/python" crates/medforge-eval/tests/parity/reference_metrics.py "$work/py1" --wordnet "$WN" >/dev/null 2>&1
RAYON_NUM_THREADS=1 "$bin" "$work/py1/pairs.jsonl" > "$work/medforge.json"
"$VENV/bin/python" crates/medforge-eval/tests/parity/reference_metrics.py "$work/py2" --pairs "$work/py1/pairs.jsonl" --wordnet "$WN" >/dev/null 2>&1
RAYON_NUM_THREADS=1 "$bin" "$work/py1/pairs.jsonl" > "$work/medforge_2.json"
"$VENV/bin/python" - "$work" <<'PY'
import json, sys, os
w = sys.argv[1]
p1 = json.load(open(f"{w}/py1/timings.json")); p2 = json.load(open(f"{w}/py2/timings.json"))
m1 = json.load(open(f"{w}/medforge.json")); m2 = json.load(open(f"{w}/medforge_2.json"))
m = {k: min(m1[k], m2[k]) if isinstance(m1[k], float) else m1[k] for k in m1}
print(f"pairs: {m['pairs']}, cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")
print("| reference | Python (s) | medforge (s) | speed-up |")
print("|---|---:|---:|---:|")
tp = tm = 0
for k in ["sacrebleu", "rouge_score", "nltk_meteor", "squad"]:
    py = min(p1[k], p2[k]); tp += py; tm += m[k]
    print(f"| {k} | {py:.2f} | {m[k]:.3f} | {py/m[k]:.0f}x |")
print(f"| **all** | {tp:.2f} | {tm:.3f} | {tp/tm:.0f}x |")
print("(each side: the faster of two runs, one thread)")
print(f"(WordNet load, excluded on both sides: medforge {m['wordnet_load']:.2f} s)")
PY
