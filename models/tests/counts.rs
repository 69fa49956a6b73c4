//! counts.rs against scipy 1.17 / statsmodels reference values (tests/reference/counts_refs.py
//! writes tests/data/counts_refs.json). Every value must agree to a relative error of 1e-9.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use serde_json::Value;
use vigil_models::counts::{
    bh_adjust, binom_test, clopper_pearson, fisher_exact, rate_test, Alternative,
};

fn refs() -> Value {
    let text = include_str!("data/counts_refs.json");
    serde_json::from_str(text).unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => other.as_f64().unwrap(),
    }
}

const ALTS: [(&str, Alternative); 3] = [
    ("two-sided", Alternative::TwoSided),
    ("greater", Alternative::Greater),
    ("less", Alternative::Less),
];

fn assert_close(got: f64, want: f64, what: &str) {
    if want.is_nan() {
        assert!(got.is_nan(), "{what}: got {got}, want NaN");
        return;
    }
    if want.is_infinite() || want == 0.0 {
        assert_eq!(got, want, "{what}");
        return;
    }
    let rel = ((got - want) / want).abs();
    assert!(
        rel <= 1e-9,
        "{what}: got {got:e}, want {want:e}, rel err {rel:e}"
    );
}

#[test]
fn binomtest_matches_scipy() {
    let r = refs();
    let cases = r["binomtest"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let (k, n, p) = (
            c["k"].as_u64().unwrap(),
            c["n"].as_u64().unwrap(),
            num(&c["p"]),
        );
        for (name, alt) in ALTS {
            let got = binom_test(k, n, p, alt).unwrap();
            assert_close(
                got,
                num(&c[name]),
                &format!("binomtest({k}, {n}, {p}, {name})"),
            );
        }
    }
}

#[test]
fn tiny_p_values_do_not_underflow() {
    // scipy: binomtest(200, 1000, 0.05, alternative='greater').pvalue is ~1e-60, not 0.
    let r = refs();
    let c = r["binomtest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["k"] == 200 && c["n"] == 1000)
        .unwrap();
    let want = num(&c["greater"]);
    assert!(want > 0.0 && want < 1e-40);
    let got = binom_test(200, 1000, 0.05, Alternative::Greater).unwrap();
    assert_close(got, want, "tail");
}

#[test]
fn clopper_pearson_matches_scipy() {
    let r = refs();
    for c in r["proportion_ci_exact"].as_array().unwrap() {
        let (k, n, conf) = (
            c["k"].as_u64().unwrap(),
            c["n"].as_u64().unwrap(),
            num(&c["confidence"]),
        );
        let (low, high) = clopper_pearson(k, n, conf).unwrap();
        assert_close(low, num(&c["low"]), &format!("CP low ({k}, {n}, {conf})"));
        assert_close(
            high,
            num(&c["high"]),
            &format!("CP high ({k}, {n}, {conf})"),
        );
    }
}

#[test]
fn rate_test_matches_scipy_conditional_binomial() {
    let r = refs();
    for c in r["rate_test"].as_array().unwrap() {
        let kc = c["canary_count"].as_u64().unwrap();
        let ec = num(&c["canary_exposure"]);
        let kb = c["baseline_count"].as_u64().unwrap();
        let eb = num(&c["baseline_exposure"]);
        let what = format!("rate_test({kc}, {ec}, {kb}, {eb})");
        let t = rate_test(kc, ec, kb, eb, 0.95).unwrap();
        assert_close(t.p_two_sided, num(&c["p_two-sided"]), &what);
        assert_close(t.p_greater, num(&c["p_greater"]), &what);
        assert_close(t.p_less, num(&c["p_less"]), &what);
        assert_close(t.rate_ratio, num(&c["rate_ratio"]), &what);
        assert_close(t.ci_low, num(&c["ci_low"]), &format!("{what} ci_low"));
        assert_close(t.ci_high, num(&c["ci_high"]), &format!("{what} ci_high"));
        if t.rate_ratio.is_finite() {
            assert!(
                t.ci_low <= t.rate_ratio && t.rate_ratio <= t.ci_high,
                "{what}"
            );
        }
    }
}

#[test]
fn fisher_exact_matches_scipy() {
    let r = refs();
    for c in r["fisher_exact"].as_array().unwrap() {
        let t: Vec<Vec<u64>> = serde_json::from_value(c["table"].clone()).unwrap();
        let table = [[t[0][0], t[0][1]], [t[1][0], t[1][1]]];
        for (name, alt) in ALTS {
            let got = fisher_exact(table, alt);
            let what = format!("fisher_exact({table:?}, {name})");
            assert_close(got.p_value, num(&c[name]), &what);
            assert_close(got.odds_ratio, num(&c["odds_ratio"]), &what);
        }
    }
}

#[test]
fn bh_matches_false_discovery_control() {
    let r = refs();
    for c in r["false_discovery_control"].as_array().unwrap() {
        let p: Vec<f64> = c["p"].as_array().unwrap().iter().map(num).collect();
        let want: Vec<f64> = c["q"].as_array().unwrap().iter().map(num).collect();
        let got = bh_adjust(&p).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(*g, *w, &format!("q[{i}] of {p:?}"));
        }
    }
}

mod properties {
    use proptest::prelude::*;
    use vigil_models::counts::{bh_adjust, binom_test, rate_test, Alternative};

    proptest! {
        /// P(X ≤ k) + P(X ≥ k+1) = 1: the two tails are computed from opposite ends, so this
        /// catches an off-by-one or a lost term in either.
        #[test]
        fn binomial_tails_are_complementary(n in 1u64..5000, k_frac in 0.0f64..1.0, p in 0.001f64..0.999) {
            let k = ((n as f64) * k_frac) as u64;
            prop_assume!(k < n);
            let lower = binom_test(k, n, p, Alternative::Less).unwrap();
            let upper = binom_test(k + 1, n, p, Alternative::Greater).unwrap();
            prop_assert!((lower + upper - 1.0).abs() < 1e-12, "{} + {}", lower, upper);
        }

        /// The interval contains the point estimate, and swapping sides inverts everything.
        #[test]
        fn rate_ratio_interval_is_consistent(kc in 0u64..500, kb in 0u64..500, ec in 1.0f64..1e6, eb in 1.0f64..1e6) {
            let t = rate_test(kc, ec, kb, eb, 0.95).unwrap();
            prop_assert!((0.0..=1.0).contains(&t.p_two_sided));
            if kc + kb > 0 {
                prop_assert!(t.ci_low <= t.rate_ratio && t.rate_ratio <= t.ci_high);
                let s = rate_test(kb, eb, kc, ec, 0.95).unwrap();
                prop_assert!((t.p_greater - s.p_less).abs() <= 1e-12 * t.p_greater.max(1e-300));
                if t.ci_low > 0.0 && s.ci_high.is_finite() {
                    prop_assert!(((1.0 / t.ci_low) - s.ci_high).abs() <= 1e-8 * s.ci_high);
                }
            }
        }

        /// q-values are at least the p-values, at most 1, and keep the p-values' order.
        #[test]
        fn bh_is_monotone(ps in proptest::collection::vec(0.0f64..=1.0, 0..60)) {
            let q = bh_adjust(&ps).unwrap();
            for i in 0..ps.len() {
                prop_assert!(q[i] >= ps[i] && q[i] <= 1.0);
                for j in 0..ps.len() {
                    if ps[i] < ps[j] {
                        prop_assert!(q[i] <= q[j]);
                    }
                }
            }
        }
    }
}
