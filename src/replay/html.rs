//! The `--html` report: one self-contained page (inline CSS and SVG, no scripts, no network)
//! with the summary, and per scenario the baseline and canary series over time with the fault
//! onset marked, the verdict timeline and the evidence.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::report::{self, Summary};
use super::scenario::{self, Scenario};
use super::{JudgeName, ReplayConfig, ScenarioResult};
use vigil_analyzer::judge::metric_spec;
use vigil_analyzer::verdict::Verdict;

use vigil_analyzer::plot::{self, escape as esc};

fn color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#2e7d32",
        Verdict::Marginal => "#f9a825",
        Verdict::Fail => "#c62828",
        Verdict::Inconclusive => "#757575",
        Verdict::Error => "#6a1b9a",
    }
}

/// Renders the report. Scenarios are re-read from `folders` for their series; one that no
/// longer loads is shown without plots.
pub fn render(
    folders: &[PathBuf],
    results: &[ScenarioResult],
    summary: &Summary,
    config: &ReplayConfig,
) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vigil replay report</title><style>");
    h.push_str(
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\
         table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
         th{background:#f3f3f3}td.l{text-align:left}.v{color:#fff;border-radius:3px;padding:1px 6px;font-weight:600}\
         section{border-top:2px solid #eee;margin-top:22px;padding-top:8px}.ev{font-size:13px;margin:4px 0 4px 0}\
         .plots{display:flex;flex-wrap:wrap;gap:10px}tr.wrong td{background:#fdecea}.muted{color:#777;font-size:12px}h2{font-size:18px;margin:4px 0}",
    );
    h.push_str("</style></head><body><h1>Vigil replay report</h1>");
    let _ = write!(
        h,
        "<p class=\"muted\">{} scenarios in {:.1} s ({:.1} scenarios/s), interval {} s. Flagged = Fail or Marginal; Inconclusive is its own rate.</p>",
        summary.scenarios, summary.seconds, summary.scenarios_per_s, config.interval_s
    );
    if let Some(changed) = summary.changed_settings() {
        let _ = write!(
            h,
            "<p><b>Settings changed from the defaults:</b> {}</p>",
            esc(&changed)
        );
    }
    h.push_str("<table><tr><th>judge</th><th>precision</th><th>recall</th><th>FPR</th><th>F1</th><th>TP</th><th>FP</th><th>inconclusive</th><th>errors</th><th>TTD p50</th><th>TTD p90</th></tr>");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    // The false-positive rate with the text output's precision: 0.065 and 0.07 are different
    // operating points.
    let f3 = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
    for j in JudgeName::ALL {
        let m = &summary.judges[j.as_str()];
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            j.as_str(),
            f(m.precision),
            f(m.recall),
            f3(m.false_positive_rate),
            f(m.f1),
            m.true_positives,
            m.positives,
            m.false_positives,
            m.negatives,
            f(m.inconclusive_rate),
            m.errors,
            m.median_time_to_detect_s.map(|t| format!("{t:.0} s")).unwrap_or_else(|| "-".into()),
            m.p90_time_to_detect_s.map(|t| format!("{t:.0} s")).unwrap_or_else(|| "-".into()),
        );
    }
    h.push_str("</table>");
    h.push_str("<h2 style=\"margin-top:18px\">Scenarios</h2><p class=\"muted\">Rows marked ✗ (shaded) are verdicts that disagree with the expected outcome, as <code>*</code> in the text output.</p><table><tr><th>scenario</th><th>expected</th><th>vigil</th><th></th><th>score</th><th>TTD</th><th>kayenta</th><th>naive</th></tr>");
    for r in results {
        let wrong = report::disagrees(r);
        let _ = write!(
            h,
            "<tr{}><td class=\"l\"><a href=\"#{id}\">{id}</a></td><td>{}</td><td><span class=\"v\" style=\"background:{}\">{}</span></td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if wrong { " class=\"wrong\"" } else { "" },
            r.expected,
            color(r.vigil.verdict),
            r.vigil.verdict.as_str(),
            if wrong { "<b title=\"disagrees with the expected outcome\">✗</b>" } else { "" },
            r.vigil.score,
            r.vigil.time_to_detect_s.map(|t| format!("{t:.0} s")).unwrap_or_else(|| "-".into()),
            r.kayenta.verdict.as_str(),
            r.naive.verdict.as_str(),
            id = esc(&r.id)
        );
    }
    h.push_str("</table>");
    for (folder, r) in folders.iter().zip(results) {
        let _ = write!(
            h,
            "<section id=\"{}\"><h2>{} <span class=\"v\" style=\"background:{}\">{}</span> <span class=\"muted\">expected {}, score {:.0}, time to detect {}</span></h2>",
            esc(&r.id),
            esc(&r.id),
            color(r.vigil.verdict),
            r.vigil.verdict.as_str(),
            r.expected,
            r.vigil.score,
            r.vigil.time_to_detect_s.map(|t| format!("{t:.0} s")).unwrap_or_else(|| "never".into())
        );
        h.push_str(&timeline(r));
        for e in &r.vigil.evidence {
            let _ = write!(
                h,
                "<div class=\"ev\"><b>{:?} · {} · {}</b>: {}</div>",
                e.severity,
                e.signal.as_str(),
                esc(&e.subject),
                esc(&e.detail)
            );
        }
        if let Some(n) = &r.vigil.note {
            let _ = write!(h, "<div class=\"ev muted\">{}</div>", esc(n));
        }
        if let Ok(s) = scenario::load(folder) {
            h.push_str("<div class=\"plots\">");
            for p in plots(&s, r, config) {
                h.push_str(&p);
            }
            h.push_str("</div>");
        }
        h.push_str("</section>");
    }
    h.push_str("</body></html>\n");
    h
}

