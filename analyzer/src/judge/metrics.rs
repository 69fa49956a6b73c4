//! The metric signal: which metrics are judged and in which direction, and Vigil's classifier
//! over each of them.

use vigil_models::vigil_judge::{
    self, Direction, MetricKind, MetricRule, Outcome, VigilJudgeConfig,
};

use super::{absent, View};
use crate::telemetry::MetricTable;
use crate::verdict::{strength, Coverage, Finding, Severity, Signal, SignalReport};

/// How a metric is judged, decided from its name so that any metrics.csv works: CPU, memory,
/// latency and errors are harmful when they rise, success rates when they fall; everything else
/// (traffic, node-level figures) is context for the anomaly model only. The unit in the name
/// sets the smallest shift that matters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    pub rule: MetricRule,
    /// A significant harmful shift fails the analysis. Client-side latency is not critical: it
    /// measures the pod's dependencies as much as the pod.
    pub critical: bool,
}

pub fn metric_spec(name: &str) -> Option<MetricSpec> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("node") {
        return None;
    }
    let (direction, kind) = if n.contains("success") {
        (Direction::Decrease, MetricKind::Gauge)
    } else if n.contains("error") || n.contains("fail") || n.contains("5xx") {
        (Direction::Increase, MetricKind::Count)
    } else if n.contains("latency")
        || n.contains("duration")
        || n.contains("cpu")
        || n.contains("mem")
    {
        (Direction::Increase, MetricKind::Gauge)
    } else {
        return None;
    };
    let min_abs_shift = if n.ends_with("(%)") {
        5.0
    } else if n.ends_with("(m)") {
        50.0
    } else if n.ends_with("(s)") {
        0.01
    } else if n.ends_with("(ms)") {
        10.0
    } else if n.ends_with("(mi)") || n.ends_with("(mib)") {
        16.0
    } else {
        0.0
    };
    Some(MetricSpec {
        rule: MetricRule {
            direction,
            kind,
            min_abs_shift,
        },
        critical: !n.contains("client"),
    })
}

/// One metric's values over a row range; empty when the side lacks the metric.
pub fn column(t: &MetricTable, rows: (usize, usize), name: &str) -> Vec<f64> {
    t.columns
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v[rows.0..rows.1].to_vec())
        .unwrap_or_default()
}

/// Vigil's metric signal: the improved classifier on every metric with a direction.
pub fn vigil_metrics(view: &View, config: &VigilJudgeConfig) -> SignalReport {
    let (Some(bt), Some(ct)) = (view.baseline.metrics, view.canary.metrics) else {
        return absent(Signal::Metrics);
    };
    let mut findings = Vec::new();
    let mut judged = 0;
    let mut inconclusive = None;
    for (name, _) in &bt.columns {
        let Some(spec) = metric_spec(name) else {
            continue;
        };
        let b = column(bt, view.baseline.metric_rows, name);
        let c = column(ct, view.canary.metric_rows, name);
        let j = vigil_judge::classify(&b, &c, spec.rule, config);
        match j.outcome {
            Outcome::Inconclusive => {
                inconclusive.get_or_insert(j.reason.clone());
                continue;
            }
            Outcome::Pass => {}
            Outcome::High | Outcome::Low | Outcome::Dispersed | Outcome::Trend => {
                findings.push(Finding {
                    signal: Signal::Metrics,
                    subject: name.clone(),
                    severity: if spec.critical {
                        Severity::Fail
                    } else {
                        Severity::Warn
                    },
                    strength: strength(j.p_value.unwrap_or(1.0)),
                    detail: j.reason.clone(),
                })
            }
        }
        judged += 1;
    }
    if judged == 0 {
        return SignalReport {
            signal: Signal::Metrics,
            coverage: Coverage::Inconclusive(
                inconclusive.unwrap_or_else(|| "no metric with a known direction".into()),
            ),
            findings,
        };
    }
    SignalReport {
        signal: Signal::Metrics,
        coverage: Coverage::Judged,
        findings,
    }
}
