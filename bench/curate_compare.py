#!/usr/bin/env python3
"""Compare medforge's curation decisions (filtered.parquet annotations) with the Python side's.

Usage: curate_compare.py RUN_DIR PY_OUT_DIR [--input IN.jsonl] [--json OUT.json] [--examples N]

Per row, medforge's decision is the reason code of the annotation that dropped it (`dedup.exact:of=..`,
`dedup.near:cluster=..`, `decontam.<method>:<item>`) or `kept`; the Python side writes the same
codes in py_decisions.tsv. Compared:

  * exact dedup: the set of rows dropped as exact duplicates, and the row each is a duplicate of;
  * decontam: on the rows both sides ran decontam on (kept by both dedups), drop/keep, and the
    method and benchmark item of each drop;
  * near dedup (MinHash, different hash functions on each side, so not expected identical): the
    rows each side dropped as near duplicates, among the rows both exact dedups kept;
  * token counts of question and answer on the rows both kept.

Exits 1 when an exact step disagrees.
"""

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def medforge_decisions(run_dir):
    t = pq.read_table(Path(run_dir) / "filtered.parquet", columns=["id", "annotations"])
    ids = t.column("id").to_pylist()
    out, tokens = {}, {}
    for rid, anns in zip(ids, t.column("annotations").to_pylist()):
        d = "kept"
        for a in anns or []:
            if a["verdict"] == "dropped":
                d = a["reason"]
                break
            if a["stage"] == "tokens":
                s = {x["name"]: int(x["value"]) for x in a["scores"] or []}
                tokens[rid] = (s.get("tokens.question"), s.get("tokens.answer"))
        out[rid] = d
    return ids, out, tokens


def python_decisions(py_dir):
    out, tokens = {}, {}
    with open(Path(py_dir) / "py_decisions.tsv", encoding="utf-8") as f:
        for line in f:
            rid, d, q, a = line.rstrip("\n").split("\t")
            out[rid] = d
            if d == "kept":
                tokens[rid] = (int(q) if q else None, int(a) if a else None)
    return out, tokens


