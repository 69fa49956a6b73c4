//! Throughput of the service's SQLite store (`vigil_analyzer::store`): durable creates and appends
//! per second, and the read paths the API serves (get, a list page, a watch catch-up).
//!
//! Every write is one committed transaction. `full` is the default durability
//! (`synchronous = FULL`: one WAL fsync per commit, survives power loss); `normal` skips that fsync
//! (survives a process crash only) and is here to show what the fsync costs. The database lives
//! under Cargo's target temporary directory, on the same disk as the build (not tmpfs, where fsync
//! would be free).
//!
//! Run: `cargo bench -p vigil-benches --bench store`.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_analyzer::store::{Durability, ListFilter, NewAnalysis, NewEntry, Store, StoreOptions};

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn open(name: &str, durability: Durability) -> (Store, PathBuf) {
    let d = dir(name);
    let s = Store::open_with(
        &d,
        &StoreOptions {
            durability,
            ..Default::default()
        },
    )
    .expect("open the bench store");
    (s, d)
}

/// A spec of about 1 KB, the size of `examples/analysis.yaml` as JSON.
fn spec(i: u64) -> String {
    let metrics: Vec<String> = (0..8)
        .map(|m| {
            format!(
                r#"{{"name":"metric_{m}","query":"sum(rate(http_requests_total{{${{scope}},code=~\"5..\"}}[1m]))","direction":"increase","critical":false}}"#
            )
        })
        .collect();
    format!(
        r#"{{"app":"checkout","n":{i},"baseline":{{"service.version":"41"}},"canary":{{"service.version":"42"}},"interval":"30s","lifetime":"30m","metrics":[{}]}}"#,
        metrics.join(",")
    )
}

/// An interim judgement of about 2 KB: verdict, score and per-signal evidence.
fn judgement(i: u64) -> NewEntry {
    let evidence: Vec<String> = (0..12)
        .map(|m| {
            format!(
                r#"{{"signal":"metric_{m}","verdict":"Pass","p":0.4{m},"baseline":{{"n":60,"median":101.3}},"canary":{{"n":60,"median":102.9}},"note":"within tolerance"}}"#
            )
        })
        .collect();
    NewEntry {
        kind: "judgement".into(),
        payload_json: format!(
            r#"{{"interval":{i},"verdict":"Pass","score":96.5,"evidence":[{}]}}"#,
            evidence.join(",")
        ),
        state: Some("running".into()),
        verdict: Some("Pass".into()),
        score: Some(96.5),
        next_interval: Some((i + 1) as u32),
        finished_ms: None,
        at_ms: i as i64 * 30_000,
    }
}

fn event(i: u64) -> NewEntry {
    NewEntry {
        kind: "event".into(),
        payload_json: format!(r#"{{"event":"notification.queued","interval":{i}}}"#),
        state: None,
        verdict: None,
        score: None,
        next_interval: None,
        finished_ms: None,
        at_ms: i as i64 * 30_000,
    }
}

fn writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_write");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(1));
    for (label, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let (s, d) = open(&format!("create-{label}"), durability);
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("create_analysis", label), |b| {
            b.iter(|| {
                n += 1;
                black_box(
                    s.create_analysis(&NewAnalysis {
                        id: format!("bench-{n:012}"),
                        app: "checkout".into(),
                        spec_json: spec(n),
                        created_ms: n as i64,
                    })
                    .expect("create"),
                )
            })
        });
        drop(s);
        let _ = std::fs::remove_dir_all(d);

        let (s, d) = open(&format!("append-{label}"), durability);
        s.create_analysis(&NewAnalysis {
            id: "a".into(),
            app: "checkout".into(),
            spec_json: spec(0),
            created_ms: 0,
        })
        .expect("create");
        let mut i = 0u64;
        // One interim judgement with its state change: what each interval of a running analysis
        // writes.
        g.bench_function(BenchmarkId::new("append_judgement", label), |b| {
            b.iter(|| {
                i += 1;
                black_box(s.append("a", &[judgement(i)]).expect("append"))
            })
        });
        // A judgement and the three events it caused, in one transaction.
        g.bench_function(BenchmarkId::new("append_judgement_3_events", label), |b| {
            b.iter(|| {
                i += 1;
                black_box(
                    s.append("a", &[judgement(i), event(i), event(i), event(i)])
                        .expect("append"),
                )
            })
        });
        drop(s);
        let _ = std::fs::remove_dir_all(d);
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let (s, d) = open("reads", Durability::Normal);
    const ANALYSES: u64 = 10_000;
    for n in 0..ANALYSES {
        s.create_analysis(&NewAnalysis {
            id: format!("id-{n:06}"),
            app: format!("app{}", n % 20),
            spec_json: spec(n),
            created_ms: n as i64,
        })
        .expect("create");
    }
    let batch: Vec<NewEntry> = (1..=120).map(judgement).collect();
    s.append("id-005000", &batch).expect("append");

    let mut g = c.benchmark_group("store_read");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    g.bench_function("get", |b| {
        b.iter(|| black_box(s.get("id-004321").expect("get")))
    });
    g.bench_function("list_page_50_of_10000", |b| {
        b.iter(|| black_box(s.list(&ListFilter::default()).expect("list")))
    });
    g.bench_function("list_page_50_app_filter", |b| {
        let f = ListFilter {
            app: Some("app7".into()),
            states: vec!["pending".into()],
            ..Default::default()
        };
        b.iter(|| black_box(s.list(&f).expect("list")))
    });
    g.bench_function("entries_since_120_judgements", |b| {
        b.iter(|| black_box(s.entries_since("id-005000", 0, 1000).expect("entries")))
    });
    g.finish();
    drop(s);
    let _ = std::fs::remove_dir_all(d);
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);
