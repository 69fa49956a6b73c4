//! The forced-exact Mann-Whitney p-value at large sizes, where the exact distribution's counts are
//! far beyond f64 (C(1600, 800) is about 1e480). Before the fix, rounding noise past the degree
//! of the intermediate products took over from about 2 × 700 on: 2 × 800 near the mean gave
//! p = 1, other sizes up to 2 000 NaN (`null` on the command line).
//!
//! References from `tests/reference/mw_exact_large.py` (standard library only): exact rational
//! tails from integer counts, and the continuity-corrected normal approximation and its first
//! Edgeworth correction, computed there independently of Vigil's code.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use vigil_models::rank::{
    mann_whitney_u, Alternative, MannWhitneyOptions, Method, RankError, EXACT_ACCURATE_SIZE,
    EXACT_TAIL_SIZE,
};

/// y = 0, 1, ..., n2-1 and x_i = a_i - 0.5 + i * 1e-7, where a_i (how many y lie below x_i)
/// spreads `u1` evenly over x: no ties, and U of x is exactly `u1`.
fn samples(n1: usize, n2: usize, u1: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(u1 <= n1 * n2);
    let (q, r) = (u1 / n1, u1 % n1);
    // The first n1 - r values have q below them, the last r have q + 1: non-decreasing.
    let x = (0..n1)
        .map(|i| {
            let below = if i < n1 - r { q } else { q + 1 };
            below as f64 - 0.5 + i as f64 * 1e-7
        })
        .collect();
    let y = (0..n2).map(|j| j as f64).collect();
    (x, y)
}

fn alternative(name: &str) -> Alternative {
    match name {
        "two-sided" => Alternative::TwoSided,
        "less" => Alternative::Less,
        "greater" => Alternative::Greater,
        other => panic!("unknown alternative {other}"),
    }
}

fn p_value(n1: usize, n2: usize, u1: usize, alt: &str, method: Method) -> Result<f64, RankError> {
    let (x, y) = samples(n1, n2, u1);
    let opts = MannWhitneyOptions {
        alternative: alternative(alt),
        method,
        use_continuity: true,
    };
    let r = mann_whitney_u(&x, &y, &opts)?;
    assert_eq!(r.statistic, u1 as f64, "sample construction");
    Ok(r.pvalue)
}

#[test]
fn samples_have_the_requested_statistic() {
    let (x, y) = samples(7, 5, 23);
    let u: usize = x.iter().map(|a| y.iter().filter(|b| *b < a).count()).sum();
    assert_eq!(u, 23);
}

/// (n1, n2, u1, alternative, exact p) from the script's exact rational arithmetic: the middle of
/// the distribution up to a smaller size of 300, and tails beyond.
const EXACT: [(usize, usize, usize, &str, f64); 6] = [
    (300, 300, 46_000, "two-sided", 0.638034050696107),
    (300, 300, 52_000, "greater", 0.0004775883588647607),
    (200, 1000, 101_000, "two-sided", 0.8233552787751656),
    (500, 500, 150_200, "greater", 1.5011662988594355e-08),
    (800, 800, 398_600, "greater", 5.5106213396990476e-18),
    (800, 800, 241_400, "two-sided", 1.1021242679398095e-17),
];

#[test]
fn forced_exact_matches_exact_rationals() {
    for (n1, n2, u1, alt, want) in EXACT {
        let got = p_value(n1, n2, u1, alt, Method::Exact).expect("trusted exact table");
        assert!(
            ((got - want) / want).abs() < 1e-10,
            "{n1} x {n2}, U = {u1}, {alt}: got {got:e}, exact {want:e}"
        );
    }
}

/// The middle of the distribution where the recursion cannot be trusted (beyond 300 values) is
/// computed by Fourier inversion: the 2 × 800 (p = 1.0 before) and 600 × 700 (NaN).
/// Exact rational values from the script.
#[test]
fn forced_exact_in_the_middle_of_large_samples_matches_exact_rationals() {
    for (n1, n2, u1, want) in [
        (800, 800, 323_000, 0.7455475211802539),
        (600, 700, 214_000, 0.5535059624529802),
    ] {
        let got = p_value(n1, n2, u1, "two-sided", Method::Exact).expect("exact p");
        assert!(
            ((got - want) / want).abs() < 1e-10,
            "{n1} x {n2}, U = {u1}: got {got:e}, exact {want:e}"
        );
    }
}

/// Where neither the recursion (beyond 800 values) nor the Fourier inversion (p below 1e-4, its
/// absolute error then being too large relatively) can be trusted, a clear error naming the
/// sizes and the asymptotic method; never a wrong number or NaN (2 × 2 000, 20 standard
/// deviations out, gave NaN).
#[test]
fn forced_exact_where_double_precision_cannot_be_trusted_is_a_clear_error() {
    match p_value(2000, 2000, 2_740_000, "greater", Method::Exact) {
        Err(e @ RankError::ExactInaccurate { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("2000 and 2000") && msg.contains("asymptotic"),
                "{msg}"
            );
        }
        other => panic!("expected ExactInaccurate, got {other:?}"),
    }
    assert_eq!((EXACT_ACCURATE_SIZE, EXACT_TAIL_SIZE), (300, 800));
}

/// (n1, n2, u1, alternative, normal approximation, with the Edgeworth term), from the script.
const ASYMPTOTIC: [(usize, usize, usize, &str, f64, f64); 4] = [
    (
        1000,
        1000,
        503_000,
        "two-sided",
        0.8163188307959452,
        0.8163586977263704,
    ),
    (
        1500,
        1500,
        1_110_000,
        "greater",
        0.7364278347415631,
        0.7364009778451021,
    ),
    (
        2000,
        2000,
        2_010_000,
        "two-sided",
        0.7842280551754887,
        0.7842511392022312,
    ),
    (
        2000,
        2000,
        1_960_000,
        "less",
        0.13669381405213687,
        0.13671000810223577,
    ),
];

/// Beyond what Python computes exactly in minutes: the forced-exact p-value against the
/// Edgeworth-corrected normal approximation (within 2e-7 of exact rationals at 2 × 300 and
/// 1.3e-8 at 2 × 800 in the script, shrinking as 1/n²), and the asymptotic method against the
/// plain normal approximation it is (and within 1e-4 of the exact value, as the error message for
/// refused exact computations says).
#[test]
fn exact_and_asymptotic_agree_with_independent_approximations_at_large_sizes() {
    for (n1, n2, u1, alt, normal, edgeworth) in ASYMPTOTIC {
        let exact = p_value(n1, n2, u1, alt, Method::Exact).expect("exact p");
        assert!(
            (exact - edgeworth).abs() < 1e-8,
            "{n1} x {n2}, U = {u1}, {alt}: exact {exact}, Edgeworth {edgeworth}"
        );
        let asymptotic = p_value(n1, n2, u1, alt, Method::Asymptotic).expect("asymptotic");
        assert!(
            (asymptotic - normal).abs() < 1e-12,
            "{n1} x {n2}, U = {u1}, {alt}: got {asymptotic}, normal {normal}"
        );
        assert!(
            (asymptotic - exact).abs() < 1e-4,
            "{n1} x {n2}, U = {u1}, {alt}: asymptotic {asymptotic}, exact {exact}"
        );
    }
}
