//! Fusion: per-signal findings into one verdict with a score and ranked evidence.
//!
//! Each signal (metrics, logs, traces, anomaly model) reports findings with a severity. A
//! `Fail` finding in a *critical* signal fails the whole analysis, as Kayenta's critical metrics
//! do, and one in another signal makes it at most Marginal; otherwise each signal scores 0–100
//! from its findings and the weighted mean of the signals that had data is compared with the pass
//! and marginal thresholds. When no signal had enough
//! data the verdict is Inconclusive, never Pass.

use serde::Serialize;

/// A telemetry signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Metric series.
    Metrics,
    /// Log lines.
    Logs,
    /// The pod's own spans.
    Traces,
    /// The pod as its callers see it (`crate::callers`).
    Callers,
    /// The anomaly models over metric rows and event windows.
    Anomaly,
}

impl Signal {
    /// Every signal, in report order.
    pub const ALL: [Signal; 5] = [
        Signal::Metrics,
        Signal::Logs,
        Signal::Traces,
        Signal::Callers,
        Signal::Anomaly,
    ];

    /// The signal's name in reports and `--set`/`--ablation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Callers => "callers",
            Signal::Anomaly => "anomaly",
        }
    }
}

/// How bad one finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look; lowers the score.
    Warn,
    /// A clear, statistically supported change whose harm depends on intent — a release may
    /// change how often it calls a dependency on purpose. Scores like Fail but, even on a critical
    /// signal, makes the analysis at most Marginal: a person decides.
    Review,
    /// Harmful with statistical support; fails the analysis when the signal is critical.
    Fail,
}

/// An effect with its interval: `estimate` in `unit`, and the 95 % interval around it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Effect {
    /// What the numbers are: `shift` (canary minus baseline, the metric's own unit),
    /// `rate_ratio` (canary rate over baseline rate), `ratio` (canary quantile over baseline's).
    pub kind: &'static str,
    /// The point estimate.
    pub estimate: f64,
    /// Lower end of the interval (may be absent for a one-sided or degenerate interval).
    pub low: Option<f64>,
    /// Upper end of the interval (absent when unbounded).
    pub high: Option<f64>,
}

/// Counts behind a finding, per side (lines of a log pattern, spans of an operation, windows
/// flagged of windows judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Baseline count.
    pub baseline: u64,
    /// Canary count.
    pub canary: u64,
    /// What is counted (`lines`, `spans`, `errors of spans`, `windows flagged of judged`).
    pub of: &'static str,
}

/// The typed fields of a finding: what a store, an alert or an API renders, so that nothing has
/// to be parsed back out of `detail`. Every field is optional except the key: each judge fills
/// what its test has.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Typed {
    /// A stable key of the subject: the same metric, pattern or operation gets the same key in
    /// every interval and run (`metric:CpuUsageRate(%)`, `log:<template id>`, `latency:<op>`).
    pub key: String,
    /// The test behind it (`mann_whitney`, `rate_test`, `fisher_exact`, `binomial`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<&'static str>,
    /// The test's statistic, where it has one worth reporting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// p-value adjusted for the comparisons made (Benjamini–Hochberg).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
    /// The effect with its interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// Counts per side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// Example lines (logs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// The operation (traces, callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The shift of the operation's latency in milliseconds (canary minus baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift_ms: Option<f64>,
}

/// One piece of evidence: its typed fields, and `detail`, a sentence with the numbers for a
/// person (formatted from the same values; kept for the `--json` contract and text output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The signal that found it.
    pub signal: Signal,
    /// The metric, operation, log template or feature the finding is about.
    pub subject: String,
    /// How bad it is.
    pub severity: Severity,
    /// For ranking: larger is stronger (typically -log10 p, capped).
    pub strength: f64,
    /// A sentence with the numbers (effect and interval, counts, example line).
    pub detail: String,
    /// The typed fields (flattened into the finding's JSON).
    #[serde(flatten)]
    pub typed: Typed,
}

/// Whether a signal could be judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Coverage {
    /// Enough data on both sides to judge.
    Judged,
    /// Present but too little data; the reason says how little.
    Inconclusive(String),
    /// Not recorded at all.
    Absent,
}

/// What one signal's judge returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalReport {
    /// The signal.
    pub signal: Signal,
    /// Whether it could be judged.
    pub coverage: Coverage,
    /// What it found (empty when it could not judge).
    pub findings: Vec<Finding>,
}

/// The verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Safe to promote.
    Pass,
    /// A person should look before promoting.
    Marginal,
    /// Roll back.
    Fail,
    /// Not enough data yet; never a Pass.
    Inconclusive,
    /// The analysis could not run (a source or input failed).
    Error,
}

