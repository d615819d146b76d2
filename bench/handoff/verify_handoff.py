#!/usr/bin/env python3
"""Render every handoff template with verify/values_*.json and run the TRL scripts for 2 steps on CPU.

Called by verify_handoff.sh; prints one line per case with the per-step training losses.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from render import render  # noqa: E402

# The templates medforge compiles in (include_str!), checked here with the reference renderer.
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "crates", "medforge-train", "handoff")

BENCH = os.path.dirname(HERE)
TRL_PY = os.path.join(BENCH, ".venv-trl", "bin", "python")
RUN = "/tmp/handoff-run"

CASES = [
    # name, template, values file, processes (2: torchrun, CPU DDP over gloo)
    ("sft_lora_messages", "sft_trl.py.tmpl", "values_sft.json", 1),
    ("sft_lora_prompt_completion", "sft_trl.py.tmpl", "values_sft_pc.json", 1),
    ("sft_lora_assistant_only", "sft_trl.py.tmpl", "values_sft_aol.json", 1),
    ("sft_lora_explicit_template", "sft_trl.py.tmpl", "values_sft_template.json", 1),
    ("sft_full", "sft_trl.py.tmpl", "values_sft_full.json", 1),
    ("sft_full_packed_noeval", "sft_trl.py.tmpl", "values_sft_noeval_packed.json", 1),
    ("sft_lora_ddp2", "sft_trl.py.tmpl", "values_sft.json", 2),
    ("dpo_lora", "dpo_trl.py.tmpl", "values_dpo.json", 1),
    ("dpo_lora_prompt_filter", "dpo_trl.py.tmpl", "values_dpo_prompt_filter.json", 1),
    ("dpo_full_precompute", "dpo_trl.py.tmpl", "values_dpo_full_pre.json", 1),
    ("dpo_lora_ddp2", "dpo_trl.py.tmpl", "values_dpo.json", 2),
]
ACCELERATE = ["accelerate_multi_gpu.yaml.tmpl", "accelerate_zero2.yaml.tmpl", "accelerate_zero3.yaml.tmpl"]


def load_values(name):
    """A value map; its data paths were written for a checkout at /work/main and follow this one."""
    values = json.load(open(os.path.join(HERE, "verify", name)))
    return {k: v.replace("/work/main/bench/handoff", HERE) if isinstance(v, str) else v for k, v in values.items()}


def main():
    only = set(sys.argv[1:])
    os.makedirs(RUN, exist_ok=True)
    failed = []
    for name, tmpl, values_file, nproc in CASES:
        if only and name not in only:
            continue
        values = load_values(values_file)
        if nproc > 1:
            values["output_dir"] += "_ddp%d" % nproc
        script = os.path.join(RUN, name + ".py")
        with open(script, "w") as f:
            f.write(render(os.path.join(TEMPLATES, tmpl), values))
        log = os.path.join(RUN, name + ".log")
        with open(log, "w") as f:
            launcher = [TRL_PY] if nproc == 1 else [TRL_PY, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
            rc = subprocess.call(
                launcher + [script, "--cpu", "--max-steps", "2"], cwd=RUN, stdout=f, stderr=subprocess.STDOUT, timeout=900
            )
        summary_path = os.path.join(values["output_dir"], "medforge_train_summary.json")
        if rc != 0 or not os.path.exists(summary_path):
            failed.append(name)
            print("%-28s FAILED rc=%d, log %s" % (name, rc, log))
            continue
        s = json.load(open(summary_path))
        losses = [h["loss"] for h in s["log_history"] if "loss" in h]
        extra = ""
        dropped = [l.strip() for l in open(log) if "dropped" in l and "rows with prompts over" in l]
        if dropped:
            extra += " [" + "; ".join(dropped) + "]"
        if s["method"] == "dpo":
            last = [h for h in s["log_history"] if "loss" in h][-1]
            extra += " rewards/accuracies=%s rewards/margins=%.4g" % (
                last.get("rewards/accuracies"),
                last.get("rewards/margins", float("nan")),
            )
        print(
            "%-28s ok  steps=%d step_losses=%s train_loss=%.4f eval_loss=%s%s"
            % (
                name,
                s["global_step"],
                ["%.4f" % x for x in losses],
                s["metrics"]["train_loss"],
                "%.4f" % s["metrics"]["eval_loss"] if "eval_loss" in s["metrics"] else "-",
                extra,
            )
        )
    if not only:
        check_accelerate_configs(failed)
    if failed:
        sys.exit("failed: %s" % failed)


def check_accelerate_configs(failed):
    """Render the accelerate configs and load them with accelerate's own config reader."""
    values = {"num_processes": 8, "mixed_precision": "bf16"}
    code = (
        "import sys\n"
        "from accelerate.commands.config.config_args import load_config_from_file\n"
        "c = load_config_from_file(sys.argv[1])\n"
        "print(type(c).__name__, c.distributed_type, c.num_processes, c.mixed_precision, c.deepspeed_config or '')\n"
    )
    for tmpl in ACCELERATE:
        out = os.path.join(RUN, tmpl.replace(".tmpl", ""))
        with open(out, "w") as f:
            f.write(render(os.path.join(TEMPLATES, tmpl), values))
        r = subprocess.run([TRL_PY, "-c", code, out], capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(tmpl)
            print("%-28s FAILED %s" % (tmpl, r.stderr.strip().splitlines()[-1:]))
        else:
            print("%-28s ok  %s" % (tmpl, r.stdout.strip()))


if __name__ == "__main__":
    main()
