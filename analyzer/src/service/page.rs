//! The pages a person looks at: `GET /` lists the analyses with state, verdict and score;
//! `GET /analyses/{id}` shows one — its verdict timeline (one bar per interval, height the score,
//! colour the verdict), every interval's judgement and the last interval's evidence — and reloads
//! itself while the analysis runs. Plain HTML and inline SVG: no script, no external asset.
//!
//! Every value from a spec, a source or a finding is escaped. Links never carry a `?token=`: a
//! page must not copy a secret into its HTML.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::record::{is_final_state, EventRecord, IntervalRecord};
use super::runner::Core;
use super::store::ListFilter;
use crate::telemetry::format_time;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}}\
         .v{{font-weight:600}}code{{font-size:90%}}</style></head><body>{body}</body></html>",
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
    let entries = core
        .with_store(move |s| s.entries_since(&key, 0, u32::MAX))
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
    if let Some(last) = intervals.last() {
        let _ = write!(
            body,
            "<h2>Evidence of interval {}</h2><table><tr><th>severity</th><th>finding</th><th>detail</th></tr>",
            last.interval
        );
        if last.judgement.evidence.is_empty() {
            body.push_str("<tr><td colspan=\"3\">no findings</td></tr>");
        }
        for f in &last.judgement.evidence {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}{}</td></tr>",
                escape(&f.severity),
                escape(&f.key),
                escape(&f.detail),
                f.feedback.as_deref().map_or(String::new(), |fb| format!(
                    "<br><i>feedback: {}</i>",
                    escape(fb)
                ))
            );
        }
        body.push_str("</table>");
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
    let refresh = (!is_final_state(&row.state)).then_some(5);
    page(&format!("Vigil: {}", row.id), refresh, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_outside_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
