#!/usr/bin/env python3
"""Generate the curation benchmark input: canonical medforge JSONL built from the shared datasets.

Reads canonical records (the output of `medforge convert SRC X.jsonl`, one file per source, made
by bench/curate_bench.sh) from --src, and writes --rows records drawn from them with perturbations,
so that the file holds

  * original rows and heavily edited variants ("distinct": a patient prefix sentence, about a third
    of the words replaced by words of another row of the same language, numbers changed),
  * exact duplicates of earlier rows, re-cased / re-spaced / re-punctuated (invisible to
    `match_key`, so exact dedup catches them),
  * near duplicates: one or two light edits of a base row (a word dropped, two words swapped, a
    number changed, a prefix sentence added),
  * planted benchmark test questions (MedQA, MedMCQA, MMLU, PubMedQA, KorMedMCQA test sets), copied
    verbatim, re-spaced, or lightly edited.

Every row has all canonical keys (id, source, kind, question, context, options, answer_letter,
answer, reasoning, response, chosen, rejected, specialty, specialties, division, divisions,
language, metadata, annotations); ids are `cb-0000000`, metadata says how the row was made
(`bench_kind`, `bench_base`). Deterministic for a given --seed and --rows.

Usage: curate_gen.py --src bench/out/curate_src --out bench/out/curate_1m.jsonl --rows 1000000 --seed 42
"""

import argparse
import json
import random
import re
import sys
from pathlib import Path

# Training pool: file stem in --src -> how to filter it.
POOL = [
    "medqa_dev",
    "medmcqa_val",
    "kor_doctor_train",
    "kor_nurse_train",
    "kor_pharm_train",
    "kor_dentist_train",
    "kor_doctor_valid",
    "kor_nurse_valid",
    "kor_pharm_valid",
    "kor_dentist_valid",
    "huatuo",
    "chatdoctor",
    "genmedgpt_ko",
    "medquad",  # answered pairs only
    "pubmedqa",  # PQA-L without the test PMIDs
]
# Benchmark test sets planted into the data.
PLANT = ["medqa_test", "medmcqa_test", "mmlu_test", "pubmedqa_test", "kor_doctor_test", "kor_nurse_test",
         "kor_pharm_test", "kor_dentist_test"]

P_PLANT = 0.006
P_EXACT = 0.15
P_NEAR = 0.30
P_ORIGINAL = 0.06

PREFIX_EN = [
    "Question:", "Please answer the following question.", "Consider the following case.",
    "A student asks:", "Read carefully.", "Clinical vignette:", "Answer briefly.",
]
PREFIX_KO = ["문제:", "다음 질문에 답하시오.", "다음 사례를 읽고 답하시오.", "질문입니다.", "잘 읽고 답하시오."]
CITIES = ["Boston", "Seoul", "Busan", "Chicago", "Denver", "Austin", "Lagos", "Delhi", "Lima", "Oslo", "Cairo",
          "Perth", "Quebec", "Manila", "Hanoi", "Dublin", "Madrid", "Nairobi", "Osaka", "Tucson"]
CITIES_KO = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "청주", "전주", "제주", "춘천"]
SEX = ["man", "woman", "boy", "girl", "patient"]
SEX_KO = ["남자", "여자", "남아", "여아", "환자"]

NUM = re.compile(r"\d+")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_ko(rec):
    return rec.get("language") == "ko"


def split_words(text):
    return text.split()


def change_number(rng, text):
    nums = list(NUM.finditer(text))
    if not nums:
        return None
    m = rng.choice(nums)
    v = int(m.group()) if len(m.group()) < 12 else 7
    new = str(v + rng.randint(1, 9))
    return text[: m.start()] + new + text[m.end():]


def light_edit(rng, rec, text):
    """One or two light edits: the kind of change a near-duplicate has."""
    for _ in range(rng.randint(1, 2)):
        op = rng.random()
        w = split_words(text)
        if op < 0.3 and len(w) > 4:
            del w[rng.randrange(len(w))]
            text = " ".join(w)
        elif op < 0.55 and len(w) > 4:
            i = rng.randrange(len(w) - 1)
            w[i], w[i + 1] = w[i + 1], w[i]
            text = " ".join(w)
        elif op < 0.8:
            changed = change_number(rng, text)
            if changed is not None:
                text = changed
            else:
                text = f"{rng.choice(PREFIX_KO if is_ko(rec) else PREFIX_EN)} {text}"
        else:
            text = f"{rng.choice(PREFIX_KO if is_ko(rec) else PREFIX_EN)} {text}"
    return text


