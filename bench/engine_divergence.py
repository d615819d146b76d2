"""Where medforge and llama.cpp greedy decodes part, which of the two tokens the unquantised model prefers.

At each first divergence, both engines have seen the same tokens; the model in f32 (the GGUF dequantised into an HF
folder, run by transformers) is asked for the logits of the two candidate tokens. Prints a Markdown table.

  bench/.venv-hf/bin/python bench/engine_divergence.py OURS.jsonl LLAMACPP.jsonl HF_F32_DIR
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

ours = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
model = AutoModelForCausalLM.from_pretrained(sys.argv[3], dtype=torch.float32).eval()
print("| prompt | divergence | medforge's token gap | llama.cpp's token gap | f32 model: gap (medforge's - llama.cpp's token) | f32 agrees with |")
print("|---|---|---|---|---|---|")
agree = {"medforge": 0, "llama.cpp": 0}
for i, (a, b) in enumerate(zip(ours, ref)):
    n = len(a["ids"])
    k = next((j for j in range(n) if a["ids"][j] != b["ids"][j]), None)
    if k is None:
        continue
    prefix = a["prompt_ids"] + a["ids"][:k]
    with torch.inference_mode():
        logits = model(torch.tensor([prefix])).logits[0, -1].double()
    ta, tb = a["ids"][k], b["ids"][k]
    d = float(logits[ta] - logits[tb])
    who = "medforge" if d > 0 else "llama.cpp"
    agree[who] += 1
    print(f"| {i + 1} | token {k} | {a['gaps'][k]:.3f} | {b['gaps'][k]:.3f} | {d:+.3f} | {who} |")
print(f"\nAt the divergences, the f32 model prefers medforge's token {agree['medforge']} times and llama.cpp's "
      f"{agree['llama.cpp']} times.")
