#!/usr/bin/env bash
# Parity of medforge-eval's text metrics with the Python references: sacrebleu (BLEU 13a/intl/char,
# BLEU-1..4, sentence and corpus), rouge-score (ROUGE-1/2/L/Lsum, with and without the Porter stemmer),
# nltk METEOR (exact, stem, WordNet synonyms) and the SQuAD EM/F1 script, on 10k reference/hypothesis
# pairs built from fixtures/. Every value must agree within 1e-6. The Python packages are verifiers
# only, installed into a private venv.
#
# WordNet: Debian's wordnet-base (/usr/share/wordnet) or MEDFORGE_WORDNET=DIR. When neither is there
# and apt can install it, it is installed; otherwise METEOR is compared without the synonym stage on
# both sides (a note says so), except under CI=true, where a missing WordNet is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
VENV=${MEDFORGE_VERIFY_VENV:-.venv-verify}
N=${MEDFORGE_PARITY_PAIRS:-10000}
metrics_venv "$VENV" --quiet --disable-pip-version-check
WN=${MEDFORGE_WORDNET:-/usr/share/wordnet}
if [ ! -f "$WN/index.noun" ]; then
  apt_try wordnet-base
fi
if [ ! -f "$WN/index.noun" ]; then
  if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
    die "CI=true and no WordNet dict at $WN: install wordnet-base or set MEDFORGE_WORDNET"
  fi
  echo "note: no WordNet dict at $WN: METEOR parity runs without the synonym stage on both sides" >&2
  WN=none
fi
work=${MEDFORGE_PARITY_DIR:-$(mktemp -d)}
# `--workspace --test parity`, not `-p medforge-eval`: the same feature resolution as `cargo test
# --workspace` (scripts/test.sh runs that first), so nothing is compiled again.
"$VENV/bin/python" crates/medforge-eval/tests/parity/reference_metrics.py "$work" --n "$N" --wordnet "$WN"
if [ "$WN" = none ]; then
  MEDFORGE_WORDNET=/nonexistent MEDFORGE_PARITY_DIR="$work" cargo test --quiet --workspace --test parity -- --ignored --nocapture
else
  MEDFORGE_WORDNET="$WN" MEDFORGE_PARITY_DIR="$work" cargo test --quiet --workspace --test parity -- --ignored --nocapture
fi
