//! What a person receives: built at send time from the stored analysis (row, entries) and the
//! outbox row, never from the spec's secrets. Slack gets Block Kit within Slack's limits
//! (`../shared/design/contracts.md`), email a multipart text + HTML body, a webhook JSON.

use serde_json::json;

use crate::service::record::{EventRecord, FindingRecord, IntervalRecord};
use crate::store::{AnalysisRow, Entry, OutboxRow};

/// Slack: a header block's text at most (characters).
pub const SLACK_HEADER_MAX: usize = 150;
/// Slack: a section's text at most.
pub const SLACK_SECTION_MAX: usize = 3000;
/// Slack: a section's fields at most.
pub const SLACK_FIELDS_MAX: usize = 10;
/// Slack: one field's text at most.
pub const SLACK_FIELD_MAX: usize = 2000;
/// Slack: blocks in a message at most.
pub const SLACK_BLOCKS_MAX: usize = 50;

/// Findings a message carries at most: the ones that drove the verdict.
pub const TOP_FINDINGS: usize = 3;

/// One finding, for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingLine {
    /// `metrics: latency_p99 (fail)`.
    pub title: String,
    /// The sentence the judge wrote.
    pub detail: String,
    /// Its numbers: effect and interval, counts, an example line, the slowed operation.
    pub numbers: Vec<String>,
}

/// A message's content, channel-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Idempotency key (`X-Vigil-Delivery`).
    pub key: String,
    /// The analysis.
    pub analysis_id: String,
    /// The app.
    pub app: String,
    /// The event (`fail`, `rollback` …).
    pub event: String,
    /// What happened (the event's own line).
    pub headline: String,
    /// The analysis's state now.
    pub state: String,
    /// Its verdict, if any.
    pub verdict: Option<String>,
    /// Its score, if any.
    pub score: Option<f64>,
    /// The strongest findings of the last judgement.
    pub findings: Vec<FindingLine>,
    /// The last rollback or promotion event, if any.
    pub action: Option<String>,
    /// The analysis page.
    pub link: String,
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn finding_line(f: &FindingRecord) -> FindingLine {
    let mut numbers = Vec::new();
    if let Some(e) = &f.effect {
        let mut s = format!("{} {}", e.kind, num(e.estimate));
        if let (Some(lo), Some(hi)) = (e.low, e.high) {
            s.push_str(&format!(" [{}, {}]", num(lo), num(hi)));
        }
        numbers.push(s);
    }
    if let Some(c) = &f.counts {
        numbers.push(format!(
            "{} baseline {} vs canary {}",
            c.of, c.baseline, c.canary
        ));
    }
    if let Some(p) = f.p {
        numbers.push(format!("p = {p:.2e}"));
    }
    if let Some(op) = &f.operation {
        match f.shift_ms {
            Some(ms) => numbers.push(format!("operation {op} slower by {} ms", num(ms))),
            None => numbers.push(format!("operation {op}")),
        }
    }
    if let Some(ex) = f.examples.first() {
        numbers.push(format!("example: {}", truncate(ex, 300)));
    }
    FindingLine {
        title: format!("{}: {} ({})", f.signal, f.subject, f.severity),
        detail: f.detail.clone(),
        numbers,
    }
}

