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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

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

/// Nice tick positions covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten, about
/// `want` of them, so that a reader can read values off the axis and not only its two ends.
fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= want as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..=want + 1)
        .map(|i| first + i as f64 * step)
        .filter(|t| *t <= hi + step * 1e-9)
        .collect()
}

fn svg(s: &Series, onset: f64, is_fault: bool) -> String {
    // Plot area inside margins: the title and the onset label sit in the top margin, tick labels
    // in the left and bottom margins, the legend under the axis — never on the data.
    let (w, h) = (380.0, 196.0);
    let (left, right, top, bottom) = (46.0, 10.0, 34.0, 46.0);
    let all: Vec<(f64, f64)> = s
        .baseline
        .iter()
        .chain(&s.masked)
        .chain(&s.canary)
        .copied()
        .collect();
    let mut out = format!("<svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\" style=\"border:1px solid #eee\">");
    let _ = write!(
        out,
        "<text x=\"6\" y=\"13\" font-weight=\"600\">{}</text>",
        esc(&s.title)
    );
    if all.is_empty() {
        out.push_str("<text x=\"40\" y=\"90\" fill=\"#999\">no data</text></svg>");
        return out;
    }
    let x0 = all
        .iter()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .min(onset);
    let x1 = all
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max)
        .max(onset + 1.0);
    let y0 = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let mut y1 = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut yt = ticks(y0, y1, 4);
    // The axis ends on a tick above the data, so the largest value can be read off it.
    if let (Some(&last), Some(step)) = (yt.last(), yt.windows(2).next().map(|w| w[1] - w[0])) {
        if last < y1 {
            yt.push(last + step);
        }
    }
    let y1 = yt.last().copied().unwrap_or(y1).max(y1);
    let (px0, px1, py0, py1) = (left, w - right, h - bottom, top);
    let sx = |x: f64| px0 + (x - x0) / (x1 - x0) * (px1 - px0);
    let sy = |y: f64| py0 - (y - y0) / (y1 - y0) * (py0 - py1);
    for t in &yt {
        let y = sy(*t);
        let _ = write!(
            out,
            "<line x1=\"{px0}\" y1=\"{y:.1}\" x2=\"{px1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">{}</text>",
            px0 - 4.0,
            y + 3.0,
            fmt_num(*t)
        );
    }
    // Time axis in minutes from the onset (canary start), the scale a reader of a canary thinks in.
    let xt = ticks((x0 - onset) / 60.0, (x1 - onset) / 60.0, 5);
    for m in &xt {
        let x = sx(onset + m * 60.0);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{py0}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">{}</text>",
            py0 + 3.0,
            py0 + 13.0,
            fmt_num(*m)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{px0}\" y1=\"{py0}\" x2=\"{px1}\" y2=\"{py0}\" stroke=\"#999\"/><line x1=\"{px0}\" y1=\"{py1}\" x2=\"{px0}\" y2=\"{py0}\" stroke=\"#999\"/><text x=\"{px1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">minutes from {}</text>",
        py0 + 24.0,
        if is_fault { "fault onset" } else { "canary start" }
    );
    let line = |pts: &[(f64, f64)], color: &str, opacity: f64| -> String {
        if pts.is_empty() {
            return String::new();
        }
        let d: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dots: String = pts
            .iter()
            .map(|(x, y)| {
                format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"{color}\"/>",
                    sx(*x),
                    sy(*y)
                )
            })
            .collect();
        format!(
            "<g opacity=\"{opacity}\"><polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>{dots}</g>",
            d.join(" ")
        )
    };
    out.push_str(&line(&s.masked, "#9e9e9e", 0.35));
    out.push_str(&line(&s.baseline, "#1565c0", 1.0));
    out.push_str(&line(&s.canary, "#e65100", 1.0));
    let ox = sx(onset);
    let (lx, anchor) = if ox > w / 2.0 {
        (ox - 3.0, "end")
    } else {
        (ox + 3.0, "start")
    };
    let _ = write!(
        out,
        "<line x1=\"{ox:.1}\" y1=\"{py1}\" x2=\"{ox:.1}\" y2=\"{py0}\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"/><text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#c62828\">{}</text>",
        py1 - 4.0,
        if is_fault { "fault onset" } else { "canary start" }
    );
    let legend_y = h - 5.0;
    let _ = write!(
        out,
        "<text x=\"{left}\" y=\"{legend_y}\" fill=\"#1565c0\">baseline</text><text x=\"{}\" y=\"{legend_y}\" fill=\"#e65100\">canary</text>",
        left + 50.0
    );
    if !s.masked.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{legend_y}\" fill=\"#9e9e9e\">masked: earlier incident, not used</text>",
            left + 95.0
        );
    }
    out.push_str("</svg>");
    out
}

// Exact on purpose: an integer-valued tick prints without decimals.
#[allow(clippy::float_cmp)]
fn fmt_num(v: f64) -> String {
    if v.abs() >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::ticks;

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        assert_eq!(ticks(0.0, 100.0, 4), vec![0.0, 50.0, 100.0]);
        assert_eq!(ticks(0.0, 7.3, 4), vec![0.0, 2.0, 4.0, 6.0]);
        let t = ticks(-30.0, 3.0, 5);
        assert!(t.contains(&0.0) && t.contains(&-30.0), "{t:?}");
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
    }
}
