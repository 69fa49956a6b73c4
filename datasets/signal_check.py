#!/usr/bin/env python3
"""How much a missed fault moved, next to what fault-free pairs move: a judge-independent check.

For every scenario of a corpus this computes two crude change measures straight from the files,
without any of Vigil's code:

* span shift: the largest |log2| ratio, canary over baseline, of an operation's median or p90
  duration (operations with at least 10 spans on each side);
* metric excursion: the largest share of canary samples outside the baseline's [min, max] range
  over the pod's own metrics (`Node*` columns left out, at least 3 baseline samples).

It then lists the faults a `vigil replay --json` run did not flag, each with the share of
fault-free pairs that move at least as much on that measure. A fault whose strongest measure is
matched by, say, 15 % of the fault-free pairs cannot be caught by a rule on that measure without
flagging about that share of healthy releases.

    vigil replay ../shared/incidents --json --quiet > /tmp/dev.json
    python3 datasets/signal_check.py ../shared/incidents /tmp/dev.json

Standard library only.
"""

import csv
import json
import math
import os
import statistics
import sys


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def read_csv(path):
    if not os.path.isfile(path):
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def span_shift(folder):
    sides = [read_csv(os.path.join(folder, s, "spans.csv")) for s in ("baseline", "canary")]
    if any(s is None for s in sides):
        return 0.0
    ops = []
    for rows in sides:
        by_op = {}
        for r in rows:
            d = number(r["duration_ms"])
            if d is not None and d > 0:
                by_op.setdefault(r["operation"], []).append(d)
        ops.append(by_op)
    best = 0.0
    for op in set(ops[0]) & set(ops[1]):
        b, c = ops[0][op], ops[1][op]
        if len(b) < 10 or len(c) < 10:
            continue
        for q in (0.5, 0.9):
            best = max(best, abs(math.log2(quantile(c, q) / quantile(b, q))))
    return best


def metric_excursion(folder):
    b = read_csv(os.path.join(folder, "baseline", "metrics.csv"))
    c = read_csv(os.path.join(folder, "canary", "metrics.csv"))
    if not b or not c:
        return 0.0
    best = 0.0
    for col in b[0]:
        if col == "timestamp" or col.startswith("Node"):
            continue
        bv = [x for x in (number(r.get(col)) for r in b) if x is not None]
        cv = [x for x in (number(r.get(col)) for r in c) if x is not None]
        if len(bv) < 3 or not cv:
            continue
        out = sum(1 for x in cv if x > max(bv) or x < min(bv)) / len(cv)
        best = max(best, out)
    return best


def main():
    corpus, replay_json = sys.argv[1], sys.argv[2]
    with open(replay_json) as f:
        verdicts = {s["id"]: s["verdict"] for s in json.load(f)["scenarios"]}
    rows = []
    for name in sorted(os.listdir(corpus)):
        folder = os.path.join(corpus, name)
        spec = os.path.join(folder, "scenario.json")
        if not os.path.isfile(spec):
            continue
        with open(spec) as f:
            s = json.load(f)
        rows.append((s["id"], s["expected"], s.get("fault_type"), span_shift(folder),
                     metric_excursion(folder)))
    clean = [r for r in rows if r[1] == "pass"]

    def at_least(i, v):
        return sum(1 for r in clean if r[i] >= v)

    print(f"{len(clean)} fault-free pairs; span shift p50/p90 "
          f"{statistics.median(r[3] for r in clean):.2f}/{quantile([r[3] for r in clean], 0.9):.2f}")
    print(f"{'missed fault (clean>=: fault-free pairs moving as much)':<55} {'span':>5} "
          f"{'clean>=':>7} {'metric':>6} {'clean>=':>7}")
    for r in rows:
        if r[1] != "fail" or verdicts.get(r[0]) in ("Fail", "Marginal"):
            continue
        print(f"{r[0][:55]:<55} {r[3]:5.2f} {at_least(3, r[3]):7} "
              f"{r[4]:6.2f} {at_least(4, r[4]):7}  {verdicts.get(r[0])}")


if __name__ == "__main__":
    main()
