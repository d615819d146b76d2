#!/usr/bin/env bash
# `medforge eval` with the default local model (SmolLM2-135M-Instruct, in-process engine, no server) on MedQA dev in
# both modes, `medforge report` over the two runs, then the results checked (scripts/check_eval_run.py: no failed
# request, no unparseable answer in loglik mode, accuracy within the band of a reference run, every report file's
# numbers equal to the per-item CSV's) and every report page checked: self-contained, charts decode, and rendered
# in headless Chromium with the charts visible (scripts/check_report_html.py).
#
#   scripts/verify_eval.sh       # fixtures/medqa/dev_4opt.jsonl (20 questions, 64 tokens per answer): what CI runs
#   DATA=../shared/data/medqa/US/4_options/dev.jsonl LIMIT=200 MAX_TOKENS=256 OUT=out/eval_smollm2 scripts/verify_eval.sh
#
# Chromium: taken from PATH or $CHROMIUM; when missing and this runs as root with apt (CI), Debian's chromium is
# installed. REQUIRE_BROWSER=1 makes a missing browser an error (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
MODEL="$(scripts/fetch_model.sh)"
need_medforge_bin
DATA="${DATA:-fixtures/medqa/dev_4opt.jsonl}"
LIMIT="${LIMIT:-200}"
MAX_TOKENS="${MAX_TOKENS:-64}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
# Accuracy bands of the CI fixture (20 MedQA dev questions, 64 tokens): the reference run on 2026-12-05 gave 6/20 in
# gen mode and 8/20 in loglik mode; ±2 questions allow for floating-point differences across CPUs.
band() {
    if [ "$DATA" = fixtures/medqa/dev_4opt.jsonl ] && [ "$MAX_TOKENS" = 64 ]; then
        case "$1" in gen) echo "--band 0.20 0.40" ;; loglik) echo "--band 0.30 0.50" ;; esac
    fi
}
for mode in gen loglik; do
    "$MEDFORGE_BIN" eval --model-path "$MODEL" --model smollm2 --benchmark medqa --data "$DATA" --limit "$LIMIT" \
        --mode "$mode" --max-tokens "$MAX_TOKENS" --out "$OUT/$mode" 2>"$OUT/$mode.log" | tee "$OUT/$mode.txt" \
        || { cat "$OUT/$mode.log" >&2; die "error: medforge eval --mode $mode failed"; }
    # shellcheck disable=SC2046 # the band is two words or none
    python3 scripts/check_eval_run.py "$OUT/$mode" --mode "$mode" $(band "$mode")
    for f in smollm2_results.csv specialty_performance.csv model_comparison.csv failed_questions.json \
        training_recommendations.json report.html; do
        [ -s "$OUT/$mode/$f" ] || die "error: $OUT/$mode/$f was not written"
    done
    ls "$OUT/$mode"/*.png >/dev/null || die "error: no PNG charts in $OUT/$mode"
done
"$MEDFORGE_BIN" report "$OUT/gen" "$OUT/loglik" --out "$OUT/report" >/dev/null
python3 scripts/check_eval_run.py --report "$OUT/report" "$OUT/gen" "$OUT/loglik"

if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
    apt_try chromium
fi
REQ=()
[ "${REQUIRE_BROWSER:-0}" = 1 ] && REQ=(--require-browser)
for page in "$OUT/gen/report.html" "$OUT/loglik/report.html" "$OUT/report/report.html"; do
    python3 scripts/check_report_html.py "$page" --screenshot "${page%.html}.png" "${REQ[@]}"
done
echo "eval reports verified in $OUT"
