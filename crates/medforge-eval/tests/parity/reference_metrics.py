#!/usr/bin/env python3
"""Reference values for medforge-eval's metric parity test (verifier only; medforge never needs Python).

Builds ~10k reference/hypothesis pairs deterministically from the text in fixtures/ (or --source
files), runs sacrebleu, rouge-score and nltk METEOR on them, and writes:
  OUT/pairs.jsonl      one {"ref": .., "hyp": ..} per line
  OUT/expected.json    every score, per pair and per corpus
  OUT/timings.json     seconds each reference library took (for bench/metrics_bench.sh)

usage: reference_metrics.py OUT [--n 10000] [--wordnet DIR|none] [--source FILE...]
"""
import argparse
import csv
import json
import os
import random
import re
import string
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def texts_from_fixtures(paths):
    """Every string value of length >= 20 from the fixture files, in a fixed order."""
    out = []

    def walk(v):
        if isinstance(v, str):
            if len(v.strip()) >= 20:
                out.append(v)
        elif isinstance(v, dict):
            for k in v:
                walk(v[k])
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for p in paths:
        p = Path(p)
        suf = p.suffix.lower()
        try:
            if suf == ".jsonl":
                for line in p.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        walk(json.loads(line))
            elif suf == ".json":
                walk(json.loads(p.read_text(encoding="utf-8")))
            elif suf in (".csv", ".tsv"):
                with open(p, encoding="utf-8", newline="") as f:
                    for row in csv.reader(f, delimiter="\t" if suf == ".tsv" else ","):
                        for x in row:
                            walk(x)
        except (ValueError, UnicodeDecodeError):
            continue
    return out


def segments(texts):
    segs = []
    for t in texts:
        for s in re.split(r"(?<=[.!?。])\s+|\n+", t):
            s = s.strip()
            if 3 <= len(s.split()) <= 120 or (len(s) >= 10 and not s.isascii()):
                segs.append(s)
    return segs


MORPH = ["s", "es", "ed", "ing", "ly", "ness", "ation", "al", "er"]


