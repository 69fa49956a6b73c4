//! What the service stores per analysis, as JSON payloads the store treats as opaque: one
//! [`IntervalRecord`] per judged interval and one [`EventRecord`] per event. They mirror the
//! `vigil.v1` messages field for field, so that `get --json` and the gRPC answer say the same.

use serde::{Deserialize, Serialize};

use crate::verdict::{Finding, Judgement, Severity, Signal, Verdict};
use vigil_proto::v1 as pb;

/// One finding, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// `metrics`, `logs`, `traces`, `callers`, `anomaly`.
    pub signal: String,
    /// Subject.
    pub subject: String,
    /// `warn`, `review`, `fail`.
    pub severity: String,
    /// Ranking strength.
    pub strength: f64,
    /// A sentence for a person.
    pub detail: String,
    /// Stable key.
    pub key: String,
    /// The test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// q-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
    /// Effect: kind, estimate, low, high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<EffectRecord>,
    /// Counts: baseline, canary, of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsRecord>,
    /// Example lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Latency shift, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_ms: Option<f64>,
    /// Feedback that applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
}

/// An effect with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    /// Kind.
    pub kind: String,
    /// Estimate.
    pub estimate: f64,
    /// Low.
    pub low: Option<f64>,
    /// High.
    pub high: Option<f64>,
}

/// Counts per side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountsRecord {
    /// Baseline.
    pub baseline: u64,
    /// Canary.
    pub canary: u64,
    /// What.
    pub of: String,
}

/// A fused judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgementRecord {
    /// `Pass`, `Marginal`, `Fail`, `Inconclusive`, `Error`.
    pub verdict: String,
    /// Score.
    pub score: f64,
    /// Top findings.
    pub evidence: Vec<FindingRecord>,
    /// All findings.
    pub findings: Vec<FindingRecord>,
    /// Per signal: name and score.
    pub signal_scores: Vec<(String, Option<f64>)>,
    /// Why, for Inconclusive and Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Samples per metric and side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDataRecord {
    /// Metric.
    pub name: String,
    /// Baseline samples.
    pub baseline_samples: u32,
    /// Canary samples.
    pub canary_samples: u32,
}

/// Readings of one metric on one side, for the page's plots (the gRPC messages do not carry them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    /// Metric.
    pub name: String,
    /// `baseline` or `canary`.
    pub side: String,
    /// `(unix seconds, value)`, oldest first; a time without a reading is absent.
    pub points: Vec<(f64, f64)>,
}

/// Points one [`SeriesRecord`] holds at most: an interval with more readings (a fine step over
/// a long interval) keeps every n-th, so that a stored judgement stays small whatever the spec.
pub const MAX_SERIES_POINTS: usize = 120;

/// One interval's judgement (entry kind `judgement`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// 1-based.
    pub interval: u32,
    /// Canary seconds judged.
    pub elapsed_s: f64,
    /// Unix s.
    pub window_start: f64,
    /// Unix s.
    pub window_end: f64,
    /// The judgement.
    pub judgement: JudgementRecord,
    /// Data per metric.
    pub data: Vec<MetricDataRecord>,
    /// The readings this interval fetched that no earlier interval's record holds, per metric
    /// and side: the records of an analysis together hold each series once. Absent in records
    /// stored before the page plotted series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesRecord>,
}

/// An event (entry kind `event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `created`, `resumed`, `extended`, `finished`, `cancelled`.
    pub kind: String,
    /// For a person.
    pub message: String,
    /// State after it.
    pub state: String,
    /// Verdict after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Score after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Time to detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_s: Option<f64>,
    /// Intervals the analysis holds after it (set by `extended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals_total: Option<u32>,
}

/// States after which nothing more happens.
pub fn is_final_state(state: &str) -> bool {
    !matches!(state, "pending" | "running")
}

fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Warn => "warn",
        Severity::Review => "review",
        Severity::Fail => "fail",
    }
}

impl FindingRecord {
    /// From the engine's finding.
    pub fn from_finding(f: &Finding) -> Self {
        let t = &f.typed;
        FindingRecord {
            signal: f.signal.as_str().into(),
            subject: f.subject.clone(),
            severity: severity_str(f.severity).into(),
            strength: f.strength,
            detail: f.detail.clone(),
            key: t.key.clone(),
            test: t.test.map(str::to_owned),
            statistic: t.statistic,
            p: t.p,
            q: t.q,
            effect: t.effect.map(|e| EffectRecord {
                kind: e.kind.into(),
                estimate: e.estimate,
                low: e.low,
                high: e.high,
            }),
            counts: t.counts.map(|c| CountsRecord {
                baseline: c.baseline,
                canary: c.canary,
                of: c.of.into(),
            }),
            examples: t.examples.clone(),
            operation: t.operation.clone(),
            shift_ms: t.shift_ms,
            feedback: None,
        }
    }

    /// As the proto message.
    pub fn to_proto(&self) -> pb::Finding {
        pb::Finding {
            signal: signal_proto(&self.signal) as i32,
            subject: self.subject.clone(),
            severity: match self.severity.as_str() {
                "warn" => pb::Severity::Warn,
                "review" => pb::Severity::Review,
                "fail" => pb::Severity::Fail,
                _ => pb::Severity::Unspecified,
            } as i32,
            strength: self.strength,
            detail: self.detail.clone(),
            key: self.key.clone(),
            test: self.test.clone().unwrap_or_default(),
            statistic: self.statistic,
            p: self.p,
            q: self.q,
            effect: self.effect.as_ref().map(|e| pb::Effect {
                kind: e.kind.clone(),
                estimate: e.estimate,
                low: e.low,
                high: e.high,
            }),
            counts: self.counts.as_ref().map(|c| pb::Counts {
                baseline: c.baseline,
                canary: c.canary,
                of: c.of.clone(),
            }),
            examples: self.examples.clone(),
            operation: self.operation.clone().unwrap_or_default(),
            shift_ms: self.shift_ms,
            feedback: self.feedback.clone().unwrap_or_default(),
        }
    }
}

