#!/usr/bin/env bash
# Training checks too slow for CI, on SmolLM2 with the release binary (bench/TRAIN_RESULTS.md quotes their output):
#
#   scripts/verify_train.sh peft     # PEFT loads medforge's adapters onto the HF export: same logits within 1e-3
#   scripts/verify_train.sh resume   # kill -9 mid-run, --resume: the uninterrupted loss curve
#   scripts/verify_train.sh sft      # LoRA SFT on MedQA letter rows: eval-split loss, MedQA test accuracy before/after
#   scripts/verify_train.sh dpo      # MedQuAD pairs from `medforge serve` (dpo_pairs stage), then DPO: reward accuracy
#   scripts/verify_train.sh loops    # --until and --probe-focus on a tiny budget against KorMedMCQA
#   scripts/verify_train.sh all
#
# `peft` needs bench/train_bench.sh's outputs (bench/out/train_bench) and bench/.venv-hf (torch, transformers, peft).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
what="${1:-all}"
THREADS="${THREADS:-2}"
bin=target/bench/release/medforge
work=bench/out/verify_train
mkdir -p "$work"
gguf="$(scripts/fetch_model.sh)"
[ -x "$bin" ] || build_bench_medforge
HF=bench/.venv-hf/bin/python

peft() {
  local tb=bench/out/train_bench
  [ -f "$tb/medforge/adapter/adapter_model.safetensors" ] || die "run bench/train_bench.sh first (EXTRA=1 for the QLoRA adapter)"
  echo "== building engine_bench (release)" >&2
  CARGO_TARGET_DIR=target/bench cargo build --release --quiet -p medforge-engine --example engine_bench
  local eb=target/bench/release/examples/engine_bench
  # Three prompts: prefixes (48, 96, 160 tokens) of the first training rows.
  python3 - "$tb/tokens.jsonl" "$work/prompts.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:3]
json.dump({"prompts": [{"ids": r["ids"][:n]} for r, n in zip(rows, (48, 96, 160))]}, open(sys.argv[2], "w"))
PY
  for adapter in medforge qlora; do
    local dir="$tb/$adapter/adapter"
    [ -f "$dir/adapter_model.safetensors" ] || { echo "$adapter: no adapter, skipped"; continue; }
    "$HF" bench/peft_logits.py --model "$tb/smollm2-hf" --adapter "$dir" --prompts-json "$work/prompts.json" \
      --out "$work/peft_$adapter.json" --threads "$THREADS" >/dev/null
    "$eb" logits "$tb/smollm2-hf" "$dir" "$work/prompts.json" >"$work/medforge_$adapter.json"
    if [ "$adapter" = qlora ]; then
      "$eb" logits "$gguf" "$dir" "$work/prompts.json" >"$work/medforge_qlora_gguf.json"
    fi
  done
  python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
def load(name):
    p = os.path.join(w, name)
    return json.load(open(p)) if os.path.exists(p) else None
bad = 0
for adapter in ("medforge", "qlora"):
    pt, mf = load("peft_%s.json" % adapter), load("medforge_%s.json" % adapter)
    if not pt:
        continue
    for i, (a, b) in enumerate(zip(pt["prompts"], mf["prompts"])):
        d_ad = max(abs(x - y) for x, y in zip(a["adapter"]["logits"], b["adapter"]))
        d_base = max(abs(x - y) for x, y in zip(a["base"]["logits"], b["base"]))
        effect = max(abs(x - y) for x, y in zip(a["adapter"]["logits"], a["base"]["logits"]))
        ok = d_ad <= 1e-3
        bad += not ok
        print("%-8s prompt %d (%3d tokens): max |PEFT - medforge| logits with adapter %.2e, base %.2e; "
              "the adapter moves logits by up to %.3f  %s" % (adapter, i, len(a["ids"]), d_ad, d_base, effect,
                                                               "ok" if ok else "FAIL"))
g = load("medforge_qlora_gguf.json")
pt = load("peft_qlora.json")
if g and pt:
    # The adapter trained on the quantised GGUF base: its effect there against its effect through PEFT on the f32
    # Hugging Face form (q/k rows un-permuted on save). Quantisation differs, so compare the adapter's deltas.
    for i, (a, b) in enumerate(zip(pt["prompts"], g["prompts"])):
        da = [x - y for x, y in zip(a["adapter"]["logits"], a["base"]["logits"])]
        db = [x - y for x, y in zip(b["adapter"], b["base"])]
        n = len(da); ma = sum(da) / n; mb = sum(db) / n
        cov = sum((x - ma) * (y - mb) for x, y in zip(da, db))
        corr = cov / (sum((x - ma) ** 2 for x in da) * sum((y - mb) ** 2 for y in db)) ** 0.5
        print("qlora    prompt %d: correlation of the adapter's logit deltas, GGUF Q4_1 (medforge) vs HF f32 (PEFT): %.4f"
              % (i, corr))
sys.exit(1 if bad else 0)
PY
}

