#!/usr/bin/env python3
"""The MedQA -> canonical Parquet job done the way a Python user would: pandas + pyarrow.

Usage: convert_pandas.py IN.jsonl OUT.parquet

Produces the same columns, types and values as `medforge convert IN OUT --preset medqa`
(id, source, kind, question, options as list<struct<letter,text>>, answer_letter, answer,
language, metadata as a compact JSON string of meta_info + metamap_phrases; every other
canonical column null or an empty list), Snappy-compressed. Column-wise pandas operations are
used where they are the natural choice, so the comparison is with idiomatic code, not a
deliberately slow row loop.
"""

import json
import os
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

OPTION = pa.struct([pa.field("letter", pa.string(), False), pa.field("text", pa.string(), False)])
SCORE = pa.struct([pa.field("name", pa.string(), False), pa.field("value", pa.float64(), False)])
ANNOTATION = pa.struct(
    [
        pa.field("stage", pa.string(), False),
        pa.field("verdict", pa.string(), False),
        pa.field("reason", pa.string()),
        pa.field("scores", pa.list_(SCORE), False),
    ]
)
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), False),
        pa.field("source", pa.string(), False),
        pa.field("kind", pa.string(), False),
        pa.field("question", pa.string(), False),
        pa.field("context", pa.string()),
        pa.field("options", pa.list_(OPTION), False),
        pa.field("answer_letter", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("response", pa.string()),
        pa.field("chosen", pa.string()),
        pa.field("rejected", pa.string()),
        pa.field("specialty", pa.string()),
        pa.field("specialties", pa.list_(pa.string()), False),
        pa.field("division", pa.string()),
        pa.field("divisions", pa.list_(pa.string()), False),
        pa.field("language", pa.string()),
        pa.field("metadata", pa.string(), False),
        pa.field("annotations", pa.list_(ANNOTATION), False),
    ],
    metadata={"medforge.schema_version": "1"},
)


def convert(src: str, dst: str) -> int:
    df = pd.read_json(src, lines=True, dtype=False)
    n = len(df)
    stem = os.path.splitext(os.path.basename(src))[0]
    empty = [[] for _ in range(n)]
    nulls = pa.nulls(n, pa.string())

    ids = [f"medqa-{stem}-{i}" for i in range(n)]
    options = [[{"letter": k.strip().upper(), "text": v} for k, v in o.items()] for o in df["options"]]
    answer_letter = df["answer_idx"].str.strip().str.upper()
    metadata = [
        json.dumps({"meta_info": m, "metamap_phrases": p}, ensure_ascii=False, separators=(",", ":"))
        for m, p in zip(df["meta_info"], df["metamap_phrases"])
    ]

    columns = {
        "id": pa.array(ids, pa.string()),
        "source": pa.array(["medqa"] * n, pa.string()),
        "kind": pa.array(["mcq"] * n, pa.string()),
        "question": pa.array(df["question"], pa.string()),
        "context": nulls,
        "options": pa.array(options, pa.list_(OPTION)),
        "answer_letter": pa.array(answer_letter, pa.string()),
        "answer": pa.array(df["answer"], pa.string()),
        "reasoning": nulls,
        "response": nulls,
        "chosen": nulls,
        "rejected": nulls,
        "specialty": nulls,
        "specialties": pa.array(empty, pa.list_(pa.string())),
        "division": nulls,
        "divisions": pa.array(empty, pa.list_(pa.string())),
        "language": pa.array(["en"] * n, pa.string()),
        "metadata": pa.array(metadata, pa.string()),
        "annotations": pa.array(empty, pa.list_(ANNOTATION)),
    }
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    pq.write_table(table, dst, compression="snappy")
    return n


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = convert(sys.argv[1], sys.argv[2])
    print(f"wrote {rows} records to {sys.argv[2]}", file=sys.stderr)