def near_disagreements(args, only_rs, only_py):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from curate_python import shingles

    rep = {}
    report = json.load(open(Path(args.run_dir) / "dedup_report.json", encoding="utf-8"))
    for c in report["clusters"]:
        for d in c["dropped"]:
            rep[("rs", d)] = c["kept"]
    for m in json.load(open(Path(args.py_dir) / "py_clusters.json", encoding="utf-8")):
        for d in m[1:]:
            rep[("py", d)] = m[0]
    pairs = [(d, rep[("rs", d)]) for d in only_rs] + [(d, rep[("py", d)]) for d in only_py]
    want = {x for p in pairs for x in p}
    text = {}
    with open(args.input, encoding="utf-8") as f:
        for line in f:
            rid = line[8:line.index('"', 8)]  # lines start with {"id": "...
            if rid in want:
                text[rid] = json.loads(line)["question"]

    def jaccard(a, b):
        sa, sb = set(shingles(text[a])), set(shingles(text[b]))
        return len(sa & sb) / len(sa | sb) if sa and sb else 0.0

    def summary(js):
        js = sorted(js)
        if not js:
            return {"rows": 0}
        near = sum(1 for j in js if 0.7 <= j < 0.9)
        return {"rows": len(js), "median": round(js[len(js) // 2], 3), "min": round(js[0], 3),
                "share_within_0.7_0.9": round(near / len(js), 3),
                "share_below_0.7": round(sum(1 for j in js if j < 0.7) / len(js), 3)}

    return {"only_medforge": summary([jaccard(d, k) for d, k in pairs[: len(only_rs)]]),
            "only_python": summary([jaccard(d, k) for d, k in pairs[len(only_rs):]])}


def family(d):
    return d.split(":", 1)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("py_dir")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--input", type=Path, help="the input JSONL: measure near-dup disagreements' exact Jaccard")
    args = ap.parse_args()

    ids, rs, rs_tok = medforge_decisions(args.run_dir)
    py, py_tok = python_decisions(args.py_dir)
    assert set(ids) == set(py), "the two sides saw different rows"
    n = len(ids)
    res = {"rows": n}
    examples = {}

    def ex(key, rid):
        lst = examples.setdefault(key, [])
        if len(lst) < args.examples:
            lst.append({"id": rid, "medforge": rs[rid], "python": py[rid]})

    # Exact dedup: the same rows dropped, as duplicates of the same row.
    rs_exact = {i for i in ids if rs[i].startswith("dedup.exact")}
    py_exact = {i for i in ids if py[i].startswith("dedup.exact")}
    diff = rs_exact ^ py_exact
    for i in sorted(diff):
        ex("exact_dedup", i)
    of_diff = [i for i in rs_exact & py_exact if rs[i] != py[i]]
    for i in of_diff:
        ex("exact_dedup_of", i)
    res["exact_dedup"] = {"medforge_dropped": len(rs_exact), "python_dropped": len(py_exact),
                          "disagreements": len(diff), "same_rows_other_first": len(of_diff)}

    # Near dedup, on the rows both exact dedups kept.
    live = [i for i in ids if not rs[i].startswith("dedup.exact") and not py[i].startswith("dedup.exact")]
    rs_near = {i for i in live if rs[i].startswith("dedup.near")}
    py_near = {i for i in live if py[i].startswith("dedup.near")}
    both = len(rs_near & py_near)
    union = len(rs_near | py_near)
    agree = len(live) - len(rs_near ^ py_near)
    res["near_dedup"] = {
        "rows_compared": len(live),
        "medforge_dropped": len(rs_near),
        "python_dropped": len(py_near),
        "both_dropped": both,
        "only_medforge": len(rs_near - py_near),
        "only_python": len(py_near - rs_near),
        "dropped_set_jaccard": round(both / union, 4) if union else 1.0,
        "row_agreement": round(agree / len(live), 5) if live else 1.0,
    }

    # How near the threshold the rows only one side dropped are: exact Jaccard of the word 3-shingle
    # sets (what both MinHashes estimate) with the kept row of that side's cluster.
    if args.input and (rs_near ^ py_near):
        res["near_dedup"]["exact_jaccard_of_disagreements"] = near_disagreements(
            args, rs_near - py_near, py_near - rs_near)

    # Decontam, on the rows both sides checked.
    checked = [i for i in ids if not family(rs[i]).startswith("dedup") and not family(py[i]).startswith("dedup")]
    rs_dc = {i for i in checked if rs[i].startswith("decontam")}
    py_dc = {i for i in checked if py[i].startswith("decontam")}
    diff = rs_dc ^ py_dc
    for i in sorted(diff):
        ex("decontam", i)
    reason_diff = [i for i in rs_dc & py_dc if rs[i] != py[i]]
    for i in sorted(reason_diff):
        ex("decontam_reason", i)
    by_method = {}
    for i in rs_dc:
        m = family(rs[i])
        by_method[m] = by_method.get(m, 0) + 1
    res["decontam"] = {"rows_compared": len(checked), "medforge_dropped": len(rs_dc), "python_dropped": len(py_dc),
                       "disagreements": len(diff), "same_drop_other_reason": len(reason_diff),
                       "medforge_by_method": dict(sorted(by_method.items()))}

    # Token counts on rows both kept.
    common = [i for i in ids if rs[i] == "kept" and py[i] == "kept"]
    tok_diff = [i for i in common if rs_tok.get(i) != py_tok.get(i)]
    for i in tok_diff[: args.examples]:
        examples.setdefault("tokens", []).append({"id": i, "medforge": rs_tok.get(i), "python": py_tok.get(i)})
    res["tokens"] = {"rows_compared": len(common), "disagreements": len(tok_diff)}

    rs_kept = {i for i in ids if rs[i] == "kept"}
    py_kept = {i for i in ids if py[i] == "kept"}
    res["kept"] = {"medforge": len(rs_kept), "python": len(py_kept), "both": len(rs_kept & py_kept)}
    res["examples"] = examples
    exact_ok = (res["exact_dedup"]["disagreements"] == 0 and res["exact_dedup"]["same_rows_other_first"] == 0
                and res["decontam"]["disagreements"] == 0 and res["decontam"]["same_drop_other_reason"] == 0)
    res["exact_steps_identical"] = exact_ok
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    sys.exit(0 if exact_ok else 1)


if __name__ == "__main__":
    main()
