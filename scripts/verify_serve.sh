#!/usr/bin/env bash
# `medforge serve` against the official Python `openai` client (installed into .venv-serve as a test tool only):
# fetch SmolLM2 (scripts/fetch_model.sh), start the server on a free loopback port with a bearer token, run
# scripts/verify_serve.py (models, chat, streaming chat, completions, error types), stop the server.
#
#   scripts/verify_serve.sh            # builds medforge (debug) unless MEDFORGE_BIN is set
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODEL="$(scripts/fetch_model.sh)"
need_medforge_bin
VENV=.venv-serve
venv_once "$VENV" -q --disable-pip-version-check "openai>=1.40"
PORT="$(free_port)"
export MEDFORGE_VERIFY_KEY="verify-$RANDOM$RANDOM"
LOG="$(mktemp)"
"$MEDFORGE_BIN" serve --model "$MODEL" --port "$PORT" --name smollm2 --api-key-env MEDFORGE_VERIFY_KEY >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
wait_for_serve "$PID" "$LOG"
"$VENV/bin/python" scripts/verify_serve.py "http://127.0.0.1:$PORT/v1" smollm2 "$MEDFORGE_VERIFY_KEY"
