#!/usr/bin/env python3
"""Reference values for models/src/counts.rs, from scipy (and statsmodels as a cross-check).

Run from the repository root with a Python that has scipy and statsmodels:
    python3 models/tests/reference/counts_refs.py
It writes models/tests/data/counts_refs.json. Values are stored with repr() precision (17 digits).
"""
import json
import math
import pathlib

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.rates import test_poisson_2indep

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "counts_refs.json"
ALTS = ["two-sided", "greater", "less"]


def num(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


binom_cases = [
    (0, 10, 0.5), (3, 10, 0.2), (5, 10, 0.5), (7, 10, 0.5), (1, 1, 0.3),
    (50, 100, 0.5), (60, 100, 0.5), (30, 100, 0.45), (17, 24, 0.3),
    (1000, 2000, 0.3), (600, 2000, 0.3), (650, 2000, 0.3),
    (5, 1_000_000, 1e-6), (0, 1_000_000, 1e-6), (12, 1_000_000, 1e-6),
    (200, 1000, 0.05), (0, 500, 0.5), (500, 500, 0.9), (3, 500, 0.9),
    (40, 60, 0.123), (1, 3000, 0.01), (123_456, 250_000, 0.5),
    (124_000, 250_000, 0.5), (9, 12, 0.75), (3, 4, 0.75),
]
binom = []
for k, n, p in binom_cases:
    row = {"k": k, "n": n, "p": p}
    for alt in ALTS:
        row[alt] = num(stats.binomtest(k, n, p, alternative=alt).pvalue)
    binom.append(row)

ci_cases = [(0, 10, 0.95), (3, 10, 0.95), (10, 10, 0.95), (1, 1000, 0.99),
            (500, 1000, 0.9), (999, 1000, 0.95), (7, 7, 0.8), (2, 50_000, 0.95),
            (45, 90, 0.999)]
ci = []
for k, n, conf in ci_cases:
    r = stats.binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
    ci.append({"k": k, "n": n, "confidence": conf, "low": num(r.low), "high": num(r.high)})

# Two-sample rate test: canary count given the total is Binomial(total, e_c/(e_c+e_b)); the rate
# ratio interval is Clopper-Pearson on that proportion mapped back (as R's poisson.test does).
rate_cases = [
    (14, 56.0, 7, 52.0), (38, 448.0, 16, 552.0), (5, 28.0, 0, 12.0), (0, 300.0, 12, 206.0),
    (7, 250.0, 0, 508.0), (3, 1000.0, 3, 1000.0), (120, 5000.0, 40, 5200.0),
    (1, 10.0, 50, 10.0), (400, 1e6, 20, 2e6), (2, 333.0, 1, 206.0), (60, 120.5, 44, 60.25),
]
rate = []
for kc, ec, kb, eb in rate_cases:
    n = kc + kb
    p = ec / (ec + eb)
    row = {"canary_count": kc, "canary_exposure": ec, "baseline_count": kb, "baseline_exposure": eb}
    for alt in ALTS:
        row["p_" + alt] = num(stats.binomtest(kc, n, p, alternative=alt).pvalue)
        # Independent implementation of the same conditional test.
        sm = test_poisson_2indep(kc, ec, kb, eb, method="exact-cond",
                                 alternative={"two-sided": "two-sided", "greater": "larger",
                                              "less": "smaller"}[alt]).pvalue
        if alt != "two-sided":  # statsmodels' two-sided exact-cond uses a different definition
            assert abs(sm - row["p_" + alt]) <= 1e-9 * max(sm, 1e-300), (kc, ec, kb, eb, alt, sm)
    r = stats.binomtest(kc, n).proportion_ci(confidence_level=0.95, method="exact")
    to_ratio = lambda pi: math.inf if pi >= 1.0 else pi / (1.0 - pi) * eb / ec
    row["ci_low"] = num(to_ratio(r.low))
    row["ci_high"] = num(to_ratio(r.high))
    row["rate_ratio"] = num(math.inf if kb == 0 else (kc / ec) / (kb / eb))
    rate.append(row)

fisher_cases = [
    [[8, 2], [1, 5]], [[1, 9], [11, 3]], [[0, 5], [5, 0]], [[3, 3], [3, 3]],
    [[10, 1000], [2, 1200]], [[0, 1000], [0, 900]], [[5, 0], [0, 0]], [[2, 7], [8, 2]],
    [[100, 900], [50, 950]], [[30, 20000], [2, 19000]], [[1, 1], [1, 20]],
    [[7, 12], [0, 15]], [[40, 35], [38, 41]], [[0, 300], [9, 250]],
]
fisher = []
for t in fisher_cases:
    row = {"table": t}
    for alt in ALTS:
        res = stats.fisher_exact(t, alternative=alt)
        row[alt] = num(res.pvalue)
        row["odds_ratio"] = num(res.statistic)
    fisher.append(row)

bh_cases = [
    [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
     0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000],
    [0.5, 0.6, 0.1, 0.001],
    [0.04, 0.04, 0.04, 0.2, 1e-30, 0.9],
    [0.3],
    [],
    [0.0, 1.0, 0.5, 0.5],
    list(np.random.default_rng(7).uniform(size=40) ** 3),
]
bh = [{"p": [float(x) for x in ps],
       "q": [float(x) for x in stats.false_discovery_control(ps)] if len(ps) else []}
      for ps in bh_cases]

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({
    "generator": "models/tests/reference/counts_refs.py",
    "scipy": scipy.__version__,
    "statsmodels": statsmodels.__version__,
    "binomtest": binom,
    "proportion_ci_exact": ci,
    "rate_test": rate,
    "fisher_exact": fisher,
    "false_discovery_control": bh,
}, indent=1) + "\n")
print(f"wrote {OUT}")
