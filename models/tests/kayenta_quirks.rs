//! One test per Kayenta quirk that Vigil's `kayenta` mode reproduces on purpose (JUDGE.md §7/§8,
//! `docs/judge.md`), plus the fast Hodges-Lehmann path checked against the literal port.
//!
//! Reference outcomes come from Kayenta's documented behaviour and from the figures users
//! reported from real Kayenta runs (spinnaker/spinnaker#6278), not from this code.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use proptest::prelude::*;
use serde_json::Value;
use vigil_models::kayenta::classify::{classify, ClassifierParams, Label};
use vigil_models::kayenta::intervals::{self, AggregationThresholds};
use vigil_models::kayenta::mann_whitney::{self, Convention};
use vigil_models::kayenta::preprocess::JavaRandom;
use vigil_models::kayenta::score::{self, classify_score, ScoreInput, ScoreLabel, ScoreThresholds};
use vigil_models::kayenta::{
    judge, judge_metric, Direction, MetricInput, MetricSettings, Mode, NanStrategy,
};

const JUDGE: ClassifierParams = ClassifierParams::NETFLIX_ACA_JUDGE;

fn label(control: &[f64], experiment: &[f64], settings: &MetricSettings) -> Label {
    let mut rng = JavaRandom::new(1);
    let mut normal = || rng.next_gaussian();
    classify("m", control, experiment, settings, &JUDGE, &mut normal)
        .unwrap()
        .label
}

fn repeat(v: f64, n: usize) -> Vec<f64> {
    vec![v; n]
}

#[test]
fn the_25_percent_of_estimate_rule_passes_a_variance_blow_up() {
    // spinnaker/spinnaker#6278: 7×100 + 3×1 against 10×1 passes (CI ≈ [6.8e-5, 99], est 99:
    // the lower end does not clear 0.25·99), while 8×100 + 2×1 fails.
    let control = repeat(1.0, 10);
    let mut seven = repeat(100.0, 7);
    seven.extend(repeat(1.0, 3));
    let mut eight = repeat(100.0, 8);
    eight.extend(repeat(1.0, 2));
    let settings = MetricSettings::default();
    assert_eq!(label(&control, &seven, &settings), Label::Pass);
    assert_eq!(label(&control, &eight, &settings), Label::High);

    let ci = mann_whitney::shift_interval(&seven, &control, 0.98, Convention::Kayenta).unwrap();
    assert!(ci.lower > 0.0 && ci.lower < 1e-3, "{ci:?}");
    assert!((ci.estimate - 99.0).abs() < 1e-3, "{ci:?}");
}

#[test]
fn a_zero_baseline_error_count_passes() {
    // kayenta#426: a sparse error counter that is 0 on the baseline. The interval's lower end
    // sits at 0 (the step function of tied zeros), so it never clears 25% of the estimate.
    let control = repeat(0.0, 30);
    let mut experiment = repeat(0.0, 26);
    experiment.extend([3.0, 5.0, 8.0, 12.0]);
    let settings = MetricSettings {
        direction: Direction::Increase,
        ..MetricSettings::default()
    };
    assert_eq!(label(&control, &experiment, &settings), Label::Pass);
}

#[test]
fn a_nan_effect_size_skips_the_effect_size_gate() {
    // A control mean of exactly 0 makes the mean ratio NaN, and NaN opens the gate however high
    // allowedIncrease is; with a non-zero control mean the same gate holds the metric at Pass.
    let mut settings = MetricSettings::default();
    settings.effect_size.allowed_increase = 1000.0;
    let zeros = repeat(0.0, 5);
    let experiment = [54.9, 54.5, 55.1, 55.6, 57.4];
    assert_eq!(label(&zeros, &experiment, &settings), Label::High);
    let small = [1.0, 1.1, 0.9, 1.2, 1.0];
    assert_eq!(label(&small, &experiment, &settings), Label::Pass);
}

#[test]
fn both_sides_constant_are_separated_by_noise_whatever_the_seed() {
    for seed in 0..20 {
        let mut rng = JavaRandom::new(seed);
        let mut normal = || rng.next_gaussian();
        let c = classify(
            "m",
            &repeat(1.0, 10),
            &repeat(2.0, 10),
            &MetricSettings::default(),
            &JUDGE,
            &mut normal,
        )
        .unwrap();
        assert_eq!(c.label, Label::High, "seed {seed}");
    }
}

fn inputs<'a>(rows: &'a [(Label, Vec<String>, bool)]) -> Vec<ScoreInput<'a>> {
    rows.iter()
        .map(|(l, g, c)| ScoreInput {
            label: *l,
            groups: g,
            critical: *c,
            reason: Some("why"),
        })
        .collect()
}