/// `s` cut to at most `max` characters (an ellipsis marks a cut).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Message {
    /// The message for outbox row `o` of analysis `row` with its `entries`; `public_url` is where
    /// the service's pages are reached (no trailing slash needed).
    pub fn build(row: &AnalysisRow, entries: &[Entry], o: &OutboxRow, public_url: &str) -> Message {
        let mut last = None;
        let mut action = None;
        for e in entries {
            if e.kind == "judgement" {
                if let Ok(r) = serde_json::from_str::<IntervalRecord>(&e.payload_json) {
                    last = Some(r);
                }
            } else if let Ok(ev) = serde_json::from_str::<EventRecord>(&e.payload_json) {
                if matches!(ev.kind.as_str(), "rollback" | "promote") {
                    action = Some(ev.message);
                }
            }
        }
        let findings = last
            .map(|r| {
                let mut ev = r.judgement.evidence;
                ev.sort_by(|a, b| b.strength.total_cmp(&a.strength));
                ev.iter().take(TOP_FINDINGS).map(finding_line).collect()
            })
            .unwrap_or_default();
        Message {
            key: o.key.clone(),
            analysis_id: row.id.clone(),
            app: row.app.clone(),
            event: o.event.clone(),
            headline: o.message.clone(),
            state: row.state.clone(),
            verdict: row.verdict.clone(),
            score: row.score,
            findings,
            action,
            link: format!("{}/analyses/{}", public_url.trim_end_matches('/'), row.id),
        }
    }

    /// A one-line title: `Vigil: checkout Fail (score 12.0)`.
    pub fn title(&self) -> String {
        let what = match self.event.as_str() {
            "started" => "started".to_owned(),
            "cancelled" => "cancelled".to_owned(),
            "rollback" => "rollback".to_owned(),
            "promote" => "promotion".to_owned(),
            "interim" => format!(
                "interim {}",
                self.verdict.as_deref().unwrap_or("verdict changed")
            ),
            _ => self.verdict.clone().unwrap_or_else(|| self.event.clone()),
        };
        match self.score {
            Some(s) if !matches!(self.event.as_str(), "started") => {
                format!("Vigil: {} {what} (score {s:.1})", self.app)
            }
            _ => format!("Vigil: {} {what}", self.app),
        }
    }

    /// The plain-text body (the email's text part, Slack's fallback `text`).
    pub fn text(&self) -> String {
        let mut t = format!("{}\n\n{}\n", self.title(), self.headline);
        t.push_str(&format!(
            "\nApp: {}\nAnalysis: {}\nState: {}\n",
            self.app, self.analysis_id, self.state
        ));
        if let Some(v) = &self.verdict {
            t.push_str(&format!("Verdict: {v}\n"));
        }
        if let Some(s) = self.score {
            t.push_str(&format!("Score: {s:.1}\n"));
        }
        if let Some(a) = &self.action {
            t.push_str(&format!("Rollback/promotion: {a}\n"));
        }
        if !self.findings.is_empty() {
            t.push_str("\nWhat drove it:\n");
            for (i, f) in self.findings.iter().enumerate() {
                t.push_str(&format!("{}. {}\n   {}\n", i + 1, f.title, f.detail));
                for n in &f.numbers {
                    t.push_str(&format!("   - {n}\n"));
                }
            }
        }
        t.push_str(&format!("\n{}\n", self.link));
        t
    }

    /// The email's HTML part (every value escaped).
    pub fn html(&self) -> String {
        let e = html_escape;
        let mut h = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>\
             <body style=\"font-family:sans-serif;max-width:640px\">",
        );
        let color = match self.verdict.as_deref() {
            Some("Pass") => "#1a7f37",
            Some("Marginal") => "#9a6700",
            Some("Fail") | Some("Error") => "#cf222e",
            _ => "#57606a",
        };
        h.push_str(&format!(
            "<h2 style=\"color:{color}\">{}</h2><p>{}</p><table>",
            e(&self.title()),
            e(&self.headline)
        ));
        let mut row = |k: &str, v: &str| {
            h.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                e(k),
                e(v)
            ))
        };
        row("App", &self.app);
        row("Analysis", &self.analysis_id);
        row("State", &self.state);
        if let Some(v) = &self.verdict {
            row("Verdict", v);
        }
        if let Some(s) = self.score {
            row("Score", &format!("{s:.1}"));
        }
        if let Some(a) = &self.action {
            row("Rollback/promotion", a);
        }
        h.push_str("</table>");
        if !self.findings.is_empty() {
            h.push_str("<h3>What drove it</h3><ol>");
            for f in &self.findings {
                h.push_str(&format!("<li><b>{}</b><br>{}", e(&f.title), e(&f.detail)));
                if !f.numbers.is_empty() {
                    h.push_str("<ul>");
                    for n in &f.numbers {
                        h.push_str(&format!("<li>{}</li>", e(n)));
                    }
                    h.push_str("</ul>");
                }
                h.push_str("</li>");
            }
            h.push_str("</ol>");
        }
        h.push_str(&format!(
            "<p><a href=\"{}\">Open the analysis</a></p></body></html>",
            e(&self.link)
        ));
        h
    }

    /// The Slack incoming-webhook payload: Block Kit within Slack's limits.
    pub fn slack(&self) -> serde_json::Value {
        let mut blocks = vec![json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&self.title(), SLACK_HEADER_MAX)},
        })];
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&slack_escape(&self.headline), SLACK_SECTION_MAX)},
        }));
        let mut fields = vec![
            format!("*App*\n{}", slack_escape(&self.app)),
            format!("*State*\n{}", slack_escape(&self.state)),
        ];
        if let Some(v) = &self.verdict {
            fields.push(format!("*Verdict*\n{}", slack_escape(v)));
        }
        if let Some(s) = self.score {
            fields.push(format!("*Score*\n{s:.1}"));
        }
        if let Some(a) = &self.action {
            fields.push(format!("*Rollback/promotion*\n{}", slack_escape(a)));
        }
        fields.truncate(SLACK_FIELDS_MAX);
        blocks.push(json!({
            "type": "section",
            "fields": fields
                .iter()
                .map(|f| json!({"type": "mrkdwn", "text": truncate(f, SLACK_FIELD_MAX)}))
                .collect::<Vec<_>>(),
        }));
        for f in &self.findings {
            let mut t = format!("*{}*\n{}", slack_escape(&f.title), slack_escape(&f.detail));
            for n in &f.numbers {
                t.push_str(&format!("\n• {}", slack_escape(n)));
            }
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&t, SLACK_SECTION_MAX)},
            }));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("<{}|Open the analysis>", self.link), SLACK_SECTION_MAX)},
        }));
        blocks.truncate(SLACK_BLOCKS_MAX);
        json!({ "text": truncate(&self.title(), SLACK_SECTION_MAX), "blocks": blocks })
    }

    /// The webhook's JSON body.
    pub fn webhook(&self) -> serde_json::Value {
        json!({
            "delivery": self.key,
            "event": self.event,
            "message": self.headline,
            "analysis": {
                "id": self.analysis_id,
                "app": self.app,
                "state": self.state,
                "verdict": self.verdict,
                "score": self.score,
                "link": self.link,
            },
            "action": self.action,
            "findings": self.findings.iter().map(|f| json!({
                "title": f.title,
                "detail": f.detail,
                "numbers": f.numbers,
            })).collect::<Vec<_>>(),
        })
    }
}

