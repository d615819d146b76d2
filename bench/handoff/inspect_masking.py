#!/usr/bin/env python3
"""Show which tokens TRL's SFTTrainer trains on (labels != -100) for each data shape / loss-mask option.

Run with bench/.venv-trl/bin/python after verify_handoff.py has rendered /tmp/handoff-run/*.py.
Prints the first training example with the masked part in [brackets] (not trained) and the rest plain (trained).
"""
import importlib.util
import sys

RUN = "/tmp/handoff-run"
CASES = [
    ("messages, defaults (completion_only_loss=None, assistant_only_loss=False)", "sft_lora_messages", {}),
    ("prompt/completion as chat, defaults (completion_only_loss=None -> True)", "sft_lora_prompt_completion", {}),
    ("prompt/completion as chat, completion_only_loss=False", "sft_lora_prompt_completion", {"completion_only_loss": False}),
    ("prompt/completion raw strings, defaults", "sft_lora_prompt_completion", {"PROMPT_FORMAT": "raw"}),
    ("messages, assistant_only_loss=True (ChatML training template)", "sft_lora_assistant_only", {}),
]


def load(name):
    spec = importlib.util.spec_from_file_location(name, "%s/%s.py" % (RUN, name))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def show(tok, ids, labels):
    out, masked = [], None
    for i, l in zip(ids, labels):
        m = l == -100
        if m != masked:
            out.append("[" if m else ("]" if masked else ""))
            masked = m
        out.append(tok.decode([i]))
    if masked:
        out.append("]")
    return "".join(out)


def main():
    from datasets import load_dataset  # noqa: F401
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    for title, name, over in CASES:
        m = load(name)
        for k, v in over.items():
            if k.isupper():
                setattr(m, k, v)
        tok = AutoTokenizer.from_pretrained(m.MODEL_PATH)
        tok.pad_token = tok.pad_token or tok.eos_token
        if m.ASSISTANT_ONLY_LOSS:
            tok.chat_template = m.CHATML_TRAINING_TEMPLATE
        ds = m.to_trl_format(m.load_split(m.TRAIN_FILE))
        cfg = SFTConfig(
            output_dir="/tmp/handoff-out/inspect",
            use_cpu=True,
            bf16=False,
            report_to="none",
            max_length=256,
            completion_only_loss=over.get("completion_only_loss", m.COMPLETION_ONLY_LOSS),
            assistant_only_loss=m.ASSISTANT_ONLY_LOSS,
        )
        tr = SFTTrainer(model=m.MODEL_PATH, args=cfg, train_dataset=ds, processing_class=tok)
        ex = tr.train_dataset[0]
        print("== " + title)
        print("   columns after prep: %s" % tr.train_dataset.column_names)
        print("   " + repr(show(tok, ex["input_ids"], ex["labels"])))


if __name__ == "__main__":
    sys.exit(main())