def invisible_edit(rng, text):
    """A change `match_key` ignores: case, spacing, punctuation."""
    op = rng.random()
    if op < 0.25:
        return text.upper() if rng.random() < 0.3 else text.lower()
    if op < 0.5:
        return "  " + text.replace(" ", "  ", 3) + " "
    if op < 0.75:
        return text.replace(",", " ,").replace("?", " ?") + ("." if not text.endswith(".") else "")
    return text.replace(" ", "\n", 1)


def heavy_edit(rng, rec, text, donor_words):
    """A distinct row: a patient prefix, about a third of the words replaced, numbers changed."""
    w = split_words(text)
    for i in range(len(w)):
        if rng.random() < 0.33:
            w[i] = rng.choice(donor_words)
    text = " ".join(w)
    for _ in range(2):
        changed = change_number(rng, text)
        if changed is not None:
            text = changed
    age = rng.randint(1, 95)
    if is_ko(rec):
        prefix = f"{rng.choice(CITIES_KO)}에 사는 {age}세 {rng.choice(SEX_KO)}의 질문입니다."
    else:
        prefix = f"A {age}-year-old {rng.choice(SEX)} from {rng.choice(CITIES)} asks:"
    return f"{prefix} {text}"


def emit(rec, rid, question, kind, base_id):
    out = dict(rec)
    out["id"] = rid
    out["question"] = question
    out["metadata"] = {"bench_kind": kind, "bench_base": base_id}
    out["annotations"] = []
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pubmedqa-test", type=Path, required=True, help="test_ground_truth.json (test PMIDs)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    test_pmids = set(json.load(open(args.pubmedqa_test, encoding="utf-8")))

    pool = []
    for name in POOL:
        recs = load(args.src / f"{name}.jsonl")
        if name == "medquad":
            recs = [r for r in recs if r.get("answer")]
        if name == "pubmedqa":
            recs = [r for r in recs if r["metadata"].get("pmid") not in test_pmids]
        pool.extend(r for r in recs if r.get("question", "").strip())
    plant = []
    for name in PLANT:
        if name == "pubmedqa_test":
            recs = [r for r in load(args.src / "pubmedqa.jsonl") if r["metadata"].get("pmid") in test_pmids]
        else:
            recs = load(args.src / f"{name}.jsonl")
        plant.extend(r for r in recs if r.get("question", "").strip())

    # Donor vocabularies for heavy edits, per language.
    donors = {"en": [], "ko": []}
    for r in pool:
        lang = "ko" if is_ko(r) else "en"
        if len(donors[lang]) < 400_000:
            donors[lang].extend(split_words(r["question"])[:40])
    print(f"pool {len(pool)} records, {len(plant)} benchmark items to plant", file=sys.stderr)

    emitted = []  # (record) for exact copies; kept compact: index into `rows_out` is enough
    counts = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(args.rows):
            rid = f"cb-{i:07d}"
            r = rng.random()
            if r < P_PLANT:
                base = rng.choice(plant)
                roll = rng.random()
                if roll < 0.5:
                    q, kind = base["question"], "plant_verbatim"
                elif roll < 0.7:
                    q, kind = invisible_edit(rng, base["question"]), "plant_respaced"
                else:
                    q, kind = light_edit(rng, base, base["question"]), "plant_edited"
                out = emit(base, rid, q, kind, base["id"])
            elif r < P_PLANT + P_EXACT and emitted:
                src = emitted[rng.randrange(len(emitted))]
                out = emit(src, rid, invisible_edit(rng, src["question"]), "exact", src["id"])
                out["metadata"]["bench_base"] = src["metadata"]["bench_base"]
                out["metadata"]["bench_copy_of"] = src["id"]
            elif r < P_PLANT + P_EXACT + P_NEAR:
                base = rng.choice(pool)
                out = emit(base, rid, light_edit(rng, base, base["question"]), "near", base["id"])
            elif r < P_PLANT + P_EXACT + P_NEAR + P_ORIGINAL:
                base = rng.choice(pool)
                out = emit(base, rid, base["question"], "original", base["id"])
            else:
                base = rng.choice(pool)
                donor = donors["ko" if is_ko(base) else "en"]
                out = emit(base, rid, heavy_edit(rng, base, base["question"], donor), "distinct", base["id"])
            kind = out["metadata"]["bench_kind"]
            counts[kind] = counts.get(kind, 0) + 1
            # Exact copies are drawn from a bounded reservoir of earlier rows (memory stays flat).
            if len(emitted) < 50_000:
                emitted.append(out)
            elif rng.random() < 0.05:
                emitted[rng.randrange(len(emitted))] = out
            f.write(json.dumps(out, ensure_ascii=False))
            f.write("\n")
    tmp.replace(args.out)
    print(f"wrote {args.rows} rows to {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
          file=sys.stderr)


if __name__ == "__main__":
    main()
