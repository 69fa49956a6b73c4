//! Template miner throughput (lines/s) on 1 000 000 Loghub-like messages: 100 000 per system,
//! a fresh default miner per system, as `vigil logs parse` would run on each file.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_analyzer::logs::{Miner, MinerConfig};
use vigil_benches::logs::{generate, loghub_contents, SYSTEMS};

const PER_SYSTEM: usize = 100_000;

fn inputs() -> Vec<Vec<String>> {
    SYSTEMS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            generate(
                &loghub_contents(s).expect("bundled Loghub data"),
                PER_SYSTEM,
                42 + i as u64,
            )
        })
        .collect()
}

fn bench_miner(c: &mut Criterion) {
    let data = inputs();
    let total: usize = data.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("logs_miner");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("add_id_1m_one_core", |b| {
        b.iter(|| {
            for lines in &data {
                let mut m = Miner::new(MinerConfig::default());
                for l in lines {
                    black_box(m.add_id(l));
                }
            }
        })
    });
    g.bench_function("add_batch_1m_two_threads", |b| {
        b.iter(|| {
            for lines in &data {
                let mut m = Miner::new(MinerConfig::default());
                black_box(m.add_batch(lines, 2));
            }
        })
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

criterion_group!(benches, bench_miner);
criterion_main!(benches);
