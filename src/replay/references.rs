//! The two reference judges replay measures Vigil against: a Kayenta-compatible judge on
//! metrics alone, and a naive threshold judge. They are measuring instruments, not part of the
//! engine, so they live with replay; they read the same [`View`] as Vigil's judge.

use std::collections::{BTreeMap, BTreeSet};

use vigil_analyzer::judge::{column, metric_spec, View};
use vigil_analyzer::telemetry::Level;
use vigil_analyzer::telemetry::{LogRecord, Span};
use vigil_analyzer::text::clip;
use vigil_analyzer::verdict::{Finding, Judgement, Severity, Signal, Typed, Verdict};
use vigil_models::vigil_judge::{self, Direction};

/// The template of a log line: the logger and the message with variable tokens masked. A
/// stand-in for the log miner, good enough to tell new error kinds from old ones.
pub fn log_template(body: &str) -> String {
    let mut words = body.split_whitespace().peekable();
    let mut out = Vec::new();
    // Skip a leading time and level ("16:52:07.559 INFO").
    if let Some(w) = words.peek() {
        if w.contains(':') && w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            words.next();
        }
    }
    let mut skip_next = false;
    for w in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        if w == "TraceID:" || w == "SpanID:" {
            skip_next = true;
            continue;
        }
        if w.chars().any(|c| c.is_ascii_digit()) {
            if out.last() != Some(&"<*>".to_string()) {
                out.push("<*>".to_string());
            }
        } else {
            out.push(w.to_string());
        }
        if out.len() >= 24 {
            break;
        }
    }
    out.join(" ")
}

/// ERROR or worse by the one rule every judge uses ([`LogRecord::level`]: the level field, else
/// the body's words), so the naive judge, the event model and the log judge agree on a line.
fn is_error(l: &LogRecord) -> bool {
    l.level() >= Level::Error
}

/// The naive reference: Fail when any harmful-direction metric or any operation's span p90 is
/// up 50 %, or any ERROR template is new.
pub fn naive(view: &View) -> Judgement {
    let mut findings = Vec::new();
    let mut judged = false;
    let p90 = |v: &[f64]| {
        let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        vigil_judge::quantile(&f, 0.9)
    };
    if let (Some(bt), Some(ct)) = (view.baseline.metrics, view.canary.metrics) {
        for (name, _) in &bt.columns {
            let Some(spec) = metric_spec(name) else {
                continue;
            };
            if spec.rule.direction != Direction::Increase {
                continue;
            }
            let (Some(b), Some(c)) = (
                p90(&column(bt, view.baseline.metric_rows, name)),
                p90(&column(ct, view.canary.metric_rows, name)),
            ) else {
                continue;
            };
            judged = true;
            if b > 0.0 && c > 1.5 * b {
                findings.push(naive_finding(
                    Signal::Metrics,
                    name,
                    format!("p90 {b:.4} -> {c:.4}"),
                ));
            }
        }
    }
    if let (Some(b), Some(c)) = (view.baseline.spans, view.canary.spans) {
        fn by_op(s: &[Span]) -> BTreeMap<&str, Vec<f64>> {
            let mut m: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for x in s {
                m.entry(x.operation.as_str())
                    .or_default()
                    .push(x.duration_ms);
            }
            m
        }
        let (ob, oc) = (by_op(b), by_op(c));
        for (op, bv) in &ob {
            let Some(cv) = oc.get(op) else { continue };
            if bv.len() < 20 || cv.len() < 20 {
                continue;
            }
            judged = true;
            let (pb, pc) = (p90(bv).unwrap_or(0.0), p90(cv).unwrap_or(0.0));
            if pb > 0.0 && pc > 1.5 * pb {
                findings.push(naive_finding(
                    Signal::Traces,
                    op,
                    format!("span p90 {pb:.1} -> {pc:.1} ms"),
                ));
            }
        }
    }
    if let (Some(b), Some(c)) = (view.baseline.logs, view.canary.logs) {
        judged = true;
        let known: BTreeSet<String> = b.iter().map(|l| log_template(&l.body)).collect();
        if let Some(l) = c
            .iter()
            .filter(|l| is_error(l))
            .find(|l| !known.contains(&log_template(&l.body)))
        {
            findings.push(naive_finding(
                Signal::Logs,
                "new ERROR line",
                clip(&l.body, 120),
            ));
        }
    }
    simple_judgement(judged, findings)
}

fn naive_finding(signal: Signal, subject: &str, detail: String) -> Finding {
    Finding {
        typed: Typed::default(),
        signal,
        subject: subject.to_string(),
        severity: Severity::Fail,
        strength: 1.0,
        detail,
    }
}

