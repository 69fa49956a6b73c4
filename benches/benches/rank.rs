//! Mann-Whitney U p-value at 2 × 1 000, 2 × 10 000 and 2 × 100 000, and scipy on the same data.
//!
//! Run: `cargo bench -p vigil-benches --bench rank`. The scipy side runs
//! `benches/peers/scipy_mannwhitney.py` with `$VIGIL_BENCH_PYTHON` (default `python3`); when scipy is
//! missing the peer comparison is skipped with a message and the criterion numbers still stand.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_benches::rank::{samples, SIZES};
use vigil_models::rank::{mann_whitney_u, MannWhitneyOptions};

fn pvalue(c: &mut Criterion) {
    let opts = MannWhitneyOptions::default();
    let mut group = c.benchmark_group("mann_whitney_pvalue");
    for n in SIZES {
        let (x, y) = samples(n);
        group.throughput(Throughput::Elements(2 * n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(format!("2x{n}")), &n, |b, _| {
            b.iter(|| mann_whitney_u(black_box(&x), black_box(&y), &opts))
        });
    }
    group.finish();
    compare_with_scipy(&opts);
}

/// Median seconds per call, measured the way the scipy script measures (repeats of a batch that
/// takes at least 0.2 s), so the printed ratio compares like with like.
fn median_seconds(mut f: impl FnMut()) -> f64 {
    let mut number = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..number {
            f();
        }
        if start.elapsed().as_secs_f64() >= 0.2 {
            break;
        }
        number *= 2;
    }
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..number {
                f();
            }
            start.elapsed().as_secs_f64() / f64::from(number)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn compare_with_scipy(opts: &MannWhitneyOptions) {
    let dir = std::env::temp_dir().join(format!("vigil-rank-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!(
            "scipy comparison skipped: cannot create {}: {e}",
            dir.display()
        );
        return;
    }
    for n in SIZES {
        let (x, y) = samples(n);
        for (name, v) in [("x", &x), ("y", &y)] {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            std::fs::write(dir.join(format!("{name}_{n}.f64")), bytes).expect("write bench data");
        }
    }
    let python = std::env::var("VIGIL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/scipy_mannwhitney.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .args(SIZES.iter().map(|n| n.to_string()))
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "scipy comparison skipped: {python} {} failed:\n{}",
                script.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Err(e) => {
            eprintln!("scipy comparison skipped: cannot run {python}: {e}");
            return;
        }
    };
    println!("\nMann-Whitney U p-value, median per call (same data, same timing method):");
    println!("| size | Vigil | scipy | scipy / Vigil |");
    println!("|---|---|---|---|");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (line, n) in stdout.lines().zip(SIZES) {
        let peer: serde_json::Value = serde_json::from_str(line).expect("peer JSON line");
        let (x, y) = samples(n);
        let ours = mann_whitney_u(&x, &y, opts).expect("bench data are valid");
        let (scipy_u, scipy_p) = (peer["statistic"].as_f64(), peer["pvalue"].as_f64());
        assert_eq!(
            scipy_u,
            Some(ours.statistic),
            "U differs from scipy at n={n}"
        );
        let scipy_p = scipy_p.expect("scipy p-value");
        assert!(
            (ours.pvalue - scipy_p).abs() <= 1e-9 * scipy_p,
            "p differs from scipy at n={n}: {} vs {scipy_p}",
            ours.pvalue
        );
        let vigil_s = median_seconds(|| {
            black_box(mann_whitney_u(black_box(&x), black_box(&y), opts).ok());
        });
        let scipy_s = peer["median_s"].as_f64().expect("scipy time");
        println!(
            "| 2 × {n} | {} | {} | {:.1}× |",
            human(vigil_s),
            human(scipy_s),
            scipy_s / vigil_s
        );
    }
    if let Some(first) = stdout.lines().next() {
        let peer: serde_json::Value = serde_json::from_str(first).expect("peer JSON line");
        println!("(scipy {}, numpy {})", peer["scipy"], peer["numpy"]);
    }
}

fn human(seconds: f64) -> String {
    if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

criterion_group!(benches, pvalue);
criterion_main!(benches);
