#!/usr/bin/env bash
# `medforge serve` against the official Python `openai` client (installed into .venv-serve as a test tool only):
# fetch SmolLM2 (scripts/fetch_model.sh), start the server on a loopback port the OS picks (--port 0) with a bearer token, run
# scripts/verify_serve.py (models, chat, streaming chat, completions, error types), stop the server.
#
#   scripts/verify_serve.sh            # builds medforge (debug) unless MEDFORGE_BIN is set
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODEL="$(scripts/fetch_model.sh)"
need_medforge_bin
VENV=.venv-serve
venv_need "$VENV" "import openai, jsonschema" -q --disable-pip-version-check "openai>=1.40" jsonschema
export MEDFORGE_VERIFY_KEY="verify-$RANDOM$RANDOM"
LOG="$(mktemp)"
"$MEDFORGE_BIN" serve --model "$MODEL" --port 0 --name smollm2 --api-key-env MEDFORGE_VERIFY_KEY >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
URL="$(wait_for_serve "$PID" "$LOG")"
"$VENV/bin/python" scripts/verify_serve.py "$URL" smollm2 "$MEDFORGE_VERIFY_KEY"
