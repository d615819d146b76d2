#!/usr/bin/env python3
"""medforge MinHash/LSH against datasketch, both scored against exact Jaccard.

Builds a near-duplicate test file from MedQA questions (every US 4-option dev/test question plus
lightly, moderately and heavily perturbed copies of a seeded share of them), then:

  * runs medforge's `minhash_pairs` example (MinHash + LSH + verification of candidates), with
    its default LSH weights and with datasketch's (0.5, 0.5), which give datasketch's (bands, rows),
  * runs datasketch MinHash + MinHashLSH with the same num_perm, threshold and shingles, and scores
    both its raw LSH candidates and the candidates verified by estimated Jaccard >= threshold,
  * finds every pair with exact Jaccard >= threshold (prefix-filtered all-pairs join, so recall is
    against the complete truth, not a sample),

and prints precision / recall / F1 and timings.

Setup (once):  python3 -m venv bench/.venv-text && bench/.venv-text/bin/pip install datasketch
Run:           bench/.venv-text/bin/python bench/minhash_datasketch.py
Options:       --data DIR (default ../shared/data, or $MEDFORGE_DATA) --config word:3:0.8 (repeat)
               --num-perm 128 --seed 1 --copy-share 0.4 --out bench/out/minhash
"""

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The medforge tokeniser: alphanumeric runs of any script after NFKC, lowercased, an apostrophe
# inside a word dropped (crates/medforge-text/src/shingle.rs).
WORD_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def words(text):
    text = unicodedata.normalize("NFKC", text)
    return [w.replace("'", "").replace("\u2019", "").lower() for w in WORD_RE.findall(text)]


def shingles(text, kind, n):
    """Shingle set as medforge builds it, short texts giving one shingle of the whole text."""
    if kind == "word":
        w = words(text)
        if not w:
            return set()
        if len(w) < n:
            return {" ".join(w)}
        return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}
    s = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    if not s:
        return set()
    if len(s) < n:
        return {s}
    return {s[i : i + n] for i in range(len(s) - n + 1)}


# ---------------------------------------------------------------------------------------------
# Test data


def load_medqa(data_dir):
    texts = []
    for split in ("dev", "test"):
        path = data_dir / "medqa" / "US" / "4_options" / f"{split}.jsonl"
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                q = json.loads(line)["question"]
                texts.append((f"medqa-{split}-{i}", q))
    return texts


APPENDIX = [
    "Explain your answer.",
    "Answer with the letter of the best option.",
    "Think step by step before answering.",
]


def perturb(text, rng, vocab, level):
    """A copy with a share of words replaced (light ~2%, moderate ~8%, heavy ~20%), plus for the
    light level sometimes a case/punctuation change or an appended sentence."""
    toks = text.split(" ")
    share = {"light": 0.02, "moderate": 0.08, "heavy": 0.2}[level]
    k = max(1, round(len(toks) * share * rng.uniform(0.5, 1.5)))
    for _ in range(k):
        i = rng.randrange(len(toks))
        toks[i] = rng.choice(vocab)
    out = " ".join(toks)
    if level == "light":
        r = rng.random()
        if r < 0.25:
            out = out.lower().replace(",", "")
        elif r < 0.5:
            out = out + " " + rng.choice(APPENDIX)
    return out


