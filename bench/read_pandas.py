#!/usr/bin/env python3
"""Plain Python read of one shared dataset, the baseline for `medforge inspect --json`.

Usage: read_pandas.py KIND PATH
Prints `ROWS SECONDS`, where SECONDS is the read alone (after the interpreter and pandas have
started; the bench script also times the whole process).

KIND: jsonl, json_dict (an object keyed by id), json_list, csv, csv_noheader, tsv, medquad_xml.
A folder PATH is read file by file (sorted, recursively) and concatenated, as a user would.
"""

import glob
import json
import os
import sys
import time
import xml.etree.ElementTree as ET

import pandas as pd

EXT = {"jsonl": "jsonl", "csv": "csv", "csv_noheader": "csv", "tsv": "csv", "medquad_xml": "xml"}


def files(path, ext):
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", f"*.{ext}"), recursive=True))
    return [path]


def read_one(kind, f):
    if kind == "jsonl":
        return len(pd.read_json(f, lines=True, dtype=False))
    if kind == "json_dict":
        with open(f, encoding="utf-8") as fh:
            return len(pd.DataFrame.from_dict(json.load(fh), orient="index"))
    if kind == "json_list":
        with open(f, encoding="utf-8") as fh:
            return len(pd.DataFrame(json.load(fh)))
    if kind == "csv":
        return len(pd.read_csv(f))
    if kind == "csv_noheader":
        return len(pd.read_csv(f, header=None))
    if kind == "tsv":
        return len(pd.read_csv(f, sep="\t"))
    if kind == "medquad_xml":
        # One QA pair per <QAPair> (four NINDS files use <qaPairs><pair>), read with the standard library.
        return sum(1 for e in ET.parse(f).getroot().iter() if e.tag in ("QAPair", "pair"))
    raise SystemExit(f"unknown kind {kind}")


def main():
    kind, path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    rows = sum(read_one(kind, f) for f in files(path, EXT.get(kind, "json")))
    print(rows, f"{time.perf_counter() - t0:.4f}")


if __name__ == "__main__":
    main()
