"""The llama.cpp side of bench/engine_bench.sh (llama-cpp-python, greedy argmax over raw logits).

  engine_llamacpp.py greedy MODEL OURS.jsonl N     # same prompt ids as medforge; JSONL with ids, gaps, tokenizer check
  engine_llamacpp.py ppl MODEL OURS_PPL.json       # perplexity on the same token ids
  engine_llamacpp.py speed MODEL PROMPT_TOKENS GEN_TOKENS THREADS

LLAMA_KV=f32 keeps llama.cpp's KV cache in f32 (its default is f16; medforge's is f32).
"""
import json
import os
import resource
import sys
import time

import numpy as np
from llama_cpp import Llama


def load(model, n_ctx, logits_all=False, threads=2):
    kv = {"type_k": 0, "type_v": 0} if os.environ.get("LLAMA_KV") == "f32" else {}  # 0 = GGML_TYPE_F32
    return Llama(model_path=model, n_ctx=n_ctx, n_batch=512, n_threads=threads, n_threads_batch=threads,
                 logits_all=logits_all, verbose=False, **kv)


def last_logits(llm):
    # llama-cpp-python >= 0.3 fills `Llama.scores` only with logits_all=True; without it the last position's
    # logits are read from the context directly (a copy, so the next eval cannot change them).
    return np.array(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)), dtype=np.float32)


def top2_gap(row):
    i = np.argpartition(row, -2)[-2:]
    a, b = sorted(row[i], reverse=True)
    return float(a - b)


def greedy(model, ours_path, n):
    llm = load(model, 1024)
    for line in open(ours_path):
        row = json.loads(line)
        ids = row["prompt_ids"]
        text = row["prompt_text"]
        # add_bos=True means "as the model's vocabulary says" (SmolLM2: no BOS, Gemma: BOS), as medforge does.
        lc_ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        out, gaps = [], []
        for _ in range(n):
            logits = last_logits(llm)
            tok = int(np.argmax(logits))
            out.append(tok)
            gaps.append(top2_gap(logits))
            llm.eval([tok])
        print(json.dumps({"ids": out, "gaps": gaps, "tokenizer_match": list(lc_ids) == list(ids),
                          "text": llm.detokenize(out).decode("utf-8", "replace")}))


def ppl(model, ours_path):
    """Perplexity on the given ids, with llama.cpp's default batch (512: the prompt path) and one token at a time
    (the decode path): its two paths differ by their own rounding, which bounds what "the same" can mean."""
    ids = json.load(open(ours_path))["ids"]
    res = {}
    for nb in (512, 1):
        llm = Llama(model_path=model, n_ctx=len(ids) + 16, n_batch=nb, n_ubatch=nb, n_threads=2, n_threads_batch=2,
                    logits_all=True, verbose=False)
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        lp = logits[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]
        nll = float(-lp.sum())
        res[nb] = {"nll": nll, "tokens": len(ids) - 1, "perplexity": float(np.exp(nll / (len(ids) - 1)))}
        del llm
    print(json.dumps({**res[512], "batch1": res[1]}))


def speed(model, pt, gt, threads):
    t = time.time()
    llm = load(model, 512, threads=threads)
    load_s = time.time() - t
    base = llm.tokenize(b"The patient presented with chest pain radiating to the left arm and shortness of breath. ",
                        add_bos=False)
    prompt = (base * (pt // len(base) + 1))[:pt]
    llm.reset()
    llm.eval(prompt[:8])
    best_pp = best_tg = 0.0
    for _ in range(3):
        llm.reset()
        t = time.time()
        llm.eval(prompt)
        best_pp = max(best_pp, pt / (time.time() - t))
        tok = int(np.argmax(last_logits(llm)))
        t = time.time()
        for _ in range(gt - 1):
            llm.eval([tok])
            tok = int(np.argmax(last_logits(llm)))
        best_tg = max(best_tg, (gt - 1) / (time.time() - t))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "prompt_tokens": pt, "gen_tokens": gt, "pp_tok_s": best_pp,
                      "tg_tok_s": best_tg, "peak_rss_mb": rss}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "greedy":
        greedy(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "ppl":
        ppl(sys.argv[2], sys.argv[3])
    elif cmd == "speed":
        speed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
