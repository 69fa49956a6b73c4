//! The pages a person looks at: `GET /` lists the analyses with state, verdict and score;
//! `GET /analyses/{id}` shows one as the replay report shows a scenario — its verdict timeline
//! (one bar per interval, height the score, colour the verdict), per metric the baseline and
//! canary series the runner fetched with each interval's span and verdict along the top, the
//! last interval's evidence with its typed fields, every interval's judgement and the events —
//! and reloads itself while the analysis runs. Plain HTML and inline SVG (drawn by
//! [`crate::plot`], as the replay report's): no script, no external asset.
//!
//! Every value from a spec, a source or a finding is escaped. Links never carry a `?token=`: a
//! page must not copy a secret into its HTML.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::record::{is_final_state, EventRecord, FindingRecord, IntervalRecord};
use super::runner::{plan_of, Core};
use super::store::ListFilter;
use crate::plot::{self, Band, Chart};
use crate::telemetry::format_time;

pub use crate::plot::escape;

fn colour(verdict: &str) -> &'static str {
    match verdict {
        "Pass" => "#2e7d32",
        "Marginal" => "#f9a825",
        "Fail" => "#c62828",
        "Inconclusive" => "#78909c",
        _ => "#6a1b9a",
    }
}

fn page(title: &str, refresh: Option<u32>, body: &str) -> Response {
    let refresh = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{refresh}<title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}}\
         table{{border-collapse:collapse;font-size:14px}}td,th{{padding:.25em .75em;border-bottom:1px solid #ddd;\
         text-align:left;vertical-align:top}}th{{background:#f5f5f5}}td.n{{text-align:right;white-space:nowrap}}\
         .v{{font-weight:600}}code{{font-size:90%}}.plots{{display:flex;flex-wrap:wrap;gap:10px}}\
         .muted{{color:#777;font-size:13px}}pre{{margin:.2em 0;white-space:pre-wrap;font-size:12px;\
         background:#f7f7f7;padding:.2em .4em}}h2{{font-size:18px;margin:1.2em 0 .4em}}</style></head>\
         <body>{body}</body></html>",
        escape(title)
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn verdict_cell(v: Option<&str>) -> String {
    match v {
        Some(v) => format!(
            "<span class=\"v\" style=\"color:{}\">{}</span>",
            colour(v),
            escape(v)
        ),
        None => "–".into(),
    }
}

/// `GET /`: the newest 200 analyses.
pub async fn index(State(core): State<Arc<Core>>) -> Response {
    let filter = ListFilter {
        page_size: 200,
        ..ListFilter::default()
    };
    let rows = match core.with_store(move |s| s.list(&filter)).await {
        Ok((rows, _)) => rows,
        Err(e) => {
            return page(
                "Vigil",
                None,
                &format!("<p>store: {}</p>", escape(&e.to_string())),
            )
        }
    };
    let mut body = String::from(
        "<h1>Vigil: analyses</h1><table><tr><th>id</th><th>app</th><th>state</th><th>verdict</th>\
         <th>score</th><th>intervals</th><th>created</th></tr>",
    );
    for r in &rows {
        let _ = write!(
            body,
            "<tr><td><a href=\"/analyses/{id}\"><code>{id}</code></a></td><td>{app}</td><td>{state}</td>\
             <td>{verdict}</td><td>{score}</td><td>{n}</td><td>{created}</td></tr>",
            id = escape(&r.id),
            app = escape(&r.app),
            state = escape(&r.state),
            verdict = verdict_cell(r.verdict.as_deref()),
            score = r.score.map_or("–".into(), |s| format!("{s:.1}")),
            n = r.next_interval.saturating_sub(1),
            created = format_time(r.created_ms as f64 / 1000.0),
        );
    }
    body.push_str("</table>");
    if rows.is_empty() {
        body.push_str("<p>No analyses yet: <code>vigil analysis create FILE</code>.</p>");
    }
    let running = rows.iter().any(|r| !is_final_state(&r.state));
    page("Vigil: analyses", running.then_some(10), &body)
}

/// The verdict timeline: one bar per interval.
fn timeline(intervals: &[IntervalRecord]) -> String {
    let (w, h, bar) = (640.0, 120.0, 640.0 / intervals.len().max(1) as f64);
    let mut svg = format!(
        "<svg class=\"timeline\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" \
         aria-label=\"verdict timeline\"><line x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#999\"/>",
        h + 20.0,
        h + 20.0
    );
    for (i, r) in intervals.iter().enumerate() {
        let j = &r.judgement;
        // A judgement without a score (Error, Inconclusive) still gets a visible stub.
        let height = (j.score.clamp(0.0, 100.0) / 100.0 * h).max(4.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{}\">\
             <title>interval {} ({:.0}s): {} {:.1}</title></rect>",
            i as f64 * bar + 1.0,
            h - height,
            (bar - 2.0).max(1.0),
            colour(&j.verdict),
            r.interval,
            r.elapsed_s,
            escape(&j.verdict),
            j.score
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"12\">0 s</text><text x=\"{w}\" y=\"{}\" font-size=\"12\" \
         text-anchor=\"end\">{:.0} s</text></svg>",
        h + 16.0,
        h + 16.0,
        intervals.last().map_or(0.0, |r| r.elapsed_s)
    );
    svg
}

/// One chart per metric: its series gathered from every interval's record, the intervals as
/// bands coloured by verdict.
fn metric_charts(metrics: &[String], intervals: &[IntervalRecord]) -> String {
    let Some(first) = intervals.first() else {
        return "<p class=\"muted\">No interval judged yet.</p>".into();
    };
    let origin = first.window_start;
    let mut bands = Vec::with_capacity(intervals.len());
    let mut start = origin;
    for r in intervals {
        bands.push(Band {
            start,
            end: r.window_end,
            colour: colour(&r.judgement.verdict),
            label: format!(
                "interval {} ({:.0}s): {} {:.1}",
                r.interval, r.elapsed_s, r.judgement.verdict, r.judgement.score
            ),
        });
        start = r.window_end;
    }
    let mut out = String::from("<div class=\"plots\">");
    for name in metrics {
        let gather = |side: &str| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> = intervals
                .iter()
                .flat_map(|r| &r.series)
                .filter(|s| s.name == *name && s.side == side)
                .flat_map(|s| s.points.iter().copied())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        };
        let (baseline, canary) = (gather("baseline"), gather("canary"));
        out.push_str(&plot::chart(&Chart {
            bands: &bands,
            width: 420.0,
            from_zero: false,
            ..Chart::new(name, &baseline, &canary, origin, "canary start")
        }));
    }
    out.push_str("</div>");
    out
}

/// A number with about four significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// The findings with their typed fields, one row each.
fn evidence_table(findings: &[FindingRecord]) -> String {
    let mut out = String::from(
        "<table class=\"evidence\"><tr><th>severity</th><th>signal</th><th>subject</th>\
         <th>effect [95 % interval]</th><th>p / q</th><th>test</th><th>counts (baseline / canary)</th>\
         <th>detail</th></tr>",
    );
    if findings.is_empty() {
        out.push_str("<tr><td colspan=\"8\">no findings</td></tr>");
    }
    for f in findings {
        let sev_colour = match f.severity.as_str() {
            "fail" => colour("Fail"),
            "review" | "warn" => colour("Marginal"),
            _ => "#222",
        };
        let effect = f.effect.as_ref().map_or("–".into(), |e| {
            let bound = |b: Option<f64>| b.map_or("…".into(), num);
            let interval = if e.low.is_none() && e.high.is_none() {
                String::new()
            } else {
                format!(" [{}, {}]", bound(e.low), bound(e.high))
            };
            format!("{} {}{interval}", escape(&e.kind), num(e.estimate))
        });
        let pq = match (f.p, f.q) {
            (None, None) => "–".into(),
            (p, q) => format!(
                "{} / {}",
                p.map_or("–".into(), num),
                q.map_or("–".into(), num)
            ),
        };
        let test = match (&f.test, f.statistic) {
            (Some(t), Some(x)) => format!("{} ({})", escape(t), num(x)),
            (Some(t), None) => escape(t),
            (None, _) => "–".into(),
        };
        let counts = f.counts.as_ref().map_or("–".into(), |c| {
            format!("{} / {} {}", c.baseline, c.canary, escape(&c.of))
        });
        let mut detail = escape(&f.detail);
        if let Some(op) = &f.operation {
            let _ = write!(detail, "<br>operation <code>{}</code>", escape(op));
        }
        if let Some(ms) = f.shift_ms {
            let _ = write!(detail, "<br>latency shift {} ms", num(ms));
        }
        for line in &f.examples {
            let _ = write!(detail, "<pre>{}</pre>", escape(line));
        }
        if let Some(fb) = &f.feedback {
            let _ = write!(detail, "<br><i>feedback: {}</i>", escape(fb));
        }
        let _ = write!(
            out,
            "<tr><td class=\"v\" style=\"color:{sev_colour}\">{}</td><td>{}</td><td><code>{}</code></td>\
             <td class=\"n\">{effect}</td><td class=\"n\">{pq}</td><td>{test}</td><td class=\"n\">{counts}</td>\
             <td>{detail}</td></tr>",
            escape(&f.severity),
            escape(&f.signal),
            escape(&f.subject),
        );
    }
    out.push_str("</table>");
    out
}

/// `GET /analyses/{id}`.
pub async fn analysis(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let row = match core.with_store(move |s| s.get(&key)).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let mut r = page(
                "Vigil: not found",
                None,
                &format!(
                    "<p>No analysis <code>{}</code>. <a href=\"/\">All analyses</a></p>",
                    escape(&id)
                ),
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        Err(e) => {
            return page(
                "Vigil",
                None,
                &format!("<p>store: {}</p>", escape(&e.to_string())),
            )
        }
    };
    let key = id.clone();
    let (entries, outbox) = core
        .with_store(move |s| Ok((s.entries_since(&key, 0, u32::MAX)?, s.outbox_of(&key)?)))
        .await
        .unwrap_or_default();
    let mut intervals = Vec::new();
    let mut events = Vec::new();
    for e in &entries {
        if e.kind == "judgement" {
            if let Ok(r) = serde_json::from_str::<IntervalRecord>(&e.payload_json) {
                intervals.push(r);
            }
        } else if let Ok(ev) = serde_json::from_str::<EventRecord>(&e.payload_json) {
            events.push((e.at_ms, ev));
        }
    }
    let mut body = format!(
        "<p><a href=\"/\">All analyses</a></p><h1><code>{}</code> {}</h1>\
         <p>app <b>{}</b> · state <b>{}</b> · verdict {} · score {}</p>",
        escape(&row.id),
        verdict_cell(row.verdict.as_deref()),
        escape(&row.app),
        escape(&row.state),
        verdict_cell(row.verdict.as_deref()),
        row.score.map_or("–".into(), |s| format!("{s:.1}")),
    );
    if let Some((_, fin)) = events
        .iter()
        .rev()
        .find(|(_, e)| matches!(e.kind.as_str(), "finished" | "cancelled"))
    {
        let _ = write!(body, "<p>{}", escape(&fin.message));
        if let Some(t) = fin.time_to_detect_s {
            let _ = write!(body, " · time to detect {t:.0} s");
        }
        body.push_str("</p>");
    }
    body.push_str("<h2>Verdict timeline</h2>");
    body.push_str(&timeline(&intervals));
    let mut metrics: Vec<String> = plan_of(&row)
        .map(|(spec, _)| spec.metrics.into_iter().map(|m| m.name).collect())
        .unwrap_or_default();
    // The metrics the last interval's evidence names first, as the replay report orders them.
    if let Some(last) = intervals.last() {
        let named = |m: &String| {
            last.judgement
                .evidence
                .iter()
                .any(|f| f.signal == "metrics" && f.subject == *m)
        };
        metrics.sort_by_key(|m| !named(m));
    }
    if !metrics.is_empty() {
        body.push_str(
            "<h2>Metrics</h2><p class=\"muted\">Baseline and canary readings as the runner fetched \
             them; the strip along the top of each plot is the intervals, coloured by verdict.</p>",
        );
        body.push_str(&metric_charts(&metrics, &intervals));
    }
    if let Some(last) = intervals.last() {
        let _ = write!(
            body,
            "<h2>Evidence of interval {} ({:.0} s)</h2>",
            last.interval, last.elapsed_s
        );
        body.push_str(&evidence_table(&last.judgement.evidence));
        if let Some(note) = &last.judgement.note {
            let _ = write!(body, "<p class=\"muted\">{}</p>", escape(note));
        }
    }
    body.push_str(
        "<h2>Intervals</h2><table><tr><th>#</th><th>canary time</th><th>verdict</th><th>score</th>\
         <th>samples (baseline / canary)</th><th>note</th></tr>",
    );
    for r in intervals.iter().rev() {
        let data: Vec<String> = r
            .data
            .iter()
            .map(|d| {
                format!(
                    "{} {}/{}",
                    escape(&d.name),
                    d.baseline_samples,
                    d.canary_samples
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{:.0} s</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            r.interval,
            r.elapsed_s,
            verdict_cell(Some(&r.judgement.verdict)),
            r.judgement.score,
            data.join(", "),
            escape(r.judgement.note.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table><h2>Events</h2><table>");
    for (at, e) in &events {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_time(*at as f64 / 1000.0),
            escape(&e.kind),
            escape(&e.message)
        );
    }
    body.push_str("</table>");
    if !outbox.is_empty() {
        // What reached people: one row per message (channel, event), as GetAnalysis lists them.
        body.push_str(
            "<h2>Notifications</h2><table><tr><th>channel</th><th>event</th><th>state</th>\
             <th>attempts</th><th>last error</th></tr>",
        );
        for o in &outbox {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&o.channel),
                escape(&o.event),
                escape(&o.state),
                o.attempts,
                escape(o.last_error.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</table>");
    }
    let refresh = (!is_final_state(&row.state)).then_some(5);
    page(&format!("Vigil: {}", row.id), refresh, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::service::record::{CountsRecord, EffectRecord};

    fn finding() -> FindingRecord {
        FindingRecord {
            signal: "logs".into(),
            subject: "<img src=x onerror=alert(1)>".into(),
            severity: "fail".into(),
            strength: 3.0,
            detail: "new pattern <b>".into(),
            key: "log:1".into(),
            test: Some("fisher_exact".into()),
            statistic: None,
            p: Some(0.000_012),
            q: Some(0.0004),
            effect: Some(EffectRecord {
                kind: "rate_ratio".into(),
                estimate: 12.5,
                low: Some(4.25),
                high: None,
            }),
            counts: Some(CountsRecord {
                baseline: 0,
                canary: 37,
                of: "lines".into(),
            }),
            examples: vec!["ERROR </pre><script>alert('x')</script>".into()],
            operation: None,
            shift_ms: None,
            feedback: Some("false_positive: <i>known</i>".into()),
        }
    }

    #[test]
    fn evidence_shows_typed_fields_and_escapes_log_lines() {
        let t = evidence_table(&[finding()]);
        assert!(!t.contains("<script>") && !t.contains("<img") && !t.contains("<b>"));
        assert!(!t.contains("<i>known"), "{t}");
        assert!(
            t.contains(
                "<pre>ERROR &lt;/pre&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</pre>"
            ),
            "{t}"
        );
        assert!(t.contains("rate_ratio 12.5 [4.25, …]"), "{t}");
        assert!(t.contains("1.20e-5 / 4.00e-4"), "{t}");
        assert!(t.contains("0 / 37 lines"), "{t}");
        assert!(t.contains("&lt;img src=x onerror=alert(1)&gt;"), "{t}");
    }
}
