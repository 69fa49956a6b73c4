#!/usr/bin/env python3
"""Regenerate models/tests/data/rank_refs.json: reference values for vigil_models::rank.

Pinned: scipy==1.17.1 (numpy 2.4.x). Checked at run time, because scipy has changed
mannwhitneyu's `auto` rule and its exact algorithm between releases.

    # from the repository root; any scratch folder will do for the venv
    python3 -m venv .venv-refs && .venv-refs/bin/pip install scipy==1.17.1
    .venv-refs/bin/python models/tests/reference/rank_refs.py

Every p-value comes from scipy.stats.mannwhitneyu, except where scipy cannot give a trustworthy
exact p-value (forced `method="exact"` on samples so large that scipy's O(U^2) recurrence is
either too slow or loses precision in floating point). There the reference is the exact rational
tail probability computed with Python integers ("source": "exact-rational"). For every exact case
that scipy does compute, the script also computes the rational value and asserts that scipy agrees
to 1e-12, so the JSON never records a scipy value that is itself wrong.
"""
import functools
import json
import math
import os
from fractions import Fraction

import numpy as np
import scipy
from scipy.stats import mannwhitneyu

PINNED_SCIPY = "1.17.1"
if scipy.__version__ != PINNED_SCIPY:
    raise SystemExit(f"expected scipy {PINNED_SCIPY}, found {scipy.__version__}")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "rank_refs.json")
ALTERNATIVES = ["two-sided", "less", "greater"]
METHODS = ["auto", "exact", "asymptotic"]


@functools.lru_cache(maxsize=None)
def u_counts(m, n, last):
    """Frequencies of U = 0..last for sizes m, n without ties, as exact integers: the
    coefficients of the Gaussian binomial C(m+n, m)_q = prod_k (1 - q^(n+k)) / (1 - q^k).
    numpy object arrays hold Python integers, so this is exact, just faster than a Python loop."""
    m, n = min(m, n), max(m, n)
    c = np.zeros(last + 1, dtype=object)
    c[:] = 0
    c[0] = 1
    for k in range(1, m + 1):
        for r in range(k):  # divide by (1 - q^k): running sums along each residue class mod k
            c[r::k] = np.cumsum(c[r::k])
        d = n + k
        if d <= last:  # multiply by (1 - q^d)
            c[d:] = c[d:] - c[:last + 1 - d]
    return tuple(int(v) for v in c)


def exact_rational_p(n1, n2, u1, alternative):
    """scipy's exact p-value, computed exactly: P(U >= trunc(U*)) times 1 or 2, clipped to 1."""
    mn = n1 * n2
    u2 = mn - u1
    u, f = {"greater": (u1, 1), "less": (u2, 1), "two-sided": (max(u1, u2), 2)}[alternative]
    k = int(u)
    total = math.comb(n1 + n2, n1)
    kc = mn - k
    if kc <= k:
        tail = Fraction(sum(u_counts(n1, n2, kc)), total)  # P(U <= mn-k) = P(U >= k)
    else:
        tail = 1 - Fraction(sum(u_counts(n1, n2, k - 1)), total) if k > 0 else Fraction(1)
    return float(min(Fraction(1), f * tail))


def rel_err(a, b):
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def dataset(name, x, y, scipy_exact=True, combos=None):
    x = [float(v) for v in x]
    y = [float(v) for v in y]
    results = []
    for alternative in ALTERNATIVES:
        for method in METHODS:
            for use_continuity in [True, False]:
                if combos is not None and (alternative, method, use_continuity) not in combos:
                    continue
                if method == "exact" and not scipy_exact:
                    stat = float(mannwhitneyu(x, y, method="asymptotic").statistic)
                    p = exact_rational_p(len(x), len(y), stat, alternative)
                    source = "exact-rational"
                else:
                    res = mannwhitneyu(x, y, use_continuity=use_continuity,
                                       alternative=alternative, method=method)
                    stat, p = float(res.statistic), float(res.pvalue)
                    source = "scipy"
                    if method == "exact":
                        q = exact_rational_p(len(x), len(y), stat, alternative)
                        assert rel_err(p, q) < 1e-12, (name, alternative, p, q)
                results.append({
                    "alternative": alternative,
                    "method": method,
                    "use_continuity": use_continuity,
                    "statistic": stat,
                    # JSON has no NaN: scipy's NaN (all values tied, no continuity) becomes null.
                    "pvalue": None if math.isnan(p) else p,
                    "source": source,
                })
    return {"name": name, "x": encode(x), "y": encode(y), "results": results}


def encode(values):
    """JSON has no infinities: write them as the strings "inf" / "-inf"."""
    return [v if math.isfinite(v) else ("inf" if v > 0 else "-inf") for v in values]


