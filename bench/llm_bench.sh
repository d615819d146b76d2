#!/usr/bin/env bash
# LLM client benchmark (issue 4): requests/s and CPU per request at concurrency 1, 8, 64, 256
# against a loopback OpenAI-compatible server answering after 50 ms, medforge vs the Python
# `openai` client (AsyncOpenAI). Also the rpm limit check (rpm=600 over 30 s, within ±5%).
#
#   bench/llm_bench.sh     # PROFILE=release by default; PROFILE=dev for a quick run; RPM_CHECK=0 skips the 30 s rpm check
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
dir=target/$([ "$PROFILE" = release ] && echo release || echo debug)/examples
cargo build -q "${flag[@]}" -p medforge-llm --features testing --example fake_server --example bench_client --example rpm_check
if [ ! -x bench/.venv-llm/bin/python ]; then
  python3 -m venv bench/.venv-llm && bench/.venv-llm/bin/pip install -q openai
fi
log=$(mktemp)
"$dir/fake_server" --latency-ms 50 > "$log" 2>/dev/null &
srv=$!
trap 'kill $srv 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q listening "$log" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/listening/ {print $2}' "$log")
for c in 1 8 64 256; do
  n=$(( c == 1 ? 100 : c * 20 ))
  "$dir/bench_client" "$url" "$c" "$n"
  bench/.venv-llm/bin/python bench/llm_openai_bench.py "$url" "$c" "$n"
done
if [ "${RPM_CHECK:-1}" = 1 ]; then
  "$dir/rpm_check" 600 30
fi
