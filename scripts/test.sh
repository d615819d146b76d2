#!/usr/bin/env bash
# The test command: Rust tests for every crate, then the Python verifiers of our output formats.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
scripts/verify_python.sh
scripts/verify_metrics.sh