fn simple_judgement(judged: bool, findings: Vec<Finding>) -> Judgement {
    if !judged {
        return Judgement {
            verdict: Verdict::Inconclusive,
            score: 0.0,
            evidence: vec![],
            findings: vec![],
            signal_scores: vec![],
            note: Some("no comparable data yet".into()),
        };
    }
    let fail = !findings.is_empty();
    Judgement {
        verdict: if fail { Verdict::Fail } else { Verdict::Pass },
        score: if fail { 0.0 } else { 100.0 },
        findings: findings.clone(),
        evidence: findings,
        signal_scores: vec![],
        note: None,
    }
}

/// The Kayenta-compatible reference: NetflixACAJudge on every metric with a direction (default
/// settings otherwise, one group, thresholds 75 / 50), metrics alone. Kayenta has no notion of
/// "too early", so intervals with fewer than two canary rows are reported Inconclusive rather
/// than handed to it (its Nodata rule would fail them).
pub fn kayenta(view: &View) -> Judgement {
    use vigil_models::kayenta::{
        self as k, preprocess::JavaRandom, ClassifierParams, Label, MetricInput, MetricSettings,
        ScoreLabel, ScoreThresholds,
    };
    let (Some(bt), Some(ct)) = (view.baseline.metrics, view.canary.metrics) else {
        return simple_judgement(false, vec![]);
    };
    if view.canary.metric_rows.1 - view.canary.metric_rows.0 < 2
        || view.baseline.metric_rows.1 - view.baseline.metric_rows.0 < 2
    {
        return simple_judgement(false, vec![]);
    }
    let group = vec!["pod".to_string()];
    let mut names = Vec::new();
    let mut data = Vec::new();
    for (name, _) in &bt.columns {
        let Some(spec) = metric_spec(name) else {
            continue;
        };
        let direction = spec.rule.direction;
        names.push(name.clone());
        data.push((
            column(bt, view.baseline.metric_rows, name),
            column(ct, view.canary.metric_rows, name),
            direction,
        ));
    }
    let inputs: Vec<MetricInput> = names
        .iter()
        .zip(&data)
        .map(|(n, (b, c, d))| MetricInput {
            name: n,
            groups: &group,
            control: b,
            experiment: c,
            settings: MetricSettings {
                direction: *d,
                ..MetricSettings::default()
            },
        })
        .collect();
    let mut rng = JavaRandom::new(0);
    let mut normal = || rng.next_gaussian();
    let j = k::judge(
        &inputs,
        &[],
        &ScoreThresholds {
            pass: 75.0,
            marginal: 50.0,
        },
        &ClassifierParams::NETFLIX_ACA_JUDGE,
        k::Mode::Kayenta,
        &mut normal,
    );
    let evidence: Vec<Finding> = j
        .metrics
        .iter()
        .zip(&names)
        .filter(|(m, _)| matches!(m.classification.label, Label::High | Label::Low))
        .take(3)
        .map(|(m, n)| Finding {
            typed: Typed::default(),
            signal: Signal::Metrics,
            subject: n.clone(),
            severity: Severity::Fail,
            strength: 1.0,
            detail: format!(
                "{} (mean {:.4} -> {:.4})",
                m.classification.label.as_str(),
                m.control_stats.mean,
                m.experiment_stats.mean
            ),
        })
        .collect();
    Judgement {
        verdict: match j.classification {
            ScoreLabel::Pass => Verdict::Pass,
            ScoreLabel::Marginal => Verdict::Marginal,
            ScoreLabel::Fail => Verdict::Fail,
        },
        score: j.score.summary,
        findings: evidence.clone(),
        evidence,
        signal_scores: vec![],
        note: j.score.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_analyzer::judge::SideView;

    fn view<'a>(b: &'a [LogRecord], c: &'a [LogRecord]) -> View<'a> {
        let sv = |logs: &'a [LogRecord], until: f64| SideView {
            logs: Some(logs),
            log_exposure: 180.0,
            until,
            ..SideView::default()
        };
        View {
            baseline: sv(b, f64::INFINITY),
            canary: sv(c, 360.0),
        }
    }

    #[test]
    fn naive_judge_reads_error_levels_as_the_log_judge_does() {
        let line = |sev: &str, body: &str| LogRecord {
            time: Some(200.0),
            severity: Some(sev.into()),
            body: body.into(),
        };
        let baseline = vec![line("INFO", "started")];
        for (sev, flagged) in [
            ("err", true),
            ("SEVERE", true),
            ("ERROR2", true),
            ("crit", true),
        ]
        .into_iter()
        .chain([("WARN", false), ("notice", false), ("bogus", false)])
        {
            let canary = vec![line(sev, "payment gateway refused the charge")];
            let j = naive(&view(&baseline, &canary));
            assert_eq!(j.verdict == Verdict::Fail, flagged, "level {sev}: {j:?}");
        }
        // No level field: the body's words decide, as in the log judge.
        let unlevelled = vec![LogRecord {
            time: Some(200.0),
            severity: None,
            body: "java.lang.NullPointerException at PaymentService.charge".into(),
        }];
        let j = naive(&view(&baseline, &unlevelled));
        assert_eq!(j.verdict, Verdict::Fail, "{j:?}");
    }
}
