"""The HF transformers side of bench/engine_bench.sh: a GGUF (llama or gemma3) dequantised by the `gguf` package into
an ordinary f32 HF safetensors folder (what a Python user would run on CPU), which medforge loads too.

  engine_hf.py convert MODEL.gguf OUT_DIR           # HF folder (config.json, model.safetensors, tokenizer files)
  engine_hf.py ppl HF_DIR OURS_PPL.json              # perplexity on medforge's token ids
  engine_hf.py speed HF_DIR PROMPT_TOKENS GEN_TOKENS THREADS
"""
import json
import os
import resource
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert(gguf_path, out):
    """Dequantise every tensor with the `gguf` package (llama.cpp's own Python reference), undo llama.cpp's Q/K row
    permutation, and save an ordinary f32 HF folder; config and tokenizer through transformers' GGUF readers."""
    import gguf
    from safetensors.torch import save_file
    from transformers import AutoConfig

    d, f = os.path.split(os.path.abspath(gguf_path))
    cfg = AutoConfig.from_pretrained(d, gguf_file=f)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    r = gguf.GGUFReader(gguf_path)
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    gemma = cfg.model_type.startswith("gemma")
    names = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
    if gemma:
        names.update({"ffn_norm": "pre_feedforward_layernorm", "post_attention_norm": "post_attention_layernorm",
                      "post_ffw_norm": "post_feedforward_layernorm"})
    tensors = {}
    for t in r.tensors:
        w = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype("float32").copy())
        w = w.reshape([int(x) for x in reversed(t.shape)])
        if t.name.startswith("blk."):
            _, layer, part, suffix = t.name.split(".")
            if part in ("attn_q", "attn_k") and not gemma:
                n = heads if part == "attn_q" else kv
                rows, cols = w.shape
                w = w.reshape(n, rows // n // 2, 2, cols).transpose(1, 2).reshape(rows, cols)
            name = f"model.layers.{layer}.{names[part]}.{suffix}"
        else:
            name = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                    "output.weight": "lm_head.weight"}[t.name]
        if gemma and name.endswith("norm.weight"):
            w = w - 1.0  # GGUF stores Gemma's norm weights as 1 + w
        tensors[name] = w.contiguous()
    cfg.tie_word_embeddings = "lm_head.weight" not in tensors
    cfg.torch_dtype = "float32"
    os.makedirs(out, exist_ok=True)
    cfg.save_pretrained(out)
    tok.save_pretrained(out)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


@torch.inference_mode()
def ppl(path, ours):
    ids = json.load(open(ours))["ids"]
    model = load(path)
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    nll = float(-lp.sum())
    print(json.dumps({"nll": nll, "tokens": len(ids) - 1, "perplexity": float(torch.exp(-lp.mean()))}))


@torch.inference_mode()
def speed(path, pt, gt, threads):
    torch.set_num_threads(threads)
    t = time.time()
    model = load(path)
    load_s = time.time() - t
    tok = AutoTokenizer.from_pretrained(path)
    base = tok("The patient presented with chest pain radiating to the left arm and shortness of breath. ")["input_ids"]
    prompt = torch.tensor([(base * (pt // len(base) + 1))[:pt]])
    model(prompt[:, :8])
    best_pp = best_tg = 0.0
    for _ in range(3):
        t = time.time()
        out = model(prompt, use_cache=True)
        best_pp = max(best_pp, pt / (time.time() - t))
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.time()
        for _ in range(gt - 1):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        best_tg = max(best_tg, (gt - 1) / (time.time() - t))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "prompt_tokens": pt, "gen_tokens": gt, "pp_tok_s": best_pp,
                      "tg_tok_s": best_tg, "peak_rss_mb": rss, "torch": torch.__version__}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "convert":
        convert(sys.argv[2], sys.argv[3])
    elif cmd == "ppl":
        ppl(sys.argv[2], sys.argv[3])
    elif cmd == "speed":
        speed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