/// The proto enum of a signal name.
pub fn signal_proto(s: &str) -> pb::Signal {
    match s {
        "metrics" => pb::Signal::Metrics,
        "logs" => pb::Signal::Logs,
        "traces" => pb::Signal::Traces,
        "callers" => pb::Signal::Callers,
        "anomaly" => pb::Signal::Anomaly,
        _ => pb::Signal::Unspecified,
    }
}

/// The engine's signal of a proto enum value.
pub fn signal_from_proto(v: i32) -> Option<Signal> {
    match pb::Signal::try_from(v).ok()? {
        pb::Signal::Metrics => Some(Signal::Metrics),
        pb::Signal::Logs => Some(Signal::Logs),
        pb::Signal::Traces => Some(Signal::Traces),
        pb::Signal::Callers => Some(Signal::Callers),
        pb::Signal::Anomaly => Some(Signal::Anomaly),
        pb::Signal::Unspecified => None,
    }
}

/// The proto enum of a verdict name.
pub fn verdict_proto(v: Option<&str>) -> pb::Verdict {
    match v {
        Some("Pass") => pb::Verdict::Pass,
        Some("Marginal") => pb::Verdict::Marginal,
        Some("Fail") => pb::Verdict::Fail,
        Some("Inconclusive") => pb::Verdict::Inconclusive,
        Some("Error") => pb::Verdict::Error,
        _ => pb::Verdict::Unspecified,
    }
}

/// The proto enum of a state name.
pub fn state_proto(s: &str) -> pb::State {
    match s {
        "pending" => pb::State::Pending,
        "running" => pb::State::Running,
        "succeeded" => pb::State::Succeeded,
        "failed" => pb::State::Failed,
        "inconclusive" => pb::State::Inconclusive,
        "error" => pb::State::Error,
        "cancelled" => pb::State::Cancelled,
        _ => pb::State::Unspecified,
    }
}

/// The state name of a proto enum value (None for unspecified or unknown).
pub fn state_name(v: i32) -> Option<&'static str> {
    Some(match pb::State::try_from(v).ok()? {
        pb::State::Pending => "pending",
        pb::State::Running => "running",
        pb::State::Succeeded => "succeeded",
        pb::State::Failed => "failed",
        pb::State::Inconclusive => "inconclusive",
        pb::State::Error => "error",
        pb::State::Cancelled => "cancelled",
        pb::State::Unspecified => return None,
    })
}

impl JudgementRecord {
    /// From the engine's judgement.
    pub fn from_judgement(j: &Judgement) -> Self {
        JudgementRecord {
            verdict: j.verdict.as_str().into(),
            score: j.score,
            evidence: j.evidence.iter().map(FindingRecord::from_finding).collect(),
            findings: j.findings.iter().map(FindingRecord::from_finding).collect(),
            signal_scores: j
                .signal_scores
                .iter()
                .map(|(s, x)| (s.as_str().to_owned(), *x))
                .collect(),
            note: j.note.clone(),
        }
    }

    /// As the proto message.
    pub fn to_proto(&self) -> pb::Judgement {
        pb::Judgement {
            verdict: verdict_proto(Some(&self.verdict)) as i32,
            score: self.score,
            evidence: self.evidence.iter().map(FindingRecord::to_proto).collect(),
            findings: self.findings.iter().map(FindingRecord::to_proto).collect(),
            signal_scores: self
                .signal_scores
                .iter()
                .map(|(s, x)| pb::SignalScore {
                    signal: signal_proto(s) as i32,
                    score: *x,
                })
                .collect(),
            note: self.note.clone().unwrap_or_default(),
        }
    }
}

impl IntervalRecord {
    /// As the proto message.
    pub fn to_proto(&self) -> pb::IntervalJudgement {
        pb::IntervalJudgement {
            interval: self.interval,
            elapsed_s: self.elapsed_s,
            window_start: self.window_start,
            window_end: self.window_end,
            judgement: Some(self.judgement.to_proto()),
            data: self
                .data
                .iter()
                .map(|d| pb::MetricData {
                    name: d.name.clone(),
                    baseline_samples: d.baseline_samples,
                    canary_samples: d.canary_samples,
                })
                .collect(),
        }
    }
}

impl EventRecord {
    /// As the proto message.
    pub fn to_proto(&self) -> pb::Event {
        pb::Event {
            kind: self.kind.clone(),
            message: self.message.clone(),
            state: state_proto(&self.state) as i32,
            verdict: verdict_proto(self.verdict.as_deref()) as i32,
            score: self.score,
            time_to_detect_s: self.time_to_detect_s,
        }
    }
}

/// The engine's verdict of its name.
pub fn verdict_of(s: &str) -> Option<Verdict> {
    Some(match s {
        "Pass" => Verdict::Pass,
        "Marginal" => Verdict::Marginal,
        "Fail" => Verdict::Fail,
        "Inconclusive" => Verdict::Inconclusive,
        "Error" => Verdict::Error,
        _ => return None,
    })
}