def main():
    rng = np.random.default_rng(20261126)
    sets = []
    # scipy's own docstring example (Shier 2004).
    sets.append(dataset("docstring males vs females", [19, 22, 16, 29, 24], [20, 11, 17, 12]))
    sets.append(dataset("n=1 vs n=1", [1.0], [2.0]))
    sets.append(dataset("n=1 vs n=1 tied", [3.0], [3.0]))
    sets.append(dataset("n=1 vs 7", [0.5], rng.normal(size=7).round(6)))
    sets.append(dataset("n=1 vs 500", [2.1], rng.normal(size=500).round(6)))
    sets.append(dataset("500 vs n=1", rng.normal(size=500).round(6), [-0.3]))
    sets.append(dataset("3 vs 1000", rng.normal(1.0, size=3).round(6), rng.normal(size=1000).round(6)))
    sets.append(dataset("8 vs 9 no ties", rng.normal(size=8).round(6), rng.normal(0.7, size=9).round(6)))
    sets.append(dataset("9 vs 9 no ties", rng.normal(size=9).round(6), rng.normal(0.7, size=9).round(6)))
    sets.append(dataset("6 vs 6 with ties", [1, 2, 2, 3, 5, 5], [2, 3, 4, 4, 6, 7]))
    sets.append(dataset("4 vs 5 half-integer U", [1.5, 2.5, 2, 7], [1, 2, 3, 4, 8]))
    sets.append(dataset("all equal 5 vs 4", [4.0] * 5, [4.0] * 4))
    sets.append(dataset("all equal 30 vs 40", [0.0] * 30, [0.0] * 40))
    sets.append(dataset("negative zero ties zero", [-0.0, 1.0, 2.0], [0.0, 3.0, -1.0]))
    sets.append(dataset("infinities", [-math.inf, 1.0, 2.0, math.inf], [0.0, 3.0, math.inf]))
    sets.append(dataset("heavy ties 40 vs 50", rng.integers(0, 4, size=40), rng.integers(0, 5, size=50)))
    sets.append(dataset("error counts mostly zero", [0] * 55 + [1, 1, 2, 5], [0] * 50 + [1, 3, 3, 4, 7, 9]))
    sets.append(dataset("20 vs 25 continuous", rng.normal(size=20).round(6), rng.normal(0.3, size=25).round(6)))
    sets.append(dataset("50 vs 50 continuous", rng.normal(size=50).round(6), rng.normal(0.5, size=50).round(6)))
    # Exact tails below 1e-20: 8 values against 2000, almost completely separated.
    y = np.sort(rng.normal(size=2000)).round(9)
    x = np.concatenate([y[[1500, 1800]] + 1e-4, y[-1] + 1 + np.arange(6)])
    sets.append(dataset("exact tail 8 vs 2000", x, y))
    sets.append(dataset("exact fully separated 8 vs 3000", 10 + np.arange(8.0), rng.normal(size=3000).round(9)))
    # Asymptotic tails below 1e-20, down to below the smallest double.
    for shift, n in [(1.5, 200), (3.0, 400), (5.0, 900), (8.0, 1500)]:
        sets.append(dataset(f"separated shift {shift} n {n}", rng.normal(size=n).round(6),
                            rng.normal(shift, size=n).round(6),
                            combos={(a, "asymptotic", c) for a in ALTERNATIVES for c in (True, False)}
                            | {(a, "auto", True) for a in ALTERNATIVES}))
    # Large samples, with and without ties.
    sets.append(dataset("large 3000 vs 4000 continuous", rng.normal(size=3000).round(7),
                        rng.normal(0.05, size=4000).round(7),
                        combos={(a, m, c) for a in ALTERNATIVES for m in ("auto", "asymptotic")
                                for c in (True, False)}))
    sets.append(dataset("large 5000 vs 2000 rounded", rng.exponential(size=5000).round(1),
                        rng.exponential(1.1, size=2000).round(1),
                        combos={(a, m, c) for a in ALTERNATIVES for m in ("auto", "asymptotic")
                                for c in (True, False)}))
    # Forced exact beyond scipy's comfort zone: exact rational reference, not scipy.
    sets.append(dataset("forced exact 120 vs 150", rng.normal(size=120).round(6),
                        rng.normal(0.2, size=150).round(6), scipy_exact=False))
    sets.append(dataset("forced exact 200 vs 200 tail", rng.normal(size=200).round(6),
                        rng.normal(1.2, size=200).round(6), scipy_exact=False,
                        combos={(a, "exact", c) for a in ALTERNATIVES for c in (True, False)}))

    # Over 10^308 arrangements (C(1030, 515) ~ 10^308.4) and a tail whose counts pass 10^250:
    # exercises the rescaled exact table and the log-space probabilities. One alternative only,
    # to keep the debug-build test fast.
    sets.append(dataset("forced exact 515 vs 515 beyond f64 counts", rng.normal(size=515).round(6),
                        rng.normal(0.9, size=515).round(6), scipy_exact=False,
                        combos={("two-sided", "exact", True)}))

    with open(OUT, "w") as f:
        json.dump({"scipy_version": scipy.__version__, "numpy_version": np.__version__,
                   "generator": "models/tests/reference/rank_refs.py", "datasets": sets},
                  f, indent=None, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    n = sum(len(s["results"]) for s in sets)
    tiny = sum(1 for s in sets for r in s["results"] if r["pvalue"] is not None and r["pvalue"] < 1e-20)
    print(f"wrote {n} results in {len(sets)} datasets ({tiny} with p < 1e-20) to {OUT}")


if __name__ == "__main__":
    main()
