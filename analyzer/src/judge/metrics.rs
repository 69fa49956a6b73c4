//! The metric signal: which metrics are judged and in which direction, and Vigil's classifier
//! over each of them.

use vigil_models::vigil_judge::{
    self, Direction, MetricKind, MetricRule, Outcome, VigilJudgeConfig,
};

use std::collections::BTreeMap;

use super::{absent, View};
use crate::telemetry::MetricTable;
use crate::verdict::{
    strength, Counts, Coverage, Effect, Finding, Severity, Signal, SignalReport, Typed,
};

/// How a metric is judged: its direction and kind, the smallest shift that matters, and whether a
/// harmful shift fails the analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Direction, kind and smallest shift.
    pub rule: MetricRule,
    /// A significant harmful shift fails the analysis. Client-side latency is not critical: it
    /// measures the pod's dependencies as much as the pod.
    pub critical: bool,
}

/// Which metrics are judged and how. A metric named in `overrides` is judged as it says (`None`:
/// not judged); any other falls back to the name defaults of [`metric_spec`]. The analysis spec
/// of a live service states each metric's direction here; the defaults exist so that any
/// `metrics.csv` of the corpus format works unconfigured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricRules {
    /// Per metric name: its spec, or `None` to leave it to the anomaly model only.
    pub overrides: BTreeMap<String, Option<MetricSpec>>,
}

impl MetricRules {
    /// How `name` is judged, if at all.
    pub fn spec(&self, name: &str) -> Option<MetricSpec> {
        match self.overrides.get(name) {
            Some(o) => *o,
            None => metric_spec(name),
        }
    }
}

