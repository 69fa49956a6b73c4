#!/usr/bin/env python3
"""Time scipy.stats.mannwhitneyu on the data the Rust bench wrote (benches/benches/rank.rs).

Usage: scipy_mannwhitney.py DIR N [N ...]
Reads DIR/x_N.f64 and DIR/y_N.f64 (little-endian float64, as written by the bench) and prints one
JSON object per size: the median seconds per call over several repeats, and scipy's result, so the
bench can check that both sides computed the same thing.
"""
import json
import sys
import timeit

import numpy as np
import scipy
from scipy.stats import mannwhitneyu


def main():
    root, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
    for n in sizes:
        x = np.fromfile(f"{root}/x_{n}.f64", dtype="<f8")
        y = np.fromfile(f"{root}/y_{n}.f64", dtype="<f8")
        res = mannwhitneyu(x, y)  # scipy's defaults: two-sided, auto (asymptotic here), continuity
        timer = timeit.Timer(lambda: mannwhitneyu(x, y))
        number, _ = timer.autorange()  # calls per repeat so one repeat takes >= 0.2 s
        times = sorted(t / number for t in timer.repeat(repeat=7, number=number))
        print(json.dumps({
            "n": n,
            "median_s": times[len(times) // 2],
            "min_s": times[0],
            "statistic": float(res.statistic),
            "pvalue": float(res.pvalue),
            "scipy": scipy.__version__,
            "numpy": np.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
