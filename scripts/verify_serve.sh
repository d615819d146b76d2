#!/usr/bin/env bash
# `medforge serve` against the official Python `openai` client (installed into .venv-serve as a test tool only):
# fetch SmolLM2 (scripts/fetch_model.sh), start the server on a free loopback port with a bearer token, run
# scripts/verify_serve.py (models, chat, streaming chat, completions, error types), stop the server.
#
#   scripts/verify_serve.sh            # builds medforge (debug) unless MEDFORGE_BIN is set
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="$(scripts/fetch_model.sh)"
if [ -z "${MEDFORGE_BIN:-}" ]; then
    cargo build -q -p medforge-cli
    MEDFORGE_BIN="${CARGO_TARGET_DIR:-target}/debug/medforge"
fi
VENV=.venv-serve
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "openai>=1.40"
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export MEDFORGE_VERIFY_KEY="verify-$RANDOM$RANDOM"
LOG="$(mktemp)"
"$MEDFORGE_BIN" serve --model "$MODEL" --port "$PORT" --name smollm2 --api-key-env MEDFORGE_VERIFY_KEY >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 120); do
    if grep -q "serving model" "$LOG"; then break; fi
    if ! kill -0 $PID 2>/dev/null; then cat "$LOG"; echo "medforge serve exited" >&2; exit 1; fi
    sleep 0.5
done
"$VENV/bin/python" scripts/verify_serve.py "http://127.0.0.1:$PORT/v1" smollm2 "$MEDFORGE_VERIFY_KEY"
