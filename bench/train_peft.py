#!/usr/bin/env python3
"""PyTorch + PEFT side of the LoRA SFT benchmark (run side by side with medforge's trainer).

Like-with-like contract (medforge's side must do the same to be comparable):
  * Start: base model from --model (HF folder, f32 safetensors) + the adapter in --adapter loaded with
    PeftModel.from_pretrained(..., is_trainable=True); only the LoRA A/B matrices are trained.
  * Data: --data is JSONL, one row per line: {"ids": [int...], "n_prompt": int}. Targets are
    ids[n_prompt:], each predicted from the previous position (so a row has len(ids) - max(n_prompt, 1)
    targets). Rows are used as given (already truncated).
  * Order: the sequence S is the --order list (JSON list of row indices) or 0..n-1. Optimizer step s,
    micro-batch m, slot j uses row S[(s*grad_accum*batch + m*batch + j) % len(S)] (wraps to a new epoch
    with no reshuffle; a batch may straddle the wrap).
  * Micro-batch: right-padded to its longest row, attention_mask 1 on real tokens, labels -100 on the
    prompt and on padding; attn_implementation="sdpa"; no gradient checkpointing; model.train() (LoRA
    dropout = adapter config, expected 0; Llama attention_dropout = 0).
  * Loss of a step: sum of token NLL over all target tokens of all its micro-batches, divided by the
    step's total target-token count (TRL/Trainer num_items_in_batch semantics); each micro-batch's
    backward uses sum_nll_micro / total_targets_step, so the accumulated gradient is d(step loss).
    NLL = cross_entropy on logits upcast to f32 (as transformers' ForCausalLMLoss does).
  * Optimizer: torch.optim.AdamW over the trainable params only (--adam-impl, default fused = what
    transformers' Trainer uses for torch>=2.8: optim="adamw_torch_fused"); weight decay applies to every
    LoRA matrix (they have no biases/norms). Clip: clip_grad_norm_(max_grad_norm) after accumulation;
    the reported grad_norm is the pre-clip total L2 norm. LR schedule: transformers.get_scheduler
    (linear/cosine with warmup, constant = constant_with_warmup); the lr reported for step s is the lr
    used by that step's optimizer update (step 0 of "linear" with no warmup uses the full lr, the last
    step uses lr/steps).
  * bf16: torch.autocast("cpu", dtype=torch.bfloat16) around forward + loss; weights, LoRA params, grads
    and Adam state stay f32 (transformers' Trainer bf16=True on an f32 model).
  * Timing: time.perf_counter around forward+backward(all micro-batches)+clip+optimizer.step+scheduler
    +zero_grad of each step; batch tensors are built before the clock starts. The first step (warm-up:
    oneDNN primitive creation, allocator growth) is excluded from the means.

Output: --out RESULT_JSON (see the keys at the end of main()).
"""
import argparse
import json
import os
import sys
import tempfile


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model folder (f32 safetensors)")
    ap.add_argument("--adapter", required=True, help="initial PEFT adapter folder")
    ap.add_argument("--data", required=True, help='tokens JSONL: {"ids": [...], "n_prompt": int} per line')
    ap.add_argument("--order", default=None, help="JSON file: list of row indices giving the data order")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear")
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0, help="<= 0: no clipping (norm still reported)")
    ap.add_argument("--adam-beta1", type=float, default=0.9)
    ap.add_argument("--adam-beta2", type=float, default=0.999)
    ap.add_argument("--adam-eps", type=float, default=1e-8)
    ap.add_argument("--adam-impl", choices=["fused", "foreach", "forloop"], default="fused",
                    help="torch.optim.AdamW implementation (default fused, as transformers' Trainer on torch>=2.8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--onednn-verbose", action="store_true",
                    help="run with ONEDNN_VERBOSE=1 and summarise which ISA / kernels oneDNN picked")
    ap.add_argument("--save-adapter", default=None, help="save the trained adapter here at the end")
    ap.add_argument("--out", required=True, help="result JSON")
    return ap.parse_args(argv)


