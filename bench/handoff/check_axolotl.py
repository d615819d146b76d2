#!/usr/bin/env python3
"""Render the axolotl YAML templates and validate them with axolotl itself.

Run with bench/.venv-axolotl/bin/python. For each rendered YAML:
 1. yaml.safe_load;
 2. every top-level key must be a field (or alias) of AxolotlInputConfig, every dataset key a field of
    SFTDataset / DPODataset: axolotl's pydantic models ignore unknown keys, so a typo would pass silently;
 3. axolotl.cli.config.load_cfg (validate_config + normalize_config, what `axolotl train` runs first);
 4. a few resolved values are printed to show the keys took effect.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from render import render  # noqa: E402

# The templates medforge compiles in (include_str!), checked here with the reference renderer.
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "crates", "medforge-train", "handoff")

os.environ.setdefault("AXOLOTL_LOG_LEVEL", "ERROR")
os.environ.setdefault("LOG_LEVEL", "ERROR")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

OUT = "/tmp/handoff-run"
CASES = [
    ("axolotl_sft_lora", "axolotl_sft.yml.tmpl", "values_sft.json"),
    ("axolotl_sft_full_noeval", "axolotl_sft.yml.tmpl", "values_sft_full.json", {"eval_file": None}),
    ("axolotl_sft_jinja", "axolotl_sft.yml.tmpl", "values_sft_template.json"),
    ("axolotl_dpo_lora", "axolotl_dpo.yml.tmpl", "values_dpo.json"),
    ("axolotl_dpo_full", "axolotl_dpo.yml.tmpl", "values_dpo_full_pre.json"),
    ("axolotl_sft_cpu", "axolotl_sft.yml.tmpl", "values_axolotl_sft_cpu.json"),
    ("axolotl_dpo_cpu", "axolotl_dpo.yml.tmpl", "values_axolotl_dpo_cpu.json"),
]
SHOW = ["rl", "rl_beta", "dpo_label_smoothing", "dpo_loss_type", "sequence_len", "sample_packing", "adapter",
        "lora_r", "lora_alpha", "lora_target_modules", "peft_use_rslora", "micro_batch_size",
        "gradient_accumulation_steps", "num_epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_steps",
        "train_on_inputs", "val_set_size", "bf16", "seed", "eval_steps", "save_steps"]


def unknown_keys(raw, top, DPODataset, SFTDataset):
    ds_fields = set((DPODataset if raw.get("rl") else SFTDataset).model_fields)
    unknown = sorted(k for k in raw if k not in top)
    for key in ("datasets", "test_datasets"):
        for ds in raw.get(key) or []:
            unknown += ["%s.%s" % (key, k) for k in ds if k not in ds_fields]
    return unknown


def load_values(name):
    """A value map; its data paths were written for a checkout at /work/main and follow this one."""
    values = json.load(open(os.path.join(HERE, "verify", name)))
    return {k: v.replace("/work/main/bench/handoff", HERE) if isinstance(v, str) else v for k, v in values.items()}


def main():
    import yaml
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import DPODataset, SFTDataset
    from axolotl.cli.config import load_cfg

    top = set(AxolotlInputConfig.model_fields) | {f.alias for f in AxolotlInputConfig.model_fields.values() if f.alias}
    os.makedirs(OUT, exist_ok=True)
    bad = 0
    # Rendered test cases, then any YAML named on the command line (what `medforge train export` wrote).
    jobs = [(c[0], c) for c in CASES] + [(os.path.basename(p), p) for p in sys.argv[1:]]
    for name, case in jobs:
        if isinstance(case, str):
            path = case
        else:
            tmpl, values_file = case[1:3]
            values = load_values(values_file)
            values.update(case[3] if len(case) > 3 else {})
            path = os.path.join(OUT, name + ".yml")
            with open(path, "w") as f:
                f.write(render(os.path.join(TEMPLATES, tmpl), values))
        raw = yaml.safe_load(open(path))
        unknown = unknown_keys(raw, top, DPODataset, SFTDataset)
        if unknown:
            bad += 1
            print("%-26s UNKNOWN KEYS %s" % (name, unknown))
            continue
        try:
            cfg = load_cfg(path)
        except Exception as e:  # noqa: BLE001
            bad += 1
            print("%-26s load_cfg FAILED: %s: %s" % (name, type(e).__name__, str(e)[:600]))
            continue
        shown = {k: cfg.get(k) for k in SHOW if cfg.get(k) is not None}
        shown["datasets[0].type"] = cfg["datasets"][0]["type"]
        shown["test_datasets"] = len(cfg.get("test_datasets") or [])
        print("%-26s ok  %d keys, all known; load_cfg ok; %s" % (name, len(raw), json.dumps(shown, default=str)))
    # Self-test of the key check: misspelt keys must be reported (axolotl itself would drop them silently).
    raw = yaml.safe_load(open(os.path.join(OUT, "axolotl_sft_lora.yml")))
    raw["lora_rank"] = 8
    raw["datasets"][0]["field_message"] = "messages"
    caught = unknown_keys(raw, top, DPODataset, SFTDataset)
    validated = AxolotlInputConfig.model_fields.get("lora_rank") is None
    print("key-check self-test: misspelt keys reported %s (schema has no such fields: %s)" % (caught, validated))
    if caught != ["lora_rank", "datasets.field_message"]:
        bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