fn g(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

#[test]
fn an_all_nodata_group_scores_100_in_the_summary_but_reports_0() {
    let rows = vec![
        (Label::Pass, g("latency"), false),
        (Label::High, g("latency"), false),
        (Label::Pass, g("cpu"), false),
        (Label::Nodata, g("errors"), false),
    ];
    let r = score::score(&inputs(&rows), &[]);
    // latency 50, cpu 100, errors (no data) 100; each weighs 100/3.
    assert_eq!(r.summary, 83.33);
    let errors = r.group_scores.iter().find(|g| g.name == "errors").unwrap();
    assert_eq!((errors.score, errors.no_data), (0.0, true));
}

#[test]
fn half_or_more_nodata_zeroes_the_canary() {
    let rows = vec![
        (Label::Pass, g("a"), false),
        (Label::Nodata, g("a"), false),
        (Label::Pass, g("b"), false),
        (Label::Nodata, g("b"), false),
    ];
    let r = score::score(&inputs(&rows), &[]);
    assert_eq!(r.summary, 0.0);
    assert_eq!(
        r.reason.as_deref(),
        Some("Canary Failed: 50% or more metrics returned NODATA")
    );
    // NodataFailMetric and Error do not count towards that rule.
    let rows = vec![
        (Label::Pass, g("a"), false),
        (Label::NodataFailMetric, g("a"), false),
        (Label::Error, g("b"), false),
        (Label::Pass, g("b"), false),
    ];
    assert_eq!(score::score(&inputs(&rows), &[]).summary, 75.0);
}

#[test]
fn weights_for_absent_groups_are_lost_and_excess_weight_goes_negative() {
    let rows = vec![(Label::Pass, g("a"), false)];
    let w = vec![("a".to_string(), 50.0), ("gone".to_string(), 50.0)];
    assert_eq!(score::score(&inputs(&rows), &w).summary, 50.0);

    let rows = vec![(Label::Pass, g("a"), false), (Label::High, g("b"), false)];
    let w = vec![("a".to_string(), 150.0)];
    // b is unweighted and gets (100 − 150) / 1 = −50: a failing b raises the score above 100.
    assert_eq!(score::score(&inputs(&rows), &w).summary, 150.0);
}

#[test]
fn a_critical_failure_zeroes_the_score_with_its_reason() {
    let rows = vec![
        (Label::Pass, g("a"), false),
        (Label::Pass, g("a"), false),
        (Label::High, g("b"), true),
    ];
    let r = score::score(&inputs(&rows), &[]);
    assert_eq!(r.summary, 0.0);
    assert_eq!(r.reason.as_deref(), Some("Canary Failed: why"));
}

#[test]
fn summary_is_rounded_half_up_to_two_places() {
    let rows = vec![
        (Label::Pass, g("a"), false),
        (Label::Pass, g("a"), false),
        (Label::High, g("a"), false),
    ];
    assert_eq!(score::score(&inputs(&rows), &[]).summary, 66.67);
}

#[test]
fn a_score_equal_to_marginal_is_marginal_to_the_judge_but_fails_in_orca() {
    let t = ScoreThresholds {
        pass: 75.0,
        marginal: 50.0,
    };
    assert_eq!(classify_score(50.0, &t), ScoreLabel::Marginal);
    assert_eq!(classify_score(75.0, &t), ScoreLabel::Pass);
    assert_eq!(classify_score(49.99, &t), ScoreLabel::Fail);
    let orca = AggregationThresholds {
        pass: Some(75.0),
        marginal: Some(50.0),
    };
    assert!(!intervals::aggregated_judgment(50.0, &orca));
    assert!(intervals::interval_fails_fast(50.0, Some(50.0)));
    assert!(!intervals::interval_fails_fast(50.01, Some(50.0)));
}

#[test]
fn must_have_data_fails_a_missing_metric_unless_it_is_critical() {
    let mut s = MetricSettings {
        must_have_data: true,
        ..MetricSettings::default()
    };
    let mut rng = JavaRandom::new(1);
    let mut normal = || rng.next_gaussian();
    let all_nan = [f64::NAN; 4];
    let v = judge_metric("m", &[1.0, 2.0], &all_nan, &s, &JUDGE, &mut normal);
    assert_eq!(v.classification.label, Label::NodataFailMetric);
    assert_eq!(
        v.classification.reason.as_deref(),
        Some("Missing data for m")
    );
    assert_eq!(v.experiment_stats.count, 0);
    s.critical = true;
    let v = judge_metric("m", &[1.0, 2.0], &all_nan, &s, &JUDGE, &mut normal);
    assert_eq!(
        (v.classification.label, v.classification.critical),
        (Label::Nodata, true)
    );
    // With NaN replacement the same series become zeros and are judged.
    s.nan_strategy = NanStrategy::Replace;
    let v = judge_metric("m", &[0.0, 0.0], &all_nan, &s, &JUDGE, &mut normal);
    assert_eq!(v.classification.label, Label::Pass);
}

#[test]
fn muted_metrics_are_reported_but_not_scored() {
    let groups = g("a");
    let control: Vec<f64> = (0..30).map(|i| 10.0 + (i % 7) as f64 * 0.1).collect();
    let high: Vec<f64> = control.iter().map(|v| v * 3.0).collect();
    let muted = MetricSettings {
        muted: true,
        ..MetricSettings::default()
    };
    let metrics = [
        MetricInput {
            name: "ok",
            groups: &groups,
            control: &control,
            experiment: &control,
            settings: MetricSettings::default(),
        },
        MetricInput {
            name: "muted",
            groups: &groups,
            control: &control,
            experiment: &high,
            settings: muted,
        },
    ];
    let mut rng = JavaRandom::new(1);
    let mut normal = || rng.next_gaussian();
    let t = ScoreThresholds {
        pass: 75.0,
        marginal: 50.0,
    };
    let j = judge(&metrics, &[], &t, &JUDGE, Mode::Kayenta, &mut normal);
    assert_eq!(j.metrics[1].classification.label, Label::High);
    assert_eq!(j.score.summary, 100.0);
    assert_eq!(j.classification, ScoreLabel::Pass);
}

fn vector(id: u64) -> Value {
    let all: Vec<Value> = serde_json::from_str(include_str!("data/kayenta_vectors.json")).unwrap();
    all.into_iter().find(|v| v["id"] == id).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn without_the_estimate_correction_the_port_reproduces_r_exactly() {
    // Vectors 84 and 85 quote R's wilcox.test. Kayenta corrects the estimate too and only meets
    // R's value within the test's 1e-4; dropping that correction (R's convention) meets it to
    // rounding, which checks the rest of the port against R.
    for id in [84, 85] {
        let v = vector(id);
        let x = floats(&v["input"]["x_experiment"]);
        let y = floats(&v["input"]["y_control"]);
        let conf = v["input"]["confidenceLevel"].as_f64().unwrap();
        let want = v["expected"]["estimate"].as_f64().unwrap();
        let r = mann_whitney::shift_interval(&x, &y, conf, Convention::R).unwrap();
        assert!((r.estimate - want).abs() < 1e-9, "vector {id}: {r:?}");
        let k = mann_whitney::shift_interval(&x, &y, conf, Convention::Kayenta).unwrap();
        assert!((k.estimate - want).abs() > 1e-9, "vector {id}: {k:?}");
        assert_eq!((k.lower, k.upper), (r.lower, r.upper));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The O(n) merge gives bit-identical intervals to re-ranking, on data with many ties.
    #[test]
    fn fast_interval_equals_the_literal_port(
        x in prop::collection::vec(-20i32..20, 1..40),
        y in prop::collection::vec(-20i32..20, 1..40),
        scale in prop::sample::select(vec![1.0, 0.1, 1e-3, 7.5]),
        conf in prop::sample::select(vec![0.8, 0.95, 0.98]),
        negative_zeros in any::<bool>(),
    ) {
        // -0.0 ranks below 0.0 in Java's order, which takes the merge off its float fast path.
        let zero = if negative_zeros { -0.0 } else { 0.0 };
        let x: Vec<f64> = x.into_iter().map(|v| f64::from(v) * scale).collect();
        let y: Vec<f64> = y
            .into_iter()
            .map(|v| if v == 0 { zero } else { f64::from(v) * scale })
            .collect();
        for convention in [Convention::Kayenta, Convention::R] {
            let fast = mann_whitney::shift_interval(&x, &y, conf, convention);
            let slow = mann_whitney::shift_interval_by_ranking(&x, &y, conf, convention);
            prop_assert_eq!(fast, slow);
        }
    }
}

#[test]
fn a_metric_whose_rank_test_cannot_run_is_an_error_not_a_panic() {
    let mut rng = JavaRandom::new(1);
    let mut normal = || rng.next_gaussian();
    let v = judge_metric(
        "m",
        &[1.0, 2.0, 3.0],
        &[1.0, f64::INFINITY, 2.0],
        &MetricSettings::default(),
        &JUDGE,
        &mut normal,
    );
    assert_eq!(v.classification.label, Label::Error);
    assert_eq!(
        v.classification.reason.as_deref(),
        Some("Metric Classification Failed")
    );
    assert!(!v.classification.critical);
}

#[test]
fn outlier_removal_is_off_unless_configured() {
    use vigil_models::kayenta::OutlierStrategy;
    let mut rng = JavaRandom::new(1);
    let mut normal = || rng.next_gaussian();
    let control: Vec<f64> = (0..20).map(|i| 10.0 + f64::from(i % 5)).collect();
    let mut experiment = control.clone();
    experiment[0] = 10_000.0;
    let keep = judge_metric(
        "m",
        &control,
        &experiment,
        &MetricSettings::default(),
        &JUDGE,
        &mut normal,
    );
    assert_eq!(keep.experiment_stats.count, 20);
    assert_eq!(keep.experiment_stats.max, 10_000.0);
    let remove = MetricSettings {
        outliers: OutlierStrategy::Remove { factor: 3.0 },
        ..MetricSettings::default()
    };
    let removed = judge_metric("m", &control, &experiment, &remove, &JUDGE, &mut normal);
    assert_eq!(removed.experiment_stats.count, 19);
    assert_eq!(removed.experiment_stats.max, 14.0);
}