ARGS = parse_args()
# Thread pools are sized when the libraries initialise, so set the env before importing torch.
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(ARGS.threads)
if ARGS.onednn_verbose:
    os.environ["ONEDNN_VERBOSE"] = "1"
    os.environ["DNNL_VERBOSE"] = "1"

import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
try:
    torch.set_num_interop_threads(1)  # eager training uses no inter-op parallelism; keep it out of the way
except RuntimeError:
    pass

import transformers  # noqa: E402
import peft  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, get_scheduler  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class StdoutCapture:
    """Redirect the C-level stdout (fd 1) to a temp file: oneDNN's verbose lines go there."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.text = ""

    def __enter__(self):
        if self.enabled:
            sys.stdout.flush()
            self.tmp = tempfile.TemporaryFile(mode="w+b")
            self.saved = os.dup(1)
            os.dup2(self.tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            sys.stdout.flush()
            os.dup2(self.saved, 1)
            os.close(self.saved)
            self.tmp.seek(0)
            self.text = self.tmp.read().decode("utf-8", "replace")
            self.tmp.close()
        return False


def summarise_onednn(text):
    """Count oneDNN exec lines by (kind, primitive, implementation); keep the ISA info lines and one
    example line per key."""
    info, counts, example = [], {}, {}
    for line in text.splitlines():
        if not (line.startswith("onednn_verbose") or line.startswith("dnnl_verbose")):
            continue
        parts = line.strip().split(",")
        if "info" in parts[:4] and "cpu" in parts:
            info.append(line.strip())
        if "exec" in parts:
            i = parts.index("exec")
            # primitive lines: ...,primitive,exec,cpu,<prim>,<impl>,...; ukernel lines differ, keep what's there
            key = ":".join(p for p in (parts[i - 1] if i > 0 else "", *parts[i + 1: i + 4]) if p)
            counts[key] = counts.get(key, 0) + 1
            example.setdefault(key, line.strip()[:300])
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:30]
    return {"info": info[:12], "exec_counts": dict(top), "examples": {k: example[k] for k, _ in top[:10]},
            "note": "timings of a --onednn-verbose run include the logging overhead; don't use them"}


def isa_report(dtype):
    note = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkl_available": torch.backends.mkl.is_available(),
    }
    for name in ("_is_mkldnn_bf16_supported", "_is_mkldnn_fp16_supported", "_is_mkldnn_acl_supported"):
        fn = getattr(torch.ops.mkldnn, name, None)
        if fn is not None:
            try:
                note[name.lstrip("_")] = bool(fn())
            except Exception as e:  # noqa: BLE001
                note[name.lstrip("_")] = f"error: {e}"
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported",
                 "_is_vnni_supported"):
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            try:
                note[name.lstrip("_")] = bool(fn())
            except Exception as e:  # noqa: BLE001
                note[name.lstrip("_")] = f"error: {e}"
    try:
        flags = set()
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        note["cpuinfo_flags"] = sorted(f for f in flags if f.startswith("amx") or f in
                                       ("avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx2", "fma"))
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    note["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if dtype == "bf16":
        amx = note.get("is_amx_tile_supported") is True and note.get("is_mkldnn_bf16_supported") is True
        note["summary"] = ("bf16 autocast: Linear/matmul go to oneDNN (mkldnn bf16 supported); "
                           + ("AMX tiles present, oneDNN should pick avx512_core_amx kernels"
                              if amx else "no AMX: oneDNN uses avx512_core_bf16 or emulation")
                           + " (run --onednn-verbose to see the ISA actually chosen)")
    else:
        note["summary"] = ("fp32: nn.Linear/matmul on CPU go to MKL/oneDNN sgemm (AVX-512/AVX2 FMA), "
                           "AMX is not used for f32")
    return note


def load_rows(path):
    rows = []
    with open(path) as fh:
        for ln, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            ids, n_prompt = [int(x) for x in r["ids"]], int(r["n_prompt"])
            if not 0 <= n_prompt <= len(ids):
                sys.exit(f"{path}:{ln + 1}: n_prompt {n_prompt} outside 0..{len(ids)}")
            rows.append((ids, n_prompt))
    return rows


def n_targets(ids, n_prompt):
    return max(0, len(ids) - max(n_prompt, 1))


def collate(batch, pad_id):
    """Right-pad; labels = ids on target positions, -100 on prompt and padding (unshifted, HF style)."""
    L = max(len(ids) for ids, _ in batch)
    B = len(batch)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(batch):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = t
        attn[i, : len(ids)] = 1
        labels[i, n_prompt: len(ids)] = t[n_prompt:]
    return input_ids, attn, labels


def main():
    a = ARGS
    torch.manual_seed(a.seed)
    rows = load_rows(a.data)
    if not rows:
        sys.exit("no rows")
    if a.order:
        with open(a.order) as fh:
            seq = [int(i) for i in json.load(fh)]
        bad = [i for i in seq if not 0 <= i < len(rows)]
        if bad:
            sys.exit(f"--order has out-of-range indices, e.g. {bad[:5]}")
    else:
        seq = list(range(len(rows)))

    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    # from_pretrained never turns gradient checkpointing on; we never call gradient_checkpointing_enable().
    model = PeftModel.from_pretrained(model, a.adapter, is_trainable=True)
    model.train()
    load_seconds = time.perf_counter() - t_load

    peft_cfg = model.peft_config[model.active_adapter]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in trainable]
    n_trainable = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    bad = [n for n, _ in trainable if "lora_" not in n]
    if bad:
        log(f"warning: non-LoRA trainable params: {bad[:5]}")
    if any(p.dtype != torch.float32 for p in params):
        sys.exit("trainable params are not f32")
    lora_dropout = float(getattr(peft_cfg, "lora_dropout", 0.0) or 0.0)
    if lora_dropout:
        log(f"warning: adapter lora_dropout={lora_dropout} (not 0): steps are stochastic")

    impl = {"fused": dict(fused=True), "foreach": dict(foreach=True, fused=False),
            "forloop": dict(foreach=False, fused=False)}[a.adam_impl]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_eps,
                            weight_decay=a.weight_decay, **impl)
    sched_name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[a.schedule]
    sched = get_scheduler(sched_name, optimizer=opt, num_warmup_steps=a.warmup_steps, num_training_steps=a.steps)

    pad_id = model.config.pad_token_id
    if pad_id is None:
        pad_id = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 0
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if a.dtype == "bf16" else None

    per_step = a.batch_size * a.grad_accum
    steps = []
    log(f"train_peft: {len(rows)} rows, {a.steps} steps x {a.grad_accum} x batch {a.batch_size}, "
        f"threads={torch.get_num_threads()}, dtype={a.dtype}, adam={a.adam_impl}, trainable={n_trainable}")
    t_train = time.perf_counter()
    with StdoutCapture(a.onednn_verbose) as cap:
        for s in range(a.steps):
            base = s * per_step
            micro = []
            for m in range(a.grad_accum):
                batch = [rows[seq[(base + m * a.batch_size + j) % len(seq)]] for j in range(a.batch_size)]
                micro.append(collate(batch, pad_id))
            n_tgt = int(sum((lab[:, 1:] != -100).sum().item() for _, _, lab in micro))
            n_tok = int(sum(att.sum().item() for _, att, _ in micro))
            n_padded = int(sum(ids.numel() for ids, _, _ in micro))
            lr_now = sched.get_last_lr()[0]
            denom = max(n_tgt, 1)

            t0 = time.perf_counter()
            nll_sum = 0.0
            for input_ids, attn, labels in micro:
                if amp is not None:
                    with amp:
                        logits = model(input_ids=input_ids, attention_mask=attn).logits
                        nll = torch.nn.functional.cross_entropy(
                            logits[:, :-1, :].float().reshape(-1, logits.shape[-1]),
                            labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
                else:
                    logits = model(input_ids=input_ids, attention_mask=attn).logits
                    nll = torch.nn.functional.cross_entropy(
                        logits[:, :-1, :].float().reshape(-1, logits.shape[-1]),
                        labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
                (nll / denom).backward()
                nll_sum += float(nll.detach())
                del logits, nll
            clip = a.max_grad_norm if a.max_grad_norm > 0 else float("inf")
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0

            rec = {"step": s, "loss": nll_sum / denom, "lr": lr_now, "seconds": dt, "tokens": n_tok,
                   "padded_tokens": n_padded, "target_tokens": n_tgt, "grad_norm": gnorm}
            steps.append(rec)
            log(f"step {s}: loss={rec['loss']:.6f} lr={lr_now:.3e} gnorm={gnorm:.4f} "
                f"tokens={n_tok} (padded {n_padded}) targets={n_tgt} {dt:.3f}s")
    train_seconds = time.perf_counter() - t_train
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    timed = steps[1:] if len(steps) > 1 else steps
    tsec = sum(r["seconds"] for r in timed)
    note = isa_report(a.dtype)
    if a.onednn_verbose:
        note["onednn_verbose"] = summarise_onednn(cap.text)
        if not note["onednn_verbose"]["exec_counts"]:
            note["onednn_verbose"]["note"] += "; no oneDNN primitive ran (f32 GEMMs went to MKL/ATen)"

    if a.save_adapter:
        model.save_pretrained(a.save_adapter)

    result = {
        "tool": {
            "name": "pytorch+peft",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "torch_parallel_info": torch.__config__.parallel_info().splitlines()[:8],
        },
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "dtype": a.dtype,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "config": {
            "model": os.path.abspath(a.model), "adapter": os.path.abspath(a.adapter),
            "data": os.path.abspath(a.data), "order": a.order, "rows": len(rows), "order_len": len(seq),
            "batch_size": a.batch_size, "grad_accum": a.grad_accum, "steps": a.steps, "lr": a.lr,
            "schedule": a.schedule, "scheduler": sched_name, "warmup_steps": a.warmup_steps,
            "weight_decay": a.weight_decay, "max_grad_norm": a.max_grad_norm,
            "adam": {"impl": a.adam_impl, "beta1": a.adam_beta1, "beta2": a.adam_beta2, "eps": a.adam_eps},
            "attn_implementation": model.base_model.model.config._attn_implementation,
            "gradient_checkpointing": any(getattr(m, "gradient_checkpointing", False) for m in model.modules()),
            "lora": {"r": peft_cfg.r, "alpha": peft_cfg.lora_alpha, "dropout": lora_dropout,
                     "target_modules": sorted(peft_cfg.target_modules),
                     "use_rslora": bool(getattr(peft_cfg, "use_rslora", False))},
            "loss": "sum target NLL over the step's micro-batches / step target-token count",
        },
        "steps": steps,
        "mean_step_seconds_excl_first": tsec / len(timed),
        "tokens_per_second": sum(r["tokens"] for r in timed) / tsec if tsec > 0 else None,
        "target_tokens_per_second": sum(r["target_tokens"] for r in timed) / tsec if tsec > 0 else None,
        "first_step_seconds": steps[0]["seconds"],
        "train_seconds_total": train_seconds,
        "load_seconds": load_seconds,
        "peak_rss_bytes": peak_rss,
        "trainable_params": n_trainable,
        "total_params": n_total,
        "amx_or_isa_note": note,
        "saved_adapter": os.path.abspath(a.save_adapter) if a.save_adapter else None,
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
    log(f"mean step (excl first) {result['mean_step_seconds_excl_first']:.3f}s, "
        f"{result['tokens_per_second']:.1f} tok/s, peak RSS {peak_rss / 2**20:.0f} MiB -> {a.out}")


if __name__ == "__main__":
    main()
