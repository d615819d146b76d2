#!/usr/bin/env python3
"""BERTScore baseline rescaling: bert-score's `rescale_with_baseline=True` vs `medforge score --bertscore-baseline`.

Both sides score the same pairs with all-MiniLM-L6-v2 at layer 6 and rescale with the same baseline file, read
from a path (bert-score's `baseline_path=`, medforge's `--bertscore-baseline`). Prints the largest P/R/F
differences as JSON. Not part of CI: it needs torch and bert-score.

usage: bertscore_rescale_parity.py PAIRS.jsonl MODEL_DIR BASELINE.tsv MEDFORGE_BIN [--layer 6]
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs")
    ap.add_argument("model")
    ap.add_argument("baseline")
    ap.add_argument("medforge")
    ap.add_argument("--layer", type=int, default=6)
    a = ap.parse_args()
    pairs = [json.loads(l) for l in open(a.pairs, encoding="utf-8") if l.strip()]
    refs = [p["ref"] for p in pairs]
    hyps = [p["hyp"] for p in pairs]
    import bert_score
    import torch

    torch.set_num_threads(2)
    P, R, F = bert_score.score(hyps, refs, model_type=a.model, num_layers=a.layer, batch_size=64, device="cpu",
                               lang="en", rescale_with_baseline=True, baseline_path=a.baseline)
    with tempfile.TemporaryDirectory() as d:
        per = Path(d) / "per.jsonl"
        subprocess.run([a.medforge, "score", "--pairs", a.pairs, "--metrics", "bertscore", "--bertscore-model", a.model,
                        "--bertscore-layer", str(a.layer), "--bertscore-baseline", a.baseline, "--per-pair", str(per),
                        "--json"], check=True, stdout=subprocess.DEVNULL)
        mf = [json.loads(l) for l in open(per)]
    out = {"pairs": len(pairs), "layer": a.layer, "baseline": a.baseline, "bert_score": bert_score.__version__}
    for k, mk, t in (("p", "bertscore_p", P), ("r", "bertscore_r", R), ("f", "bertscore_f1", F)):
        diffs = sorted(abs(float(x) - (m.get(mk) if m.get(mk) is not None else float("nan"))) for x, m in zip(t.tolist(), mf))
        finite = [d for d in diffs if d == d]
        out[k] = {"max_abs_diff": max(finite), "within_1e-6": sum(d <= 1e-6 for d in finite), "median_abs_diff": finite[len(finite) // 2]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
