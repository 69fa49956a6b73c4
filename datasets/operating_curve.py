#!/usr/bin/env python3
"""Vigil's operating curve: recall against false-positive rate as one `--set` knob moves.

Runs `vigil replay CORPUS --json --set KEY=VALUE` once per value and prints a Markdown table per
knob: faults caught, false positives, recall, FPR and median time to detect, on the whole corpus
and on its two day-halves (the split the README reports: a setting chosen on one half is read on
the other). Standard library only.

    python3 datasets/operating_curve.py [--vigil target/release/vigil] [CORPUS]

CORPUS defaults to $VIGIL_INCIDENTS or ../shared/incidents (the development set).
"""

import argparse
import json
import os
import re
import subprocess
import sys

# The knobs a user turns, and the values tried (each default is among them).
KNOBS = {
    "fusion.pass_threshold": [50, 60, 70, 75, 80, 85, 90, 95],
    "metric.alpha": [0.0001, 0.001, 0.01, 0.05],
    "trace.alpha": [0.0001, 0.001, 0.01, 0.05],
    "callers.alpha": [0.0001, 0.001, 0.01, 0.05],
    "callers.transport_ceiling_ms": [50, 100, 200, 500, 1000, "inf"],
    "anomaly.false_alarm_rate": [0.01, 0.05, 0.1, 0.2],
    "trace.tail_ratio_fail": [1.5, 2, 3],
}

# Day halves: each holds one day of each system, so both halves have both systems.
HALF_A = ("20220822", "20230129")


def day_half(scenario_id):
    m = re.search(r"-(\d{8})-", scenario_id)
    if not m:
        return None
    return "A" if m.group(1) in HALF_A else "B"


def rates(rows):
    pos = [r for r in rows if r["expected"] == "fail" and r["verdict"] != "Error"]
    neg = [r for r in rows if r["expected"] == "pass" and r["verdict"] != "Error"]
    flagged = ("Fail", "Marginal")
    tp = sum(r["verdict"] in flagged for r in pos)
    fp = sum(r["verdict"] in flagged for r in neg)
    ttd = sorted(
        r["time_to_detect_s"]
        for r in pos
        if r["verdict"] in flagged and r["time_to_detect_s"] is not None
    )
    median = ttd[len(ttd) // 2] if ttd else None
    return tp, len(pos), fp, len(neg), median


def cell(tp, npos, fp, nneg):
    recall = tp / npos if npos else float("nan")
    fpr = fp / nneg if nneg else float("nan")
    return f"{tp}/{npos} = {recall:.2f} | {fp}/{nneg} = {fpr:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default=os.environ.get("VIGIL_INCIDENTS", "../shared/incidents"))
    ap.add_argument("--vigil", default="target/release/vigil")
    ap.add_argument("--knob", action="append", help="only these knobs (repeatable)")
    args = ap.parse_args()
    knobs = {k: v for k, v in KNOBS.items() if not args.knob or k in args.knob}
    for key, values in knobs.items():
        print(f"\n### `{key}`\n")
        print("| value | caught (all) | false positives (all) | TTD p50 | half A caught | half A FP | half B caught | half B FP |")
        print("|---|---|---|---|---|---|---|---|")
        for value in values:
            print(f"{key}={value} ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [args.vigil, "replay", args.corpus, "--json", "--set", f"{key}={value}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows = json.loads(out)["scenarios"]
            tp, npos, fp, nneg, median = rates(rows)
            halves = [
                cell(*rates([r for r in rows if day_half(r["id"]) == h])[:4]) for h in ("A", "B")
            ]
            ttd = f"{median:.0f} s" if median is not None else "-"
            print(f"| {value} | {cell(tp, npos, fp, nneg)} | {ttd} | {halves[0]} | {halves[1]} |")


if __name__ == "__main__":
    main()
