# shellcheck shell=bash
# Helpers shared by bench/*.sh and scripts/*.sh, so each lives in one place. Source it from the repo
# root, after the script's `cd "$(dirname "$0")/.."`:  . scripts/lib.sh
# It only defines functions: shell options (set -euo pipefail) and knobs stay with each script.

# --- general -------------------------------------------------------------------------------------

# die MSG: print MSG on stderr and exit 1; the scripts' one-line fatal checks.
die() { echo "$*" >&2; exit 1; }

# --- timing (bench) ------------------------------------------------------------------------------

# median VALUES...: print the median (the lower one of an even count) of numbers; benches report medians of runs.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# elapsed_s T0_NS T1_NS FMT: print the seconds between two `date +%s%N` stamps in printf FMT; wall time without bc.
elapsed_s() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN{printf f, (b-a)/1e9}'; }

# time_v_kb FILE: print the peak RSS (kB) from a `/usr/bin/time -v` report; the benches' memory figure.
time_v_kb() { awk -F': ' '/Maximum resident set size/{print $2}' "$1"; }

# time_v_cpu FILE FMT: print user + system seconds from a `/usr/bin/time -v` report in printf FMT; the benches' CPU figure.
time_v_cpu() { awk -F': ' -v f="$2" '/User time|System time/{t+=$2} END{printf f, t}' "$1"; }

# time_v TIME_FILE WALL_FMT CPU_FMT ERR_LINES VAR CMD...: run CMD under `/usr/bin/time -v` and set VAR_s, VAR_cpu, VAR_kb; the body of each bench's measure().
time_v() {
  local tv=$1 wall_fmt=$2 cpu_fmt=$3 err_lines=$4 var=$5 dir t0 t1
  shift 5
  dir=$(dirname "$tv")
  t0=$(date +%s%N)
  # CMD's output is kept beside TIME_FILE; on failure show the last ERR_LINES of its stderr (+1: all) and exit.
  /usr/bin/time -v -o "$tv" "$@" >"$dir/last.stdout" 2>"$dir/last.stderr" || {
    echo "command failed: $*" >&2; tail -n "$err_lines" "$dir/last.stderr" >&2; exit 1; }
  t1=$(date +%s%N)
  printf -v "${var}_s" '%s' "$(elapsed_s "$t0" "$t1" "$wall_fmt")"
  printf -v "${var}_kb" '%s' "$(time_v_kb "$tv")"
  printf -v "${var}_cpu" '%s' "$(time_v_cpu "$tv" "$cpu_fmt")"
}

# ensure_gnu_time: apt-install GNU time when /usr/bin/time is missing, since time_v needs its -v report.
ensure_gnu_time() {
  if [ ! -x /usr/bin/time ]; then
    echo "== installing GNU time" >&2
    apt-get update -qq && apt-get install -y -qq time >/dev/null
  fi
  return 0  # a failed `apt-get update` is not fatal here (as when this was inline in each bench)
}

# --- report headers (bench) ----------------------------------------------------------------------

# utc_now: print the date and time in UTC for the results' "- date:" line.
utc_now() { date -u '+%Y-%m-%d %H:%M UTC'; }

# machine_summary: print "N cores, M GiB RAM (arch)" for the results' "- machine:" line.
machine_summary() { echo "$(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM ($(uname -m))"; }

# commit_summary ROOT: print ROOT's short HEAD, noting uncommitted changes in crates/, so results name what was measured.
commit_summary() {
  echo "$(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$1" diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes in crates/)')"
}

# load_avg: print the 1/5/15-minute load averages, so results show how busy the shared machine was.
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- building medforge ---------------------------------------------------------------------------

# debug_medforge_bin: print where `cargo build` puts the debug CLI, honouring CARGO_TARGET_DIR as cargo does.
debug_medforge_bin() { echo "${CARGO_TARGET_DIR:-target}/debug/medforge"; }

# build_medforge_debug: quietly build the debug CLI (the test build's profile, so little recompiles).
build_medforge_debug() { cargo build -q -p medforge-cli; }