/// HTML-escapes text for an element or a quoted attribute.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Slack's mrkdwn escaping (`&`, `<`, `>`), so a log line cannot become a mention or a link.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(subject: &str, strength: f64, detail: &str) -> serde_json::Value {
        serde_json::json!({
            "signal": "metrics", "subject": subject, "severity": "fail", "strength": strength,
            "detail": detail, "key": subject, "p": 0.0004,
            "effect": {"kind": "ratio", "estimate": 4.8, "low": 3.9, "high": 5.6},
            "counts": {"baseline": 12, "canary": 311, "of": "errors"},
            "examples": ["ERROR payment <declined> for order 77"],
            "operation": "POST /pay", "shift_ms": 412.5
        })
    }

    pub(crate) fn sample(detail: &str) -> (AnalysisRow, Vec<Entry>, OutboxRow) {
        let row = AnalysisRow {
            id: "checkout-rev42".into(),
            app: "checkout".into(),
            spec_json: "{}".into(),
            state: "failed".into(),
            verdict: Some("Fail".into()),
            score: Some(12.0),
            created_ms: 1,
            updated_ms: 2,
            finished_ms: Some(2),
            last_seq: 3,
            next_interval: 3,
        };
        let judgement = serde_json::json!({
            "interval": 2, "elapsed_s": 120.0, "window_start": 0.0, "window_end": 120.0,
            "judgement": {
                "verdict": "Fail", "score": 12.0,
                "evidence": [
                    finding("latency_p99", 0.4, "p99 latency up"),
                    finding("errors", 0.9, detail),
                    finding("cpu", 0.2, "cpu up"),
                    finding("logs_new_template", 0.7, "a new error template"),
                ],
                "findings": [], "signal_scores": []
            },
            "data": []
        });
        let rollback = serde_json::json!({"kind": "rollback", "message": "rollback completed: canary scaled to 0", "state": "failed"});
        let entries = vec![
            Entry {
                seq: 1,
                kind: "judgement".into(),
                payload_json: judgement.to_string(),
                at_ms: 1,
            },
            Entry {
                seq: 2,
                kind: "event".into(),
                payload_json: rollback.to_string(),
                at_ms: 2,
            },
        ];
        let o = OutboxRow {
            key: "checkout-rev42/final/0".into(),
            analysis_id: row.id.clone(),
            target: 0,
            channel: "slack".into(),
            event: "fail".into(),
            message: "finished Fail: failed".into(),
            state: "pending".into(),
            attempts: 0,
            next_ms: 0,
            last_error: None,
            created_ms: 0,
            done_ms: None,
        };
        (row, entries, o)
    }

    #[test]
    fn a_fail_carries_the_three_strongest_findings_with_their_numbers() {
        let (row, entries, o) = sample("errors up 4.8x");
        let m = Message::build(&row, &entries, &o, "https://vigil.example.com/");
        let titles: Vec<&str> = m.findings.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(
            titles,
            vec![
                "metrics: errors (fail)",
                "metrics: logs_new_template (fail)",
                "metrics: latency_p99 (fail)"
            ]
        );
        assert_eq!(
            m.findings[0].numbers,
            vec![
                "ratio 4.80 [3.90, 5.60]",
                "errors baseline 12 vs canary 311",
                "p = 4.00e-4",
                "operation POST /pay slower by 412 ms",
                "example: ERROR payment <declined> for order 77",
            ]
        );
        assert_eq!(
            m.action.as_deref(),
            Some("rollback completed: canary scaled to 0")
        );
        assert_eq!(m.link, "https://vigil.example.com/analyses/checkout-rev42");
        assert_eq!(m.title(), "Vigil: checkout Fail (score 12.0)");
        let text = m.text();
        assert!(text.contains("1. metrics: errors (fail)") && text.contains(&m.link));
        // HTML escapes what a log line brings; Slack's mrkdwn too.
        let html = m.html();
        assert!(html.contains("&lt;declined&gt;") && !html.contains("<declined>"));
        let slack = m.slack().to_string();
        assert!(slack.contains("&lt;declined&gt;") && !slack.contains("<declined>"));
        let hook = m.webhook();
        assert_eq!(hook["delivery"], "checkout-rev42/final/0");
        assert_eq!(hook["findings"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn slack_blocks_stay_within_slacks_limits_whatever_the_content() {
        let huge = "x".repeat(10_000);
        let (mut row, entries, o) = sample(&huge);
        row.app = "a".repeat(300);
        let m = Message::build(&row, &entries, &o, "http://h");
        let v = m.slack();
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        let chars = |s: &serde_json::Value| s.as_str().unwrap().chars().count();
        assert!(chars(&blocks[0]["text"]["text"]) <= 150);
        for b in &blocks[1..] {
            if let Some(t) = b.get("text") {
                assert!(chars(&t["text"]) <= 3000);
            }
            if let Some(f) = b.get("fields") {
                let f = f.as_array().unwrap();
                assert!(f.len() <= 10);
                assert!(f.iter().all(|x| chars(&x["text"]) <= 2000));
            }
        }
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("ab", 4), "ab");
    }
}
