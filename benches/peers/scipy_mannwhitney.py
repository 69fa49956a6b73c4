#!/usr/bin/env python3
"""Time scipy.stats.mannwhitneyu on the data the Rust bench wrote (benches/benches/rank.rs).

Usage: scipy_mannwhitney.py DIR CASE [CASE ...]
Each CASE names two files DIR/CASE_x.f64 and DIR/CASE_y.f64 (little-endian float64) and is run
with scipy's defaults (two-sided, method="auto", continuity on), like the Rust side. Prints one
JSON object per case: median seconds per call over 7 repeats, scipy's result (so the bench can
check both sides computed the same thing), and for exact cases the time of the first ("cold")
call, because scipy memoizes the exact distribution per pair of sizes and later calls reuse it.
"""
import json
import sys
import time
import timeit

import numpy as np
import scipy
from scipy.stats import mannwhitneyu


def main():
    root, cases = sys.argv[1], sys.argv[2:]
    for case in cases:
        x = np.fromfile(f"{root}/{case}_x.f64", dtype="<f8")
        y = np.fromfile(f"{root}/{case}_y.f64", dtype="<f8")
        cold = None
        if case.startswith("exact"):
            # Reset scipy's per-thread table to another shape, then time one uncached call.
            mannwhitneyu([1.0, 2.0], [3.0, 4.0, 5.0], method="exact")
            start = time.perf_counter()
            mannwhitneyu(x, y)
            cold = time.perf_counter() - start
        res = mannwhitneyu(x, y)
        timer = timeit.Timer(lambda: mannwhitneyu(x, y))
        number, _ = timer.autorange()  # calls per repeat so one repeat takes >= 0.2 s
        times = sorted(t / number for t in timer.repeat(repeat=7, number=number))
        print(json.dumps({
            "case": case,
            "median_s": times[len(times) // 2],
            "min_s": times[0],
            "cold_s": cold,
            "statistic": float(res.statistic),
            "pvalue": float(res.pvalue),
            "scipy": scipy.__version__,
            "numpy": np.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
