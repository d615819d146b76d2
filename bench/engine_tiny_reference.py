"""The tiny random-weight models (llama, qwen2, gemma3) through Hugging Face transformers, against medforge-engine's
log-probabilities on the same token ids: a check of each architecture's forward pass against the reference
implementation (the tests only check medforge's GGUF and safetensors readings against each other).

  bench/.venv-hf/bin/python bench/engine_tiny_reference.py ENGINE_BENCH_BINARY OUT_DIR
Prints one JSON line per architecture with the largest absolute log-prob difference; exits 1 above 1e-4.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

binary, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
# Longer than the tiny Gemma 3's sliding window (8), so that both layer kinds matter.
ids = [40 + (i * 7) % 200 for i in range(40)]
worst = 0.0
for arch in ["llama", "qwen2", "gemma3"]:
    d = os.path.join(out, arch)
    subprocess.run([binary, "tiny", d, arch], check=True)
    with open(os.path.join(out, "ids.json"), "w") as f:
        json.dump({"ids": ids}, f)
    ours = json.loads(subprocess.run([binary, "score", d, os.path.join(out, "ids.json")], check=True,
                                     capture_output=True, text=True).stdout)["logprobs"]
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").eval()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()
    diff = max(abs(a - b) for a, b in zip(ours, lp))
    worst = max(worst, diff)
    print(json.dumps({"arch": arch, "tokens": len(lp), "max_abs_logprob_diff": diff,
                      "transformers": __import__("transformers").__version__}))
sys.exit(0 if worst < 1e-4 else 1)
