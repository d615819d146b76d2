"""Summarise bench/out/engine into Markdown tables (greedy match, perplexity, speed, batching, tiny references)."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def jl(name):
    return [json.loads(l) for l in open(out / name)]


for label, suffix in [("SmolLM2-135M-Instruct Q4_1, chat prompts", ""), ("Gemma-3-270M Q4_K_M, plain prompts", "_gemma3")]:
    ours, ref = jl(f"medforge_greedy{suffix}.jsonl"), jl(f"llamacpp_greedy{suffix}.jsonl")
    print(f"### Greedy decoding vs llama.cpp: {label}\n")
    print("| prompt | tokenizer ids equal | tokens equal | first divergence | top-2 gap there (medforge / llama.cpp) |")
    print("|---|---|---|---|---|")
    full = 0
    for i, (a, b) in enumerate(zip(ours, ref)):
        n = len(a["ids"])
        div = next((k for k in range(n) if a["ids"][k] != b["ids"][k]), None)
        same = n if div is None else div
        full += div is None
        where = "-" if div is None else f"token {div}"
        gap = "-" if div is None else f"{a['gaps'][div]:.3f} / {b['gaps'][div]:.3f}"
        print(f"| {i + 1} | {'yes' if b['tokenizer_match'] else 'NO'} | {same}/{n} | {where} | {gap} |")
    print(f"\n{full}/{len(ours)} prompts identical for all tokens.\n")
    # The scale of a near-tie flip: llama.cpp against itself with only the KV-cache precision changed.
    try:
        kv32 = jl(f"llamacpp_greedy_kvf32{suffix}.jsonl")
    except FileNotFoundError:
        continue

    def first(x, y):
        return next((k for k in range(len(x["ids"])) if x["ids"][k] != y["ids"][k]), len(x["ids"]))

    print("First divergence (64 = none), per prompt: medforge vs llama.cpp (f16 KV) "
          f"{[first(a, b) for a, b in zip(ours, ref)]}; medforge vs llama.cpp (f32 KV) "
          f"{[first(a, c) for a, c in zip(ours, kv32)]}; llama.cpp f16 KV vs llama.cpp f32 KV "
          f"{[first(b, c) for b, c in zip(ref, kv32)]}.\n")

print("### Perplexity (same token ids in every engine)\n")
print("| text | model | medforge | llama.cpp, batch 512 | llama.cpp, batch 1 | transformers (f32) | medforge vs llama.cpp 512 / 1 |")
print("|---|---|---|---|---|---|---|")
for t, label in [("ppl", "engine_ppl_text.txt"), ("long", "engine_ppl_long.txt")]:
    for name, model in [("smollm2", "SmolLM2 Q4_1"), ("gemma3", "Gemma-3 Q4_K_M"), ("f32", "SmolLM2 f32 HF folder")]:
        try:
            x = json.load(open(out / f"medforge_{t}_{name}.json"))
        except FileNotFoundError:
            continue
        cells = ["-", "-", "-"]
        rel = "-"
        if name == "f32":
            y = json.load(open(out / f"transformers_{t}_f32.json"))
            cells[2] = f"{y['perplexity']:.4f}"
            rel = f"vs transformers {(x['perplexity'] / y['perplexity'] - 1) * 100:+.4f}%"
        else:
            y = json.load(open(out / f"llamacpp_{t}_{name}.json"))
            cells[0], cells[1] = f"{y['perplexity']:.4f}", f"{y['batch1']['perplexity']:.4f}"
            rel = (f"{(x['perplexity'] / y['perplexity'] - 1) * 100:+.2f}% / "
                   f"{(x['perplexity'] / y['batch1']['perplexity'] - 1) * 100:+.2f}%")
        print(f"| {label} ({x['tokens']} tokens) | {model} | {x['perplexity']:.4f} | {' | '.join(cells)} | {rel} |")
print()

rows = jl("speed.jsonl")
print("\n### Speed (2 threads)\n")
print("| file | engine | prompt tok/s | decode tok/s | peak RSS MB | load s |\n|---|---|---|---|---|---|")
by = {}
for r in rows:
    x = r["r"]
    by[(r["file"], r["engine"])] = x
    print(f"| {r['file']} | {r['engine']} | {x['pp_tok_s']:.1f} | {x['tg_tok_s']:.1f} | {x['peak_rss_mb']:.0f} | {x['load_s']:.2f} |")
print("\n| file | peer | medforge / peer prompt | medforge / peer decode | medforge / peer RSS |\n|---|---|---|---|---|")
for f in dict.fromkeys(r["file"] for r in rows):
    for peer in ["llama.cpp", "transformers"]:
        if (f, peer) in by and (f, "medforge") in by:
            m, l = by[(f, "medforge")], by[(f, peer)]
            print(f"| {f} | {peer} | {m['pp_tok_s'] / l['pp_tok_s']:.2f}x | {m['tg_tok_s'] / l['tg_tok_s']:.2f}x | "
                  f"{m['peak_rss_mb'] / l['peak_rss_mb']:.2f}x |")

print("\n### Batched decoding (medforge, SmolLM2 Q4_1, 32-token prompts)\n")
print("| sequences | decode tok/s (all sequences) | peak RSS MB |\n|---|---|---|")
for r in jl("batch.jsonl"):
    print(f"| {r['batch']} | {r['decode_tok_s']:.1f} | {r['peak_rss_mb']:.0f} |")

try:
    tiny = jl("tiny_reference.jsonl")
    print("\n### Tiny random models vs transformers (log-probs of 39 tokens)\n")
    print("| arch | max abs log-prob difference |\n|---|---|")
    for t in tiny:
        print(f"| {t['arch']} | {t['max_abs_logprob_diff']:.2e} |")
except FileNotFoundError:
    pass
