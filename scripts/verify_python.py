#!/usr/bin/env python3
"""Check medforge's outputs with the Python tools a user would open them with.

Verifier only: medforge never needs Python. Usage: verify_python.py MEDFORGE_BINARY WORKDIR
1. Convert fixtures to JSONL, Parquet and an HF folder; `datasets.load_from_disk` must give the same rows and
   fields as the JSONL, and pyarrow's Parquet read must equal the JSONL.
2. A folder written by `datasets.save_to_disk` must read back through medforge.
"""
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq

CANONICAL = ["id", "source", "kind", "question", "context", "options", "answer_letter", "answer", "reasoning",
             "response", "chosen", "rejected", "specialty", "specialties", "division", "divisions", "language",
             "metadata", "annotations"]


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def jsonl_rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def columnar_to_jsonl_shape(row):
    # Columnar outputs keep `metadata` as a JSON object string; JSONL keeps it as an object.
    row = dict(row)
    row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
    return row


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}{(': ' + detail) if detail else ''}")
    if not cond:
        sys.exit(1)


def main():
    medforge, work = Path(sys.argv[1]), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    cases = [
        ("medqa", root / "fixtures/medqa/dev_4opt.jsonl"),
        ("kormedmcqa", root / "fixtures/kormedmcqa/doctor"),
        ("pubmedqa", root / "fixtures/pubmedqa/ori_pqal.json"),
        ("medquad", root / "fixtures/medquad"),
        ("huatuogpt-o1", root / "fixtures/huatuogpt_o1/demo_data.json"),
    ]
    checked = 0
    for preset, src in cases:
        out = work / preset
        run(medforge, "convert", src, f"{out}.jsonl", "--preset", preset)
        run(medforge, "convert", src, f"{out}.parquet", "--preset", preset)
        run(medforge, "convert", src, f"{out}_hf", "--preset", preset, "--format", "hf")
        expected = jsonl_rows(f"{out}.jsonl")

        ds = datasets.load_from_disk(str(out) + "_hf")
        check(f"{preset}: load_from_disk row count", ds.num_rows == len(expected), f"{ds.num_rows} vs {len(expected)}")
        check(f"{preset}: load_from_disk columns", list(ds.column_names) == CANONICAL, str(ds.column_names))
        check(f"{preset}: options feature is a list of {{letter, text}}",
              "letter" in str(ds.features["options"]) and "text" in str(ds.features["options"]), str(ds.features["options"]))
        got = [columnar_to_jsonl_shape(r) for r in ds.to_list()]
        check(f"{preset}: load_from_disk rows equal the JSONL rows", got == expected)

        table = pq.read_table(f"{out}.parquet")
        check(f"{preset}: parquet columns", table.column_names == CANONICAL)
        got = [columnar_to_jsonl_shape(r) for r in table.to_pylist()]
        check(f"{preset}: pyarrow parquet rows equal the JSONL rows", got == expected)
        checked += 1

    # The other direction: a folder saved by `datasets` reads back through medforge.
    py = datasets.Dataset.from_list([
        {"question": "Which vitamin deficiency causes scurvy?", "options": {"A": "Vitamin A", "B": "Vitamin C"},
         "answer_idx": "B", "answer": "Vitamin C", "meta_info": "step1"},
        {"question": "Which organ secretes insulin?", "options": {"A": "Liver", "B": "Pancreas"},
         "answer_idx": "B", "answer": "Pancreas", "meta_info": "step1"},
    ])
    py.save_to_disk(str(work / "py_saved"))
    run(medforge, "convert", work / "py_saved", work / "py_saved.jsonl", "--preset", "medqa")
    back = jsonl_rows(work / "py_saved.jsonl")
    check("datasets.save_to_disk folder reads through medforge", [r["answer_letter"] for r in back] == ["B", "B"]
          and back[1]["options"] == [{"letter": "A", "text": "Liver"}, {"letter": "B", "text": "Pancreas"}])
    print(f"python verification: {checked + 1} passed, 0 failed")


if __name__ == "__main__":
    main()