def perturb(rng, ref, pool):
    words = ref.split()
    kind = rng.randrange(14)
    if kind == 0:
        return ref
    if kind == 1:  # drop words
        return " ".join(w for w in words if rng.random() > 0.25)
    if kind == 2:  # local shuffle
        w = words[:]
        for i in range(0, len(w) - 1, 3):
            if rng.random() < 0.5:
                w[i], w[i + 1] = w[i + 1], w[i]
        return " ".join(w)
    if kind == 3:  # morphological variants (stemmer + WordNet stages)
        return " ".join(w + rng.choice(MORPH) if rng.random() < 0.3 and w.isalpha() else w for w in words)
    if kind == 4:  # words from another segment
        other = rng.choice(pool).split()
        return " ".join(rng.choice(other) if rng.random() < 0.3 and other else w for w in words)
    if kind == 5:  # an unrelated segment
        return rng.choice(pool)
    if kind == 6:  # truncated
        return " ".join(words[: max(1, len(words) // 2)])
    if kind == 7:  # case and punctuation changes
        return re.sub(r"[,.;:]", lambda m: rng.choice(["", " ,", "!", m.group(0)]), ref.upper() if rng.random() < 0.5 else ref.lower())
    if kind == 8:  # multi-line (ROUGE-Lsum)
        return ref.replace(". ", ".\n") + "\n" + rng.choice(pool)
    if kind == 9:  # synonyms / near words commonly used in medicine
        subs = {"patient": "individual", "doctor": "physician", "illness": "disease", "big": "large", "pain": "ache",
                "drug": "medication", "medicine": "medication", "treat": "cure", "heart": "cardiac", "increase": "rise",
                "symptoms": "signs", "quick": "fast", "child": "kid", "woman": "female", "man": "male", "show": "demonstrate"}
        return " ".join(subs.get(w.lower(), w) for w in words)
    if kind == 10:  # empty or whitespace
        return rng.choice(["", " ", "\n", "."])
    if kind == 11:  # numbers, hyphens, symbols (13a/intl edge cases)
        return " ".join(w if rng.random() > 0.2 else rng.choice(["3.5", "1,000", "12-14", "$5", "100%", "a-b", "(x)", "&amp;", "<br>", "--", "e.g.", "±2", "°C", "…", "→"]) for w in words)
    if kind == 12:  # character-level noise
        cs = list(ref)
        for _ in range(max(1, len(cs) // 20)):
            if cs:
                i = rng.randrange(len(cs))
                cs[i] = rng.choice(string.ascii_letters + " .,-")
        return "".join(cs)
    return " ".join(reversed(words))


def build_pairs(n, sources):
    texts = texts_from_fixtures(sources)
    segs = segments(texts)
    rng = random.Random(20261122)
    pairs = []
    while len(pairs) < n:
        ref = rng.choice(segs)
        if rng.random() < 0.15:
            ref = ref + "\n" + rng.choice(segs)
        pairs.append({"ref": ref, "hyp": perturb(rng, ref, segs)})
    return pairs


# SQuAD v1.1 evaluation script's normalisation (reference for exact match / token F1).
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction, ground_truth):
    p = normalize_answer(prediction).split()
    g = normalize_answer(ground_truth).split()
    common = Counter(p) & Counter(g)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(p)
    recall = 1.0 * num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


class NoWordNet:
    def synsets(self, *_a, **_k):
        return []


def load_wordnet(arg):
    if arg == "none":
        return None
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    import tempfile

    import nltk.data
    import shutil

    src = Path(arg)
    # nltk's reader also opens `lexnames`, which Debian's wordnet-base does not ship, and only reads
    # below the nltk data path: copy the dict into a private nltk_data/corpora/wordnet plus that file
    # (the 45 lexicographer file names of WordNet 3.0).
    base = Path(tempfile.mkdtemp(prefix="nltk_data_"))
    tmp = base / "corpora" / "wordnet"
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, tmp / f.name)
    nltk.data.path.insert(0, str(base))
    if not (src / "lexnames").exists():
        names = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
                 "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
                 "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
                 "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
                 "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
                 "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
                 "adj.ppl").split()
        cat = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
        (tmp / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{cat[n.split('.')[0]]}\n" for i, n in enumerate(names)))
    # The reader maps WordNet 3.0 onto "the" nltk wordnet for the multilingual (OMW) functions, which
    # needs index.sense (not in wordnet-base); METEOR never uses that map, so skip it.
    WordNetCorpusReader.map_wn = lambda self, version="wordnet": None
    return WordNetCorpusReader(str(tmp), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--source", nargs="*")
    ap.add_argument("--pairs", help="use this pairs.jsonl instead of building one")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    if a.pairs:
        pairs = [json.loads(l) for l in open(a.pairs, encoding="utf-8") if l.strip()]
    else:
        sources = a.source or sorted(str(p) for p in (ROOT / "fixtures").rglob("*") if p.suffix in (".json", ".jsonl", ".csv", ".tsv") and "tokenizers" not in p.parts)
        pairs = build_pairs(a.n, sources)
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    refs = [p["ref"] for p in pairs]
    hyps = [p["hyp"] for p in pairs]

    import sacrebleu
    from sacrebleu.metrics import BLEU
    from rouge_score import rouge_scorer
    import nltk
    from nltk.translate.meteor_score import meteor_score

    exp = {"versions": {"sacrebleu": sacrebleu.__version__, "nltk": nltk.__version__, "rouge_score": "0.1.2"}, "n": len(pairs)}
    tim = {}

    # BLEU
    t0 = time.perf_counter()
    corpus = {}
    sent = {}
    for tok in ("13a", "intl", "char"):
        b = BLEU(tokenize=tok)
        s = b.corpus_score(hyps, [refs])
        corpus[tok] = {"score": s.score, "counts": s.counts, "totals": s.totals, "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len}
        sb = BLEU(tokenize=tok, effective_order=True)
        sent[tok] = [sb.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]
    for n in (1, 2, 3, 4):
        b = BLEU(max_ngram_order=n)
        corpus[f"bleu{n}"] = {"score": b.corpus_score(hyps, [refs]).score}
        sb = BLEU(max_ngram_order=n, effective_order=True)
        sent[f"bleu{n}"] = [sb.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]
    tim["sacrebleu"] = time.perf_counter() - t0
    exp["bleu_corpus"] = corpus
    exp["bleu_sentence"] = sent

    # nltk sentence BLEU (the Meerkat pipeline's BLEU-1..4): cumulative uniform weights over str.split() tokens.
    import warnings
    from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction
    t0 = time.perf_counter()
    sm = SmoothingFunction()
    nb = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lower in (False, True):
            rs = [r.lower().split() if lower else r.split() for r in refs]
            hs = [h.lower().split() if lower else h.split() for h in hyps]
            for n in (1, 2, 3, 4):
                w = tuple([1.0 / n] * n)
                nb[f"{'lower' if lower else 'raw'}_method1_bleu{n}"] = [sentence_bleu([r], h, weights=w, smoothing_function=sm.method1) for r, h in zip(rs, hs)]
        rs = [r.split() for r in refs]
        hs = [h.split() for h in hyps]
        for m in (0, 2, 3, 4):
            fn = getattr(sm, f"method{m}")
            nb[f"raw_method{m}_bleu4"] = [sentence_bleu([r], h, smoothing_function=fn) for r, h in zip(rs, hs)]
    tim["nltk_bleu"] = time.perf_counter() - t0
    exp["nltk_bleu"] = nb

    # ROUGE
    t0 = time.perf_counter()
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    rouge = {}
    for stem in (False, True):
        sc = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        rows = [sc.score(r, h) for r, h in zip(refs, hyps)]
        rouge["stem" if stem else "nostem"] = {t: [[x[t].precision, x[t].recall, x[t].fmeasure] for x in rows] for t in types}
    tim["rouge_score"] = time.perf_counter() - t0
    exp["rouge"] = rouge

    # METEOR
    wn = load_wordnet(a.wordnet) if a.wordnet != "none" and Path(a.wordnet).exists() else None
    exp["meteor_wordnet"] = wn is not None
    t0 = time.perf_counter()
    wnobj = wn if wn is not None else NoWordNet()
    exp["meteor"] = [meteor_score([r.split()], h.split(), wordnet=wnobj) for r, h in zip(refs, hyps)]
    tim["nltk_meteor"] = time.perf_counter() - t0

    # SQuAD EM / F1
    t0 = time.perf_counter()
    exp["em"] = [float(normalize_answer(h) == normalize_answer(r)) for r, h in zip(refs, hyps)]
    exp["f1"] = [float(squad_f1(h, r)) for r, h in zip(refs, hyps)]
    tim["squad"] = time.perf_counter() - t0

    (out / "expected.json").write_text(json.dumps(exp))
    (out / "timings.json").write_text(json.dumps(tim, indent=1))
    print(f"reference metrics for {len(pairs)} pairs -> {out} (wordnet: {exp['meteor_wordnet']}); seconds: {json.dumps(tim)}")


if __name__ == "__main__":
    sys.exit(main())
