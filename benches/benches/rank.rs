//! Mann-Whitney U p-value at 2 × 1 000, 2 × 10 000 and 2 × 100 000 (asymptotic, as scipy's
//! `auto` picks there), the exact method at 8 × 1 000 … 8 × 100 000, and scipy on the same data.
//!
//! Run: `cargo bench -p vigil-benches --bench rank`. The scipy side runs
//! `benches/peers/scipy_mannwhitney.py` with `$VIGIL_BENCH_PYTHON` (default `python3`); when scipy is
//! missing the peer comparison is skipped with a message and the criterion numbers still stand.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_benches::rank::{exact_samples, samples, EXACT_SIZES, EXACT_SMALL, SIZES};
use vigil_models::rank::{mann_whitney_u, MannWhitneyOptions};

/// One benchmark input: a name shared with the scipy script, and the two samples.
struct Case {
    name: String,
    label: String,
    x: Vec<f64>,
    y: Vec<f64>,
    /// Whether scipy is timed too: its exact method is O(U^2) in Python, about 20 s at 8 × 10 000
    /// and far longer at 8 × 100 000, so the largest exact case is ours alone.
    peer: bool,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for n in SIZES {
        let (x, y) = samples(n);
        cases.push(Case {
            name: format!("asymptotic_{n}"),
            label: format!("2 × {n}"),
            x,
            y,
            peer: true,
        });
    }
    for n in EXACT_SIZES {
        let (x, y) = exact_samples(n);
        cases.push(Case {
            name: format!("exact_{n}"),
            label: format!("{EXACT_SMALL} × {n} (exact)"),
            x,
            y,
            peer: n <= 10_000,
        });
    }
    cases
}

fn pvalue(c: &mut Criterion) {
    let opts = MannWhitneyOptions::default();
    let cases = cases();
    let mut group = c.benchmark_group("mann_whitney_pvalue");
    for case in cases.iter().filter(|c| c.name.starts_with("asymptotic")) {
        group.throughput(Throughput::Elements((case.x.len() + case.y.len()) as u64));
        let id = BenchmarkId::from_parameter(format!("2x{}", case.x.len()));
        group.bench_function(id, |b| {
            b.iter(|| mann_whitney_u(black_box(&case.x), black_box(&case.y), &opts))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("mann_whitney_exact");
    for case in cases.iter().filter(|c| c.name.starts_with("exact")) {
        let id = BenchmarkId::from_parameter(format!("{}x{}", case.x.len(), case.y.len()));
        group.bench_function(id, |b| {
            b.iter(|| mann_whitney_u(black_box(&case.x), black_box(&case.y), &opts))
        });
    }
    group.finish();
    compare_with_scipy(&cases, &opts);
}

/// Median seconds per call, measured the way the scipy script measures (7 repeats of a batch that
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

fn compare_with_scipy(cases: &[Case], opts: &MannWhitneyOptions) {
    let cases: Vec<&Case> = cases.iter().filter(|c| c.peer).collect();
    let dir = std::env::temp_dir().join(format!("vigil-rank-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!(
            "scipy comparison skipped: cannot create {}: {e}",
            dir.display()
        );
        return;
    }
    for case in &cases {
        for (side, v) in [("x", &case.x), ("y", &case.y)] {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            let path = dir.join(format!("{}_{side}.f64", case.name));
            std::fs::write(path, bytes).expect("write bench data");
        }
    }
    let python = std::env::var("VIGIL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/scipy_mannwhitney.py");
    eprintln!("timing scipy with {python} (its first exact call at 8 × 10 000 alone takes ~20 s)");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .args(cases.iter().map(|c| c.name.as_str()))
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
    println!("\nMann-Whitney U, scipy defaults, median per call (same data, same timing method):");
    println!("| size | Vigil | scipy | scipy / Vigil | scipy first call |");
    println!("|---|---|---|---|---|");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut versions = String::new();
    for (line, case) in stdout.lines().zip(cases.iter().copied()) {
        let peer: serde_json::Value = serde_json::from_str(line).expect("peer JSON line");
        let ours = mann_whitney_u(&case.x, &case.y, opts).expect("bench data are valid");
        assert_eq!(
            peer["statistic"].as_f64(),
            Some(ours.statistic),
            "U differs from scipy for {}",
            case.name
        );
        let scipy_p = peer["pvalue"].as_f64().expect("scipy p-value");
        assert!(
            (ours.pvalue - scipy_p).abs() <= 1e-9 * scipy_p,
            "p differs from scipy for {}: {} vs {scipy_p}",
            case.name,
            ours.pvalue
        );
        let vigil_s = median_seconds(|| {
            black_box(mann_whitney_u(black_box(&case.x), black_box(&case.y), opts).ok());
        });
        let scipy_s = peer["median_s"].as_f64().expect("scipy time");
        let cold = peer["cold_s"]
            .as_f64()
            .map_or_else(|| "—".to_string(), human);
        println!(
            "| {} | {} | {} | {:.1}× | {cold} |",
            case.label,
            human(vigil_s),
            human(scipy_s),
            scipy_s / vigil_s
        );
        versions = format!("scipy {}, numpy {}", peer["scipy"], peer["numpy"]);
    }
    println!("({versions}; p-values and U agree with scipy to 1e-9)");
}

fn human(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.1} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

criterion_group!(benches, pvalue);
criterion_main!(benches);