def build_input(data_dir, seed, copy_share, path):
    rng = random.Random(seed)
    base = load_medqa(data_dir)
    vocab = sorted({w for _, t in base for w in t.split() if w.isalpha() and len(w) > 3})
    rows = list(base)
    for rid, text in base:
        if rng.random() < copy_share:
            for c in range(rng.choice((1, 1, 2))):
                level = rng.choice(("light", "light", "moderate", "heavy"))
                rows.append((f"{rid}~{c}-{level}", perturb(text, rng, vocab, level)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rid, text in rows:
            f.write(json.dumps({"id": rid, "text": text}, ensure_ascii=False) + "\n")
    return rows


# ---------------------------------------------------------------------------------------------
# Exact truth: all pairs with Jaccard >= t by prefix filtering (AllPairs). Two sets with
# J >= t share a token among the first |x| - ceil(t|x|) + 1 tokens of each under any fixed global
# order; ordering rare tokens first keeps the candidate lists short.


def exact_pairs(sets, t):
    freq = defaultdict(int)
    for s in sets:
        for g in s:
            freq[g] += 1
    rank = {g: i for i, g in enumerate(sorted(freq, key=lambda g: (freq[g], g)))}
    ordered = [sorted(rank[g] for g in s) for s in sets]
    index = defaultdict(list)
    truth = {}
    for j, x in enumerate(ordered):
        if not x:
            continue
        p = len(x) - math.ceil(t * len(x) - 1e-9) + 1
        cands = set()
        for g in x[:p]:
            cands.update(index[g])
            index[g].append(j)
        sx = sets[j]
        for i in cands:
            si = sets[i]
            if len(si) < t * len(sx) - 1e-9 or len(sx) < t * len(si) - 1e-9:
                continue
            inter = len(sx & si)
            jac = inter / (len(sx) + len(si) - inter)
            if jac >= t:
                truth[(i, j)] = jac
    return truth


def score(found, truth):
    found = set(found)
    tp = len(found & set(truth))
    p = tp / len(found) if found else 1.0
    r = tp / len(truth) if truth else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"pairs": len(found), "tp": tp, "precision": p, "recall": r, "f1": f}


# ---------------------------------------------------------------------------------------------


def run_medforge(binary, path, kind, n, t, num_perm, seed, weights=None):
    cmd = [str(binary), str(path), "--num-perm", str(num_perm), "--threshold", str(t),
           "--shingle", f"{kind}:{n}", "--seed", str(seed)]
    if weights:
        cmd += ["--weights", weights]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    return json.loads(out), wall


def run_datasketch(texts, kind, n, t, num_perm, seed):
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=t, num_perm=num_perm)
    hashes = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([g.encode("utf-8") for g in shingles(text, kind, n)])
        hashes.append(m)
        lsh.insert(i, m)
    build = time.perf_counter() - start
    start = time.perf_counter()
    candidates = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                candidates.add((min(i, j), max(i, j)))
    verified = {p for p in candidates if hashes[p[0]].jaccard(hashes[p[1]]) >= t}
    query = time.perf_counter() - start
    return candidates, verified, (lsh.b, lsh.r), build, query


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("MEDFORGE_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--config", action="append", help="SHINGLE:N:THRESHOLD, e.g. word:3:0.8 (repeatable)")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--copy-share", type=float, default=0.4)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "minhash"))
    ap.add_argument("--binary", help="prebuilt minhash_pairs (default: cargo build --release)")
    args = ap.parse_args()
    configs = args.config or ["word:3:0.8", "word:5:0.7", "char:5:0.8"]

    out_dir = Path(args.out)
    input_path = out_dir / "medqa_near_dups.jsonl"
    rows = build_input(Path(args.data), args.seed, args.copy_share, input_path)
    ids = [r[0] for r in rows]
    texts = [r[1] for r in rows]
    id_index = {rid: i for i, rid in enumerate(ids)}
    print(f"input: {input_path} ({len(rows)} rows: {sum('~' not in i for i in ids)} MedQA questions "
          f"+ {sum('~' in i for i in ids)} perturbed copies)", file=sys.stderr)

    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "medforge-text", "--example", "minhash_pairs"],
                       check=True, cwd=ROOT)
        binary = ROOT / "target" / "release" / "examples" / "minhash_pairs"

    results = []
    for config in configs:
        kind, n, t = config.split(":")
        n, t = int(n), float(t)
        sets = [shingles(x, kind, n) for x in texts]
        start = time.perf_counter()
        truth = exact_pairs(sets, t)
        truth_s = time.perf_counter() - start

        def medforge(weights):
            mf, wall = run_medforge(binary, input_path, kind, n, t, args.num_perm, args.seed, weights)
            pairs = {tuple(sorted((id_index[a], id_index[b]))) for a, b, _ in mf["pairs"]}
            return {**score(pairs, truth), "bands_rows": [mf["bands"], mf["rows"]], "weights": mf["weights"],
                    "seconds_wall": wall, "seconds_signatures": mf["signature_seconds"],
                    "seconds_pairs": mf["pairs_seconds"]}

        cand, verified, (b, r), ds_build, ds_query = run_datasketch(texts, kind, n, t, args.num_perm, args.seed)

        res = {
            "config": config, "num_perm": args.num_perm, "rows": len(texts), "true_pairs": len(truth),
            "exact_seconds": truth_s,
            "medforge": medforge(None),
            "medforge_datasketch_weights": medforge("0.5,0.5"),
            "datasketch_candidates": {**score(cand, truth), "bands_rows": [b, r], "seconds": ds_build + ds_query},
            "datasketch_verified": {**score(verified, truth), "bands_rows": [b, r], "seconds": ds_build + ds_query},
        }
        results.append(res)

    (out_dir / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"| shingles:threshold | true pairs | implementation | (b, r) | pairs | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for res in results:
        for name, key, secs in (("medforge, default weights (0.1, 0.9)", "medforge", "seconds_wall"),
                                ("medforge, datasketch weights (0.5, 0.5)", "medforge_datasketch_weights",
                                 "seconds_wall"),
                                ("datasketch LSH candidates", "datasketch_candidates", "seconds"),
                                ("datasketch + verify", "datasketch_verified", "seconds")):
            s = res[key]
            print(f"| {res['config']} | {res['true_pairs']} | {name} | ({s['bands_rows'][0]}, {s['bands_rows'][1]}) "
                  f"| {s['pairs']} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {s[secs]:.2f} |")
    print(f"rows: {len(texts)}, num_perm: {args.num_perm}, seed: {args.seed}; summary: {out_dir / 'summary.json'}")


if __name__ == "__main__":
    main()
