#!/usr/bin/env bash
# medforge-engine vs llama.cpp (llama-cpp-python) on SmolLM2-135M-Instruct, in one run:
#   1. greedy 64 tokens on 10 medical chat prompts, token for token (same prompt ids in both engines), with the
#      top-2 logit gap at the first divergence;
#   2. perplexity of bench/engine_ppl_text.txt on the same token ids;
#   3. prompt-processing and decode tokens/s and peak RSS, 2 threads, on the shipped Q4_1 file and on the same
#      model requantised to Q8_0 and Q4_0 (files written by medforge, read by both engines).
# Results: bench/out/engine/*.json(l) and bench/ENGINE_RESULTS.md (the tables are rewritten by this script).
#
#   bench/engine_bench.sh                      # llama-cpp-python is built into bench/.venv-llama if missing (~15 min)
#   PT=128 TG=128 bench/engine_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PT="${PT:-128}"
TG="${TG:-128}"
N="${N:-64}"
OUT=bench/out/engine
mkdir -p "$OUT"
MODEL="$(scripts/fetch_model.sh)"

VENV=bench/.venv-llama
# Not -DGGML_NATIVE=ON: on this (Firecracker) VM the CPU reports AMX, ggml's AMX path is compiled in, and the first
# llama_decode segfaults. Every other x86 feature the CPU has is named explicitly.
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF}"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    python3 -m venv "$VENV"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" install -q llama-cpp-python numpy
fi
PY="$VENV/bin/python"

# medforge: by default release with native CPU features (as a user on this machine would build it; a clean build
# takes a while). BENCH_PROFILE=dev uses the dev profile instead (dependencies, candle included, at opt-level 2).
if [ "${BENCH_PROFILE:-release}" = dev ]; then
    cargo build -q -p medforge-engine --example engine_bench
    MF="${CARGO_TARGET_DIR:-target}/debug/examples/engine_bench"
else
    export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-target/bench-native}"
    RUSTFLAGS="-C target-cpu=native" cargo build -q --release -p medforge-engine --example engine_bench
    MF="$CARGO_TARGET_DIR/release/examples/engine_bench"
fi
export RAYON_NUM_THREADS=2

echo "== greedy ($N tokens, 10 prompts)"
"$MF" greedy "$MODEL" bench/engine_prompts.jsonl "$N" > "$OUT/medforge_greedy.jsonl"
"$PY" bench/engine_llamacpp.py greedy "$MODEL" "$OUT/medforge_greedy.jsonl" "$N" > "$OUT/llamacpp_greedy.jsonl"

echo "== perplexity"
"$MF" ppl "$MODEL" bench/engine_ppl_text.txt > "$OUT/medforge_ppl.json"
"$PY" bench/engine_llamacpp.py ppl "$MODEL" "$OUT/medforge_ppl.json" > "$OUT/llamacpp_ppl.json"

echo "== speed (prompt $PT, decode $TG, 2 threads)"
for Q in q8_0 q4_0; do
    [ -f "$OUT/smollm2.$Q.gguf" ] || "$MF" requant "$MODEL" "$OUT/smollm2.$Q.gguf" "$Q"
done
: > "$OUT/speed.jsonl"
for F in "$MODEL" "$OUT/smollm2.q8_0.gguf" "$OUT/smollm2.q4_0.gguf"; do
    Q="$(basename "$F" .gguf)"
    echo "{\"engine\": \"medforge\", \"file\": \"$Q\", \"r\": $("$MF" speed "$F" "$PT" "$TG")}" >> "$OUT/speed.jsonl"
    echo "{\"engine\": \"llama.cpp\", \"file\": \"$Q\", \"r\": $("$PY" bench/engine_llamacpp.py speed "$F" "$PT" "$TG" 2)}" >> "$OUT/speed.jsonl"
done
python3 bench/engine_report.py "$OUT" | tee "$OUT/report.md"
