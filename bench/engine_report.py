"""Summarise bench/out/engine into Markdown tables (greedy match, perplexity, speed)."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
ours = [json.loads(l) for l in open(out / "medforge_greedy.jsonl")]
ref = [json.loads(l) for l in open(out / "llamacpp_greedy.jsonl")]
print("### Greedy decoding vs llama.cpp\n")
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
a = json.load(open(out / "medforge_ppl.json"))
b = json.load(open(out / "llamacpp_ppl.json"))
d = (a["perplexity"] / b["perplexity"] - 1) * 100
print("### Perplexity (bench/engine_ppl_text.txt, same token ids)\n")
print("| engine | tokens | perplexity |\n|---|---|---|")
print(f"| medforge | {a['tokens']} | {a['perplexity']:.4f} |\n| llama.cpp | {b['tokens']} | {b['perplexity']:.4f} |")
print(f"\nDifference: {d:+.3f}%\n")
rows = [json.loads(l) for l in open(out / "speed.jsonl")]
print("### Speed (2 threads)\n")
print("| file | engine | prompt tok/s | decode tok/s | peak RSS MB | load s |\n|---|---|---|---|---|---|")
by = {}
for r in rows:
    x = r["r"]
    by[(r["file"], r["engine"])] = x
    print(f"| {r['file']} | {r['engine']} | {x['pp_tok_s']:.1f} | {x['tg_tok_s']:.1f} | {x['peak_rss_mb']:.0f} | {x['load_s']:.2f} |")
print("\n| file | medforge / llama.cpp prompt | medforge / llama.cpp decode |\n|---|---|---|")
for f in dict.fromkeys(r["file"] for r in rows):
    m, l = by[(f, "medforge")], by[(f, "llama.cpp")]
    print(f"| {f} | {m['pp_tok_s'] / l['pp_tok_s']:.2f}x | {m['tg_tok_s'] / l['tg_tok_s']:.2f}x |")
