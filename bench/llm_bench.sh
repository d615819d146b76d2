#!/usr/bin/env bash
# LLM client benchmark (issue 4): requests/s and CPU per request at concurrency 1, 8, 64, 256
# against a loopback OpenAI-compatible server answering after 50 ms, medforge vs the Python
# `openai` client (AsyncOpenAI). Also the rpm limit check (rpm=600 over 30 s, within ±5%).
#
#   bench/llm_bench.sh     # PROFILE=release by default; PROFILE=dev for a quick run; RPM_CHECK=0 skips the 30 s rpm check
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PROFILE=${PROFILE:-release}
cargo_profile "$PROFILE"
dir=$PROFILE_DIR/examples
cargo build -q "${PROFILE_FLAGS[@]}" -p medforge-llm --features testing --example fake_server --example bench_client --example rpm_check
venv_once bench/.venv-llm -q openai
log=$(mktemp)
"$dir/fake_server" --latency-ms 50 > "$log" 2>/dev/null &
srv=$!
trap 'kill $srv 2>/dev/null || true; rm -f "$log"' EXIT
url=$(fake_server_url "$log")
for c in 1 8 64 256; do
  n=$(( c == 1 ? 100 : c * 20 ))
  "$dir/bench_client" "$url" "$c" "$n"
  bench/.venv-llm/bin/python bench/llm_openai_bench.py "$url" "$c" "$n"
done
if [ "${RPM_CHECK:-1}" = 1 ]; then
  "$dir/rpm_check" 600 30
fi