resume() {
  # MedQA letter rows (examples/train_medqa.toml), 12 steps, a checkpoint every 2; killed after step 6 is saved.
  local data cfg="$work/resume.toml"
  data="$(sft_data)"
  cat >"$cfg" <<EOF
[train]
base = "$gguf"
data = "$PWD/$data"
output = "$PWD/$work/resume_whole"
seed = 7
max_length = 256
batch_size = 4
max_steps = 12
lr = 2e-4
warmup_steps = 2
eval_every = 0
checkpoint_every = 2
threads = $THREADS
[train.lora]
r = 8
alpha = 16
dropout = 0.05
EOF
  rm -rf "$work"/resume_whole "$work"/resume_cut
  "$bin" train --config "$cfg" --quiet >/dev/null
  "$bin" train --config "$cfg" --quiet --output "$work/resume_cut" >/dev/null &
  local pid=$!
  while [ ! -d "$work/resume_cut/checkpoints/step-000006" ]; do
    kill -0 "$pid" 2>/dev/null || die "the run ended before step 6"
    sleep 0.2
  done
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  echo "killed -9 with checkpoints: $(ls "$work/resume_cut/checkpoints" | tr '\n' ' ')"
  "$bin" train --config "$cfg" --quiet --output "$work/resume_cut" --resume >/dev/null
  python3 - "$work/resume_whole/training_info.json" "$work/resume_cut/training_info.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sa, sb = a["steps"], b["steps"]
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(sa, sb))
print("uninterrupted: %s" % " ".join("%.4f" % s["loss"] for s in sa))
print("killed+resumed: %s (resumed from %s)" % (" ".join("%.4f" % s["loss"] for s in sb), b.get("resumed_from")))
print("steps %d vs %d, worst relative loss difference %.2e" % (len(sa), len(sb), worst))
sys.exit(0 if len(sa) == len(sb) and worst <= 1e-6 else 1)
PY
}

# The formatted MedQA letter set of examples/train_medqa.toml (curated once).
sft_data() {
  local d
  d="$(ls -d out/train_medqa/*/formatted 2>/dev/null | grep -v latest | tail -1 || true)"
  if [ -z "$d" ]; then
    "$bin" run --config examples/train_medqa.toml >&2
    d="$(ls -d out/train_medqa/*/formatted | grep -v latest | tail -1)"
  fi
  echo "$d"
}

