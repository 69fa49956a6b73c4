//! The Kayenta-compatible judge: the Hodges-Lehmann interval (fast merge path, and the literal
//! re-ranking port it replaces) at 2 × 1 000 / 10 000 / 100 000, and a 100-metric judgement of
//! 2 × 60 points each, in-process and through the RemoteJudge JSON.
//!
//! Run: `cargo bench -p vigil-benches --bench kayenta`.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vigil_models::kayenta::mann_whitney::{self, Convention};
use vigil_models::kayenta::preprocess::JavaRandom;
use vigil_models::kayenta::{
    judge, ClassifierParams, MetricInput, MetricSettings, Mode, ScoreThresholds,
};

/// Continuous lognormal-ish latencies with a small shift between the sides, rounded to 0.01 so
/// that there are ties, as there are in scraped metrics.
fn sample(rng: &mut JavaRandom, n: usize, median: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (median * (0.2 * rng.next_gaussian()).exp() * 100.0).round() / 100.0)
        .collect()
}

fn hodges_lehmann(c: &mut Criterion) {
    let mut group = c.benchmark_group("kayenta_hodges_lehmann");
    for n in [1_000usize, 10_000, 100_000] {
        let mut rng = JavaRandom::new(n as i64);
        let control = sample(&mut rng, n, 100.0);
        let experiment = sample(&mut rng, n, 103.0);
        if n == 100_000 {
            group.sample_size(20);
        }
        group.bench_with_input(BenchmarkId::new("merge", format!("2x{n}")), &n, |b, _| {
            b.iter(|| {
                mann_whitney::shift_interval(
                    black_box(&experiment),
                    black_box(&control),
                    0.98,
                    Convention::Kayenta,
                )
            })
        });
        if n <= 10_000 {
            group.bench_with_input(
                BenchmarkId::new("reranking", format!("2x{n}")),
                &n,
                |b, _| {
                    b.iter(|| {
                        mann_whitney::shift_interval_by_ranking(
                            black_box(&experiment),
                            black_box(&control),
                            0.98,
                            Convention::Kayenta,
                        )
                    })
                },
            );
        }
    }
    group.finish();
}

struct Request {
    names: Vec<String>,
    groups: Vec<Vec<String>>,
    control: Vec<Vec<f64>>,
    experiment: Vec<Vec<f64>>,
}

/// 100 metrics in 5 groups, 60 points a side; every tenth metric regressed by 20%.
fn request_100() -> Request {
    let mut rng = JavaRandom::new(100);
    let mut r = Request {
        names: Vec::new(),
        groups: Vec::new(),
        control: Vec::new(),
        experiment: Vec::new(),
    };
    for i in 0..100 {
        r.names.push(format!("metric_{i}"));
        r.groups.push(vec![format!("group_{}", i % 5)]);
        let median = 10.0 + i as f64;
        r.control.push(sample(&mut rng, 60, median));
        let shift = if i % 10 == 0 { 1.2 } else { 1.0 };
        r.experiment.push(sample(&mut rng, 60, median * shift));
    }
    r
}

fn request_json(r: &Request) -> String {
    let metrics: Vec<_> = r
        .names
        .iter()
        .zip(&r.groups)
        .map(|(n, g)| {
            serde_json::json!({"name": n, "groups": g,
                "analysisConfigurations": {"canary": {"direction": "increase"}}})
        })
        .collect();
    let pairs: Vec<_> = r
        .names
        .iter()
        .zip(r.control.iter().zip(&r.experiment))
        .map(|(n, (c, e))| {
            serde_json::json!({"name": n, "id": n, "tags": {},
                "values": {"control": c, "experiment": e}})
        })
        .collect();
    serde_json::json!({
        "canaryConfig": {"metrics": metrics, "classifier": {"groupWeights": {}}},
        "scoreThresholds": {"pass": 75, "marginal": 50},
        "metricSetPairList": pairs
    })
    .to_string()
}

fn judge_100_metrics(c: &mut Criterion) {
    let r = request_100();
    let settings = MetricSettings::default();
    let inputs: Vec<MetricInput<'_>> = (0..r.names.len())
        .map(|i| MetricInput {
            name: &r.names[i],
            groups: &r.groups[i],
            control: &r.control[i],
            experiment: &r.experiment[i],
            settings,
        })
        .collect();
    let thresholds = ScoreThresholds {
        pass: 75.0,
        marginal: 50.0,
    };
    let mut group = c.benchmark_group("kayenta_judge");
    group.bench_function("100_metrics_2x60/in_process", |b| {
        b.iter(|| {
            let mut rng = JavaRandom::new(0);
            let mut normal = || rng.next_gaussian();
            judge(
                black_box(&inputs),
                &[],
                &thresholds,
                &ClassifierParams::NETFLIX_ACA_JUDGE,
                Mode::Kayenta,
                &mut normal,
            )
        })
    });
    let text = request_json(&r);
    group.bench_function("100_metrics_2x60/json_in_json_out", |b| {
        b.iter(|| {
            let req = vigil_analyzer::kayenta_api::parse_request(black_box(&text)).unwrap();
            let result = vigil_analyzer::kayenta_api::judge(&req, 0);
            serde_json::to_string(&result).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, hodges_lehmann, judge_100_metrics);
criterion_main!(benches);
