//! Mann-Whitney U against scipy 1.17.1 (and exact rational tails where scipy cannot compute them).
//! The reference values are produced by `tests/reference/rank_refs.py`; see that script for how
//! each dataset was chosen.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use serde_json::Value;
use vigil_models::rank::{
    average_ranks, mann_whitney_u, Alternative, MannWhitneyOptions, Method, NanMaximal, RankError,
    RejectNan, SignedZeros,
};

const REFS: &str = include_str!("data/rank_refs.json");

fn values(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array of values")
        .iter()
        .map(|e| match e {
            Value::Number(n) => n.as_f64().expect("f64"),
            Value::String(s) if s == "inf" => f64::INFINITY,
            Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected value {other}"),
        })
        .collect()
}

fn options(r: &Value) -> MannWhitneyOptions {
    MannWhitneyOptions {
        alternative: serde_json::from_value(r["alternative"].clone()).expect("alternative"),
        method: serde_json::from_value(r["method"].clone()).expect("method"),
        use_continuity: r["use_continuity"].as_bool().expect("use_continuity"),
    }
}

/// Relative error 1e-9, with an absolute floor of 1e-300 for values at the bottom of the range.
fn close(actual: f64, expected: f64) -> bool {
    actual == expected
        || (actual - expected).abs() <= 1e-300
        || (actual - expected).abs() <= 1e-9 * expected.abs().max(actual.abs())
}

