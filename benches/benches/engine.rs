//! The engine's cost over a whole analysis against one judgement of its final window: a
//! 60-minute analysis at 30-s intervals (120 interim judgements) with, per side, 2,000 log lines/s
//! and 1,000 spans/s at full scale (issue 10). The target is that all 120 steps together cost at
//! most 3× one judgement of the final window (per-interval cost growing with new data only).
//!
//! `VIGIL_ENGINE_SCALE` scales the rates (default 0.01: 20 lines/s and 10 spans/s, so that the
//! benchmark runs in minutes on a shared 2-core machine; 1.0 is the full load).
//! Run: `cargo bench -p vigil-benches --bench engine`; the CPU-time ratio is printed on stderr.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;

use cpu_time::ProcessTime;
use criterion::{criterion_group, criterion_main, Criterion};
use vigil_analyzer::analysis::{
    Analysis, AnalysisSpec, BaselineTiming, Batch, Masking, Role, SideSpec,
};
use vigil_analyzer::judge::JudgeConfig;
use vigil_analyzer::telemetry::{LogRecord, Span, Window};

const MINUTES: f64 = 60.0;
const INTERVAL_S: f64 = 30.0;

fn scale() -> f64 {
    std::env::var("VIGIL_ENGINE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(0.01)
}

/// A deterministic pseudo-random stream (no dependency, same data every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One side's telemetry over [start, start + 60 min): log lines of a dozen templates with
/// variable fields, and spans of four operations with log-uniform latency.
fn side(start: f64, seed: u64) -> (Vec<LogRecord>, Vec<Span>) {
    let s = scale();
    let (lines, spans) = (
        (2000.0 * s * MINUTES * 60.0) as usize,
        (1000.0 * s * MINUTES * 60.0) as usize,
    );
    let mut rng = Lcg(seed);
    let len = MINUTES * 60.0;
    let logs = (0..lines)
        .map(|i| {
            let t = start + len * i as f64 / lines as f64;
            let k = (rng.next() * 12.0) as u32;
            LogRecord {
                time: Some(t),
                severity: Some(if k == 11 { "WARN" } else { "INFO" }.into()),
                body: format!(
                    "op{k} handled request {} for user u{} in {} ms from 10.0.{}.{}",
                    i,
                    (rng.next() * 5000.0) as u32,
                    (rng.next() * 300.0) as u32,
                    k,
                    (rng.next() * 255.0) as u32
                ),
            }
        })
        .collect();
    let spans = (0..spans)
        .map(|i| {
            let op = ["GET /cart", "GET /item", "POST /pay", "db.query"][i % 4];
            Span {
                trace_id: format!("t{seed}-{i}"),
                span_id: format!("s{seed}-{i}"),
                parent_id: None,
                operation: op.into(),
                start: start + len * i as f64 / spans as f64,
                duration_ms: (2.0 + 4.0 * rng.next()).exp(),
                error: None,
                caller: None,
            }
        })
        .collect();
    (logs, spans)
}

/// When the baseline was recorded: beside the canary over the same hour (the anomaly models
/// refitted every interval), or the hour before it (fitted once; what the replay corpus is).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Timing {
    Concurrent,
    Before,
}

fn spec(timing: Timing) -> AnalysisSpec {
    let len = MINUTES * 60.0;
    let b_start = match timing {
        Timing::Concurrent => 0.0,
        Timing::Before => -len,
    };
    let recorded = |start: f64| SideSpec {
        metrics: false,
        logs: true,
        spans: true,
        callers: false,
        log_window: Some(Window {
            start,
            end: start + len,
        }),
        trace_window: Some(Window {
            start,
            end: start + len,
        }),
        log_seconds_covered: None,
        trace_seconds_covered: None,
    };
    AnalysisSpec {
        judges: JudgeConfig::default(),
        canary_start: 0.0,
        baseline_timing: match timing {
            Timing::Concurrent => BaselineTiming::Concurrent { start: 0.0 },
            Timing::Before => BaselineTiming::Before,
        },
        masking: Masking::default(),
        baseline: recorded(b_start),
        canary: recorded(0.0),
    }
}

