#!/usr/bin/env python3
"""Reference last-position logits of base + LoRA adapter (PEFT), for medforge's LoRA forward parity check.

  python bench/peft_logits.py --model HF_FOLDER --adapter ADAPTER_DIR --prompts-json FILE --out OUT_JSON
      [--top-k 64] [--no-full] [--threads 1]

FILE: {"prompts": [{"ids": [int, ...]}, ...]} (token ids, used as given: no BOS added).
Each prompt runs alone (batch 1, no padding), fp32, eager attention, model.eval(), once with the adapter
and once inside `with model.disable_adapter():` (the plain base model).

OUT_JSON: {"tool": {...}, "model", "adapter", "vocab_size", "lora": {...},
  "prompts": [{"ids": [...], "n": len,
               "adapter": {"logits": [V floats] (unless --no-full), "top_ids": [k], "top_logits": [k], "logsumexp": x},
               "base":    {... same ...},
               "max_abs_adapter_minus_base": x}]}
Compare within 1e-3 (absolute, on logits).
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--prompts-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--no-full", action="store_true", help="omit the full vocabulary rows")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)

    import torch
    import transformers
    import peft
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    with open(a.prompts_json) as fh:
        prompts = json.load(fh)["prompts"]

    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, a.adapter, is_trainable=False)
    model.eval()
    cfg = model.peft_config[model.active_adapter]
    vocab = base.config.vocab_size

    def last_logits(ids):
        x = torch.tensor([ids], dtype=torch.long)
        out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False)
        return out.logits[0, -1].float()

    def pack(row):
        k = min(a.top_k, row.numel())
        top = torch.topk(row, k)
        d = {"top_ids": top.indices.tolist(), "top_logits": top.values.tolist(),
             "logsumexp": float(torch.logsumexp(row.double(), 0))}
        if not a.no_full:
            d["logits"] = row.tolist()
        return d

    res = []
    with torch.inference_mode():
        for p in prompts:
            ids = [int(t) for t in p["ids"]]
            if not ids:
                sys.exit("empty prompt")
            with_ad = last_logits(ids)
            with model.disable_adapter():
                plain = last_logits(ids)
            res.append({"ids": ids, "n": len(ids), "adapter": pack(with_ad), "base": pack(plain),
                        "max_abs_adapter_minus_base": float((with_ad - plain).abs().max())})
            print(f"prompt n={len(ids)}: argmax adapter={int(with_ad.argmax())} base={int(plain.argmax())} "
                  f"max|adapter-base|={res[-1]['max_abs_adapter_minus_base']:.4f}", file=sys.stderr)

    out = {
        "tool": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "model": os.path.abspath(a.model),
        "adapter": os.path.abspath(a.adapter),
        "vocab_size": vocab,
        "dtype": "fp32",
        "attn_implementation": "eager",
        "lora": {"r": cfg.r, "alpha": cfg.lora_alpha, "scaling": cfg.lora_alpha / cfg.r,
                 "use_rslora": bool(getattr(cfg, "use_rslora", False)),
                 "target_modules": sorted(cfg.target_modules)},
        "prompts": res,
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
