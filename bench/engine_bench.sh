#!/usr/bin/env bash
# medforge-engine vs llama.cpp (llama-cpp-python) and HF transformers, in one run:
#   1. greedy 64 tokens token for token (same prompt ids in both engines), with the top-2 logit gap at the first
#      divergence: SmolLM2-135M-Instruct on 10 medical chat prompts, Gemma-3-270M on 10 plain medical prompts;
#   2. perplexity of bench/engine_ppl_text.txt (318 tokens) and bench/engine_ppl_long.txt (MedQuAD NIDDK answers,
#      CC BY 4.0, ~2,400 tokens) on the same token ids: both models vs llama.cpp, and SmolLM2 in f32 vs transformers;
#   3. prompt-processing and decode tokens/s and peak RSS, 2 threads: SmolLM2 as shipped (Q4_1) and requantised to
#      Q8_0 and Q4_0 (files written by medforge, read by both engines), Gemma-3 (Q4_K_M); SmolLM2 dequantised to an
#      f32 HF folder through transformers and medforge; medforge's batched decoding;
#   4. the tiny random models (llama, qwen2, gemma3) against transformers (bench/engine_tiny_reference.py).
# Results: bench/out/engine/* and a Markdown report on stdout (bench/out/engine/report.md).
#
#   bench/engine_bench.sh          # builds llama-cpp-python (~15 min) and torch+transformers (~5 GB) venvs if missing
#   PT=128 TG=128 bench/engine_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PT="${PT:-128}"
TG="${TG:-128}"
N="${N:-64}"
OUT=bench/out/engine
mkdir -p "$OUT"
MODEL="$(scripts/fetch_model.sh)"
GEMMA="$(scripts/fetch_model.sh gemma3)"

VENV=bench/.venv-llama
# Not -DGGML_NATIVE=ON: on this (Firecracker) VM the CPU reports AMX, ggml's AMX path is compiled in, and the first
# llama_decode segfaults. Every other x86 feature the CPU has is named explicitly.
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF}"
# CMAKE_ARGS reaches pip (and python3 -m venv, which ignores it) for this call only.
venv_ok "$VENV" "import llama_cpp" || CMAKE_ARGS="$LLAMA_CMAKE_ARGS" venv_create "$VENV" -q llama-cpp-python numpy
PY="$VENV/bin/python"
HFV=bench/.venv-hf
venv_ok "$HFV" "import torch, transformers, gguf" || venv_create "$HFV" -q torch transformers gguf sentencepiece numpy
HF="$HFV/bin/python"

# medforge: release, built for this CPU (.cargo/config.toml), as a user on this machine would build it.
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-target/bench-native}"
cargo build -q --release -p medforge-engine --example engine_bench
MF="$CARGO_TARGET_DIR/release/examples/engine_bench"
export RAYON_NUM_THREADS=2 MEDFORGE_THREADS=2 OMP_NUM_THREADS=2

echo "== greedy ($N tokens, 10 prompts per model)" >&2
"$MF" greedy "$MODEL" bench/engine_prompts.jsonl "$N" > "$OUT/medforge_greedy.jsonl"
"$PY" bench/engine_llamacpp.py greedy "$MODEL" "$OUT/medforge_greedy.jsonl" "$N" > "$OUT/llamacpp_greedy.jsonl"
LLAMA_KV=f32 "$PY" bench/engine_llamacpp.py greedy "$MODEL" "$OUT/medforge_greedy.jsonl" "$N" > "$OUT/llamacpp_greedy_kvf32.jsonl"
"$MF" greedy "$GEMMA" bench/engine_prompts_plain.jsonl "$N" > "$OUT/medforge_greedy_gemma3.jsonl"
"$PY" bench/engine_llamacpp.py greedy "$GEMMA" "$OUT/medforge_greedy_gemma3.jsonl" "$N" > "$OUT/llamacpp_greedy_gemma3.jsonl"
LLAMA_KV=f32 "$PY" bench/engine_llamacpp.py greedy "$GEMMA" "$OUT/medforge_greedy_gemma3.jsonl" "$N" > "$OUT/llamacpp_greedy_kvf32_gemma3.jsonl"

echo "== perplexity" >&2
for T in ppl long; do
    TXT=bench/engine_ppl_text.txt
    [ "$T" = long ] && TXT=bench/engine_ppl_long.txt
    for pair in "smollm2:$MODEL" "gemma3:$GEMMA"; do
        name="${pair%%:*}" file="${pair#*:}"
        "$MF" ppl "$file" "$TXT" > "$OUT/medforge_${T}_$name.json"
        "$PY" bench/engine_llamacpp.py ppl "$file" "$OUT/medforge_${T}_$name.json" > "$OUT/llamacpp_${T}_$name.json"
    done
done

echo "== SmolLM2 as an f32 HF folder (dequantised by the gguf package)" >&2
HFDIR="$OUT/smollm2-f32-hf"
[ -f "$HFDIR/config.json" ] || "$HF" bench/engine_hf.py convert "$MODEL" "$HFDIR" 2>/dev/null
for T in ppl long; do
    "$MF" ppl "$HFDIR" "$OUT/medforge_${T}_smollm2.json" > "$OUT/medforge_${T}_f32.json"
    "$HF" bench/engine_hf.py ppl "$HFDIR" "$OUT/medforge_${T}_smollm2.json" 2>/dev/null > "$OUT/transformers_${T}_f32.json"
done

echo "== speed (prompt $PT, decode $TG, 2 threads)" >&2
for Q in q8_0 q4_0; do
    [ -f "$OUT/smollm2.$Q.gguf" ] || "$MF" requant "$MODEL" "$OUT/smollm2.$Q.gguf" "$Q"
done
: > "$OUT/speed.jsonl"
for F in "$MODEL" "$OUT/smollm2.q8_0.gguf" "$OUT/smollm2.q4_0.gguf" "$GEMMA"; do
    Q="$(basename "$F" .gguf)"
    echo "{\"engine\": \"medforge\", \"file\": \"$Q\", \"r\": $("$MF" speed "$F" "$PT" "$TG")}" >> "$OUT/speed.jsonl"
    echo "{\"engine\": \"llama.cpp\", \"file\": \"$Q\", \"r\": $("$PY" bench/engine_llamacpp.py speed "$F" "$PT" "$TG" 2)}" >> "$OUT/speed.jsonl"
done
echo "{\"engine\": \"medforge\", \"file\": \"smollm2-f32-hf\", \"r\": $("$MF" speed "$HFDIR" "$PT" "$TG")}" >> "$OUT/speed.jsonl"
echo "{\"engine\": \"transformers\", \"file\": \"smollm2-f32-hf\", \"r\": $("$HF" bench/engine_hf.py speed "$HFDIR" "$PT" "$TG" 2 2>/dev/null)}" >> "$OUT/speed.jsonl"
: > "$OUT/batch.jsonl"
for B in 1 4 8 16; do
    "$MF" batch "$MODEL" 32 "$TG" "$B" >> "$OUT/batch.jsonl"
done

echo "== tiny models vs transformers" >&2
"$HF" bench/engine_tiny_reference.py "$MF" "$OUT/tiny" 2>/dev/null > "$OUT/tiny_reference.jsonl" || true

python3 bench/engine_report.py "$OUT" | tee "$OUT/report.md"