impl Verdict {
    /// The verdict's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Marginal => "Marginal",
            Verdict::Fail => "Fail",
            Verdict::Inconclusive => "Inconclusive",
            Verdict::Error => "Error",
        }
    }

    /// Counted as "the canary is bad" by the replay measures.
    pub fn flagged(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Marginal)
    }
}

/// Points a signal's score loses per finding: one schedule for every signal, and the same one
/// the log judge's own score uses (`vigil logs compare`), so the logs never show two different
/// numbers for one comparison. A signal starts at 100; the score is floored at 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Penalties {
    /// Per Fail (or Review) finding: one is enough to take a signal below the Marginal line.
    pub fail: f64,
    /// Per Warn finding: one alone keeps a signal at the Pass line; two make it Marginal.
    pub warn: f64,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties {
            fail: 60.0,
            warn: 25.0,
        }
    }
}

impl Penalties {
    /// The score of a signal with `fails` Fail/Review and `warns` Warn findings.
    #[allow(
        clippy::cast_precision_loss,
        reason = "finding counts are far below 2^52"
    )]
    pub fn score(&self, fails: usize, warns: usize) -> f64 {
        (100.0 - fails as f64 * self.fail - warns as f64 * self.warn).max(0.0)
    }
}

/// Thresholds and weights.
#[derive(Debug, Clone, Serialize)]
pub struct FusionConfig {
    /// Scores at or above pass.
    pub pass_threshold: f64,
    /// Scores at or above are Marginal, below Fail.
    pub marginal_threshold: f64,
    /// A Fail finding in one of these fails the analysis outright.
    pub critical: Vec<Signal>,
    /// Points a signal loses per finding.
    pub penalties: Penalties,
    /// Relative weight of each signal in the score: one per signal, so none can be missing.
    pub weights: Weights,
}

/// The weight of each signal in the fused score. A struct rather than a list so that a signal
/// cannot be left out and silently weigh nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    /// Metric signal.
    pub metrics: f64,
    /// Log signal.
    pub logs: f64,
    /// Trace signal.
    pub traces: f64,
    /// Callers' signal.
    pub callers: f64,
    /// Anomaly model.
    pub anomaly: f64,
}

impl Weights {
    /// The weight of `signal`.
    pub fn of(&self, signal: Signal) -> f64 {
        match signal {
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
            Signal::Traces => self.traces,
            Signal::Callers => self.callers,
            Signal::Anomaly => self.anomaly,
        }
    }
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            pass_threshold: 75.0,
            marginal_threshold: 50.0,
            critical: vec![
                Signal::Metrics,
                Signal::Logs,
                Signal::Traces,
                Signal::Callers,
            ],
            penalties: Penalties::default(),
            weights: Weights {
                metrics: 0.35,
                logs: 0.25,
                traces: 0.25,
                callers: 0.25,
                anomaly: 0.15,
            },
        }
    }
}

/// The fused result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// The fused verdict.
    pub verdict: Verdict,
    /// 0–100, higher is healthier.
    pub score: f64,
    /// The top findings, strongest first (at most three).
    pub evidence: Vec<Finding>,
    /// Every finding of every judged signal, strongest first.
    pub findings: Vec<Finding>,
    /// Per-signal score (None when the signal was not judged).
    pub signal_scores: Vec<(Signal, Option<f64>)>,
    /// Why, in one line, when the verdict is Inconclusive or Error.
    pub note: Option<String>,
}