#[test]
fn matches_scipy_reference_values() {
    let refs: Value = serde_json::from_str(REFS).expect("reference JSON");
    assert_eq!(refs["scipy_version"], "1.17.1");
    let mut checked = 0;
    let mut tiny = 0;
    let mut failures = Vec::new();
    for set in refs["datasets"].as_array().expect("datasets") {
        let (x, y) = (values(&set["x"]), values(&set["y"]));
        for r in set["results"].as_array().expect("results") {
            let opts = options(r);
            let got = mann_whitney_u(&x, &y, &opts).expect("valid input");
            let want_u = r["statistic"].as_f64().expect("statistic");
            let ok_p = match r["pvalue"].as_f64() {
                Some(want_p) => {
                    if want_p < 1e-20 {
                        tiny += 1;
                    }
                    close(got.pvalue, want_p)
                }
                None => got.pvalue.is_nan(),
            };
            if got.statistic != want_u || !ok_p {
                failures.push(format!(
                    "{} {:?}: got U={} p={:e}, want U={} p={}",
                    set["name"], opts, got.statistic, got.pvalue, want_u, r["pvalue"]
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 400, "only {checked} reference results");
    assert!(tiny >= 20, "only {tiny} reference p-values below 1e-20");
}

#[test]
fn defaults_are_scipys() {
    let d = MannWhitneyOptions::default();
    assert_eq!(d.alternative, Alternative::TwoSided);
    assert_eq!(d.method, Method::Auto);
    assert!(d.use_continuity);
}

#[test]
fn serde_names_match_scipys_strings() {
    let opts: MannWhitneyOptions = serde_json::from_str(
        r#"{"alternative": "two-sided", "method": "asymptotic", "use_continuity": false}"#,
    )
    .expect("options");
    assert_eq!(opts.alternative, Alternative::TwoSided);
    assert_eq!(opts.method, Method::Asymptotic);
    let opts: MannWhitneyOptions =
        serde_json::from_str(r#"{"alternative": "less"}"#).expect("partial");
    assert_eq!(opts.alternative, Alternative::Less);
    assert_eq!(opts.method, Method::Auto);
    assert!(opts.use_continuity);
}

#[test]
fn nan_is_an_error_naming_the_sample_and_index() {
    let opts = MannWhitneyOptions::default();
    assert_eq!(
        mann_whitney_u(&[1.0, f64::NAN], &[2.0], &opts),
        Err(RankError::NaN {
            sample: "x",
            index: 1
        })
    );
    assert_eq!(
        mann_whitney_u(&[1.0], &[2.0, 3.0, f64::NAN], &opts),
        Err(RankError::NaN {
            sample: "y",
            index: 2
        })
    );
    let err = mann_whitney_u(&[f64::NAN], &[1.0], &opts).unwrap_err();
    assert!(
        err.to_string().contains("`x`") && err.to_string().contains("NaN"),
        "{err}"
    );
}

#[test]
fn empty_samples_are_errors() {
    let opts = MannWhitneyOptions::default();
    assert_eq!(
        mann_whitney_u(&[], &[1.0], &opts),
        Err(RankError::EmptySample { sample: "x" })
    );
    assert_eq!(
        mann_whitney_u(&[1.0], &[], &opts),
        Err(RankError::EmptySample { sample: "y" })
    );
}

#[test]
fn forced_exact_on_huge_samples_is_an_error_not_a_hang() {
    let x: Vec<f64> = (0..100_000).map(f64::from).collect();
    let y: Vec<f64> = (0..100_000).map(|i| f64::from(i) + 0.5).collect();
    let opts = MannWhitneyOptions {
        method: Method::Exact,
        ..MannWhitneyOptions::default()
    };
    let got = mann_whitney_u(&x, &y, &opts);
    assert!(
        matches!(got, Err(RankError::ExactTooLarge { .. })),
        "{got:?}"
    );
}

#[test]
fn average_ranks_match_scipy_rankdata() {
    // scipy.stats.rankdata([3, 2, 1, 2, 2, 2, 1, -0.0, 0.0]) in scipy 1.17.1.
    let scipy = |v: &[f64]| average_ranks::<RejectNan>(v, SignedZeros::Tie);
    let ranks = scipy(&[3.0, 2.0, 1.0, 2.0, 2.0, 2.0, 1.0, -0.0, 0.0]).expect("ranks");
    assert_eq!(ranks, vec![9.0, 6.5, 3.5, 6.5, 6.5, 6.5, 3.5, 1.5, 1.5]);
    assert_eq!(
        scipy(&[1.0, f64::NAN]),
        Err(RankError::NaN {
            sample: "values",
            index: 1
        })
    );
    assert_eq!(scipy(&[]), Ok(vec![]));
}

/// Kayenta's policies on the same function: commons-math's `NaturalRanking(NaNStrategy.MAXIMAL,
/// TiesStrategy.AVERAGE)` ranks NaN as +∞ (tying with it) and `-0.0` below `0.0`
/// (`Double.compare`): [3, NaN, 1, 3, +∞, -0.0, 0.0] ranks 4.5, 6.5, 3, 4.5, 6.5, 1, 2.
#[test]
fn average_ranks_with_kayentas_policies_match_commons_math() {
    let Ok(ranks) = average_ranks::<NanMaximal>(
        &[3.0, f64::NAN, 1.0, 3.0, f64::INFINITY, -0.0, 0.0],
        SignedZeros::Ordered,
    );
    assert_eq!(ranks, vec![4.5, 6.5, 3.0, 4.5, 6.5, 1.0, 2.0]);
    // Without NaN and signed zeros, the two policies rank alike.
    let v = [2.5, -1.0, 7.0, 2.5, 0.5];
    let Ok(kayenta) = average_ranks::<NanMaximal>(&v, SignedZeros::Ordered);
    assert_eq!(
        Ok(kayenta),
        average_ranks::<RejectNan>(&v, SignedZeros::Tie)
    );
}

mod properties {
    use proptest::prelude::*;
    use vigil_models::rank::{mann_whitney_u, Alternative, MannWhitneyOptions, Method};

    /// U of x straight from its definition: pairs where x wins, plus half the tied pairs.
    fn naive_u(x: &[f64], y: &[f64]) -> f64 {
        let mut u = 0.0;
        for &a in x {
            for &b in y {
                if a > b {
                    u += 1.0;
                } else if a == b {
                    u += 0.5;
                }
            }
        }
        u
    }

    /// Small integers make ties common; the occasional -0.0 checks that it ties with 0.0.
    fn sample(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(
            prop_oneof![(-4i32..5).prop_map(f64::from), Just(-0.0), -1e3f64..1e3],
            1..max_len,
        )
    }

    fn opts(alternative: Alternative, method: Method, use_continuity: bool) -> MannWhitneyOptions {
        MannWhitneyOptions {
            alternative,
            method,
            use_continuity,
        }
    }

    proptest! {
        #[test]
        fn statistic_is_the_pairwise_definition(x in sample(40), y in sample(40)) {
            let r = mann_whitney_u(&x, &y, &MannWhitneyOptions::default()).unwrap();
            prop_assert_eq!(r.statistic, naive_u(&x, &y));
            prop_assert!((0.0..=1.0).contains(&r.pvalue), "p = {}", r.pvalue);
        }

        #[test]
        fn less_for_x_y_is_greater_for_y_x(
            x in sample(30),
            y in sample(30),
            method in prop_oneof![Just(Method::Auto), Just(Method::Exact), Just(Method::Asymptotic)],
            use_continuity: bool,
        ) {
            let less = mann_whitney_u(&x, &y, &opts(Alternative::Less, method, use_continuity)).unwrap();
            let greater = mann_whitney_u(&y, &x, &opts(Alternative::Greater, method, use_continuity)).unwrap();
            prop_assert_eq!(less.statistic + greater.statistic, (x.len() * y.len()) as f64);
            prop_assert_eq!(less.pvalue.to_bits(), greater.pvalue.to_bits());
        }
    }

    /// The exact two-sided and one-sided tails against brute force: enumerate every way to pick
    /// which of the n1 + n2 ranks belong to x, and count the U values at least as extreme.
    #[test]
    fn exact_tails_match_enumeration_of_all_rank_assignments() {
        for (n1, n2) in [
            (1, 1),
            (1, 5),
            (2, 7),
            (3, 3),
            (4, 6),
            (5, 5),
            (6, 7),
            (8, 4),
        ] {
            let n = n1 + n2;
            let mut u_counts = vec![0u64; n1 * n2 + 1];
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize != n1 {
                    continue;
                }
                // U of x = sum of x ranks - n1(n1+1)/2, ranks 1..=n.
                let rank_sum: usize = (0..n).filter(|i| mask & (1 << i) != 0).map(|i| i + 1).sum();
                u_counts[rank_sum - n1 * (n1 + 1) / 2] += 1;
            }
            let total: u64 = u_counts.iter().sum();
            let sf = |k: usize| u_counts[k..].iter().sum::<u64>() as f64 / total as f64;
            let y: Vec<f64> = (0..n2).map(|i| i as f64).collect();
            // Place x so that U of x takes every value from 0 to n1 * n2.
            for u in 0..=n1 * n2 {
                let x: Vec<f64> = (0..n1)
                    .map(|i| {
                        let above = (u / n1 + usize::from(i < u % n1)).min(n2);
                        above as f64 - 0.5
                    })
                    .collect();
                let exact = |alternative| {
                    mann_whitney_u(&x, &y, &opts(alternative, Method::Exact, true)).unwrap()
                };
                let greater = exact(Alternative::Greater);
                assert_eq!(greater.statistic, u as f64, "n1={n1} n2={n2} x={x:?}");
                let check = |got: f64, want: f64, what: &str| {
                    assert!(
                        (got - want).abs() <= 1e-12 * want,
                        "{what} n1={n1} n2={n2} U={u}: {got} vs {want}"
                    );
                };
                check(greater.pvalue, sf(u), "greater");
                check(exact(Alternative::Less).pvalue, sf(n1 * n2 - u), "less");
                let two_sided = (2.0 * sf(u.max(n1 * n2 - u))).min(1.0);
                check(exact(Alternative::TwoSided).pvalue, two_sided, "two-sided");
            }
        }
    }
}
