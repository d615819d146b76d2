#!/usr/bin/env bash
# Verify medforge's outputs with Python's `datasets` and `pyarrow` (verifiers only, in a private venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MEDFORGE_VERIFY_VENV:-.venv-verify}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import datasets, pyarrow" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "datasets>=3" pyarrow
fi
cargo build --quiet -p medforge-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" scripts/verify_python.py target/debug/medforge "$work"
