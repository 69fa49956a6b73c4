//! `vigil replay`'s per-scenario cost: one scenario replayed interval by interval through all three
//! judges (Vigil fused, Kayenta-compatible, naive), data already loaded, and the loading itself.
//!
//! Run: `cargo bench -p vigil-benches --bench replay`.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use vigil::replay::{replay_scenario, scenario, ReplayConfig};

fn corpus(id: &str) -> PathBuf {
    let group = if id.starts_with("syn-") {
        "synthetic"
    } else {
        "nezha"
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets")
        .join(group)
        .join(id)
}

fn replay(c: &mut Criterion) {
    let config = ReplayConfig::default();
    let mut group = c.benchmark_group("replay");
    group.sample_size(20);
    for id in [
        // metrics, logs and spans; a fault caught at 60 s
        "tt-20230129-f09-ts-verification-code-service-return",
        // metrics, logs and spans; fault-free, all ten intervals run
        "tt-20230129-n085000-ts-assurance-service",
        // metrics only, 30-minute baseline; fault-free
        "ob-20220823-n192900-currencyservice",
        // metrics, logs and spans with enough events for the 10-second event model
        "tt-20230129-f24-ts-contacts-service-cpu_contention",
    ] {
        let s = scenario::load(&corpus(id)).expect("bundled scenario loads");
        group.bench_function(format!("judge/{id}"), |b| {
            b.iter(|| replay_scenario(black_box(&s), &config))
        });
        group.bench_function(format!("load/{id}"), |b| {
            b.iter(|| scenario::load(black_box(&corpus(id))))
        });
    }
    // The same scenario with its tables as Parquet (written by pyarrow; the analyzer's test data).
    let parquet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/parquet/tt-20230129-f24-ts-contacts-service-cpu_contention");
    group.bench_function(
        "load-parquet/tt-20230129-f24-ts-contacts-service-cpu_contention",
        |b| b.iter(|| scenario::load(black_box(&parquet))),
    );
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
