#!/usr/bin/env bash
# LLM stage throughput, end to end (issue 4): `medforge run` with one `generate` stage over N rows
# against the loopback fake server answering after 50 ms, at windows 8, 64 and 256 (endpoint
# max_concurrency the same). Reports rows/s, CPU per request (user+sys of the medforge process),
# peak RSS, and the wall time of the re-run that is answered entirely from the cache.
#
#   bench/llm_stages_bench.sh          # PROFILE=release by default; PROFILE=dev for a quick run; ROWS=5000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PROFILE=${PROFILE:-release}
ROWS=${ROWS:-5000}
cargo_profile "$PROFILE"
tdir=$PROFILE_DIR
cargo build -q "${PROFILE_FLAGS[@]}" -p medforge-cli
cargo build -q "${PROFILE_FLAGS[@]}" -p medforge-llm --features testing --example fake_server
work=$(mktemp -d)
log="$work/server.log"
"$tdir/examples/fake_server" --latency-ms 50 > "$log" 2>/dev/null &
srv=$!
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
url=$(fake_server_url "$log")
awk -v n="$ROWS" 'BEGIN { for (i = 0; i < n; i++) printf "{\"id\":\"b%d\",\"source\":\"bench\",\"kind\":\"open_qa\",\"question\":\"Which organ produces insulin? case %d\",\"answer\":\"The pancreas\"}\n", i, i }' > "$work/rows.jsonl"
printf "%-8s %6s %9s %9s %12s %9s %12s\n" window rows wall_s rows/s cpu_ms/req rss_MB cached_wall_s
for w in 8 64 256; do
  out="$work/out_$w"
  cat > "$work/c_$w.toml" <<TOML
[run]
output = "$out"
[[inputs]]
path = "$work/rows.jsonl"
preset = "medforge"
[llm]
window = $w
[[llm.endpoints]]
base_url = "$url"
model = "bench"
max_concurrency = $w
[[stages]]
stage = "generate"
into = "metadata.generated"
prompt = '''REPLY:generated for {{ id }}'''
[output]
formats = ["parquet"]
TOML
  /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$tdir/medforge" run --config "$work/c_$w.toml" > /dev/null 2>&1
  read -r wall usr sys rss < "$work/t"
  /usr/bin/time -f "%e" -o "$work/t2" "$tdir/medforge" run --config "$work/c_$w.toml" > /dev/null 2>&1
  cached=$(cat "$work/t2")
  awk -v w="$w" -v n="$ROWS" -v e="$wall" -v u="$usr" -v s="$sys" -v m="$rss" -v c="$cached" \
    'BEGIN { printf "%-8s %6d %9.2f %9.0f %12.3f %9.0f %12.2f\n", w, n, e, n / e, (u + s) * 1000 / n, m / 1024, c }'
done
