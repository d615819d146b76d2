#!/usr/bin/env bash
# Verify the medforge training-handoff templates on CPU with a tiny random llama (about 3 minutes on 2 cores).
#
#   bash bench/handoff/verify_handoff.sh            # everything
#   SKIP_AXOLOTL=1 bash bench/handoff/verify_handoff.sh
#
# Needs (none of it is installed by the project yet; all of it is plain PyPI):
#   bench/.venv-trl      python3 -m venv bench/.venv-trl && bench/.venv-trl/bin/pip install torch trl peft transformers accelerate datasets pyyaml
#   bench/.venv-axolotl  python3 -m venv bench/.venv-axolotl && bench/.venv-axolotl/bin/pip install axolotl   (~3.5 min, 7 GB)
#   /tmp/tiny-llama      target/debug/examples/engine_bench tiny /tmp/tiny-llama llama
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BENCH="$(dirname "$HERE")"
TRL_PY="$BENCH/.venv-trl/bin/python"
AXO_BIN="$BENCH/.venv-axolotl/bin"
RUN=/tmp/handoff-run
MODEL=/tmp/tiny-llama
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 CUDA_VISIBLE_DEVICES=""

[ -f "$MODEL/config.json" ] || { echo "missing $MODEL: run target/debug/examples/engine_bench tiny $MODEL llama"; exit 1; }
rm -rf "$RUN" /tmp/handoff-out
mkdir -p "$RUN"

echo "== versions"
"$TRL_PY" -c 'import trl, transformers, peft, accelerate, datasets, torch; print("venv-trl: trl", trl.__version__, "| transformers", transformers.__version__, "| peft", peft.__version__, "| accelerate", accelerate.__version__, "| datasets", datasets.__version__, "| torch", torch.__version__)' 2>/dev/null

echo "== TRL scripts: render, run 2 steps on CPU (1 process, and 2-process DDP over gloo); accelerate configs"
python3 "$HERE/verify_handoff.py"

echo "== medforge train export -> TRL, 2 steps on CPU: SmolLM2 (Hugging Face export) on the benchmark's formatted rows"
REPO="$(dirname "$BENCH")"
MF="${MEDFORGE:-$REPO/target/bench/release/medforge}"
SMOL="$BENCH/out/train_bench/smollm2-hf"
DATA="$(ls -d "$BENCH"/out/train_bench/curated/*/ 2>/dev/null | tail -1)formatted"
if [ -x "$MF" ] && [ -f "$SMOL/config.json" ] && [ -f "$DATA/train.jsonl" ]; then
  for engine in trl axolotl; do
    rm -rf "$RUN/export-$engine"
    (cd "$REPO" && "$MF" train export --engine "$engine" --config bench/train_bench.toml --data "$DATA" \
        --model "$SMOL" --gpus 8 --out "$RUN/export-$engine")
  done
  (cd "$RUN/export-trl" && timeout 900 "$TRL_PY" sft_trl.py --cpu --max-steps 2 >run.log 2>&1) ||
    { echo "exported sft_trl.py FAILED"; tail -20 "$RUN/export-trl/run.log"; exit 1; }
  "$TRL_PY" - "$RUN/export-trl" <<'PY'
import json, os, sys
d = sys.argv[1]
out = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs if f == "medforge_train_summary.json"][0]
s = json.load(open(out))
print("exported sft_trl.py ok  steps=%d step_losses=%s" % (s["global_step"], ["%.4f" % h["loss"] for h in s["log_history"] if "loss" in h]))
PY
else
  echo "exported job: skipped (needs $MF, $SMOL and $DATA: run bench/train_bench.sh first)"
fi

echo "== TRL loss masks (first training example; [bracketed] = label -100, not trained)"
(cd "$HERE" && "$TRL_PY" inspect_masking.py 2>/dev/null)

if [ -n "${SKIP_AXOLOTL:-}" ] || [ ! -x "$AXO_BIN/axolotl" ]; then
  echo "== axolotl: skipped"
  exit 0
fi
"$AXO_BIN/python" -c 'import axolotl, trl, transformers, torch; print("venv-axolotl: axolotl", axolotl.__version__, "| trl", trl.__version__, "| transformers", transformers.__version__, "| torch", torch.__version__)' 2>/dev/null

echo "== axolotl YAMLs: key names against the schema, then axolotl's own load_cfg (validate + normalize)"
exported=()
[ -f "$RUN/export-axolotl/axolotl_sft.yml" ] && exported+=("$RUN/export-axolotl/axolotl_sft.yml")
"$AXO_BIN/python" "$HERE/check_axolotl.py" "${exported[@]}" 2>/dev/null

echo "== axolotl train, 2 steps on CPU (LoRA Triton kernels off: they are CUDA-only)"
for cfg in axolotl_sft_cpu axolotl_dpo_cpu; do
  if (cd "$RUN" && PATH="$AXO_BIN:$PATH" timeout 900 axolotl train "$cfg.yml" \
        --no-lora-mlp-kernel --no-lora-qkv-kernel --no-lora-o-kernel --no-lora-embedding-kernel >"$cfg.log" 2>&1); then
    losses=$(grep -ao "{'loss': '[^']*'" "$RUN/$cfg.log" | sed "s/{'loss': //" | tr '\n' ' ')
    evals=$(grep -ao "'eval_loss': '[^']*'" "$RUN/$cfg.log" | tail -1)
    echo "$cfg ok  step_losses=[$losses] last $evals"
  else
    echo "$cfg FAILED (see $RUN/$cfg.log)"; tail -20 "$RUN/$cfg.log"; exit 1
  fi
done
