#!/usr/bin/env python3
"""Reference values for the forced-exact Mann-Whitney U p-value at large sizes.

Produces the constants embedded in `models/tests/rank_exact_large.rs`. Standard library only
(`fractions`, `math`), so anyone can rerun it without installing anything:

    python3 models/tests/reference/mw_exact_large.py            # about 10 minutes
    python3 models/tests/reference/mw_exact_large.py --quick    # skips the 800 x 800 case

Two kinds of reference, each independent of Vigil's floating-point code:

1. Exact. The frequencies of U for sizes m, n without ties are the coefficients of the Gaussian
   binomial C(m+n, m)_q = prod_{k=1..m} (1 - q^(n+k)) / (1 - q^k). They are computed here with
   Python integers (exact), and the tail probability is a `Fraction` rounded once to float.
   Only coefficients up to the middle of each intermediate polynomial are kept (the rest follow
   by symmetry), which is exact too and halves the work.

2. Asymptotic, for sizes where exact integers take too long in Python (1000 and above): the
   continuity-corrected normal approximation, and the same with the first Edgeworth term, which
   uses the fourth cumulant of U, kappa4 = -mn(N+1)(m^2 + n^2 + mn + m + n) / 120 (N = m + n).
   The script checks that cumulant against the exact distribution, and prints how far both
   approximations are from the exact value at the sizes where the exact value is known, so the
   tolerance the Rust test uses for the large sizes is measured, not guessed.

The script also measured where Vigil's floating-point recursion stops being accurate (see
`EXACT_ACCURATE_SIZE` in rank.rs): its counts were compared with `half_counts` at 2 x 150 ... 2 x 800.

The test samples are built from (n1, n2, u1) the same way in the Rust test: y = 0, 1, ..., n2-1
and x_i = a_i - 0.5 + i * 1e-7, where a_i (the number of y below x_i) spreads u1 evenly over
the n1 values of x. There are no ties, and U of x is exactly u1.
"""
import math
import sys
from fractions import Fraction


