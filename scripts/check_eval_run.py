"""Check an eval run folder's results, not just its files: no failed requests, no unparseable answers where the mode
cannot have them, accuracy within a band recorded from a reference run, and every report file's key numbers in
agreement with the per-item CSV.

  check_eval_run.py RUN_DIR --mode gen|loglik [--band LOW HIGH] [--max-unparseable N]
  check_eval_run.py --report REPORT_DIR RUN_DIR...   # model_comparison.csv of `medforge report` against the runs

Exits 1 with every problem listed.
"""
import argparse
import csv
import json
import os
import sys

problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def close(a, b, tol=1e-6):
    return abs(float(a) - float(b)) <= tol


def results(run):
    summary = json.load(open(os.path.join(run, "summary.json")))
    name = next(f for f in os.listdir(run) if f.endswith("_results.csv"))
    rows = list(csv.DictReader(open(os.path.join(run, name), newline="")))
    return summary, rows


def check_run(run, mode, band, max_unparseable):
    summary, rows = results(run)
    n, correct = len(rows), sum(int(r["correct"]) for r in rows)
    errors = sum(r["outcome"] == "error" for r in rows)
    unparseable = sum(r["outcome"] == "unparseable" for r in rows)
    acc = correct / n if n else 0.0
    check(errors == 0, f"{run}: {errors} of {n} items failed (outcome=error): {[r['rule_or_reason'] for r in rows if r['outcome'] == 'error'][:3]}")
    check(unparseable <= max_unparseable, f"{run}: {unparseable} unparseable answers (at most {max_unparseable} allowed in {mode} mode)")
    if band:
        check(band[0] <= acc <= band[1], f"{run}: accuracy {acc:.3f} outside the reference band [{band[0]}, {band[1]}]")
    # summary.json against the CSV.
    check(summary["n"] == n, f"{run}: summary n {summary['n']} != {n} CSV rows")
    check(summary["correct"] == correct, f"{run}: summary correct {summary['correct']} != {correct}")
    check(summary["errors"] == errors and summary["unparseable"] == unparseable, f"{run}: summary error/unparseable counts differ from the CSV")
    check(close(summary["accuracy"]["accuracy"], acc), f"{run}: summary accuracy {summary['accuracy']['accuracy']} != {acc}")
    # specialty_performance.csv: per subject, from the CSV.
    by_subject = {}
    for r in rows:
        s = by_subject.setdefault(r["subject"], [0, 0])
        s[0] += 1
        s[1] += int(r["correct"])
    spec = list(csv.DictReader(open(os.path.join(run, "specialty_performance.csv"), newline="")))
    check({r["subject"] for r in spec} == set(by_subject), f"{run}: specialty_performance.csv subjects differ from the items'")
    for r in spec:
        want = by_subject.get(r["subject"], [0, 0])
        check([int(r["n"]), int(r["correct"])] == want, f"{run}: specialty {r['subject']}: n/correct {r['n']}/{r['correct']} != {want}")
        check(close(r["accuracy"], want[1] / max(want[0], 1)), f"{run}: specialty {r['subject']}: accuracy {r['accuracy']}")
    # model_comparison.csv (a single run: its own base).
    overall = [r for r in csv.DictReader(open(os.path.join(run, "model_comparison.csv"), newline="")) if r["scope"] == "overall"]
    check(len(overall) == 1 and int(overall[0]["n"]) == n and close(overall[0]["accuracy"], acc), f"{run}: model_comparison.csv overall row disagrees")
    # failed_questions_detail.json: every wrong item, once; failed_questions.json: the MedGemma Korean pipeline's top 10.
    fq = json.load(open(os.path.join(run, "failed_questions_detail.json")))
    wrong = {r["id"] for r in rows if r["correct"] == "0"}
    check(fq["failed"] == len(wrong) and {q["id"] for q in fq["questions"]} == wrong, f"{run}: failed_questions_detail.json lists {fq['failed']} items, the CSV has {len(wrong)} wrong")
    top = json.load(open(os.path.join(run, "failed_questions.json")))
    check(len(top) == min(10, len(wrong)) and all({str(q["question_id"]) for q in top} <= wrong for _ in [0]), f"{run}: failed_questions.json lists {len(top)} questions, want the top {min(10, len(wrong))} of {len(wrong)}")
    check(all(set(q) == {"question_id", "fail_count", "expected", "last_predicted", "question_preview", "last_failed_step"} for q in top), f"{run}: failed_questions.json is not in the MedGemma Korean pipeline's schema")
    # training_recommendations.json: the subjects below 0.5, lowest first.
    recs = json.load(open(os.path.join(run, "training_recommendations.json")))
    low = [s for s, (k, c) in by_subject.items() if c / k < 0.5]
    check({x["specialty"] for x in recs["low_performing_specialties"]} == set(low[:10]) or len(low) > 10, f"{run}: recommendations name {[x['specialty'] for x in recs['low_performing_specialties']]}, the CSV's subjects below 0.5 are {low}")
    check(recs["overall_performance"]["total_samples_evaluated"] == n, f"{run}: recommendations total_samples_evaluated != {n}")
    check(set(recs["low_performance_specialties"]) == set(low) and all(v == 0.8 for v in recs["recommended_sample_increases"].values()), f"{run}: the Meerkat keys name {recs['low_performance_specialties']}, the CSV's subjects below 0.5 are {low}")
    print(f"{run}: {mode}: {correct}/{n} correct ({acc:.3f}), {unparseable} unparseable, {errors} errors; report files agree with the CSV")


def check_report(report, runs):
    accs = []
    for run in runs:
        _, rows = results(run)
        accs.append({r["id"]: int(r["correct"]) for r in rows})
    base = accs[0]
    cmp_rows = [r for r in csv.DictReader(open(os.path.join(report, "model_comparison.csv"), newline="")) if r["scope"] == "overall"]
    check(len(cmp_rows) == len(runs), f"{report}: {len(cmp_rows)} overall rows for {len(runs)} runs")
    for r, items in zip(cmp_rows, accs):
        paired = [i for i in items if i in base]
        acc = sum(items.values()) / len(items)
        delta = sum(items[i] - base[i] for i in paired) / len(paired)
        check(close(r["accuracy"], acc), f"{report}: {r['model']}: accuracy {r['accuracy']} != {acc}")
        check(close(r["delta"] or 0, delta), f"{report}: {r['model']}: delta {r['delta']} != {delta}")
        check(float(r["delta_ci_low"] or 0) <= float(r["delta"] or 0) + 1e-9 <= float(r["delta_ci_high"] or 0) + 2e-9, f"{report}: {r['model']}: delta outside its CI")
    print(f"{report}: model_comparison.csv agrees with the runs' items ({len(runs)} runs)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--mode", choices=["gen", "loglik"])
    ap.add_argument("--band", nargs=2, type=float)
    ap.add_argument("--max-unparseable", type=int, default=None)
    ap.add_argument("--report")
    a = ap.parse_args()
    if a.report:
        check_report(a.report, a.runs)
    else:
        for run in a.runs:
            mu = a.max_unparseable if a.max_unparseable is not None else (0 if a.mode == "loglik" else 10**9)
            check_run(run, a.mode, a.band, mu)
    for p in problems:
        print("error:", p, file=sys.stderr)
    sys.exit(1 if problems else 0)
