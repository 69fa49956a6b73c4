//! Mann-Whitney U against scipy 1.17.1 (and exact rational tails where scipy cannot compute them).
//! The reference values are produced by `tests/reference/rank_refs.py`; see that script for how
//! each dataset was chosen.

use serde_json::Value;
use vigil_models::rank::{
    average_ranks, mann_whitney_u, Alternative, MannWhitneyOptions, Method, RankError,
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
    assert!(matches!(
        mann_whitney_u(&x, &y, &opts),
        Err(RankError::ExactTooLarge { .. })
    ));
}

#[test]
fn average_ranks_match_scipy_rankdata() {
    // scipy.stats.rankdata([3, 2, 1, 2, 2, 2, 1, -0.0, 0.0]) in scipy 1.17.1.
    let ranks = average_ranks(&[3.0, 2.0, 1.0, 2.0, 2.0, 2.0, 1.0, -0.0, 0.0]).expect("ranks");
    assert_eq!(ranks, vec![9.0, 6.5, 3.5, 6.5, 6.5, 6.5, 3.5, 1.5, 1.5]);
    assert_eq!(
        average_ranks(&[1.0, f64::NAN]),
        Err(RankError::NaN {
            sample: "values",
            index: 1
        })
    );
    assert_eq!(average_ranks(&[]), Ok(vec![]));
}
