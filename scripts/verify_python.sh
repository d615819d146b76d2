#!/usr/bin/env bash
# Verify medforge's outputs with Python's `datasets` and `pyarrow` (verifiers only, in a private venv).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
VENV=${MEDFORGE_VERIFY_VENV:-.venv-verify}
venv_need "$VENV" "import datasets, pyarrow" --quiet --disable-pip-version-check "datasets>=3" pyarrow
build_medforge_debug
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" scripts/verify_python.py target/debug/medforge "$work"