sft() {
  local data; data="$(sft_data)"
  local test=../shared/data/medqa/US/4_options/test.jsonl
  local limit="${EVAL_LIMIT:-400}"
  rm -rf out/lora_medqa "$work"/eval_base "$work"/eval_tuned
  /usr/bin/time -v -o "$work/sft.time" "$bin" train --config examples/train_medqa.toml --data "$data" \
    --threads "$THREADS" --max-steps "${SFT_STEPS:-300}"
  for side in base tuned; do
    local adapter=()
    [ "$side" = tuned ] && adapter=(--adapter out/lora_medqa/adapter)
    "$bin" eval --model-path "$gguf" "${adapter[@]}" --benchmark medqa --data "$test" --limit "$limit" --mode loglik \
      --out "$work/eval_$side" --model "smollm2_$side" >/dev/null
  done
  "$bin" report "$work/eval_base" "$work/eval_tuned" --out "$work/eval_report" >/dev/null
  python3 - out/lora_medqa/training_info.json "$work/eval_report" <<'PY'
import csv, json, os, sys
info = json.load(open(sys.argv[1]))
ev = info["evals"]
print("steps %d, %.1f tokens/s; eval-split loss %s" % (len(info["steps"]), info["tokens_per_second"],
      " -> ".join("%.4f@%d" % (e["loss"], e["step"]) for e in ev)))
print("eval-split letter accuracy %s" % " -> ".join("%s" % e.get("accuracy") for e in ev))
for row in csv.DictReader(open(os.path.join(sys.argv[2], "model_comparison.csv"))):
    if row.get("scope", "overall") == "overall":
        print(row)
PY
}

dpo() {
  local log="$work/serve.log" url
  "$bin" serve --model "$gguf" --name smollm2 --port 8011 >"$log" 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  url="$(wait_for_serve "$pid" "$log")"
  echo "serving at $url" >&2
  rm -rf out/dpo_medquad out/dpo_medquad_train
  "$bin" run --config examples/dpo_medquad.toml
  kill "$pid" 2>/dev/null || true
  local data; data="$(ls -d out/dpo_medquad/*/formatted | grep -v latest | tail -1)"
  /usr/bin/time -v -o "$work/dpo.time" "$bin" train --config examples/dpo_medquad.toml --data "$data" --threads "$THREADS"
  python3 - out/dpo_medquad_train/training_info.json <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
for e in info["evals"]:
    print("step %4d  eval loss %.4f  reward accuracy %s  margin %s" % (e["step"], e["loss"], e.get("reward_accuracy"), e.get("reward_margin")))
st = info["steps"]
print("%d steps, %.2f s/step" % (len(st), sum(s["seconds"] for s in st) / len(st)))
PY
}

loops() {
  # A tiny budget: 48 training rows (12 steps a loop), 40 benchmark items per check.
  local full; full="$(sft_data)"
  local data="$work/loops_data"
  rm -rf "$data"; mkdir -p "$data"
  head -n 48 "$full/train.jsonl" >"$data/train.jsonl"
  cp "$full/format.json" "$data/"
  local bench=../shared/data/kormedmcqa/doctor/test.csv
  [ -f "$bench" ] || bench=../shared/data/medqa/US/4_options/test.jsonl
  local name=kormedmcqa; [[ "$bench" == *medqa* ]] && name=medqa
  rm -rf "$work"/until "$work"/probe
  "$bin" train --config examples/train_medqa.toml --data "$data" --threads "$THREADS" --output "$work/until" \
    --until 99 --max-loops 1 --benchmark "$name" --benchmark-data "$bench" --eval-samples 40 --quiet
  "$bin" train --config examples/train_medqa.toml --data "$data" --threads "$THREADS" --output "$work/probe" \
    --probe-focus --benchmark "$name" --benchmark-data "$bench" --eval-samples 40 --probe-steps 4 --focus-steps 4 --quiet
  for f in until/loop_report.json probe/final_report.json until/division_report.json probe/failed_questions.json; do
    echo "== $f"; head -c 1500 "$work/$f"; echo
  done
  ls "$work/until" "$work/probe"
}

case "$what" in
  peft) peft ;;
  resume) resume ;;
  sft) sft ;;
  dpo) dpo ;;
  loops) loops ;;
  all) peft; resume; sft; dpo; loops ;;
  *) die "usage: scripts/verify_train.sh peft|resume|sft|dpo|loops|all" ;;
esac
