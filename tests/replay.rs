//! Replay of a small subset of the bundled corpus: verdicts that a broken judge would get wrong,
//! and the `--json` contract of `vigil replay`.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vigil::replay::pool::replay_all;
use vigil::replay::{JudgeName, ReplayConfig, ScenarioResult};
use vigil_analyzer::verdict::{Signal, Verdict};

fn datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets")
}

fn replay(ids: &[&str]) -> Vec<ScenarioResult> {
    let folders: Vec<PathBuf> = ids
        .iter()
        .map(|id| {
            let group = if id.starts_with("syn-") {
                "synthetic"
            } else {
                "nezha"
            };
            datasets().join(group).join(id)
        })
        .collect();
    replay_all(&folders, &ReplayConfig::default(), Some(2), false).unwrap()
}

/// `vigil replay --quiet --json DIR EXTRA…` as a process.
fn replay_cli(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--json"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

/// [`replay_cli`], which must succeed, read as JSON.
fn replay_json(dir: &Path, extra: &[&str]) -> Value {
    let out = replay_cli(dir, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn by_id<'a>(results: &'a [ScenarioResult], id: &str) -> &'a ScenarioResult {
    results.iter().find(|r| r.id == id).unwrap()
}

#[test]
fn synthetic_edge_cases_get_the_right_verdicts() {
    let ids = [
        "syn-no-canary-data",
        "syn-no-baseline-data",
        "syn-constant-metrics-pass",
        "syn-constant-metrics-jump",
        "syn-zero-baseline-errors-pass",
        "syn-zero-baseline-errors-fail",
        "syn-low-traffic",
        "syn-variance-blowup",
        "syn-slow-memory-leak",
        "syn-healthy-noisy",
        "syn-error-logs-and-slow-spans",
        "syn-concurrent-baseline-pass",
        "syn-concurrent-baseline-fail",
        "syn-trend-continues-pass",
    ];
    let rs = replay(&ids);
    let v = |id: &str| by_id(&rs, id).vigil.verdict;
    // No data is never a Pass.
    assert_eq!(v("syn-no-canary-data"), Verdict::Inconclusive);
    assert_ne!(v("syn-no-baseline-data"), Verdict::Pass);
    let note = by_id(&rs, "syn-no-canary-data").vigil.note.clone().unwrap();
    assert!(
        note.contains("canary/ folder is missing"),
        "the note must name the missing folder: {note}"
    );
    for id in [
        "syn-constant-metrics-pass",
        "syn-zero-baseline-errors-pass",
        "syn-healthy-noisy",
        "syn-concurrent-baseline-pass",
        // A steady trend that runs on from the baseline into the canary is not a change (the
        // anomaly model once read it as 9 of 20 anomalous minutes: Marginal).
        "syn-trend-continues-pass",
    ] {
        assert_eq!(
            v(id),
            Verdict::Pass,
            "{id}: {:?}",
            by_id(&rs, id).vigil.evidence
        );
    }
    // Too little traffic must not fail a healthy canary.
    assert!(
        !v("syn-low-traffic").flagged(),
        "{:?}",
        by_id(&rs, "syn-low-traffic").vigil.evidence
    );
    for id in [
        "syn-constant-metrics-jump",
        "syn-zero-baseline-errors-fail",
        "syn-variance-blowup",
        "syn-slow-memory-leak",
        "syn-error-logs-and-slow-spans",
        "syn-concurrent-baseline-fail",
    ] {
        assert_eq!(
            v(id),
            Verdict::Fail,
            "{id}: {:?}",
            by_id(&rs, id).vigil.evidence
        );
    }
    // The evidence names the cause, with numbers.
    let jump = &by_id(&rs, "syn-constant-metrics-jump").vigil;
    assert_eq!(jump.evidence[0].subject, "CpuUsageRate(%)");
    assert!(
        jump.evidence[0].detail.contains("20.0000 -> 60.0000"),
        "{}",
        jump.evidence[0].detail
    );
    let errs = &by_id(&rs, "syn-zero-baseline-errors-fail").vigil;
    assert_eq!(errs.evidence[0].subject, "ErrorCount");
    let leak = &by_id(&rs, "syn-slow-memory-leak").vigil;
    assert!(
        leak.evidence.iter().any(|e| e.subject == "MemoryUsage(Mi)"),
        "{:?}",
        leak.evidence
    );
    // Fail fast: slow spans are caught within the first minute, memory leaks take longer.
    let spans = &by_id(&rs, "syn-error-logs-and-slow-spans").vigil;
    assert!(
        spans.time_to_detect_s.unwrap() <= 60.0,
        "{:?}",
        spans.time_to_detect_s
    );
    assert!(spans.evidence.iter().any(|e| e.signal == Signal::Traces));
    // The reference judges do not see a variance blow-up or a leak.
    for id in ["syn-variance-blowup", "syn-slow-memory-leak"] {
        assert!(
            !by_id(&rs, id).outcome(JudgeName::Kayenta).verdict.flagged(),
            "{id}"
        );
    }
}

#[test]
fn real_incidents_cpu_contention_fails_and_a_fault_free_pair_passes() {
    let rs = replay(&[
        "tt-20230129-f24-ts-contacts-service-cpu_contention",
        "tt-20230129-f09-ts-verification-code-service-return",
        "ob-20220823-n192900-currencyservice",
        "tt-20230129-n085000-ts-assurance-service",
    ]);
    let cpu = &by_id(&rs, "tt-20230129-f24-ts-contacts-service-cpu_contention").vigil;
    assert_eq!(cpu.verdict, Verdict::Fail);
    assert!(
        cpu.evidence.iter().any(|e| e.subject.starts_with("Cpu")),
        "{:?}",
        cpu.evidence
    );
    let ret = &by_id(&rs, "tt-20230129-f09-ts-verification-code-service-return").vigil;
    assert_eq!(ret.verdict, Verdict::Fail);
    assert!(
        ret.evidence.iter().any(|e| e.signal == Signal::Logs),
        "{:?}",
        ret.evidence
    );
    for id in [
        "ob-20220823-n192900-currencyservice",
        "tt-20230129-n085000-ts-assurance-service",
    ] {
        assert_eq!(
            by_id(&rs, id).vigil.verdict,
            Verdict::Pass,
            "{id}: {:?}",
            by_id(&rs, id).vigil.evidence
        );
    }
}

#[test]
fn json_output_keeps_its_contract() {
    let v = replay_json(&datasets().join("synthetic"), &[]);
    let scenarios = v["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 14);
    for s in scenarios {
        assert!(s["id"].as_str().unwrap().starts_with("syn-"));
        assert!(
            matches!(s["expected"].as_str(), Some("fail" | "pass")),
            "{s}"
        );
        assert!(
            matches!(
                s["verdict"].as_str(),
                Some("Pass" | "Marginal" | "Fail" | "Inconclusive" | "Error")
            ),
            "{s}"
        );
        let score = s["score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&score));
        assert!(s["time_to_detect_s"].is_null() || s["time_to_detect_s"].as_f64().unwrap() > 0.0);
        assert!(s["evidence"].is_array());
        // Every finding keeps its sentence and adds its typed fields: at least a stable key.
        for f in s["evidence"].as_array().unwrap() {
            for field in ["signal", "subject", "severity", "strength", "detail"] {
                assert!(f.get(field).is_some(), "{field} missing in {f}");
            }
            let key = f["key"].as_str().unwrap_or_default();
            assert!(
                key.starts_with(&format!("{}:", f["signal"].as_str().unwrap_or("?")))
                    || key.contains(':'),
                "{f}"
            );
        }
        let flagged_by_logs = s["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["signal"] == "logs");
        if let Some(f) = flagged_by_logs {
            assert!(f["counts"]["canary"].as_u64().is_some(), "{f}");
            assert!(f["q"].as_f64().is_some(), "{f}");
        }
        // never flagged => no time to detect
        if matches!(s["verdict"].as_str(), Some("Pass" | "Inconclusive")) {
            assert!(s["time_to_detect_s"].is_null(), "{s}");
        }
    }
    let vigil = &v["summary"]["judges"]["vigil"];
    for key in [
        "precision",
        "recall",
        "false_positive_rate",
        "f1",
        "inconclusive_rate",
    ] {
        assert!(
            vigil.get(key).is_some(),
            "summary.judges.vigil.{key} missing"
        );
    }
    assert_eq!(vigil["positives"].as_u64(), Some(7));
    assert_eq!(v["summary"]["scenarios"].as_u64(), Some(14));
    assert!(
        v["summary"]["judges"]["kayenta"].is_object()
            && v["summary"]["judges"]["naive"].is_object()
    );
}

#[test]
fn a_broken_scenario_is_an_error_that_names_the_field() {
    let dir = std::env::temp_dir().join(format!("vigil-replay-test-{}", std::process::id()));
    let s = dir.join("bad");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(
        s.join("scenario.json"),
        r#"{"id": "bad", "expected": "maybe", "baseline_window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:03:00Z"}, "canary_window": {"start": "2026-01-01T00:03:00Z", "end": "2026-01-01T00:06:00Z"}}"#,
    )
    .unwrap();
    let rs = replay_all(
        std::slice::from_ref(&s),
        &ReplayConfig::default(),
        Some(1),
        false,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(rs[0].vigil.verdict, Verdict::Error);
    let note = rs[0].vigil.note.as_deref().unwrap();
    assert!(
        note.contains("expected") && note.contains("maybe"),
        "{note}"
    );
}

/// A private copy of a bundled scenario, for tests that break or edit it.
fn copy_error_logs_scenario(dst: &Path) {
    let src = datasets()
        .join("synthetic")
        .join("syn-error-logs-and-slow-spans");
    for side in ["", "baseline", "canary"] {
        std::fs::create_dir_all(dst.join(side)).unwrap();
        for entry in std::fs::read_dir(src.join(side)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dst.join(side).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// Copies a bundled scenario, breaks one file with `edit`, and returns the Error note replay gives.
fn broken_copy_note(name: &str, edit: impl FnOnce(&Path)) -> String {
    let dst = std::env::temp_dir()
        .join(format!("vigil-broken-{}-{name}", std::process::id()))
        .join(name);
    copy_error_logs_scenario(&dst);
    edit(&dst);
    let rs = replay_all(
        std::slice::from_ref(&dst),
        &ReplayConfig::default(),
        Some(1),
        false,
    )
    .unwrap();
    std::fs::remove_dir_all(dst.parent().unwrap()).unwrap();
    assert_eq!(
        rs[0].vigil.verdict,
        Verdict::Error,
        "{name}: {:?}",
        rs[0].vigil
    );
    rs[0].vigil.note.clone().unwrap()
}

/// Replaces the value in `column` of data row `row` (1-based, after the header) of a CSV file.
fn set_cell(path: &Path, row: usize, column: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines[0].split(',').position(|c| c == column).unwrap();
    let mut cells: Vec<&str> = lines[row].split(',').collect();
    cells[at] = value;
    lines[row] = cells.join(",");
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn malformed_values_are_errors_that_name_file_field_and_value() {
    // Text where a number belongs was read as a silent NaN before; infinity would poison means.
    let note = broken_copy_note("text-metric", |d| {
        set_cell(&d.join("canary/metrics.csv"), 2, "CpuUsageRate(%)", "abc")
    });
    assert!(
        note.contains("canary/metrics.csv")
            && note.contains("CpuUsageRate(%) (row 2)")
            && note.contains("\"abc\""),
        "{note}"
    );
    let note = broken_copy_note("inf-metric", |d| {
        set_cell(&d.join("baseline/metrics.csv"), 4, "CpuUsageRate(%)", "inf")
    });
    assert!(
        note.contains("baseline/metrics.csv") && note.contains("(row 4)") && note.contains("inf"),
        "{note}"
    );
    let note = broken_copy_note("negative-duration", |d| {
        set_cell(&d.join("canary/spans.csv"), 1, "duration_ms", "-5")
    });
    assert!(
        note.contains("duration_ms (row 1)")
            && note.contains("non-negative")
            && note.contains("-5"),
        "{note}"
    );
    let note = broken_copy_note("reversed-window", |d| {
        let p = d.join("scenario.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let w = &mut v["canary_window"];
        let (start, end) = (w["start"].clone(), w["end"].clone());
        w["start"] = end;
        w["end"] = start;
        std::fs::write(&p, v.to_string()).unwrap();
    });
    assert!(
        note.contains("canary_window.end") && note.contains("a time after"),
        "{note}"
    );
}

#[test]
fn an_unknown_scenario_field_is_named_on_stderr_and_the_scenario_still_runs() {
    let dst = std::env::temp_dir().join(format!("vigil-unknown-{}", std::process::id()));
    let s = dst.join("syn-error-logs-and-slow-spans");
    copy_error_logs_scenario(&s);
    let p = s.join("scenario.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["context_fault"] = Value::Array(vec![]);
    std::fs::write(&p, v.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--json"])
        .arg(&s)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dst).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `context_fault`"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["scenarios"][0]["verdict"], "Fail", "{json}");
}

#[test]
fn missing_samples_stay_missing_and_do_not_fail_the_load() {
    // `NaN` and empty cells are the format's missing samples (the Nezha exports have them).
    let dst = std::env::temp_dir().join(format!("vigil-missing-{}", std::process::id()));
    let s = dst.join("syn-error-logs-and-slow-spans");
    copy_error_logs_scenario(&s);
    set_cell(&s.join("canary/metrics.csv"), 2, "CpuUsageRate(%)", "NaN");
    set_cell(&s.join("canary/metrics.csv"), 3, "CpuUsageRate(%)", "");
    let scenario = vigil::replay::scenario::load(&s).unwrap();
    std::fs::remove_dir_all(&dst).unwrap();
    let table = scenario.canary.metrics.unwrap();
    let cpu = &table
        .columns
        .iter()
        .find(|(n, _)| n == "CpuUsageRate(%)")
        .unwrap()
        .1;
    assert!(cpu[1].is_nan() && cpu[2].is_nan(), "{:?}", &cpu[..4]);
    assert!(cpu[0].is_finite() && cpu[3].is_finite(), "{:?}", &cpu[..4]);
}

#[test]
fn set_changes_a_judge_setting_and_the_summary_says_so() {
    // With the defaults this fault-free pair is a Pass under 100 (one Warn from the metric
    // classifier).
    let dir = datasets()
        .join("nezha")
        .join("tt-20230129-n142200-ts-train-food-service");
    let default = replay_json(&dir, &[]);
    assert!(default["summary"].get("settings").is_none());
    let s = &default["scenarios"][0];
    assert_eq!(s["verdict"], "Pass", "{s}");
    let score = s["score"].as_f64().unwrap();
    assert!(score < 100.0, "{s}");
    // Demanding a perfect score to pass turns that Warn into a Marginal, and the summary says
    // which setting made the difference.
    let strict = replay_json(&dir, &["--set", "fusion.pass_threshold=100"]);
    assert_eq!(
        strict["summary"]["settings"]["fusion.pass_threshold"],
        "100"
    );
    let s = &strict["scenarios"][0];
    assert_eq!(s["verdict"], "Marginal", "{s}");
    assert_eq!(s["score"].as_f64(), Some(score));
    let bad = replay_cli(&dir, &["--set", "metric.alpha=1.5"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("metric.alpha") && stderr.contains("1.5"),
        "{stderr}"
    );
}

#[test]
fn html_report_is_self_contained_with_plots_and_timeline() {
    let html_path = std::env::temp_dir().join(format!("vigil-replay-{}.html", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--html"])
        .arg(&html_path)
        .arg(
            datasets()
                .join("nezha")
                .join("tt-20230129-f09-ts-verification-code-service-return"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    std::fs::remove_file(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("tt-20230129-f09-ts-verification-code-service-return"));
    // baseline and canary series with the onset marked, for metrics, spans and logs
    assert!(html.matches("<svg").count() >= 5, "plots and timeline");
    assert!(html.contains("fault onset"));
    assert!(html.contains("ERROR log lines per 10 s") && html.contains("span p90 per 10 s"));
    // Axes with ticks and a unit, not only 0 and the maximum.
    assert!(html.contains("minutes from fault onset"), "time axis unit");
    assert!(
        html.matches("text-anchor=\"end\" fill=\"#777\"").count() >= 3 * 5,
        "y ticks"
    );
    // no scripts, no network
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http")
    );
    // the text table went to stdout at the same time
    assert!(String::from_utf8_lossy(&out.stdout).contains("scenarios in"));
}

#[test]
fn baseline_rows_during_earlier_incidents_on_the_same_pod_are_masked() {
    // The 30-min baseline of this exception fault holds two earlier faults on the same pod
    // (memory and CPU at their ceiling); judged against them the canary looks healthy.
    let id = "ob-20220822-f08-checkoutservice-exception";
    let folder = datasets().join("nezha").join(id);
    let masked = replay_all(
        std::slice::from_ref(&folder),
        &ReplayConfig::default(),
        Some(1),
        false,
    )
    .unwrap();
    let unmasked = replay_all(
        &[folder],
        &ReplayConfig {
            mask_known_incidents: false,
            ..ReplayConfig::default()
        },
        Some(1),
        false,
    )
    .unwrap();
    let m = &masked[0].vigil;
    assert!(m.verdict.flagged(), "{:?} {:?}", m.verdict, m.evidence);
    assert!(
        m.evidence
            .iter()
            .any(|e| e.signal == Signal::Metrics && e.subject.starts_with("Memory")),
        "{:?}",
        m.evidence
    );
    assert_eq!(unmasked[0].vigil.verdict, Verdict::Pass);
}

/// The Parquet fixture was written by pandas + pyarrow from the bundled CSV scenario
/// (`tests/data/parquet/make_parquet.py`): timestamps as real Parquet timestamps (µs for metrics,
/// ns for spans), zstd compression for spans. Reading it must give what the CSV gives.
#[test]
fn parquet_scenarios_read_the_same_as_csv() {
    use vigil::replay::scenario::load;
    let id = "tt-20230129-f24-ts-contacts-service-cpu_contention";
    let pq_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/parquet")
        .join(id);
    let pq = load(&pq_dir).unwrap();
    let csv = load(&datasets().join("nezha").join(id)).unwrap();
    for (p, c) in [(&pq.baseline, &csv.baseline), (&pq.canary, &csv.canary)] {
        let (pm, cm) = (p.metrics.as_ref().unwrap(), c.metrics.as_ref().unwrap());
        assert_eq!(pm.times, cm.times);
        assert_eq!(pm.columns.len(), cm.columns.len());
        for ((pn, pv), (cn, cv)) in pm.columns.iter().zip(&cm.columns) {
            assert_eq!(pn, cn);
            assert_eq!(pv.len(), cv.len());
            for (a, b) in pv.iter().zip(cv) {
                assert!(a == b || (a.is_nan() && b.is_nan()), "{pn}: {a} vs {b}");
            }
        }
        let (ps, cs) = (p.spans.as_ref().unwrap(), c.spans.as_ref().unwrap());
        assert_eq!(ps.len(), cs.len());
        assert!(!ps.is_empty());
        for (a, b) in ps.iter().zip(cs) {
            assert_eq!(
                (&a.trace_id, &a.span_id, &a.parent_id, &a.operation),
                (&b.trace_id, &b.span_id, &b.parent_id, &b.operation)
            );
            // Nanosecond timestamps as f64 seconds: both parsers round to the same double ± 1 ulp.
            assert!(
                (a.start - b.start).abs() < 1e-6,
                "{} vs {}",
                a.start,
                b.start
            );
            assert_eq!(a.duration_ms, b.duration_ms);
            assert_eq!(a.error, Some(false));
            assert_eq!(b.error, None);
        }
    }
    let rs = replay_all(
        &[pq_dir, datasets().join("nezha").join(id)],
        &ReplayConfig::default(),
        Some(2),
        false,
    )
    .unwrap();
    assert_eq!(rs[0].vigil.verdict, Verdict::Fail);
    assert_eq!(rs[0].vigil.verdict, rs[1].vigil.verdict);
    assert_eq!(rs[0].vigil.score, rs[1].vigil.score);
    assert_eq!(rs[0].vigil.time_to_detect_s, rs[1].vigil.time_to_detect_s);
}

#[test]
fn both_csv_and_parquet_for_one_table_is_an_error_not_a_choice() {
    use vigil::replay::scenario::load;
    let id = "tt-20230129-f24-ts-contacts-service-cpu_contention";
    let dir = std::env::temp_dir().join(format!("vigil-parquet-twice-{}", std::process::id()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/parquet")
        .join(id);
    for side in ["baseline", "canary"] {
        std::fs::create_dir_all(dir.join(side)).unwrap();
        for f in ["metrics.parquet", "spans.parquet", "logs.jsonl"] {
            std::fs::copy(src.join(side).join(f), dir.join(side).join(f)).unwrap();
        }
    }
    std::fs::copy(src.join("scenario.json"), dir.join("scenario.json")).unwrap();
    // A truncated Parquet file is a clear error naming the file.
    let bytes = std::fs::read(src.join("canary/spans.parquet")).unwrap();
    std::fs::write(dir.join("canary/spans.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&dir).unwrap_err().to_string();
    assert!(err.contains("canary/spans.parquet"), "{err}");
    std::fs::write(dir.join("canary/spans.parquet"), &bytes).unwrap();
    assert!(load(&dir).is_ok());
    std::fs::copy(
        datasets()
            .join("nezha")
            .join(id)
            .join("baseline/metrics.csv"),
        dir.join("baseline/metrics.csv"),
    )
    .unwrap();
    let err = load(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("metrics.csv and metrics.parquet"), "{err}");
}

#[test]
fn ablation_shows_what_a_signal_adds() {
    // CPU 20 % -> 60 %: only the metric signal (and the anomaly model over metrics) sees it.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--json", "--quiet", "--ablation"])
        .arg(datasets().join("synthetic/syn-constant-metrics-jump"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &v["summary"];
    assert_eq!(summary["judges"]["vigil"]["true_positives"], 1);
    let ablation = summary["ablation"].as_object().unwrap();
    assert_eq!(
        ablation.len(),
        5,
        "one run without each signal: {ablation:?}"
    );
    assert_eq!(ablation["metrics"]["true_positives"], 0, "{ablation:?}");
    assert_eq!(ablation["logs"]["true_positives"], 1, "{ablation:?}");
    // The same per fault type: the jump is labelled cpu_contention.
    let by_fault = &summary["ablation_by_fault_type"];
    assert_eq!(
        by_fault["metrics"]["cpu_contention"]["true_positives"], 0,
        "{by_fault}"
    );
    assert_eq!(
        by_fault["logs"]["cpu_contention"]["true_positives"], 1,
        "{by_fault}"
    );
    // Without the flag the contract has no ablation key.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--json", "--quiet"])
        .arg(datasets().join("synthetic/syn-constant-metrics-jump"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"].get("ablation").is_none());
    assert!(v["summary"].get("ablation_by_fault_type").is_none());
}

#[test]
fn an_empty_canary_folder_is_named_in_the_inconclusive_note() {
    let dst = std::env::temp_dir()
        .join(format!("vigil-empty-canary-{}", std::process::id()))
        .join("empty-canary");
    copy_error_logs_scenario(&dst);
    for entry in std::fs::read_dir(dst.join("canary")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let rs = replay_all(
        std::slice::from_ref(&dst),
        &ReplayConfig::default(),
        Some(1),
        false,
    )
    .unwrap();
    std::fs::remove_dir_all(dst.parent().unwrap()).unwrap();
    assert_eq!(rs[0].vigil.verdict, Verdict::Inconclusive);
    let note = rs[0].vigil.note.as_deref().unwrap();
    assert!(
        note.contains("canary/ has no data file") && note.contains("logs.jsonl"),
        "{note}"
    );
}

#[test]
fn an_interval_outside_one_second_to_the_window_is_refused() {
    for bad in ["0.001", "0", "-5", "nan"] {
        let arg = format!("--interval={bad}");
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["replay", "--quiet", &arg])
            .arg(
                datasets()
                    .join("synthetic")
                    .join("syn-error-logs-and-slow-spans"),
            )
            .output()
            .unwrap();
        assert!(!out.status.success(), "--interval {bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--interval"), "{bad}: {stderr}");
    }
    // Longer than the canary window: the scenario is an Error row that says why, and the summary
    // counts it as an error, not a miss; no time to detect of 1e12 s is printed.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--interval", "1e12"])
        .arg(
            datasets()
                .join("synthetic")
                .join("syn-error-logs-and-slow-spans"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 of 1 scenarios could not be judged"),
        "{stdout}"
    );
    let folder = datasets()
        .join("synthetic")
        .join("syn-error-logs-and-slow-spans");
    let rs = replay_all(
        std::slice::from_ref(&folder),
        &ReplayConfig {
            interval_s: 1e12,
            ..ReplayConfig::default()
        },
        Some(1),
        false,
    )
    .unwrap();
    assert_eq!(rs[0].vigil.verdict, Verdict::Error);
    assert_eq!(rs[0].vigil.time_to_detect_s, None);
    assert!(rs[0]
        .vigil
        .note
        .as_deref()
        .unwrap()
        .contains("canary window"));
}

#[test]
fn html_marks_wrong_verdicts_and_fades_masked_baseline_rows() {
    use vigil::replay::{error_result, html, report};
    // A fault judged Pass and a healthy pair judged Pass: only the first row is marked.
    let mut missed = error_result("missed-fault", "x");
    missed.expected = "fail";
    missed.vigil.verdict = Verdict::Pass;
    let mut fine = error_result("fine-pair", "x");
    fine.expected = "pass";
    fine.vigil.verdict = Verdict::Pass;
    let results = vec![missed, fine];
    let summary = report::summarise(&results, 1.0);
    let nowhere = std::env::temp_dir().join("vigil-no-such-scenario");
    let page = html::render(
        &[nowhere.clone(), nowhere],
        &results,
        &summary,
        &ReplayConfig::default(),
    );
    assert_eq!(page.matches("class=\"wrong\"").count(), 1, "one wrong row");
    let row = page
        .split("<tr")
        .find(|r| r.contains("missed-fault"))
        .unwrap();
    assert!(row.contains("class=\"wrong\""), "{row}");
    // FPR with three decimals (0/1 = 0.000), as the text output prints it.
    assert!(page.contains("<td>0.000</td>"), "FPR precision");

    // Masked baseline rows (two earlier incidents on the same pod) are drawn apart and faded.
    let id = "ob-20220822-f08-checkoutservice-exception";
    let html_path = std::env::temp_dir().join(format!("vigil-masked-{}.html", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--html"])
        .arg(&html_path)
        .arg(datasets().join("nezha").join(id))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html_path).unwrap();
    std::fs::remove_file(&html_path).unwrap();
    assert!(
        page.contains("masked: earlier incident, not used"),
        "legend"
    );
    assert!(page.contains("<g opacity=\"0.35\">"), "faded masked rows");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--no-mask", "--html"])
        .arg(&html_path)
        .arg(datasets().join("nezha").join(id))
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html_path).unwrap();
    std::fs::remove_file(&html_path).unwrap();
    assert!(
        !page.contains("masked: earlier incident"),
        "--no-mask masks nothing"
    );
}

#[test]
fn callers_spans_load_with_their_edges() {
    // The corpus README: coverage.<side>.caller_spans counts the rows of caller_spans.csv.
    use vigil::replay::scenario::load;
    let dir = datasets()
        .join("nezha")
        .join("tt-20230130-f16-ts-security-service-network_delay");
    let s = load(&dir).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap()).unwrap();
    for (side, spans) in [("baseline", &s.baseline), ("canary", &s.canary)] {
        let callers = spans.caller_spans.as_ref().expect("caller_spans.csv");
        assert_eq!(
            callers.len() as u64,
            meta["coverage"][side]["caller_spans"].as_u64().unwrap(),
            "{side}"
        );
        for c in callers {
            let edge = c.caller.as_ref().expect("every caller span has its edge");
            assert!(edge.callee_operation.starts_with("/api/v1/securityservice"));
            assert!(c.duration_ms.is_finite() && edge.callee_duration_ms >= 0.0);
        }
    }
    // A scenario without the file has no callers' view (absent, not healthy).
    let s = load(
        &datasets()
            .join("nezha")
            .join("ob-20220822-f08-checkoutservice-exception"),
    )
    .unwrap();
    assert!(s.canary.caller_spans.is_none());
    // The HTML report plots what the callers waited for.
    let html_path = std::env::temp_dir().join(format!("vigil-callers-{}.html", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--quiet", "--html"])
        .arg(&html_path)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html_path).unwrap();
    std::fs::remove_file(&html_path).unwrap();
    assert!(
        page.contains("callers&#x27; time outside the pod")
            || page.contains("callers' time outside the pod")
    );
}

#[test]
fn callers_waiting_far_outside_a_pod_with_no_baseline_callers_flag_a_network_delay() {
    // A recorded network delay whose baseline window has no caller span at all: the pod's own
    // spans barely move, its 400 callers wait ~200 ms outside it. Without a baseline to compare
    // with, the ceiling makes it a Review (Marginal), naming the edges; with the check off
    // (`inf`) nothing flags it — the expected outcome comes from the fault label, not from us.
    let dir = datasets()
        .join("nezha")
        .join("ob-20220823-f04-cartservice-network_delay");
    let on = replay_json(&dir, &[]);
    let s = &on["scenarios"][0];
    assert_eq!(s["expected"], "fail");
    assert_eq!(s["verdict"], "Marginal", "{s}");
    let f = s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["signal"] == "callers")
        .unwrap_or_else(|| panic!("no callers' finding: {s}"));
    assert_eq!(f["severity"], "Review", "{f}");
    let subject = f["subject"].as_str().unwrap();
    assert!(
        subject.contains("no baseline") && subject.contains("hipstershop.CartService/GetCart"),
        "{subject}"
    );
    let off = replay_json(&dir, &["--set", "callers.transport_ceiling_ms=inf"]);
    let s = &off["scenarios"][0];
    assert_eq!(s["verdict"], "Pass", "{s}");
    assert!(s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["signal"] != "callers"));
}