type Side = (Vec<LogRecord>, Vec<Span>);

/// The whole analysis: each interval's new data, then the interim judgement. A before/after
/// baseline is all there at the start.
fn all_steps(b: &Side, c: &Side, timing: Timing) -> usize {
    let mut a = Analysis::new(spec(timing));
    if timing == Timing::Before {
        let batch = Batch {
            logs: b.0.clone(),
            spans: b.1.clone(),
            ..Batch::default()
        };
        if a.ingest(Role::Baseline, batch).is_err() {
            return 0;
        }
    }
    let steps = (MINUTES * 60.0 / INTERVAL_S) as usize;
    let (mut bl, mut bs, mut cl, mut cs) = (0, 0, 0, 0);
    let mut judged = 0;
    for k in 1..=steps {
        let until = k as f64 * INTERVAL_S;
        let cut = |l: &[LogRecord], s: &[Span]| {
            (
                l.partition_point(|r| r.time.is_some_and(|t| t < until)),
                s.partition_point(|x| x.start < until),
            )
        };
        let (ble, bse) = match timing {
            Timing::Concurrent => cut(&b.0, &b.1),
            Timing::Before => (0, 0),
        };
        let (cle, cse) = cut(&c.0, &c.1);
        for (role, side, l0, l1, s0, s1) in [
            (Role::Baseline, b, bl, ble, bs, bse),
            (Role::Canary, c, cl, cle, cs, cse),
        ] {
            if l1 == l0 && s1 == s0 {
                continue;
            }
            let batch = Batch {
                logs: side.0[l0..l1].to_vec(),
                spans: side.1[s0..s1].to_vec(),
                ..Batch::default()
            };
            if a.ingest(role, batch).is_err() {
                return judged;
            }
        }
        (bl, bs, cl, cs) = (ble, bse, cle, cse);
        judged += usize::from(a.judge(until).is_some());
    }
    judged
}

/// One judgement of the final window, all data given at once.
fn final_window(b: &Side, c: &Side, timing: Timing) -> usize {
    let mut a = Analysis::new(spec(timing));
    for (role, side) in [(Role::Baseline, b), (Role::Canary, c)] {
        let batch = Batch {
            logs: side.0.clone(),
            spans: side.1.clone(),
            ..Batch::default()
        };
        if a.ingest(role, batch).is_err() {
            return 0;
        }
    }
    usize::from(a.judge(MINUTES * 60.0).is_some())
}

fn engine(c: &mut Criterion) {
    let len = MINUTES * 60.0;
    let b = side(0.0, 1);
    let b_before = side(-len, 1);
    let k = side(0.0, 2);
    // One CPU-time measurement of each, for benches/README.md (criterion reports wall time).
    for (timing, b) in [(Timing::Concurrent, &b), (Timing::Before, &b_before)] {
        let t = ProcessTime::now();
        black_box(all_steps(b, &k, timing));
        let steps = t.elapsed();
        let t = ProcessTime::now();
        black_box(final_window(b, &k, timing));
        let once = t.elapsed();
        eprintln!(
            "engine scale {} ({timing:?} baseline): 120 steps {:.2} s CPU, final window once {:.2} s CPU, ratio {:.2}",
            scale(),
            steps.as_secs_f64(),
            once.as_secs_f64(),
            steps.as_secs_f64() / once.as_secs_f64().max(1e-9)
        );
    }
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.bench_function("120_steps", |bench| {
        bench.iter(|| all_steps(black_box(&b), black_box(&k), Timing::Concurrent))
    });
    g.bench_function("final_window_once", |bench| {
        bench.iter(|| final_window(black_box(&b), black_box(&k), Timing::Concurrent))
    });
    g.bench_function("120_steps_before_after", |bench| {
        bench.iter(|| all_steps(black_box(&b_before), black_box(&k), Timing::Before))
    });
    g.bench_function("final_window_once_before_after", |bench| {
        bench.iter(|| final_window(black_box(&b_before), black_box(&k), Timing::Before))
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