/// The words of a metric name: runs of letters and digits, split again where a lower-case letter
/// or digit meets an upper-case one (`PodServerLatencyP90(s)` → pod, server, latency, p90, s),
/// lower-cased.
pub fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The name defaults, on whole words of the name ([`name_words`]) so that `mem` does not match
/// inside `memcached` nor `fail` inside `failover`:
/// - a name whose first word is `node` is a node-level figure: context for the anomaly model,
///   not judged;
/// - `success`, `successes`, `successful`: a success rate, harmful when it falls;
/// - `error(s)`, `err`, `fail(s|ed|ure|ures)`, `unsuccessful`, `5xx`: a count of failures,
///   harmful when it rises (`unsuccessful_requests` is such a count, not a success rate);
/// - `latency`, `duration`, `cpu`, `mem`, `memory`: harmful when they rise;
/// - anything else is not judged (traffic, I/O: context for the anomaly model).
///
/// The unit suffix sets the smallest shift that matters: `(%)` 5 points, `(m)` 50 millicores,
/// `(s)` 10 ms, `(ms)` 10 ms, `(Mi)`/`(MiB)` 16 MiB. A name with the word `client` is not
/// critical.
pub fn metric_spec(name: &str) -> Option<MetricSpec> {
    let n = name.to_ascii_lowercase();
    let words = name_words(name);
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    if words.first().is_some_and(|w| w == "node") {
        return None;
    }
    let (direction, kind) = if has(&["success", "successes", "successful"]) {
        (Direction::Decrease, MetricKind::Gauge)
    } else if has(&[
        "error",
        "errors",
        "err",
        "fail",
        "fails",
        "failed",
        "failure",
        "failures",
        "unsuccessful",
        "5xx",
    ]) {
        (Direction::Increase, MetricKind::Count)
    } else if has(&["latency", "duration", "cpu", "mem", "memory"]) {
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
        critical: !has(&["client"]),
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
pub fn vigil_metrics(view: &View, config: &VigilJudgeConfig, rules: &MetricRules) -> SignalReport {
    let (Some(bt), Some(ct)) = (view.baseline.metrics, view.canary.metrics) else {
        return absent(Signal::Metrics);
    };
    let mut findings = Vec::new();
    let mut judged = 0;
    let mut inconclusive = None;
    for (name, _) in &bt.columns {
        let Some(spec) = rules.spec(name) else {
            continue;
        };
        let b = column(bt, view.baseline.metric_rows, name);
        let c = column(ct, view.canary.metric_rows, name);
        let times = |t: &MetricTable, rows: (usize, usize)| {
            t.times
                .get(rows.0..rows.1)
                .map(<[f64]>::to_vec)
                .unwrap_or_default()
        };
        let j = vigil_judge::classify_with_times(
            (&times(bt, view.baseline.metric_rows), &b),
            (&times(ct, view.canary.metric_rows), &c),
            spec.rule,
            config,
        );
        match j.outcome {
            Outcome::Inconclusive => {
                inconclusive.get_or_insert(j.reason.clone());
                continue;
            }
            Outcome::Pass => {}
            Outcome::High | Outcome::Low | Outcome::Dispersed | Outcome::Trend => {
                findings.push(Finding {
                    typed: Typed {
                        key: format!("metric:{name}"),
                        test: Some(match j.test {
                            vigil_judge::Test::Location => "mann_whitney",
                            vigil_judge::Test::Dispersion => "mann_whitney_dispersion",
                            vigil_judge::Test::Count => "binomial_counts",
                            vigil_judge::Test::Trend => "mann_kendall",
                            vigil_judge::Test::None => "none",
                        }),
                        p: j.p_value,
                        effect: j.effect.map(|e| Effect {
                            kind: "shift",
                            estimate: e.shift,
                            low: Some(e.ci_low),
                            high: Some(e.ci_high),
                        }),
                        counts: Some(Counts {
                            baseline: b.iter().filter(|x| x.is_finite()).count() as u64,
                            canary: c.iter().filter(|x| x.is_finite()).count() as u64,
                            of: "samples",
                        }),
                        ..Typed::default()
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_are_on_whole_words() {
        assert_eq!(
            name_words("PodServerLatencyP90(s)"),
            ["pod", "server", "latency", "p90", "s"]
        );
        assert_eq!(name_words("HTTPErrors_total"), ["http", "errors", "total"]);
        // A count of failures, not a success rate (the substring rule read `success`).
        let s = metric_spec("unsuccessful_requests").unwrap();
        assert_eq!(s.rule.direction, Direction::Increase);
        assert_eq!(s.rule.kind, MetricKind::Count);
        // `mem` and `fail` inside other words are not those words.
        assert_eq!(metric_spec("memcached_hits"), None);
        assert_eq!(metric_spec("failover_count"), None);
        assert_eq!(metric_spec("NodeCpuUsageRate(%)"), None);
        assert!(metric_spec("PodClientLatencyP90(s)").is_some_and(|s| !s.critical));
    }

    #[test]
    fn the_corpus_metrics_keep_their_rules() {
        use Direction::*;
        use MetricKind::*;
        for (name, expected) in [
            ("CpuUsage(m)", Some((Increase, Gauge, 50.0, true))),
            ("CpuUsageRate(%)", Some((Increase, Gauge, 5.0, true))),
            ("ErrorCount", Some((Increase, Count, 0.0, true))),
            ("MemoryUsage(Mi)", Some((Increase, Gauge, 16.0, true))),
            ("MemoryUsageRate(%)", Some((Increase, Gauge, 5.0, true))),
            (
                "PodClientLatencyP99(s)",
                Some((Increase, Gauge, 0.01, false)),
            ),
            (
                "PodServerLatencyP90(s)",
                Some((Increase, Gauge, 0.01, true)),
            ),
            ("PodSuccessRate(%)", Some((Decrease, Gauge, 5.0, true))),
            ("NetworkReceiveBytes", None),
            ("NodeMemoryUsageRate(%)", None),
            ("PodWorkload(Ops)", None),
            ("SyscallRead", None),
        ] {
            let got = metric_spec(name).map(|s| {
                (
                    s.rule.direction,
                    s.rule.kind,
                    s.rule.min_abs_shift,
                    s.critical,
                )
            });
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn configuration_overrides_the_name_defaults() {
        let mut rules = MetricRules::default();
        let queue = MetricSpec {
            rule: MetricRule {
                direction: Direction::Increase,
                kind: MetricKind::Gauge,
                min_abs_shift: 1.0,
            },
            critical: true,
        };
        rules.overrides.insert("queue_depth".into(), Some(queue));
        rules.overrides.insert("CpuUsageRate(%)".into(), None);
        assert_eq!(rules.spec("queue_depth"), Some(queue));
        assert_eq!(rules.spec("CpuUsageRate(%)"), None);
        assert_eq!(rules.spec("ErrorCount"), metric_spec("ErrorCount"));
    }
}
