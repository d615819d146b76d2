#!/usr/bin/env python3
"""BERTScore parity: the Python bert-score package vs `medforge score --metrics bertscore` on the
same pairs, model and layer (run by bench/bertscore_parity.sh; needs torch, transformers, bert-score).

usage: bertscore_parity.py WORK MODEL_DIR MEDFORGE_BIN [--n 1000] [--layer 6]
Writes WORK/pairs.jsonl, WORK/{python,medforge}_{idf,noidf}.jsonl and prints a JSON summary.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "crates/medforge-eval/tests/parity"))
import reference_metrics  # noqa: E402  (the metric parity's deterministic pair builder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("model")
    ap.add_argument("medforge")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--layer", type=int, default=6)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in (ROOT / "fixtures").rglob("*") if p.suffix in (".json", ".jsonl", ".csv", ".tsv") and "tokenizers" not in p.parts)
    pairs = reference_metrics.build_pairs(a.n, sources)
    with open(work / "pairs.jsonl", "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    refs = [p["ref"] for p in pairs]
    hyps = [p["hyp"] for p in pairs]

    import torch
    import transformers
    import bert_score

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    out = {"pairs": len(pairs), "layer": a.layer, "versions": {"bert_score": bert_score.__version__, "torch": torch.__version__, "transformers": transformers.__version__}, "threads": torch.get_num_threads()}
    for idf in (False, True):
        tag = "idf" if idf else "noidf"
        best = None
        for _ in range(2):  # the faster of two runs; each loads the model, as medforge's does
            t0 = time.perf_counter()
            P, R, F = bert_score.score(hyps, refs, model_type=a.model, num_layers=a.layer, idf=idf, batch_size=64, device="cpu")
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        py = [{"p": float(p), "r": float(r), "f": float(f)} for p, r, f in zip(P.tolist(), R.tolist(), F.tolist())]
        with open(work / f"python_{tag}.jsonl", "w") as f:
            for row in py:
                f.write(json.dumps(row) + "\n")
        cmd = [a.medforge, "score", "--pairs", str(work / "pairs.jsonl"), "--metrics", "bertscore", "--bertscore-model", a.model,
               "--bertscore-layer", str(a.layer), "--per-pair", str(work / f"medforge_{tag}.jsonl"), "--json"] + (["--bertscore-idf"] if idf else [])
        mbest = None
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            dt = time.perf_counter() - t0
            mbest = dt if mbest is None else min(mbest, dt)
        mf = [json.loads(l) for l in open(work / f"medforge_{tag}.jsonl")]
        diffs = {}
        nan_mismatch = 0
        for k, mk in (("p", "bertscore_p"), ("r", "bertscore_r"), ("f", "bertscore_f1")):
            d = 0.0
            for x, y in zip(py, mf):
                u, v = x[k], y.get(mk)
                if u != u or v is None:  # NaN in Python, null (NaN) in medforge JSON
                    nan_mismatch += (u == u) != (v is not None)
                    continue
                d = max(d, abs(u - v))
            diffs[k] = d
        worst = max(range(len(py)), key=lambda i: abs(py[i]["f"] - (mf[i].get("bertscore_f1") or 0.0)))
        out[tag] = {"max_abs_diff": diffs, "nan_mismatches": nan_mismatch, "python_s": best, "medforge_s": mbest,
                    "speedup": best / mbest, "worst_pair": worst, "mean_f_python": sum(x["f"] for x in py) / len(py)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
