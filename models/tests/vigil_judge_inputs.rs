//! No silent defaults in the Vigil judge's building blocks (issue 10): an empty sample or an
//! unusable exposure is an `Option`/`Result` for the caller to report, never a panic, a shift
//! of 0 or a p-value of 1 that reads as "tested, no difference".

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use vigil_models::counts::CountsError;
use vigil_models::rank::RankError;
use vigil_models::vigil_judge::{
    classify, hodges_lehmann, mann_whitney_greater, quantile_sorted, rate_greater, Direction,
    MetricKind, MetricRule, Outcome, VigilJudgeConfig,
};

#[test]
fn quantile_of_nothing_is_none_not_a_panic() {
    assert_eq!(quantile_sorted(&[], 0.5), None);
    // numpy.quantile([1, 2, 3, 10], 0.5) = 2.5, ([1, 2, 3, 10], 0.9) = 7.9 (linear).
    assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 10.0], 0.5), Some(2.5));
    let q = quantile_sorted(&[1.0, 2.0, 3.0, 10.0], 0.9).unwrap();
    assert!((q - 7.9).abs() < 1e-12, "{q}");
}

#[test]
fn hodges_lehmann_of_an_empty_side_is_none_not_a_zero_shift() {
    assert_eq!(hodges_lehmann(&[], &[1.0, 2.0], 0.95), None);
    assert_eq!(hodges_lehmann(&[1.0, 2.0], &[], 0.95), None);
    // Pairwise differences of [4, 6] - [1, 2]: 2, 3, 4, 5; their median is 3.5.
    let hl = hodges_lehmann(&[4.0, 6.0], &[1.0, 2.0], 0.95).unwrap();
    assert_eq!(hl.estimate, 3.5);
    assert!(hl.low <= hl.estimate && hl.estimate <= hl.high);
}

#[test]
fn rank_test_errors_are_errors_not_p_one() {
    assert_eq!(
        mann_whitney_greater(&[], &[1.0]),
        Err(RankError::EmptySample { sample: "x" })
    );
    assert!(matches!(
        mann_whitney_greater(&[1.0, f64::NAN], &[1.0]),
        Err(RankError::NaN { index: 1, .. })
    ));
}

#[test]
fn rate_test_without_exposure_is_an_error_naming_it() {
    let e = rate_greater(3, 0.0, 1, 10.0).unwrap_err();
    assert!(matches!(e, CountsError::Exposure { .. }), "{e}");
    assert!(e.to_string().contains("got 0"), "{e}");
    assert!(rate_greater(3, 10.0, 1, 10.0).is_ok());
}

#[test]
fn an_empty_baseline_is_inconclusive_even_when_the_minimum_allows_it() {
    // With the point minimums at 0 nothing stops an empty side reaching the tests; it used to
    // come out as Pass (p = 1, shift 0).
    let cfg = VigilJudgeConfig {
        min_baseline_points: 0,
        min_canary_points: 0,
        ..VigilJudgeConfig::default()
    };
    let j = classify(
        &[],
        &[10.0, 11.0, 12.0],
        MetricRule::new(Direction::Increase, MetricKind::Gauge),
        &cfg,
    );
    assert_eq!(j.outcome, Outcome::Inconclusive, "{}", j.reason);
    assert!(j.reason.contains("empty"), "{}", j.reason);
}