def half_counts(m, n, last):
    """Frequencies of U = 0..min(last, mn // 2) for sizes m, n (exact integers)."""
    m, n = min(m, n), max(m, n)
    top = min(last, m * n // 2)
    c = [0] * (top + 1)
    c[0] = 1
    held = 0  # the highest index that holds a coefficient of the current product
    for k in range(1, m + 1):
        prev_degree = (k - 1) * n
        h = min(top, k * n // 2)
        # Coefficients past the middle of the previous product, by its symmetry (0 beyond it).
        for j in range(held + 1, h + 1):
            c[j] = c[prev_degree - j] if j <= prev_degree else 0
        for j in range(k, h + 1):  # divide by (1 - q^k)
            c[j] += c[j - k]
        d = n + k
        for j in range(h, d - 1, -1):  # multiply by (1 - q^(n+k))
            c[j] -= c[j - d]
        held = h
    return c


def tail_ge(n1, n2, k):
    """P(U >= k), exact."""
    mn = n1 * n2
    total = math.comb(n1 + n2, n1)
    if k <= 0:
        return Fraction(1)
    if k > mn:
        return Fraction(0)
    # P(U >= k) = P(U <= mn - k); compute from the short side.
    if mn - k <= mn // 2:
        return Fraction(sum(half_counts(n1, n2, mn - k)), total)
    return 1 - Fraction(sum(half_counts(n1, n2, k - 1)), total)


def exact_p(n1, n2, u1, alternative):
    """scipy's exact p-value for an integer U1 (no ties), computed exactly."""
    mn = n1 * n2
    u2 = mn - u1
    if alternative == "greater":
        return tail_ge(n1, n2, u1)
    if alternative == "less":
        return tail_ge(n1, n2, u2)
    return min(Fraction(1), 2 * tail_ge(n1, n2, max(u1, u2)))


def normal_sf(z):
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def approx_p(n1, n2, u1, alternative, edgeworth):
    """P-value from the continuity-corrected normal approximation, optionally with the first
    Edgeworth term (U is symmetric, so the skewness term vanishes)."""
    mn = n1 * n2
    big_n = n1 + n2
    mu = mn / 2
    var = mn * (big_n + 1) / 12
    kappa4 = -mn * (big_n + 1) * (n1 * n1 + n2 * n2 + mn + n1 + n2) / 120
    gamma2 = kappa4 / var**2

    def sf(k):  # P(U >= k)
        z = (k - 0.5 - mu) / math.sqrt(var)
        p = normal_sf(z)
        if edgeworth:
            phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
            p += phi * gamma2 / 24 * (z**3 - 3 * z)
        return p

    u2 = mn - u1
    if alternative == "greater":
        return sf(u1)
    if alternative == "less":
        return sf(u2)
    return min(1.0, 2 * sf(max(u1, u2)))


def check_kappa4(m, n):
    c = half_counts(m, n, m * n // 2)
    mn = m * n
    full = c + [c[mn - j] for j in range(len(c), mn + 1)]
    total = math.comb(m + n, m)
    mu = Fraction(mn, 2)
    m2 = sum(Fraction(f) * (j - mu) ** 2 for j, f in enumerate(full)) / total
    m4 = sum(Fraction(f) * (j - mu) ** 4 for j, f in enumerate(full)) / total
    big_n = m + n
    assert m2 == Fraction(mn * (big_n + 1), 12), (m, n)
    want = Fraction(-mn * (big_n + 1) * (m * m + n * n + mn + m + n), 120)
    assert m4 - 3 * m2 * m2 == want, (m, n)


def by_recurrence(m, n):
    """Frequencies of U by the textbook recurrence f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u),
    a second, slower route used to check `half_counts` at small sizes."""
    table = {}

    def f(a, b):
        if (a, b) not in table:
            if a == 0 or b == 0:
                table[(a, b)] = [1] + [0] * (a * b)
            else:
                out = [0] * (a * b + 1)
                for u, v in enumerate(f(a - 1, b)):
                    out[u + b] += v
                for u, v in enumerate(f(a, b - 1)):
                    out[u] += v
                table[(a, b)] = out
        return table[(a, b)]

    return f(m, n)


def main():
    quick = "--quick" in sys.argv
    for m, n in [(1, 1), (2, 3), (5, 5), (4, 9), (8, 11)]:
        full = by_recurrence(m, n)
        assert half_counts(m, n, m * n) == full[: m * n // 2 + 1], (m, n)
    print("half_counts agrees with the recurrence")
    for m, n in [(3, 5), (7, 7), (10, 13)]:
        check_kappa4(m, n)
    print("kappa4 formula agrees with the exact distribution")

    # (n1, n2, u1, alternative): the middle of the distribution at sizes where Vigil computes it,
    # and tails at sizes where it only trusts the tail (see `EXACT_ACCURATE_SIZE` in rank.rs).
    exact_cases = [
        (300, 300, 46_000, "two-sided"),
        (300, 300, 52_000, "greater"),
        (200, 1000, 101_000, "two-sided"),
        (500, 500, 150_200, "greater"),
    ]
    if not quick:
        exact_cases += [
            (800, 800, 398_600, "greater"),
            (800, 800, 241_400, "two-sided"),
        ]
    print("exact (n1, n2, u1, alternative, p, normal - exact, edgeworth - exact):")
    for n1, n2, u1, alt in exact_cases:
        p = float(exact_p(n1, n2, u1, alt))
        dn = approx_p(n1, n2, u1, alt, False) - p
        de = approx_p(n1, n2, u1, alt, True) - p
        print(f"    ({n1}, {n2}, {u1}, {alt!r}, {p!r}),  # {dn:+.2e} {de:+.2e}", flush=True)

    # The middle of the distribution beyond 300 values, where Vigil uses Fourier inversion
    # instead of its recursion (`fourier_cdf` in rank.rs).
    mid_cases = [
        (600, 700, 214_000, "two-sided"),
        (800, 800, 323_000, "two-sided"),
    ]
    if not quick:
        print("exact, middle of the distribution (n1, n2, u1, alternative, p):")
        for n1, n2, u1, alt in mid_cases:
            p = float(exact_p(n1, n2, u1, alt))
            dn = approx_p(n1, n2, u1, alt, False) - p
            print(f"    ({n1}, {n2}, {u1}, {alt!r}, {p!r}),  # normal - exact {dn:+.2e}", flush=True)

    approx_cases = [
        (1000, 1000, 503_000, "two-sided"),
        (1500, 1500, 1_110_000, "greater"),
        (2000, 2000, 2_010_000, "two-sided"),
        (2000, 2000, 1_960_000, "less"),
    ]
    print("asymptotic (n1, n2, u1, alternative, normal p, edgeworth p):")
    for n1, n2, u1, alt in approx_cases:
        pn = approx_p(n1, n2, u1, alt, False)
        pe = approx_p(n1, n2, u1, alt, True)
        print(f"    ({n1}, {n2}, {u1}, {alt!r}, {pn!r}, {pe!r}),")


if __name__ == "__main__":
    main()
