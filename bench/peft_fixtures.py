#!/usr/bin/env python3
"""Fixtures for the LoRA SFT benchmark (bench/train_peft.py vs medforge's trainer).

  python bench/peft_fixtures.py convert --gguf DIR/NAME.gguf --out /tmp/smollm2-hf
      GGUF -> Hugging Face f32 folder (model.safetensors + config + tokenizer). The weights are the
      *dequantized* GGUF weights, so a side that loads the GGUF itself sees the same numbers only if
      its dequantization matches transformers' (gguf-py) one.
  python bench/peft_fixtures.py data --model /tmp/smollm2-hf --medqa FILE.jsonl --rows 8 --max-len 512 --out tokens.jsonl
      MedQA rows -> ChatML -> token ids: {"ids": [...], "n_prompt": int} per line.
  python bench/peft_fixtures.py adapter --model /tmp/smollm2-hf --out /tmp/smollm2-init-adapter [--r 8 --alpha 16 --seed 0 --b-std 0.01]
      A random initial PEFT LoRA adapter (all seven projections, dropout 0). PEFT's default init sets
      lora_B = 0; --b-std > 0 replaces B by N(0, b_std) so the adapter changes the logits (useful for
      the logits parity check); --b-std 0 keeps PEFT's default.
"""
import argparse
import json
import os
import sys


def cmd_convert(a):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, AutoConfig

    d, f = os.path.split(os.path.abspath(a.gguf))
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    # A GGUF-loaded model keeps quantization_config (quant_method=gguf) and save_pretrained refuses it
    # ("The model is quantized with gguf and is not serializable"). Rebuild a plain model from the config.
    cfg = m.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    if abs(cfg.get("rms_norm_eps", 0) - 1e-5) < 1e-12:
        cfg["rms_norm_eps"] = 1e-5  # GGUF stores eps as f32 (9.99999974e-06); same f32 value, cleaner json
    config = AutoConfig.for_model(**cfg)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sd = m.state_dict()
    missing, unexpected = plain.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    psd = plain.state_dict()
    assert all(torch.equal(sd[k], psd[k]) for k in sd)
    tied = plain.get_output_embeddings().weight.data_ptr() == plain.get_input_embeddings().weight.data_ptr()
    plain.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    print(json.dumps({"out": a.out, "tie_word_embeddings": config.tie_word_embeddings, "tied_in_memory": tied,
                      "params": sum(p.numel() for p in plain.parameters())}))


def render_medqa(row):
    opts = row.get("options") or {}
    q = row["question"].strip()
    if opts:
        q += "\n" + "\n".join(f"{k}. {v}" for k, v in opts.items())
    prompt = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    completion = f"{row['answer']}<|im_end|>\n"
    return prompt, completion


def cmd_data(a):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a.model)
    n_joint_mismatch = 0
    skipped = 0
    out = []
    with open(a.medqa) as fh:
        for line in fh:
            if len(out) >= a.rows:
                break
            row = json.loads(line)
            prompt, completion = render_medqa(row)
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            c = tok(completion, add_special_tokens=False)["input_ids"]
            ids = p + c
            if tok(prompt + completion, add_special_tokens=False)["input_ids"] != ids:
                n_joint_mismatch += 1
            ids = ids[: a.max_len]
            n_prompt = min(len(p), len(ids))
            if len(ids) - n_prompt <= 0 and not a.keep_empty:
                skipped += 1  # the prompt alone fills max_len: no target token left
                continue
            out.append({"ids": ids, "n_prompt": n_prompt})
    with open(a.out, "w") as fh:
        for r in out:
            fh.write(json.dumps(r) + "\n")
    print(json.dumps({"out": a.out, "rows": len(out), "lens": [len(r["ids"]) for r in out],
                      "targets": [len(r["ids"]) - r["n_prompt"] for r in out],
                      "skipped_no_target": skipped,
                      "joint_vs_split_tokenization_mismatches": n_joint_mismatch}))


def cmd_adapter(a):
    import torch
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(a.seed)
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pm = get_peft_model(m, cfg)
    if a.b_std > 0:
        g = torch.Generator().manual_seed(a.seed + 1)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * a.b_std)
    pm.save_pretrained(a.out)
    n = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    print(json.dumps({"out": a.out, "trainable_params": n, "r": a.r, "alpha": a.alpha, "b_std": a.b_std}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    c = sp.add_parser("convert")
    c.add_argument("--gguf", required=True)
    c.add_argument("--out", required=True)
    d = sp.add_parser("data")
    d.add_argument("--model", required=True)
    d.add_argument("--medqa", required=True)
    d.add_argument("--rows", type=int, default=8)
    d.add_argument("--max-len", type=int, default=512)
    d.add_argument("--keep-empty", action="store_true", help="keep rows left with no target after truncation")
    d.add_argument("--out", required=True)
    p = sp.add_parser("adapter")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--b-std", type=float, default=0.01)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(int(os.environ.get("FIXTURE_THREADS", "1")))
    {"convert": cmd_convert, "data": cmd_data, "adapter": cmd_adapter}[a.cmd](a)


if __name__ == "__main__":
    main()