# need_medforge_bin: unless MEDFORGE_BIN is set (scripts/test.sh passes its build), build the debug CLI and point MEDFORGE_BIN at it.
need_medforge_bin() {
  if [ -z "${MEDFORGE_BIN:-}" ]; then
    build_medforge_debug
    MEDFORGE_BIN="$(debug_medforge_bin)"
  fi
}

# build_bench_medforge: build the release CLI into target/bench (target/bench/release/medforge), apart from dev builds.
build_bench_medforge() {
  echo "== building medforge (release, CARGO_TARGET_DIR=target/bench)" >&2
  CARGO_TARGET_DIR=target/bench cargo build --release --quiet -p medforge-cli
}

# cargo_profile PROFILE: set PROFILE_FLAGS (--release or nothing) and PROFILE_DIR (target/release or target/debug) for a PROFILE=release|dev knob.
# shellcheck disable=SC2034  # PROFILE_FLAGS and PROFILE_DIR are read by the caller
cargo_profile() {
  PROFILE_FLAGS=()
  PROFILE_DIR=target/debug
  if [ "$1" = release ]; then PROFILE_FLAGS=(--release); PROFILE_DIR=target/release; fi
}

# --- Python venvs (verifiers and references only) ------------------------------------------------

# venv_ok VENV CODE: succeed when VENV's python runs CODE (an import check) without error; decides whether to install.
venv_ok() { "$1/bin/python" -c "$2" 2>/dev/null; }

# venv_make VENV: create VENV unless it already has a python.
venv_make() { [ -x "$1/bin/python" ] || python3 -m venv "$1"; }

# venv_create VENV PIP_ARGS...: (re)create VENV and `pip install PIP_ARGS` into it.
venv_create() {
  python3 -m venv "$1"
  "$1/bin/pip" install "${@:2}"
}

# venv_once VENV PIP_ARGS...: create VENV with PIP_ARGS installed unless it already has a python (install once, never check).
venv_once() { [ -x "$1/bin/python" ] || venv_create "$@"; }

# venv_need VENV CODE PIP_ARGS...: create VENV if needed, then `pip install PIP_ARGS` unless CODE already runs in it.
venv_need() {
  venv_make "$1"
  venv_ok "$1" "$2" || "$1/bin/pip" install "${@:3}"
}

# venv_fresh VENV CODE WHAT PKGS...: unless CODE runs in VENV, (re)create it with an upgraded pip and PKGS, announcing WHAT.
venv_fresh() {
  venv_ok "$1" "$2" && return
  echo "== creating $1 with $3" >&2
  python3 -m venv "$1"
  "$1/bin/python" -m pip install --quiet --upgrade pip
  "$1/bin/python" -m pip install --quiet "${@:4}"
}

# metrics_venv VENV PIP_FLAGS...: VENV with the pinned metric references; the one place for the pins verify_metrics.sh and metrics_bench.sh share.
metrics_venv() {
  venv_need "$1" "import sacrebleu, rouge_score, nltk" "${@:2}" "sacrebleu==2.6.0" "rouge-score==0.1.2" "nltk==3.10.4"
}

# --- system packages -----------------------------------------------------------------------------

# apt_try PKG: as root with apt, quietly install PKG (refreshing the index if the first try fails); never fatal, for optional tools.
apt_try() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q "$1" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; }) || true
  fi
}

# --- servers -------------------------------------------------------------------------------------


# wait_for_serve PID LOG: wait up to 60 s for `medforge serve` (PID) to log "serving model ... on URL" in LOG and print
# the URL it bound (start it with --port 0 so the OS picks a free port and nothing can take it first); if it exits,
# show LOG and die.
wait_for_serve() {
  for _ in $(seq 1 120); do
    grep -q "serving model" "$2" && break
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; die "medforge serve exited"; }
    sleep 0.5
  done
  grep -q "serving model" "$2" || { cat "$2" >&2; die "medforge serve did not start within 60 s"; }
  grep -o 'http://[^ ]*/v1' "$2" | head -n1
}

# fake_server_url LOG: wait up to 5 s for the medforge-llm fake server's "listening" line in LOG and print its URL.
fake_server_url() {
  for _ in $(seq 50); do grep -q listening "$1" 2>/dev/null && break; sleep 0.1; done
  awk '/listening/ {print $2}' "$1"
}