/// Fuses signal reports into a verdict.
pub(crate) fn fuse(reports: &[SignalReport], config: &FusionConfig) -> Judgement {
    let mut weighted = 0.0;
    let mut total_w = 0.0;
    // The unweighted mean too: when every judged signal weighs 0, the score is still the
    // signals' own, never "no data" (a judged signal is data).
    let mut plain = 0.0;
    let mut judged = 0usize;
    let mut signal_scores = Vec::new();
    let mut critical_fail = false;
    let mut other_fail = false;
    let mut all: Vec<Finding> = Vec::new();
    for r in reports {
        if r.coverage != Coverage::Judged {
            signal_scores.push((r.signal, None));
            continue;
        }
        let (mut fails, mut warns) = (0, 0);
        for f in &r.findings {
            match f.severity {
                Severity::Fail | Severity::Review => fails += 1,
                Severity::Warn => warns += 1,
            }
            match f.severity {
                Severity::Fail if config.critical.contains(&r.signal) => critical_fail = true,
                Severity::Fail | Severity::Review => other_fail = true,
                Severity::Warn => {}
            }
        }
        let s = config.penalties.score(fails, warns);
        let w = config.weights.of(r.signal).max(0.0);
        weighted += w * s;
        total_w += w;
        plain += s;
        judged += 1;
        signal_scores.push((r.signal, Some(s)));
        all.extend(r.findings.iter().cloned().map(|mut f| {
            if f.typed.key.is_empty() {
                f.typed.key = format!("{}:{}", f.signal.as_str(), f.subject);
            }
            f
        }));
    }
    // A NaN strength ranks last (`total_cmp` would put it above every number).
    let rank = |f: &Finding| {
        if f.strength.is_nan() {
            f64::NEG_INFINITY
        } else {
            f.strength
        }
    };
    all.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(rank(b).total_cmp(&rank(a)))
    });
    let findings = all.clone();
    all.truncate(3);
    if judged == 0 {
        let reasons: Vec<String> = reports
            .iter()
            .filter_map(|r| match &r.coverage {
                Coverage::Inconclusive(why) => Some(format!("{}: {why}", r.signal.as_str())),
                _ => None,
            })
            .collect();
        let note = if reasons.is_empty() {
            "no signal was recorded on both sides".to_string()
        } else {
            reasons.join("; ")
        };
        return Judgement {
            verdict: Verdict::Inconclusive,
            score: 0.0,
            evidence: all,
            findings,
            signal_scores,
            note: Some(note),
        };
    }
    let mut score = if total_w > 0.0 {
        weighted / total_w
    } else {
        plain / judged as f64
    };
    if critical_fail {
        score = score.min(config.marginal_threshold - 1.0);
    } else if other_fail {
        // A clear failure of a non-critical signal is worth a person's look: at most Marginal —
        // and no worse on its own account: the cap never takes a score below the marginal line
        // (with a pass threshold at or just above it, `pass - 1` would turn the cap into a Fail).
        score = score
            .min(config.pass_threshold - 1.0)
            .max(score.min(config.marginal_threshold));
    }
    let verdict = if critical_fail || score < config.marginal_threshold {
        Verdict::Fail
    } else if score < config.pass_threshold || other_fail {
        Verdict::Marginal
    } else {
        Verdict::Pass
    };
    Judgement {
        verdict,
        score: (score * 10.0).round() / 10.0,
        evidence: all,
        findings,
        signal_scores,
        note: None,
    }
}

