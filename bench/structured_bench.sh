#!/usr/bin/env bash
# Cost of constrained decoding (issue 16): SmolLM2-135M-Instruct (Q4_1, as shipped) decodes the same chat prompt
# under a JSON-schema constraint and freely for as many tokens (EOS ignored), greedy and sampled (T 0.7, top-p 0.95),
# best of 3 each, 2 threads; plus the one-time cost of building the token trie and compiling the schema.
#
#   bench/structured_bench.sh          # GEN=256 by default; JSON on stdout, also bench/out/structured/speed.json
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
GEN="${GEN:-256}"
MODEL="$(scripts/fetch_model.sh)"
mkdir -p bench/out/structured
CARGO_TARGET_DIR=target/bench cargo build -q --release -p medforge-engine --example engine_bench
export MEDFORGE_THREADS=2 RAYON_NUM_THREADS=2
target/bench/release/examples/engine_bench constrained "$MODEL" "$GEN" | tee bench/out/structured/speed.json
