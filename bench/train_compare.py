#!/usr/bin/env python3
"""Compare medforge's training_info.json with bench/train_peft.py's result (bench/train_bench.sh calls it).

  train_compare.py WORK    # WORK/medforge/training_info.json and WORK/peft.json; EXTRA runs if present

Prints step time, tokens/s and peak RSS side by side with ratios, and the two loss curves step by step with the
largest relative difference. Exits 1 if the curves differ by more than 1% in the first 20 steps.
"""
import json
import os
import sys


def load(p):
    with open(p) as f:
        return json.load(f)


def main(work):
    mf = load(os.path.join(work, "medforge", "training_info.json"))
    pt = load(os.path.join(work, "peft.json"))
    ms = mf["steps"]
    ps = pt["steps"]
    m_step = sum(s["seconds"] for s in ms[1:]) / max(1, len(ms) - 1)
    p_step = pt["mean_step_seconds_excl_first"]
    m_tok = mf["tokens_per_second"]
    p_tok = pt["tokens_per_second"]
    m_rss = mf["peak_rss_bytes"]
    p_rss = pt["peak_rss_bytes"]
    tokens = [s["tokens"] for s in ms]
    print(f"\nsteps: {len(ms)} (medforge) / {len(ps)} (PyTorch); tokens per step {min(tokens)}-{max(tokens)}; "
          f"threads {mf['threads']} / {pt['threads']}; PyTorch {pt['tool']['torch']} ({pt['cpu_capability']}, "
          f"{pt['dtype']}, {pt['config']['attn_implementation']} attention, AdamW {pt['config']['adam']['impl']})")
    print()
    print("| | medforge | PyTorch + PEFT | medforge / PyTorch |")
    print("|---|---|---|---|")
    print(f"| time per step (mean, excl. first) | {m_step:.2f} s | {p_step:.2f} s | {m_step / p_step:.2f}x |")
    print(f"| tokens/s | {m_tok:.0f} | {p_tok:.0f} | {m_tok / p_tok:.2f}x |")
    print(f"| peak RSS | {m_rss / 2**30:.2f} GiB | {p_rss / 2**30:.2f} GiB | {m_rss / p_rss:.2f}x |")
    print(f"| first step | {ms[0]['seconds']:.2f} s | {pt['first_step_seconds']:.2f} s | |")
    print()
    print("| step | medforge loss | PyTorch loss | rel. diff | medforge grad norm | PyTorch grad norm |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for a, b in zip(ms, ps):
        d = abs(a["loss"] - b["loss"]) / abs(b["loss"])
        if a["step"] <= 20:
            worst = max(worst, d)
        print(f"| {a['step']} | {a['loss']:.5f} | {b['loss']:.5f} | {d:.2e} | {a['grad_norm']:.4f} | {b['grad_norm']:.4f} |")
    print(f"\nlargest relative loss difference over the first 20 steps: {worst:.2e} (target < 1e-2)")
    for name in ["qlora", "full"]:
        p = os.path.join(work, name, "training_info.json")
        if os.path.exists(p):
            i = load(p)
            mem = i.get("full_finetune_memory")
            extra = f", weights+grads+AdamW {mem['total_bytes'] / 2**30:.2f} GiB" if mem else ""
            print(f"{name}: {i['tokens_per_second']:.0f} tokens/s, {i['mean_step_seconds']:.2f} s/step, "
                  f"peak RSS {i['peak_rss_bytes'] / 2**30:.2f} GiB{extra}; base {i['base']}")
    return 0 if worst < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