fn timeline(r: &ScenarioResult) -> String {
    let mut s = String::from(
        "<svg width=\"620\" height=\"34\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">",
    );
    for (i, step) in r.vigil.timeline.iter().enumerate() {
        let x = 4 + i * 48;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"2\" width=\"44\" height=\"16\" fill=\"{}\"><title>{} s: {} ({:.0})</title></rect><text x=\"{}\" y=\"30\" fill=\"#555\">{:.0}s</text>",
            color(step.verdict),
            step.elapsed_s,
            step.verdict.as_str(),
            step.score,
            x + 10,
            step.elapsed_s
        );
    }
    s.push_str("</svg>");
    s
}

struct Series {
    title: String,
    baseline: Vec<(f64, f64)>,
    /// Baseline rows the judges did not use (masked as an earlier incident on the same pod):
    /// drawn faded, apart from the baseline, so the plot agrees with the evidence beside it.
    masked: Vec<(f64, f64)>,
    canary: Vec<(f64, f64)>,
}

fn plots(s: &Scenario, r: &ScenarioResult, config: &ReplayConfig) -> Vec<String> {
    let mut series = Vec::new();
    // Times of the baseline metric rows the judges kept, when masking removed some.
    let kept: Option<std::collections::HashSet<u64>> =
        super::masked_baseline(s, config).map(|t| t.times.iter().map(|x| x.to_bits()).collect());
    if let (Some(b), Some(c)) = (&s.baseline.metrics, &s.canary.metrics) {
        // The metrics named in the evidence first, then CPU, memory and latency.
        let mut names: Vec<String> = r
            .vigil
            .evidence
            .iter()
            .map(|e| e.subject.clone())
            .filter(|n| b.columns.iter().any(|(m, _)| m == n))
            .collect();
        for (n, _) in &b.columns {
            let l = n.to_ascii_lowercase();
            if metric_spec(n).is_some()
                && !l.contains("p95")
                && !l.contains("p99")
                && !l.contains("(m)")
                && !names.contains(n)
            {
                names.push(n.clone());
            }
        }
        for n in names.into_iter().take(3) {
            let pick = |t: &scenario::MetricTable| -> Vec<(f64, f64)> {
                t.columns
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, v)| {
                        t.times
                            .iter()
                            .zip(v)
                            .filter(|(_, y)| y.is_finite())
                            .map(|(x, y)| (*x, *y))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (baseline, masked) = pick(b)
                .into_iter()
                .partition(|(t, _)| kept.as_ref().is_none_or(|k| k.contains(&t.to_bits())));
            series.push(Series {
                title: n.clone(),
                baseline,
                masked,
                canary: pick(c),
            });
        }
    }
    if let (Some(b), Some(c)) = (&s.baseline.spans, &s.canary.spans) {
        let bucket = |spans: &[scenario::Span]| {
            quantile_per_10s(spans.iter().map(|x| (x.start, x.duration_ms)), 0.9)
        };
        series.push(Series {
            title: "span p90 per 10 s (ms)".into(),
            baseline: bucket(b),
            masked: Vec::new(),
            canary: bucket(c),
        });
    }
    if let (Some(b), Some(c)) = (&s.baseline.caller_spans, &s.canary.caller_spans) {
        // What the callers waited for outside the pod's own span: where a network delay shows.
        let bucket = |spans: &[scenario::Span]| {
            let outside = spans.iter().filter_map(|x| {
                let e = x.caller.as_ref()?;
                Some((x.start, x.duration_ms - e.callee_duration_ms))
            });
            quantile_per_10s(outside, 0.5)
        };
        series.push(Series {
            title: "callers' time outside the pod, median per 10 s (ms)".into(),
            baseline: bucket(b),
            masked: Vec::new(),
            canary: bucket(c),
        });
    }
    if let (Some(b), Some(c)) = (&s.baseline.logs, &s.canary.logs) {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "display buckets of finite times"
        )]
        let bucket = |logs: &[scenario::LogRecord]| -> Vec<(f64, f64)> {
            let mut m: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
            for l in logs {
                let Some(time) = l.time else { continue };
                let e = m.entry((time / 10.0).floor() as i64).or_default();
                if l.severity.as_deref() == Some("ERROR") {
                    *e += 1.0;
                }
            }
            m.into_iter()
                .map(|(k, v)| (k as f64 * 10.0 + 5.0, v))
                .collect()
        };
        series.push(Series {
            title: "ERROR log lines per 10 s".into(),
            baseline: bucket(b),
            masked: Vec::new(),
            canary: bucket(c),
        });
    }
    let onset = s.inject_time.unwrap_or(s.canary_window.start);
    series
        .iter()
        .map(|x| svg(x, onset, s.inject_time.is_some()))
        .collect()
}

/// `(time, value)` points summarised per 10-second bucket by quantile `q`, placed at the bucket's
/// middle: the resolution of the event model, coarse enough that a bucket holds several points.
#[allow(
    clippy::cast_possible_truncation,
    reason = "display buckets of finite times"
)]
fn quantile_per_10s(points: impl Iterator<Item = (f64, f64)>, q: f64) -> Vec<(f64, f64)> {
    let mut m: std::collections::BTreeMap<i64, Vec<f64>> = std::collections::BTreeMap::new();
    for (t, v) in points {
        m.entry((t / 10.0).floor() as i64).or_default().push(v);
    }
    m.into_iter()
        .filter_map(|(k, v)| {
            vigil_models::vigil_judge::quantile(&v, q).map(|x| (k as f64 * 10.0 + 5.0, x))
        })
        .collect()
}

fn svg(s: &Series, onset: f64, is_fault: bool) -> String {
    plot::chart(&plot::Chart {
        masked: &s.masked,
        ..plot::Chart::new(
            &s.title,
            &s.baseline,
            &s.canary,
            onset,
            if is_fault {
                "fault onset"
            } else {
                "canary start"
            },
        )
    })
}
