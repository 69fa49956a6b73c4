//! The Prometheus source against a real Prometheus server (Debian's `prometheus` 2.42, started
//! here on a free port) whose TSDB is backfilled with `promtool` from the bundled scenarios'
//! `metrics.csv`:
//!
//! - a live analysis fed by `fetch_side` — range queries over the growing window, interval by
//!   interval — reaches the verdict `vigil replay` reaches on the same scenario's metrics files
//!   (the reference is the `vigil` binary itself, run on a metrics-only copy of each scenario);
//!   on the synthetic scenarios, sampled on the step grid, the whole verdict timeline and every
//!   sample agree;
//! - NaN readings and absent series are no data, never zero; Prometheus' own errors, an
//!   unreachable server and a server that never answers are distinct, precise errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil::replay::scenario::{self, MetricTable, Scenario};
use vigil::replay::{analysis_spec, ReplayConfig};
use vigil_analyzer::analysis::{Analysis, Batch, Conclusion, Role};
use vigil_analyzer::source::{
    fetch_side, MetricQuery, OwnedMetricSample, Prometheus, Scope, SourceError,
};
use vigil_analyzer::telemetry::{MetricSample, Window};

use common::{PromServer, FAMILY};

/// Scenarios sampled exactly on their step grid: every sample and the whole timeline must agree.
const ON_GRID: &[&str] = &[
    "synthetic/syn-concurrent-baseline-fail",
    "synthetic/syn-concurrent-baseline-pass",
    "synthetic/syn-constant-metrics-jump",
    "synthetic/syn-constant-metrics-pass",
    "synthetic/syn-error-logs-and-slow-spans",
    "synthetic/syn-healthy-noisy",
    "synthetic/syn-low-traffic",
    "synthetic/syn-no-baseline-data",
    "synthetic/syn-no-canary-data",
    "synthetic/syn-slow-memory-leak",
    "synthetic/syn-trend-continues-pass",
    "synthetic/syn-variance-blowup",
    "synthetic/syn-zero-baseline-errors-fail",
    "synthetic/syn-zero-baseline-errors-pass",
];

/// Every bundled real incident (`datasets/nezha/`), sampled a few seconds past each minute with
/// jitter and NaN gaps: a live query re-stamps each reading to the end of its grid step, so the
/// final verdicts must agree and every metric must deliver the same readings in the same order
/// (times to detect may differ by the re-stamping).
fn off_grid() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut v: Vec<String> = std::fs::read_dir(common::datasets().join("nezha"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("scenario.json").exists())
            .map(|p| format!("nezha/{}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        v.sort();
        assert!(
            v.len() >= 40,
            "expected the bundled Nezha scenarios, found {}",
            v.len()
        );
        v
    })
}

/// A metrics-only copy of every scenario used (scenario.json and the sides' metrics.csv), so that
/// `vigil replay` of the copy is replay of "that scenario's metrics".
fn metrics_only_copies() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vigil-metrics-only-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for rel in ON_GRID
            .iter()
            .copied()
            .chain(off_grid().iter().map(String::as_str))
        {
            let from = common::datasets().join(rel);
            let to = dir.join(from.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(from.join("scenario.json"), to.join("scenario.json")).unwrap();
            for side in ["baseline", "canary"] {
                let csv = from.join(side).join("metrics.csv");
                if csv.exists() {
                    std::fs::create_dir_all(to.join(side)).unwrap();
                    std::fs::copy(&csv, to.join(side).join("metrics.csv")).unwrap();
                }
            }
        }
        dir
    })
}

