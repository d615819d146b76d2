#!/usr/bin/env bash
# LoRA SFT: medforge's trainer against PyTorch + PEFT, side by side in one run on this machine.
#
#   bench/train_bench.sh                 # 20 steps each, 2 threads; prints the comparison (bench/TRAIN_RESULTS.md quotes it)
#   STEPS=10 THREADS=1 bench/train_bench.sh
#   EXTRA=1 bench/train_bench.sh         # also: QLoRA on the GGUF Q4_1 base, full fine-tuning, a DPO step
#
# Like with like: both sides train SmolLM2-135M in fp32 from the same Hugging Face folder (medforge's export of the
# GGUF), from the same initial adapter (PEFT's initialisation, saved once and loaded by both), on the same token rows
# in the same batches (medforge writes its step plan with --dump-plan, PyTorch reads it), with the same
# hyperparameters (seq 512, batch 4, r 8 / alpha 16, all seven projections, lr 2e-4 linear, clip 1.0, AdamW), the
# same thread count, no gradient checkpointing, no dropout. PyTorch runs eager fp32 with SDPA attention and its fused
# AdamW (bench/train_peft.py); TRL is not used (it would only wrap the same loop).
#
# Needs bench/.venv-hf with torch, transformers and peft (bench/engine_bench.sh creates it; peft is added here).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
STEPS="${STEPS:-20}"
THREADS="${THREADS:-2}"
HF=bench/.venv-hf/bin/python
venv_ok bench/.venv-hf "import torch, transformers" || die "bench/.venv-hf lacks torch/transformers (run bench/engine_bench.sh first)"
venv_ok bench/.venv-hf "import peft" || bench/.venv-hf/bin/pip install --quiet "peft==0.21.2"
ensure_gnu_time
build_bench_medforge
bin=target/bench/release/medforge
work=bench/out/train_bench
mkdir -p "$work"
gguf="$(scripts/fetch_model.sh)"

echo "== exporting SmolLM2 to a Hugging Face f32 folder" >&2
[ -f "$work/smollm2-hf/model.safetensors" ] || "$bin" model export-hf --model "$gguf" --out "$work/smollm2-hf" >&2
echo "== formatting HuatuoGPT-o1 rows (text_reasoning, ChatML)" >&2
rm -rf "$work/curated"
"$bin" run --config bench/train_bench.toml >/dev/null
data="$(ls -d "$work"/curated/*/ | tail -1)formatted"
echo "== initial adapter (PEFT's initialisation: A Kaiming-uniform, B zero)" >&2
[ -f "$work/init_adapter/adapter_model.safetensors" ] ||
  "$HF" bench/peft_fixtures.py adapter --model "$work/smollm2-hf" --out "$work/init_adapter" --r 8 --alpha 16 --b-std 0 >&2

echo "== medforge: $STEPS steps, $THREADS threads (load $(load_avg))" >&2
rm -rf "$work/medforge"
time_v "$work/medforge.time" '%.1f' '%.1f' 20 mf "$bin" train --config bench/train_bench.toml --data "$data" \
  --max-steps "$STEPS" --threads "$THREADS" --quiet --dump-plan "$work/tokens.jsonl"
echo "== PyTorch + PEFT: $STEPS steps, $THREADS threads (load $(load_avg))" >&2
time_v "$work/peft.time" '%.1f' '%.1f' 20 pt "$HF" bench/train_peft.py --model "$work/smollm2-hf" \
  --adapter "$work/init_adapter" --data "$work/tokens.jsonl" --steps "$STEPS" --threads "$THREADS" --batch-size 4 \
  --lr 2e-4 --schedule linear --max-grad-norm 1.0 --out "$work/peft.json" --save-adapter "$work/peft_adapter"

if [ -n "${EXTRA:-}" ]; then
  echo "== medforge QLoRA on the GGUF Q4_1 base" >&2
  rm -rf "$work/qlora"
  "$bin" train --config bench/train_bench.toml --data "$data" --max-steps "$STEPS" --threads "$THREADS" --quiet \
    --base "$gguf" --init-adapter none --output "$work/qlora" >/dev/null
  echo "== medforge full fine-tuning" >&2
  rm -rf "$work/full"
  "$bin" train --config bench/train_bench.toml --data "$data" --max-steps 5 --threads "$THREADS" --quiet \
    --method full --lr 1e-5 --init-adapter none --output "$work/full" >/dev/null
fi

echo "# medforge vs PyTorch + PEFT, LoRA SFT ($(utc_now), $(machine_summary), $(commit_summary .))"
echo "wall: medforge ${mf_s} s (CPU ${mf_cpu} s), PyTorch ${pt_s} s (CPU ${pt_cpu} s)"
python3 bench/train_compare.py "$work"