/// Strength of a p-value for ranking: -log10 p, capped so that one extreme test does not hide
/// the others. A p-value that is not a probability (NaN from a degenerate test) is no evidence
/// at all: strength 0, never the strongest (`f64::max` would drop the NaN and rank it at the cap).
pub fn strength(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return 0.0;
    }
    (-p.max(1e-30).log10()).min(30.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(signal: Signal, severity: Severity, strength: f64) -> Finding {
        Finding {
            typed: Typed::default(),
            signal,
            subject: "x".into(),
            severity,
            strength,
            detail: String::new(),
        }
    }

    fn report(signal: Signal, findings: Vec<Finding>) -> SignalReport {
        SignalReport {
            signal,
            coverage: Coverage::Judged,
            findings,
        }
    }

    #[test]
    fn a_critical_fail_fails_and_clean_signals_pass() {
        let cfg = FusionConfig::default();
        let clean = fuse(
            &[
                report(Signal::Metrics, vec![]),
                report(Signal::Logs, vec![]),
            ],
            &cfg,
        );
        assert_eq!(clean.verdict, Verdict::Pass);
        assert_eq!(clean.score, 100.0);
        let bad = fuse(
            &[
                report(
                    Signal::Metrics,
                    vec![finding(Signal::Metrics, Severity::Fail, 5.0)],
                ),
                report(Signal::Logs, vec![]),
            ],
            &cfg,
        );
        assert_eq!(bad.verdict, Verdict::Fail);
        assert!(bad.score < 50.0);
    }

    #[test]
    fn anomaly_alone_is_not_critical_but_makes_marginal() {
        let cfg = FusionConfig::default();
        let anomaly = |severity| {
            report(
                Signal::Anomaly,
                vec![finding(Signal::Anomaly, severity, 3.0)],
            )
        };
        let j = fuse(
            &[report(Signal::Metrics, vec![]), anomaly(Severity::Fail)],
            &cfg,
        );
        // metrics 100 (w .35), anomaly 40 (w .15) would be 82; a non-critical Fail caps it at 74.
        assert_eq!(j.verdict, Verdict::Marginal);
        assert!((j.score - 74.0).abs() < 1e-9, "{}", j.score);
        let j = fuse(
            &[report(Signal::Metrics, vec![]), anomaly(Severity::Warn)],
            &cfg,
        );
        // anomaly 75: (35 + 11.25) / 0.5 = 92.5
        assert_eq!(j.verdict, Verdict::Pass);
        assert!((j.score - 92.5).abs() < 1e-9, "{}", j.score);
    }

    #[test]
    fn the_at_most_marginal_cap_never_makes_a_fail_whatever_the_thresholds() {
        // metrics 100 (w .35), anomaly 40 (w .15): 82 before the cap, as above.
        let signals = [
            report(Signal::Metrics, vec![]),
            report(
                Signal::Anomaly,
                vec![finding(Signal::Anomaly, Severity::Fail, 3.0)],
            ),
        ];
        for (pass, marginal) in [(50.0, 50.0), (51.0, 50.0), (60.0, 50.0), (75.0, 50.0)] {
            let cfg = FusionConfig {
                pass_threshold: pass,
                marginal_threshold: marginal,
                ..FusionConfig::default()
            };
            let j = fuse(&signals, &cfg);
            assert_eq!(j.verdict, Verdict::Marginal, "pass {pass}: {}", j.score);
            assert!(j.score >= marginal, "pass {pass}: {}", j.score);
        }
        // A score already under the marginal line on its own stays a Fail: the cap does not lift it.
        let low = fuse(
            &[
                report(Signal::Metrics, vec![]),
                report(
                    Signal::Anomaly,
                    vec![finding(Signal::Anomaly, Severity::Fail, 3.0)],
                ),
            ],
            &FusionConfig {
                pass_threshold: 95.0,
                marginal_threshold: 90.0,
                ..FusionConfig::default()
            },
        );
        assert_eq!(low.verdict, Verdict::Fail, "{}", low.score);
    }

    #[test]
    fn a_review_finding_on_a_critical_signal_makes_marginal_not_fail() {
        let cfg = FusionConfig::default();
        let traces =
            |severity| report(Signal::Traces, vec![finding(Signal::Traces, severity, 3.0)]);
        let j = fuse(
            &[report(Signal::Metrics, vec![]), traces(Severity::Review)],
            &cfg,
        );
        assert_eq!(j.verdict, Verdict::Marginal, "{}", j.score);
        assert!((j.score - 74.0).abs() < 1e-9, "{}", j.score);
        let j = fuse(
            &[report(Signal::Metrics, vec![]), traces(Severity::Fail)],
            &cfg,
        );
        assert_eq!(j.verdict, Verdict::Fail);
    }

    #[test]
    fn warnings_across_signals_make_marginal() {
        let cfg = FusionConfig::default();
        let w = |s| {
            report(
                s,
                vec![
                    finding(s, Severity::Warn, 1.0),
                    finding(s, Severity::Warn, 1.0),
                ],
            )
        };
        let j = fuse(
            &[
                w(Signal::Metrics),
                w(Signal::Logs),
                report(Signal::Traces, vec![]),
            ],
            &cfg,
        );
        // (0.35*50 + 0.25*50 + 0.25*100) / 0.85 = 64.7
        assert_eq!(j.verdict, Verdict::Marginal, "{}", j.score);
    }

    #[test]
    fn no_data_is_inconclusive_not_pass() {
        let cfg = FusionConfig::default();
        let r = SignalReport {
            signal: Signal::Metrics,
            coverage: Coverage::Inconclusive("1 canary point".into()),
            findings: vec![],
        };
        let j = fuse(&[r], &cfg);
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert!(j.note.unwrap().contains("1 canary point"));
    }

    #[test]
    fn a_critical_fail_fails_even_when_every_judged_signal_weighs_nothing() {
        let cfg = FusionConfig {
            weights: Weights {
                metrics: 0.0,
                logs: 0.0,
                traces: 0.0,
                callers: 0.0,
                anomaly: 0.0,
            },
            ..FusionConfig::default()
        };
        let j = fuse(
            &[report(
                Signal::Metrics,
                vec![finding(Signal::Metrics, Severity::Fail, 5.0)],
            )],
            &cfg,
        );
        assert_eq!(j.verdict, Verdict::Fail, "{j:?}");
        let j = fuse(&[report(Signal::Logs, vec![])], &cfg);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.score, 100.0);
    }

    #[test]
    fn a_nan_p_value_is_no_evidence_not_the_strongest() {
        assert_eq!(strength(f64::NAN), 0.0);
        assert_eq!(strength(-0.1), 0.0);
        // -log10(1e-5) = 5; the cap is 30.
        assert!((strength(1e-5) - 5.0).abs() < 1e-12);
        assert_eq!(strength(0.0), 30.0);
        assert!(strength(f64::NAN) < strength(0.5));
    }

    #[test]
    fn evidence_is_ranked_fail_first_then_strength() {
        let cfg = FusionConfig::default();
        let j = fuse(
            &[report(
                Signal::Metrics,
                vec![
                    finding(Signal::Metrics, Severity::Warn, 9.0),
                    finding(Signal::Metrics, Severity::Fail, 2.0),
                    finding(Signal::Metrics, Severity::Fail, 4.0),
                    finding(Signal::Metrics, Severity::Warn, 1.0),
                ],
            )],
            &cfg,
        );
        let s: Vec<f64> = j.evidence.iter().map(|f| f.strength).collect();
        assert_eq!(s, vec![4.0, 2.0, 9.0]);
    }
}