/// One Prometheus per group of scenarios, holding their metrics (labelled by scenario id and
/// side), started once per test binary. The lookback is just under the group's step (29 s for
/// the synthetic 30 s grid, 59 s for Nezha's minutes), as staleness ends a series whose target
/// stopped reporting: a reading is then seen at the grid point of its own step and no later.
fn server(lookback: &'static str) -> &'static PromServer {
    static ON: OnceLock<PromServer> = OnceLock::new();
    static OFF: OnceLock<PromServer> = OnceLock::new();
    let (cell, list): (_, Vec<&str>) = if lookback == "29s" {
        (&ON, ON_GRID.to_vec())
    } else {
        (&OFF, off_grid().iter().map(String::as_str).collect())
    };
    cell.get_or_init(|| {
        let mut om = String::new();
        for rel in list {
            let s =
                scenario::load(&metrics_only_copies().join(Path::new(rel).file_name().unwrap()))
                    .unwrap();
            common::scenario_samples(&s, &mut om);
        }
        common::start_prometheus(&format!("source-{lookback}"), &om, lookback)
    })
}

fn prometheus(lookback: &'static str) -> Prometheus {
    Prometheus::new(&server(lookback).url, Duration::from_secs(10)).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The metrics a spec for this scenario lists: every column either side recorded, each a PromQL
/// template selecting the side through `${scope}`.
fn metric_queries(s: &Scenario) -> Vec<MetricQuery> {
    let mut names: Vec<String> = Vec::new();
    for t in [&s.baseline.metrics, &s.canary.metrics]
        .into_iter()
        .flatten()
    {
        for (n, _) in &t.columns {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|n| MetricQuery {
            query: format!("{FAMILY}{{${{scope}},column=\"{}\"}}", escape(&n)),
            name: n,
        })
        .collect()
}

fn scope(s: &Scenario, side: &str) -> Scope {
    Scope {
        matchers: vec![
            ("scenario".into(), s.id.clone()),
            ("side".into(), side.into()),
        ],
        vars: BTreeMap::new(),
    }
}

fn step(s: &Scenario) -> f64 {
    s.baseline
        .metrics
        .as_ref()
        .or(s.canary.metrics.as_ref())
        .map(common::step_of)
        .unwrap_or(30.0)
}

fn ingest(session: &mut Analysis, role: Role, owned: &[OwnedMetricSample]) {
    let samples: Vec<MetricSample> = owned.iter().map(OwnedMetricSample::as_sample).collect();
    session
        .ingest(
            role,
            Batch {
                metrics: &samples,
                ..Batch::default()
            },
        )
        .unwrap();
}

/// What a live analysis of this scenario sees and concludes: the engine session replay uses, fed
/// from Prometheus interval by interval over the growing windows, as the service will.
struct Live {
    conclusion: Conclusion,
    /// Every sample fetched last (the whole windows), per side.
    baseline: Vec<OwnedMetricSample>,
    canary: Vec<OwnedMetricSample>,
    queries: usize,
}

async fn live(prom: &Prometheus, s: &Scenario, config: &ReplayConfig) -> Live {
    let metrics = metric_queries(s);
    let step = step(s);
    let t0 = s.canary_window.start;
    // The horizon and interval arithmetic of `vigil replay` (src/replay/mod.rs), unchanged.
    let horizon = [
        s.canary.metric_window,
        s.canary.log_window,
        s.canary.trace_window,
        Some(s.canary_window),
    ]
    .iter()
    .flatten()
    .map(|w| w.end - t0)
    .fold(0.0f64, f64::max);
    let steps = ((horizon / config.interval_s).ceil() as usize).max(1);
    let concurrent = s.concurrent_baseline();
    let spec = analysis_spec(s, config);
    let (b_on, c_on) = (spec.baseline.metrics, spec.canary.metrics);
    let bw: Window = s.baseline.metric_window.unwrap_or(s.baseline_window);
    let cw: Window = s.canary.metric_window.unwrap_or(s.canary_window);
    let mut session = Analysis::new(spec);
    let (b_scope, c_scope) = (scope(s, "baseline"), scope(s, "canary"));
    let mut out = Live {
        conclusion: session.outcome(),
        baseline: Vec::new(),
        canary: Vec::new(),
        queries: 0,
    };
    if b_on && !concurrent {
        out.baseline = fetch_side(prom, &metrics, &b_scope, bw.start, bw.end, step)
            .await
            .unwrap();
        out.queries += metrics.len();
        ingest(&mut session, Role::Baseline, &out.baseline);
    }
    for k in 1..=steps {
        let elapsed = (k as f64 * config.interval_s).min(horizon.max(config.interval_s));
        if c_on {
            out.canary = fetch_side(
                prom,
                &metrics,
                &c_scope,
                cw.start.min(t0),
                t0 + elapsed,
                step,
            )
            .await
            .unwrap();
            out.queries += metrics.len();
            ingest(&mut session, Role::Canary, &out.canary);
        }
        if b_on && concurrent {
            out.baseline = fetch_side(
                prom,
                &metrics,
                &b_scope,
                bw.start,
                s.baseline_window.start + elapsed,
                step,
            )
            .await
            .unwrap();
            out.queries += metrics.len();
            ingest(&mut session, Role::Baseline, &out.baseline);
        }
        session.judge(elapsed);
        if session.is_done() {
            break;
        }
    }
    out.conclusion = session.outcome();
    out
}

/// `vigil replay --json` of the metrics-only copies: the reference, computed by the binary from
/// the files.
fn replay_reference() -> &'static BTreeMap<String, Value> {
    static REF: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    REF.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("replay")
            .arg(metrics_only_copies())
            .args(["--json", "--quiet", "--jobs", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vigil replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
            .collect()
    })
}

fn load_copy(rel: &str) -> Scenario {
    scenario::load(&metrics_only_copies().join(Path::new(rel).file_name().unwrap())).unwrap()
}

/// Finite cells of a table inside `[start, end)`: (metric, time, value), sorted.
fn cells(t: Option<&MetricTable>, w: Window) -> Vec<(String, f64, f64)> {
    let mut v = Vec::new();
    if let Some(t) = t {
        for (name, values) in &t.columns {
            for (time, x) in t.times.iter().zip(values) {
                if x.is_finite() && *time >= w.start && *time < w.end {
                    v.push((name.clone(), *time, *x));
                }
            }
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    v
}

fn fetched(samples: &[OwnedMetricSample]) -> Vec<(String, f64, f64)> {
    let mut v: Vec<_> = samples
        .iter()
        .filter(|s| s.value.is_finite())
        .map(|s| (s.name.clone(), s.time, s.value))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    v
}

fn timeline(reference: &Value) -> Vec<(f64, String, f64)> {
    reference["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["elapsed_s"].as_f64().unwrap(),
                s["verdict"].as_str().unwrap().to_string(),
                s["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn live_analyses_from_prometheus_reach_the_verdicts_of_replay_on_grid_scenarios() {
    let prom = prometheus("29s");
    let reference = replay_reference();
    let rt = runtime();
    let config = ReplayConfig::default();
    let started = Instant::now();
    let mut queries = 0;
    let mut verdicts = BTreeMap::new();
    for rel in ON_GRID {
        let s = load_copy(rel);
        let r = &reference[&s.id];
        let got = rt.block_on(live(&prom, &s, &config));
        queries += got.queries;
        // Every reading of the files came back, at its own time, and nothing else.
        let bw = s.baseline.metric_window.unwrap_or(s.baseline_window);
        let cw = s.canary.metric_window.unwrap_or(s.canary_window);
        if !s.concurrent_baseline() {
            assert_eq!(
                fetched(&got.baseline),
                cells(s.baseline.metrics.as_ref(), bw),
                "{}: baseline samples",
                s.id
            );
        }
        if !got.conclusion.timeline.is_empty() && !s.concurrent_baseline() {
            let judged_until =
                s.canary_window.start + got.conclusion.timeline.last().unwrap().elapsed_s;
            assert_eq!(
                fetched(&got.canary),
                cells(
                    s.canary.metrics.as_ref(),
                    Window {
                        start: cw.start,
                        end: judged_until,
                    }
                ),
                "{}: canary samples",
                s.id
            );
        }
        let live_timeline: Vec<(f64, String, f64)> = got
            .conclusion
            .timeline
            .iter()
            .map(|st| (st.elapsed_s, st.verdict.as_str().to_string(), st.score))
            .collect();
        assert_eq!(live_timeline, timeline(r), "{}: verdict timeline", s.id);
        assert_eq!(
            got.conclusion.verdict.as_str(),
            r["verdict"].as_str().unwrap(),
            "{}",
            s.id
        );
        verdicts.insert(s.id.clone(), got.conclusion.verdict.as_str().to_string());
    }
    eprintln!(
        "{} on-grid scenarios, {queries} range queries in {:.1} s: {verdicts:?}",
        ON_GRID.len(),
        started.elapsed().as_secs_f64()
    );
    // The comparison means something only if both kinds of answer are among them.
    assert!(verdicts.values().any(|v| v == "Fail"), "{verdicts:?}");
    assert!(verdicts.values().any(|v| v == "Pass"), "{verdicts:?}");
}

#[test]
fn live_analyses_of_real_incidents_reach_the_verdicts_of_replay() {
    let prom = prometheus("59s");
    let reference = replay_reference();
    let rt = runtime();
    let config = ReplayConfig::default();
    let mut verdicts = BTreeMap::new();
    let mut same_ttd = 0;
    for rel in off_grid() {
        let s = load_copy(rel);
        let r = &reference[&s.id];
        let got = rt.block_on(live(&prom, &s, &config));
        // Same readings, in the same order, per metric: each re-stamped to the end of the grid
        // step it fell in, less than a step later.
        let bw = s.baseline.metric_window.unwrap_or(s.baseline_window);
        let by_metric = |v: Vec<(String, f64, f64)>| {
            let mut m: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (n, t, x) in v {
                m.entry(n).or_default().push((t, x));
            }
            m
        };
        // A reading at `t` is seen at the grid point ending its step, `ceil(t / 60) * 60`; one
        // whose grid point falls at or after the window's end belongs to the next window.
        let file = by_metric(
            cells(s.baseline.metrics.as_ref(), bw)
                .into_iter()
                .filter(|(_, t, _)| (t / 60.0).ceil() * 60.0 < bw.end)
                .collect(),
        );
        let prom_side = by_metric(fetched(&got.baseline));
        assert_eq!(
            file.keys().collect::<Vec<_>>(),
            prom_side.keys().collect::<Vec<_>>(),
            "{}",
            s.id
        );
        for (name, readings) in &file {
            let live = &prom_side[name];
            let values = |v: &[(f64, f64)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
            assert_eq!(values(readings), values(live), "{}: {name}", s.id);
            for ((tf, _), (tl, _)) in readings.iter().zip(live) {
                assert!(
                    *tl >= *tf && *tl - *tf < 60.0,
                    "{}: {name} {tf} -> {tl}",
                    s.id
                );
            }
        }
        assert_eq!(
            got.conclusion.verdict.as_str(),
            r["verdict"].as_str().unwrap(),
            "{}: live timeline {:?}, replay timeline {:?}",
            s.id,
            got.conclusion.timeline,
            timeline(r)
        );
        same_ttd += usize::from(got.conclusion.time_to_detect_s == r["time_to_detect_s"].as_f64());
        verdicts.insert(s.id.clone(), got.conclusion.verdict.as_str().to_string());
    }
    eprintln!(
        "{} real incidents, the same final verdict each; the same time to detect in {same_ttd}: {verdicts:?}",
        verdicts.len()
    );
    assert!(verdicts.values().any(|v| v == "Fail"), "{verdicts:?}");
    assert!(verdicts.values().any(|v| v == "Pass"), "{verdicts:?}");
}

/// `tt-20230129-f09-...`'s canary has NaN cells: the series holds those NaN samples (written
/// as NaN into the TSDB), and the source must leave them out rather than read 0.
#[test]
fn nan_readings_and_absent_series_are_no_data_never_zero() {
    let prom = prometheus("59s");
    let rt = runtime();
    let s = load_copy("nezha/tt-20230129-f09-ts-verification-code-service-return");
    let table = s.canary.metrics.as_ref().unwrap();
    let (name, values) = table
        .columns
        .iter()
        .find(|(_, v)| v.iter().any(|x| x.is_nan()) && v.iter().any(|x| x.is_finite()))
        .expect("a canary column with NaN cells and readings");
    let cw = s.canary.metric_window.unwrap();
    let query = format!(
        "{FAMILY}{{scenario=\"{}\",side=\"canary\",column=\"{}\"}}",
        s.id,
        escape(name)
    );
    // The raw series: one point per finite cell, none for the NaN ones (and no zero anywhere the
    // file has none).
    let series = rt
        .block_on(prom.query_range(&query, cw.start, cw.end, 60.0))
        .unwrap();
    assert_eq!(series.len(), 1);
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let got: Vec<f64> = series[0].points.iter().map(|p| p.1).collect();
    assert_eq!(got, finite, "{name}: NaN cells must be absent");
    assert!(finite.len() < values.len());
    // Prometheus itself does return the NaN points: the source is what drops them.
    let nan_points = rt.block_on(raw_values(
        &server("59s").url,
        &query,
        cw.start,
        cw.end,
        60.0,
    ));
    assert!(nan_points.iter().any(|v| v == "NaN"), "{nan_points:?}");
    // An absent series: no series, and fetch_side gives the metric no sample at all.
    let missing = MetricQuery {
        name: "ErrorCount".into(),
        query: format!("{FAMILY}{{${{scope}},column=\"no-such-column\"}}"),
    };
    let samples = rt
        .block_on(fetch_side(
            &prom,
            std::slice::from_ref(&missing),
            &scope(&s, "canary"),
            cw.start,
            cw.end,
            60.0,
        ))
        .unwrap();
    assert!(samples.is_empty(), "{samples:?}");
    // Beside a metric with readings, the absent one and an all-NaN one are NaN cells of the
    // same rows (what the files hold for a missing reading), never 0.
    let present = MetricQuery {
        name: name.clone(),
        query: format!("{FAMILY}{{${{scope}},column=\"{}\"}}", escape(name)),
    };
    let nan_only = MetricQuery {
        name: "LatencyNaN(s)".into(),
        query: format!("{} * 0 / 0", present.query),
    };
    let samples = rt
        .block_on(fetch_side(
            &prom,
            &[present, missing.clone(), nan_only],
            &scope(&s, "canary"),
            cw.start,
            cw.end,
            60.0,
        ))
        .unwrap();
    let of =
        |n: &str| -> Vec<&OwnedMetricSample> { samples.iter().filter(|x| x.name == n).collect() };
    let rows: Vec<f64> = of(name).iter().map(|x| x.time).collect();
    // Rows exist where some metric had a reading: here the present metric's finite cells.
    assert_eq!(rows.len(), finite.len());
    assert!(of(name).iter().all(|x| x.value.is_finite()));
    for other in ["ErrorCount", "LatencyNaN(s)"] {
        let cells = of(other);
        assert_eq!(
            cells.iter().map(|x| x.time).collect::<Vec<_>>(),
            rows,
            "{other}"
        );
        assert!(cells.iter().all(|x| x.value.is_nan()), "{other}: {cells:?}");
    }
    // A query whose every point is NaN (0/0): no data either.
    let all_nan = rt
        .block_on(prom.query_range(&format!("{query} * 0 / 0"), cw.start, cw.end, 60.0))
        .unwrap();
    assert!(all_nan.iter().all(|s| s.points.is_empty()), "{all_nan:?}");
}

/// The `values` strings Prometheus returns, read with a plain HTTP client (to show what the
/// source receives before it filters).
async fn raw_values(url: &str, query: &str, start: f64, end: f64, step: f64) -> Vec<String> {
    let addr = url.trim_start_matches("http://").to_string();
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let start = (start / step).ceil() * step;
    let end = (end / step).floor() * step;
    let request = format!(
        "GET /api/v1/query_range?query={q}&start={start}&end={end}&step={step} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    );
    let r = tokio::task::spawn_blocking(move || common::http(&addr, &request).unwrap())
        .await
        .unwrap();
    r.json()["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn repeated_queries_over_a_growing_window_return_the_same_points() {
    let prom = prometheus("29s");
    let rt = runtime();
    let s = load_copy("synthetic/syn-healthy-noisy");
    let bw = s.baseline.metric_window.unwrap_or(s.baseline_window);
    let query = format!(
        "{FAMILY}{{scenario=\"{}\",side=\"baseline\",column=\"CpuUsageRate(%)\"}}",
        s.id
    );
    // Windows cut at odd seconds: the aligned grid gives the same timestamps every time.
    let full = rt
        .block_on(prom.query_range(&query, bw.start, bw.end - 1.0, 30.0))
        .unwrap();
    assert!(full[0].points.iter().all(|p| p.0 % 30.0 == 0.0));
    for (from, to) in [(0.3, 31.0), (0.3, 301.0), (29.9, 905.5), (61.0, 1799.0)] {
        let part = rt
            .block_on(prom.query_range(&query, bw.start + from, bw.start + to, 30.0))
            .unwrap();
        let part = &part[0].points;
        assert!(!part.is_empty());
        let i = full[0]
            .points
            .iter()
            .position(|p| p.0 == part[0].0)
            .unwrap();
        assert_eq!(
            part[..],
            full[0].points[i..i + part.len()],
            "({from}, {to})"
        );
        assert_eq!(part[0].0, ((bw.start + from) / 30.0).ceil() * 30.0);
        assert_eq!(
            part.last().unwrap().0,
            ((bw.start + to) / 30.0).floor() * 30.0
        );
    }
    // A window with no grid point in it asks nothing and gets nothing.
    let none = rt
        .block_on(prom.query_range(&query, bw.start + 0.3, bw.start + 7.0, 30.0))
        .unwrap();
    assert!(none.is_empty());
    // A range of more than Prometheus' 11,000 points per query is fetched in chunks and stitched:
    // 1 s steps from 3 hours before the data to its end.
    let long = rt
        .block_on(prom.query_range(&query, bw.start - 10_800.0, bw.end - 1.0, 1.0))
        .unwrap();
    let pts = &long[0].points;
    assert!(
        pts.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, no duplicates"
    );
    let table = s.baseline.metrics.as_ref().unwrap();
    let col = &table
        .columns
        .iter()
        .find(|(n, _)| n == "CpuUsageRate(%)")
        .unwrap()
        .1;
    for (t, v) in pts {
        // Each point shows the reading of the 30 s step it falls in.
        let row = table.times.partition_point(|x| x <= t) - 1;
        assert_eq!(*v, col[row], "at {t}");
        assert!(*t - table.times[row] < 30.0);
    }
    // 60 readings, each visible for 29 or 30 one-second points (lookback 29 s).
    assert!(
        (59 * 29 + 1..=60 * 30).contains(&pts.len()),
        "{}",
        pts.len()
    );
}

#[test]
fn prometheus_errors_are_reported_as_prometheus_said_them() {
    let prom = prometheus("29s");
    let rt = runtime();
    let e = rt
        .block_on(prom.query_range("sum(rate(x[5m]", 0.0, 600.0, 60.0))
        .unwrap_err();
    match &e {
        SourceError::Prometheus {
            http_status,
            error_type,
            error,
            query,
        } => {
            assert_eq!(*http_status, 400);
            assert_eq!(error_type, "bad_data");
            assert!(error.contains("parse error"), "{error}");
            assert_eq!(query, "sum(rate(x[5m]");
        }
        other => panic!("expected a Prometheus error, got {other:?}"),
    }
    // Several series for one metric is the caller's mistake, named.
    let s = load_copy("synthetic/syn-healthy-noisy");
    let bw = s.baseline.metric_window.unwrap_or(s.baseline_window);
    let e = rt
        .block_on(fetch_side(
            &prom,
            &[MetricQuery {
                name: "everything".into(),
                query: format!("{FAMILY}{{${{scope}}}}"),
            }],
            &scope(&s, "baseline"),
            bw.start,
            bw.end,
            30.0,
        ))
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::SeveralSeries { metric, count, .. } if metric == "everything" && *count > 1),
        "{e:?}"
    );
    // An unknown placeholder is named, with the metric.
    let e = rt
        .block_on(fetch_side(
            &prom,
            &[MetricQuery {
                name: "cpu".into(),
                query: "rate(x{${scope}}[${window}])".into(),
            }],
            &scope(&s, "baseline"),
            bw.start,
            bw.end,
            30.0,
        ))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("cpu") && text.contains("${window}"), "{text}");
}

#[test]
fn an_unreachable_or_silent_server_is_a_clear_error() {
    let rt = runtime();
    // Nothing listens on this port.
    let port = common::free_port();
    let prom =
        Prometheus::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
    let e = rt
        .block_on(prom.query_range("up", 0.0, 60.0, 15.0))
        .unwrap_err();
    match &e {
        SourceError::Unreachable { url, message } => {
            assert_eq!(url, &format!("http://127.0.0.1:{port}/api/v1/query_range"));
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // A password in the URL (basic auth) never appears in an error.
    let with_secret = Prometheus::new(
        &format!("http://vigil:s3cret@127.0.0.1:{port}"),
        Duration::from_secs(5),
    )
    .unwrap();
    let e = rt
        .block_on(with_secret.query_range("up", 0.0, 60.0, 15.0))
        .unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
    // fetch_side says which metric failed.
    let e = rt
        .block_on(fetch_side(
            &prom,
            &[MetricQuery {
                name: "CpuUsageRate(%)".into(),
                query: "up".into(),
            }],
            &Scope::default(),
            0.0,
            600.0,
            60.0,
        ))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("metric \"CpuUsageRate(%)\": prometheus at"),
        "{e}"
    );
    // A server that accepts and never answers: a timeout, after the configured time.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let prom = Prometheus::new(&format!("http://{addr}"), Duration::from_millis(500)).unwrap();
    let t = Instant::now();
    let e = rt
        .block_on(prom.query_range("up", 0.0, 60.0, 15.0))
        .unwrap_err();
    assert!(
        matches!(e, SourceError::Timeout { timeout, .. } if timeout == Duration::from_millis(500)),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(silent);
    // Something that is not Prometheus (an HTML error page) is named as such.
    let html = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = html.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut c, _)) = html.accept() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = "<html>502 Bad Gateway</html>";
            let _ = write!(
                c,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let prom = Prometheus::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    let e = rt
        .block_on(prom.query_range("up", 0.0, 60.0, 15.0))
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::BadResponse { http_status: 502, message, .. } if message.contains("502 Bad Gateway")),
        "{e:?}"
    );
}
