//! The log signal over a view: the log judge's patterns as findings.

use super::{absent, View};
use crate::logs::judge::{
    judge_logs_with_exposure, Change, Class, Exposure, LogJudgeConfig, LogSession,
};
use crate::text::clip;
use crate::verdict::{
    strength, Counts, Coverage, Effect, Finding, Severity, Signal, SignalReport, Typed,
};

/// Vigil's log signal: the log judge (pattern mining, new patterns, rate shifts per covered
/// second, severity), its critical and error patterns as Fail findings, warnings as Warn.
pub fn vigil_logs(view: &View, config: &LogJudgeConfig) -> SignalReport {
    vigil_logs_with(view, None, config)
}

/// [`vigil_logs`] from the engine's log session (every record of the view already mined, in
/// the engine's order) instead of mining the view's records again.
pub fn vigil_logs_with(
    view: &View,
    kept: Option<&LogSession>,
    config: &LogJudgeConfig,
) -> SignalReport {
    let (Some(b), Some(c)) = (view.baseline.logs, view.canary.logs) else {
        return absent(Signal::Logs);
    };
    let (tb, tc) = (view.baseline.log_exposure, view.canary.log_exposure);
    if tb < 10.0 || tc < 10.0 {
        return SignalReport {
            signal: Signal::Logs,
            coverage: Coverage::Inconclusive(format!(
                "{tb:.0} s of baseline and {tc:.0} s of canary logs recorded, need 10 s each"
            )),
            findings: Vec::new(),
        };
    }
    let exposure = Exposure {
        baseline: tb,
        canary: tc,
    };
    let result = match kept {
        Some(session) => session.judge(exposure, config),
        None => judge_logs_with_exposure(b, c, exposure, None, config),
    };
    let found = match result {
        Ok(f) => f,
        Err(e) => {
            return SignalReport {
                signal: Signal::Logs,
                coverage: Coverage::Inconclusive(e.to_string()),
                findings: vec![],
            }
        }
    };
    let findings = found
        .patterns
        .iter()
        .filter_map(|p| {
            let severity = match p.class {
                Class::Critical | Class::Error => Severity::Fail,
                Class::Warning => Severity::Warn,
                Class::Info | Class::Ignore => return None,
            };
            let change = match p.change {
                Change::New => "new",
                Change::Rose => "rose",
                Change::Fell => "fell",
                _ => "changed",
            };
            let ratio = if p.rate_ratio.is_finite() { format!("x{:.1} (CI {:.1}..{:.1})", p.rate_ratio, p.ci_low, p.ci_high) } else { "new".into() };
            let example: String = p.examples.first().map(|e| clip(e, 160)).unwrap_or_default();
            let finite = |x: f64| x.is_finite().then_some(x);
            Some(Finding {
                typed: Typed {
                    key: format!("log:{:?}:{}", p.severity, p.template_id).to_lowercase(),
                    test: Some("rate_test"),
                    p: Some(p.p_value),
                    q: Some(p.q_value),
                    effect: finite(p.rate_ratio).map(|r| Effect {
                        kind: "rate_ratio",
                        estimate: r,
                        low: finite(p.ci_low),
                        high: finite(p.ci_high),
                    }),
                    counts: Some(Counts {
                        baseline: p.baseline_count,
                        canary: p.canary_count,
                        of: "lines",
                    }),
                    examples: p.examples.clone(),
                    ..Typed::default()
                },
                signal: Signal::Logs,
                subject: format!("{change} {:?} pattern {}", p.severity, clip(&p.template, 60)),
                severity,
                strength: strength(p.q_value.max(p.p_value)),
                detail: format!(
                    "{} -> {} lines in {tb:.0} s / {tc:.0} s, rate {ratio}, q {:.1e}; e.g. {example}",
                    p.baseline_count, p.canary_count, p.q_value
                ),
            })
        })
        .collect();
    SignalReport {
        signal: Signal::Logs,
        coverage: Coverage::Judged,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{side, view, Lcg};
    use super::*;
    use crate::logs::records::LogRecord;
    use crate::verdict::{fuse, FusionConfig};

    fn lines(start: f64, n: usize, level: &str, body: &dyn Fn(usize) -> String) -> Vec<LogRecord> {
        (0..n)
            .map(|i| LogRecord {
                time: Some(start + i as f64),
                severity: Some(level.into()),
                body: body(i),
            })
            .collect()
    }

    /// The log judge's own score and the score fusion gives the logs signal are one number: a
    /// comparison with an Error pattern and Warning patterns scores the same both ways.
    #[test]
    fn the_log_judges_score_is_fusions_logs_score() {
        let mut rng = Lcg(7);
        let b = side(&mut rng, 0.0, 1.0);
        let mut c = side(&mut rng, 180.0, 1.0);
        // A new ERROR pattern seen often (Error), a new WARN pattern (Warning).
        c.0.extend(lines(190.0, 12, "ERROR", &|i| {
            format!("payment gateway timeout after {i} retries")
        }));
        c.0.extend(lines(200.0, 3, "WARN", &|i| {
            format!("cache miss storm on shard {i}")
        }));
        let v = view(&b, &c);
        let cfg = LogJudgeConfig::default();
        let report = vigil_logs(&v, &cfg);
        let fails = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .count();
        let warns = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warn)
            .count();
        assert!(fails >= 1 && warns >= 1, "{:?}", report.findings);
        let fused = fuse(&[report], &FusionConfig::default());
        let (_, fusion_score) = fused.signal_scores[0];
        let own = judge_logs_with_exposure(
            &b.0,
            &c.0,
            Exposure {
                baseline: 180.0,
                canary: 180.0,
            },
            None,
            &cfg,
        )
        .unwrap();
        assert_eq!(Some(own.score), fusion_score);
        // 100 − 60 per Fail − 25 per Warn, floored at 0 (the documented schedule).
        let expected = (100.0 - 60.0 * fails as f64 - 25.0 * warns as f64).max(0.0);
        assert_eq!(own.score, expected);
    }
}
