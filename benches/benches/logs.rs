//! Template miner throughput (lines/s) on 1 000 000 Loghub-like messages: 100 000 per system,
//! a fresh default miner per system, as `vigil logs parse` would run on each file.
//!
//! Two measurements: wall time (criterion's default) and process CPU time. The benchmark machine
//! is shared by several builds, so wall time includes waiting for a core; CPU time is what one
//! core spends, which is the figure for "lines/s on one core".

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ProcessTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_analyzer::logs::{Miner, MinerConfig};
use vigil_benches::logs::{generate, loghub_contents, SYSTEMS};

const PER_SYSTEM: usize = 100_000;

/// CPU time of the whole process (all threads), in nanoseconds like `WallTime`.
struct ProcessCpu;

static WALL: WallTime = WallTime;

impl Measurement for ProcessCpu {
    type Intermediate = ProcessTime;
    type Value = Duration;
    fn start(&self) -> ProcessTime {
        ProcessTime::now()
    }
    fn end(&self, i: ProcessTime) -> Duration {
        i.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn inputs() -> Vec<Vec<String>> {
    SYSTEMS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let samples = loghub_contents(s).expect("bundled Loghub data");
            generate(&samples, PER_SYSTEM, 42 + i as u64)
        })
        .collect()
}

fn run_one_core(data: &[Vec<String>]) {
    for lines in data {
        let mut m = Miner::new(MinerConfig::default());
        for l in lines {
            black_box(m.add_id(l));
        }
    }
}

fn run_batch(data: &[Vec<String>], threads: usize) {
    for lines in data {
        let mut m = Miner::new(MinerConfig::default());
        black_box(m.add_batch(lines, threads));
    }
}

fn bench_cpu(c: &mut Criterion<ProcessCpu>) {
    let data = inputs();
    let total: usize = data.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("logs_miner_cpu_time");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("add_id_1m_one_core", |b| b.iter(|| run_one_core(&data)));
    g.finish();
}

fn bench_wall(c: &mut Criterion) {
    let data = inputs();
    let total: usize = data.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("logs_miner_wall_time");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("add_id_1m_one_core", |b| b.iter(|| run_one_core(&data)));
    g.bench_function("add_batch_1m_two_threads", |b| {
        b.iter(|| run_batch(&data, 2))
    });
    g.bench_function("add_with_params_1m_one_core", |b| {
        b.iter(|| {
            for lines in &data {
                let mut m = Miner::new(MinerConfig::default());
                for l in lines {
                    black_box(m.add(l));
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ProcessCpu);
    targets = bench_cpu
}
criterion_group!(wall, bench_wall);
criterion_main!(cpu, wall);
