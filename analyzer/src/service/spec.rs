//! The analysis spec: what a client sends to start an analysis (the same YAML or JSON through the
//! API and `vigil analysis create FILE`), checked before anything is stored, and the [`Plan`] the
//! runner follows.
//!
//! Unknown fields are errors (a misspelt `on_inconclusive` must not silently become the default),
//! and every error names the field path (`metrics[1].direction: …`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisSpec, BaselineTiming, Masking, SideSpec};
use crate::judge::{JudgeConfig, MetricSpec};
use crate::telemetry::{format_time, parse_time, Window};
use crate::verdict::Signal;
use vigil_models::vigil_judge::{Direction, MetricKind, MetricRule};

/// Most intervals one analysis may hold (extensions included): a day at 10 s intervals. A spec
/// beyond it is almost certainly a unit mistake (`interval: 1` meant minutes).
pub const MAX_INTERVALS: u32 = 8640;

/// A spec that cannot be used; the message starts with the field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Not YAML/JSON of the spec's shape (an unknown field, a wrong type, a bad value).
    #[error("{path}: {message}")]
    Parse {
        /// Where (`.` when the document itself).
        path: String,
        /// What serde or the YAML parser said.
        message: String,
    },
    /// Well-formed but not usable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field path.
        field: String,
        /// Why.
        message: String,
    },
}

impl SpecError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A length of time, written `30s`, `5m`, `1h30m`, `500ms`, `2d` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Dur(pub f64);

impl Dur {
    /// Seconds.
    pub fn secs(self) -> f64 {
        self.0
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(x) = t.parse::<f64>() {
            return Self::check(x, s);
        }
        let mut total = 0.0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("`{s}`: a number needs a unit (ms, s, m, h, d)"))?;
            if digits == 0 {
                return Err(format!(
                    "`{s}` is not a duration (examples: 30s, 5m, 1h30m, 500ms)"
                ));
            }
            let n: f64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{s}` is not a duration"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                u => return Err(format!("`{s}`: unknown unit `{u}` (ms, s, m, h, d)")),
            };
            rest = &rest[unit_len..];
            total += n * unit;
        }
        Self::check(total, s)
    }

    fn check(x: f64, s: &str) -> Result<Dur, String> {
        if !x.is_finite() || x < 0.0 {
            return Err(format!("`{s}` is not a non-negative duration"));
        }
        Ok(Dur(x))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = (self.0 * 1000.0).round();
        if ms % 1000.0 == 0.0 {
            write!(f, "{}s", ms / 1000.0)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m, 1h30m or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Dur::check(v as f64, &v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                Dur::check(v, &v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where the metrics come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API (`http://prometheus:9090`).
    pub url: String,
    /// Per-query timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_timeout() -> Dur {
    Dur(10.0)
}

/// A time window of one side (a before/after analysis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// RFC 3339 UTC (`2026-12-01T10:00:00Z`).
    pub start: String,
    /// RFC 3339 UTC, after `start`.
    pub end: String,
}

/// What one side is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// Resource attribute matchers (`service.name`, `service.version`, `k8s.pod.name`,
    /// `k8s.deployment.name`…) for pushed telemetry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Prometheus label matchers, rendered into `${scope}` of each metric query.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Values of other `${name}` placeholders of the metric queries for this side.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// A fixed time window (before/after analysis); absent: the side runs beside the other.
    /// Pushed telemetry stamped outside it is not this side's (one pod before and after a
    /// change matches both sides' attributes: time tells them apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// What this side records, declared up front: a listed modality is judged even when none of
    /// it arrives (recorded, nothing happened), one not listed is not judged. Absent: metrics
    /// always, pushed modalities once a record of them arrives (no data never passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Modality>>,
    /// The window logs were recorded over, for log rates (default: the side's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_window: Option<WindowSpec>,
    /// The window spans were recorded over, for span rates (default: the side's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_window: Option<WindowSpec>,
    /// Seconds of `log_window` an export actually covered (default: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_seconds_covered: Option<f64>,
    /// Seconds of `trace_window` an export actually covered (default: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_seconds_covered: Option<f64>,
}

/// A modality a side records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Metric readings.
    Metrics,
    /// Log records.
    Logs,
    /// The side's own spans.
    Spans,
    /// Callers' spans into the side.
    Callers,
}

/// When an analysis's intervals close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// At the wall clock (plus a step of lateness): live telemetry.
    #[default]
    Wall,
    /// When the pushed data's watermark (the latest event time received for the analysis)
    /// passes the interval's end, or at the end of input: recorded telemetry pushed at any
    /// speed, where nothing is late.
    Event,
}

fn default_recovery() -> Dur {
    Dur(300.0)
}

/// Baseline rows to leave out: earlier incidents on the same pod, which a baseline must not
/// teach as healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingSpec {
    /// Earlier incidents on the same pod.
    #[serde(default)]
    pub known_incidents: Vec<WindowSpec>,
    /// Without incidents: baseline rows before this time (RFC 3339) overlap an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_since: Option<String>,
    /// How long after an incident's end rows are still masked (default 300s).
    #[serde(default = "default_recovery")]
    pub recovery: Dur,
}

/// Which way a metric may move before it hurts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionSpec {
    /// Higher is worse.
    Increase,
    /// Lower is worse.
    Decrease,
    /// Any change is suspicious.
    Either,
}

/// What sort of values a metric holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindSpec {
    /// A continuous level.
    #[default]
    Gauge,
    /// Event counts per sample, often zero.
    Count,
}

fn yes() -> bool {
    true
}

/// One metric to query and judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricEntry {
    /// Its name in findings (`metric:<name>`) and feedback.
    pub name: String,
    /// PromQL with placeholders: `${scope}` (the side's label matchers) and `${var}`.
    pub query: String,
    /// Which way hurts.
    pub direction: DirectionSpec,
    /// A harmful shift fails the analysis (otherwise it only warns).
    #[serde(default = "yes")]
    pub critical: bool,
    /// Gauge (default) or count.
    #[serde(default)]
    pub kind: KindSpec,
    /// Smallest shift in the metric's unit that matters.
    #[serde(default)]
    pub min_shift: f64,
}

/// Score thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// At or above: Pass.
    pub pass: f64,
    /// At or above: Marginal; below: Fail.
    pub marginal: f64,
}

impl Default for ThresholdSpec {
    fn default() -> Self {
        Self {
            pass: 75.0,
            marginal: 50.0,
        }
    }
}

/// Fewest samples per side below which a signal is Inconclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideMinimum {
    /// Baseline samples.
    pub baseline: u32,
    /// Canary samples.
    pub canary: u32,
}

/// Minimum samples per signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinSamples {
    /// Per metric.
    pub metrics: SideMinimum,
}

impl Default for MinSamples {
    fn default() -> Self {
        Self {
            metrics: SideMinimum {
                baseline: 5,
                canary: 3,
            },
        }
    }
}

/// What a lifetime that ends Inconclusive means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInconclusive {
    /// The gate does not pass (no data must never pass a canary silently).
    #[default]
    Fail,
    /// Accept it.
    Pass,
    /// Keep judging for up to `extend_by` more, then fail.
    Extend,
}

/// A signal's name in a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalName {
    /// Metrics.
    Metrics,
    /// Logs.
    Logs,
    /// Traces.
    Traces,
    /// Callers.
    Callers,
    /// Anomaly models.
    Anomaly,
}

impl From<SignalName> for Signal {
    fn from(s: SignalName) -> Signal {
        match s {
            SignalName::Metrics => Signal::Metrics,
            SignalName::Logs => Signal::Logs,
            SignalName::Traces => Signal::Traces,
            SignalName::Callers => Signal::Callers,
            SignalName::Anomaly => Signal::Anomaly,
        }
    }
}

fn default_interval() -> Dur {
    Dur(30.0)
}

/// The analysis spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The application (feedback and listing are per app).
    pub app: String,
    /// The metric source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// The version serving now.
    pub baseline: ScopeSpec,
    /// The new version.
    pub canary: ScopeSpec,
    /// Metrics to judge.
    #[serde(default)]
    pub metrics: Vec<MetricEntry>,
    /// Length of one interval (default 30s).
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// How long the analysis runs (from its start plus `begin_after`); not with `canary.window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Dur>,
    /// Warm-up left out before the first interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_after: Option<Dur>,
    /// When the canary started (RFC 3339); default: when the analysis is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Resolution of the Prometheus range queries (default: a sixth of the interval, at least 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Dur>,
    /// Score thresholds (default pass 75, marginal 50).
    #[serde(default)]
    pub thresholds: ThresholdSpec,
    /// Signals whose Fail finding fails the analysis (default: metrics, logs, traces, callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_signals: Option<Vec<SignalName>>,
    /// Minimum samples per side and signal.
    #[serde(default)]
    pub min_samples: MinSamples,
    /// What an Inconclusive end of the lifetime means (default fail).
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// With `on_inconclusive: extend`: how much longer it may run (default: one more lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_by: Option<Dur>,
    /// Notifications: Slack, email and webhook targets, each with the events it wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<crate::notify::Target>>,
    /// Automatic rollback on a final Fail (`mode: off | dry_run | on`, `target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<crate::actions::RollbackSpec>,
    /// Promotion on a final Pass (`mode: off | on`, `target`, default `rollback.target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<crate::actions::PromoteSpec>,
    /// When intervals close: `wall` (default) or `event` (pushed recorded telemetry; needs
    /// attributes on both sides).
    #[serde(default, skip_serializing_if = "is_wall")]
    pub clock: Clock,
    /// Baseline rows to leave out (known earlier incidents); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masking: Option<MaskingSpec>,
}

fn is_wall(c: &Clock) -> bool {
    *c == Clock::Wall
}

/// How the runner runs an analysis, resolved from a spec and its creation time.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Unix seconds the first interval starts (canary start plus `begin_after`).
    pub t0: f64,
    /// Interval length, seconds.
    pub interval: f64,
    /// Lifetime, seconds (the last interval may be shorter than `interval`).
    pub lifetime: f64,
    /// Intervals of the lifetime.
    pub intervals: u32,
    /// Extra intervals `on_inconclusive: extend` may add.
    pub extra_intervals: u32,
    /// Query step, seconds.
    pub step: f64,
    /// The baseline's fixed window (a before/after analysis), or `None` when it runs beside the
    /// canary from `t0`.
    pub baseline_window: Option<(f64, f64)>,
}

impl Plan {
    /// Unix seconds interval `k` (1-based) ends.
    pub fn end_of(&self, k: u32) -> f64 {
        self.t0 + self.elapsed_of(k)
    }

    /// Canary seconds judged by interval `k`.
    pub fn elapsed_of(&self, k: u32) -> f64 {
        let full = f64::from(k) * self.interval;
        if k <= self.intervals {
            full.min(self.lifetime)
        } else {
            self.lifetime + f64::from(k - self.intervals) * self.interval
        }
    }
}

fn window(field: &str, w: &WindowSpec) -> Result<(f64, f64), SpecError> {
    let t = |name: &str, s: &str| {
        parse_time(s).ok_or_else(|| {
            SpecError::invalid(
                format!("{field}.{name}"),
                format!("`{s}` is not an RFC 3339 UTC time (2026-12-01T10:00:00Z)"),
            )
        })
    };
    let (start, end) = (t("start", &w.start)?, t("end", &w.end)?);
    if end <= start {
        return Err(SpecError::invalid(
            format!("{field}.end"),
            format!("{} is not after start {}", w.end, w.start),
        ));
    }
    Ok((start, end))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
}

/// The `${…}` placeholders of a query template, or the position of one left open.
pub fn placeholders(query: &str) -> Result<Vec<&str>, usize> {
    let mut out = Vec::new();
    let mut rest = query;
    let mut offset = 0;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            return Err(offset + i);
        };
        out.push(&after[..j]);
        offset += i + 2 + j + 1;
        rest = &after[j + 1..];
    }
    Ok(out)
}

impl Spec {
    /// Parses YAML or JSON (a document starting with `{` is read as JSON, for JSON's own error
    /// messages) and checks it.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = if text.trim_start().starts_with('{') {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| SpecError::Parse {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                // serde_yaml_ng already starts its message with the path.
                let message = e.inner().to_string();
                let message = message
                    .strip_prefix(&format!("{path}: "))
                    .map(str::to_owned)
                    .unwrap_or(message);
                SpecError::Parse { path, message }
            })?
        };
        spec.check()?;
        Ok(spec)
    }

    /// The canonical JSON form (defaults filled in): what is stored and compared when a client
    /// creates an id a second time.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every constraint serde cannot express.
    pub fn check(&self) -> Result<(), SpecError> {
        if let Some(n) = &self.notify {
            crate::notify::config::check(n).map_err(|(f, m)| SpecError::invalid(f, m))?;
        }
        if !valid_name(&self.app) {
            return Err(SpecError::invalid(
                "app",
                format!(
                    "`{}` is not a name (1-200 of letters, digits, _ - . / :)",
                    self.app
                ),
            ));
        }
        for (side, s) in [("baseline", &self.baseline), ("canary", &self.canary)] {
            if s.attributes.is_empty() && s.labels.is_empty() {
                return Err(SpecError::invalid(
                    side,
                    "give at least one matcher (`labels` for Prometheus, `attributes` for pushed telemetry)",
                ));
            }
            for (k, v) in s.attributes.iter().chain(&s.labels) {
                if k.is_empty() || v.is_empty() {
                    return Err(SpecError::invalid(
                        side,
                        format!("matcher `{k}: {v}` needs a name and a value"),
                    ));
                }
            }
            for k in s.labels.keys() {
                let ok = k.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                });
                if !ok {
                    return Err(SpecError::invalid(
                        format!("{side}.labels.{k}"),
                        "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                    ));
                }
            }
            if let Some(w) = &s.window {
                window(&format!("{side}.window"), w)?;
            }
        }
        if self.baseline.window.is_none() && self.canary.window.is_none() {
            for (name, b, c) in [
                ("labels", &self.baseline.labels, &self.canary.labels),
                (
                    "attributes",
                    &self.baseline.attributes,
                    &self.canary.attributes,
                ),
            ] {
                if !b.is_empty() && b == c {
                    return Err(SpecError::invalid(
                        format!("canary.{name}"),
                        format!("the same as baseline.{name}: both sides would be the same data"),
                    ));
                }
            }
        }
        if !self.metrics.is_empty() {
            if self.prometheus.is_none() {
                return Err(SpecError::invalid(
                    "prometheus",
                    "metrics need a source: give `prometheus: {url: …}`",
                ));
            }
            for side in ["baseline", "canary"] {
                let s = if side == "baseline" {
                    &self.baseline
                } else {
                    &self.canary
                };
                if s.labels.is_empty() {
                    return Err(SpecError::invalid(
                        format!("{side}.labels"),
                        "metrics need Prometheus label matchers for each side (an empty scope would match every series)",
                    ));
                }
            }
        }
        if let Some(p) = &self.prometheus {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return Err(SpecError::invalid(
                    "prometheus.url",
                    format!("`{}` is not an http:// or https:// URL", p.url),
                ));
            }
            if p.timeout.secs() <= 0.0 {
                return Err(SpecError::invalid("prometheus.timeout", "must be positive"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let f = |name: &str| format!("metrics[{i}].{name}");
            if !valid_name(&m.name) {
                return Err(SpecError::invalid(
                    f("name"),
                    format!(
                        "`{}` is not a name (1-200 of letters, digits, _ - . / :)",
                        m.name
                    ),
                ));
            }
            if !names.insert(m.name.as_str()) {
                return Err(SpecError::invalid(
                    f("name"),
                    format!("`{}` is listed twice", m.name),
                ));
            }
            if m.query.trim().is_empty() {
                return Err(SpecError::invalid(f("query"), "empty"));
            }
            let used = placeholders(&m.query).map_err(|at| {
                SpecError::invalid(f("query"), format!("`${{` at byte {at} is not closed"))
            })?;
            for p in used {
                if p == "scope" {
                    continue;
                }
                if !(self.baseline.vars.contains_key(p) && self.canary.vars.contains_key(p)) {
                    return Err(SpecError::invalid(
                        f("query"),
                        format!("placeholder `${{{p}}}` is neither `scope` nor a var of both baseline and canary"),
                    ));
                }
            }
            if !m.min_shift.is_finite() || m.min_shift < 0.0 {
                return Err(SpecError::invalid(
                    f("min_shift"),
                    "must be a non-negative number",
                ));
            }
        }
        let t = self.thresholds;
        if !(0.0..=100.0).contains(&t.pass) {
            return Err(SpecError::invalid("thresholds.pass", "must be in [0, 100]"));
        }
        if !(0.0..=100.0).contains(&t.marginal) || t.marginal > t.pass {
            return Err(SpecError::invalid(
                "thresholds.marginal",
                "must be in [0, thresholds.pass]",
            ));
        }
        let m = self.min_samples.metrics;
        if m.baseline < 2 || m.canary < 1 {
            return Err(SpecError::invalid(
                "min_samples.metrics",
                "baseline needs at least 2 samples and canary at least 1",
            ));
        }
        if self.interval.secs() < 1.0 {
            return Err(SpecError::invalid("interval", "must be at least 1s"));
        }
        if let Some(s) = self.step {
            if s.secs() < 0.001 || s.secs() > self.interval.secs() {
                return Err(SpecError::invalid(
                    "step",
                    "must be positive and at most one interval",
                ));
            }
        }
        if let Some(s) = &self.start {
            if self.canary.window.is_some() {
                return Err(SpecError::invalid(
                    "start",
                    "not with canary.window (the window says when the canary ran)",
                ));
            }
            if parse_time(s).is_none() {
                return Err(SpecError::invalid(
                    "start",
                    format!("`{s}` is not an RFC 3339 UTC time (2026-12-01T10:00:00Z)"),
                ));
            }
        }
        match (&self.canary.window, self.lifetime) {
            (Some(_), Some(_)) => {
                return Err(SpecError::invalid(
                    "lifetime",
                    "not with canary.window (the window's length is the lifetime)",
                ))
            }
            (None, None) => {
                return Err(SpecError::invalid(
                    "lifetime",
                    "missing: how long to analyse (e.g. 10m), or give canary.window",
                ))
            }
            _ => {}
        }
        if self.extend_by.is_some() && self.on_inconclusive != OnInconclusive::Extend {
            return Err(SpecError::invalid(
                "extend_by",
                "only with on_inconclusive: extend",
            ));
        }
        self.check_actions()?;
        if self.clock == Clock::Event && !self.pushed() {
            return Err(SpecError::invalid(
                "clock",
                "event time needs pushed telemetry: give `attributes` on both baseline and canary",
            ));
        }
        for (side, s) in [("baseline", &self.baseline), ("canary", &self.canary)] {
            for (name, w) in [
                ("log_window", &s.log_window),
                ("trace_window", &s.trace_window),
            ] {
                if let Some(w) = w {
                    window(&format!("{side}.{name}"), w)?;
                }
            }
            for (name, c) in [
                ("log_seconds_covered", s.log_seconds_covered),
                ("trace_seconds_covered", s.trace_seconds_covered),
            ] {
                if c.is_some_and(|c| !c.is_finite() || c < 0.0) {
                    return Err(SpecError::invalid(
                        format!("{side}.{name}"),
                        "must be a non-negative number of seconds",
                    ));
                }
            }
        }
        if let Some(m) = &self.masking {
            for (i, w) in m.known_incidents.iter().enumerate() {
                window(&format!("masking.known_incidents[{i}]"), w)?;
            }
            if let Some(c) = &m.clean_since {
                if parse_time(c).is_none() {
                    return Err(SpecError::invalid(
                        "masking.clean_since",
                        format!("`{c}` is not an RFC 3339 UTC time (2026-12-01T10:00:00Z)"),
                    ));
                }
            }
        }
        // The plan's own checks (lifetime against interval, begin_after inside the window).
        self.plan(0.0)?;
        Ok(())
    }

    /// `rollback` and `promote`: a mode that acts needs a target, and a target must name
    /// server groups the deployer can find.
    fn check_actions(&self) -> Result<(), SpecError> {
        use crate::actions::{PromoteMode, RollbackMode};
        let check = |field: &str, t: &crate::actions::Target| {
            t.check().map_err(|(f, m)| {
                let path = if f == "." {
                    field.to_owned()
                } else {
                    format!("{field}.{f}")
                };
                SpecError::invalid(path, m)
            })
        };
        if let Some(r) = &self.rollback {
            match (&r.target, r.mode) {
                (Some(t), _) => check("rollback.target", t)?,
                (None, RollbackMode::Off) => {}
                (None, _) => {
                    return Err(SpecError::invalid(
                        "rollback.target",
                        "missing: the namespace and app (or canary and baseline) to roll back",
                    ))
                }
            }
        }
        if let Some(p) = &self.promote {
            match (&p.target, p.mode) {
                (Some(t), _) => check("promote.target", t)?,
                (None, PromoteMode::On)
                    if self
                        .rollback
                        .as_ref()
                        .and_then(|r| r.target.as_ref())
                        .is_none() =>
                {
                    return Err(SpecError::invalid(
                        "promote.target",
                        "missing (and rollback has no target to share): the namespace and app \
                         (or canary and baseline) to promote",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The runner's plan for an analysis created at `created_s` (Unix seconds).
    pub fn plan(&self, created_s: f64) -> Result<Plan, SpecError> {
        let begin_after = self.begin_after.map_or(0.0, Dur::secs);
        let (t0, lifetime) = match &self.canary.window {
            Some(w) => {
                let (start, end) = window("canary.window", w)?;
                let t0 = start + begin_after;
                if t0 >= end {
                    return Err(SpecError::invalid(
                        "begin_after",
                        "leaves nothing of canary.window to analyse",
                    ));
                }
                (t0, end - t0)
            }
            None => {
                let start = self
                    .start
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(created_s);
                (start + begin_after, self.lifetime.map_or(0.0, Dur::secs))
            }
        };
        let interval = self.interval.secs();
        if lifetime < interval {
            return Err(SpecError::invalid(
                if self.canary.window.is_some() {
                    "canary.window"
                } else {
                    "lifetime"
                },
                format!(
                    "{} is shorter than one interval ({})",
                    Dur(lifetime),
                    self.interval
                ),
            ));
        }
        let intervals = (lifetime / interval - 1e-9).ceil().max(1.0);
        let extra = match self.on_inconclusive {
            OnInconclusive::Extend => (self.extend_by.map_or(lifetime, Dur::secs) / interval
                - 1e-9)
                .ceil()
                .max(1.0),
            _ => 0.0,
        };
        if intervals + extra > f64::from(MAX_INTERVALS) {
            return Err(SpecError::invalid(
                "interval",
                format!(
                    "{} intervals of {} (extensions included) is more than {MAX_INTERVALS}",
                    intervals + extra,
                    self.interval
                ),
            ));
        }
        let step = self
            .step
            .map_or_else(|| (interval / 6.0).max(1.0), Dur::secs);
        let baseline_window = self
            .baseline
            .window
            .as_ref()
            .map(|w| window("baseline.window", w))
            .transpose()?;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "whole numbers checked against MAX_INTERVALS above"
        )]
        let (intervals, extra_intervals) = (intervals as u32, extra as u32);
        Ok(Plan {
            t0,
            interval,
            lifetime,
            intervals,
            extra_intervals,
            step,
            baseline_window,
        })
    }

    /// The judges' configuration the spec asks for.
    pub fn judge_config(&self) -> JudgeConfig {
        let mut c = JudgeConfig::default();
        c.fusion.pass_threshold = self.thresholds.pass;
        c.fusion.marginal_threshold = self.thresholds.marginal;
        if let Some(crit) = &self.critical_signals {
            c.fusion.critical = crit.iter().map(|s| Signal::from(*s)).collect();
        }
        c.metric.min_baseline_points = self.min_samples.metrics.baseline as usize;
        c.metric.min_canary_points = self.min_samples.metrics.canary as usize;
        for m in &self.metrics {
            c.metrics
                .overrides
                .insert(m.name.clone(), Some(metric_spec(m)));
        }
        c
    }

    /// Both sides select pushed telemetry (OTLP) by attributes: logs, spans and callers' spans
    /// are then recorded too.
    pub fn pushed(&self) -> bool {
        !self.baseline.attributes.is_empty() && !self.canary.attributes.is_empty()
    }

    /// The engine's session spec for this analysis, metrics only.
    pub fn analysis_spec(&self, plan: &Plan) -> AnalysisSpec {
        self.analysis_spec_with(plan, Pushed::default())
    }

    /// The engine's session spec for this analysis, recording the pushed modalities `seen`
    /// (when both sides select by attributes). A modality is declared only once some record of
    /// it arrived: recorded-and-empty on both sides would judge "nothing happened" and pass,
    /// and no data must never pass a canary.
    pub fn analysis_spec_with(&self, plan: &Plan, seen: Pushed) -> AnalysisSpec {
        let pushed = self.pushed();
        let seen = if pushed { seen } else { Pushed::default() };
        let canary_window = Window {
            start: plan.t0,
            end: plan.t0 + plan.lifetime,
        };
        let fixed = |w: &Option<WindowSpec>| {
            w.as_ref().and_then(|w| {
                Some(Window {
                    start: parse_time(&w.start)?,
                    end: parse_time(&w.end)?,
                })
            })
        };
        let side = |scope: &ScopeSpec, window: Window| {
            let (metrics, logs, spans, callers) = match &scope.records {
                Some(r) if pushed => (
                    r.contains(&Modality::Metrics),
                    r.contains(&Modality::Logs),
                    r.contains(&Modality::Spans),
                    r.contains(&Modality::Callers),
                ),
                _ => (true, seen.logs, seen.spans, seen.callers),
            };
            SideSpec {
                metrics,
                logs,
                spans,
                callers,
                log_window: logs.then(|| fixed(&scope.log_window).unwrap_or(window)),
                trace_window: (spans || callers)
                    .then(|| fixed(&scope.trace_window).unwrap_or(window)),
                log_seconds_covered: scope.log_seconds_covered,
                trace_seconds_covered: scope.trace_seconds_covered,
            }
        };
        let baseline_window = plan
            .baseline_window
            .map_or(canary_window, |(start, end)| Window { start, end });
        let masking = match &self.masking {
            // A live system has no incident list unless the spec gives one: nothing to mask.
            None => Masking {
                enabled: false,
                ..Masking::default()
            },
            Some(m) => Masking {
                enabled: true,
                known_incidents: m
                    .known_incidents
                    .iter()
                    .filter_map(|w| fixed(&Some(w.clone())))
                    .collect(),
                clean_since: m.clean_since.as_deref().and_then(parse_time),
                recovery_s: m.recovery.secs(),
            },
        };
        AnalysisSpec {
            judges: self.judge_config(),
            canary_start: plan.t0,
            baseline_timing: match plan.baseline_window {
                Some(_) => BaselineTiming::Before,
                None => BaselineTiming::Concurrent { start: plan.t0 },
            },
            masking,
            baseline: side(&self.baseline, baseline_window),
            canary: side(&self.canary, canary_window),
        }
    }
}

/// Which pushed modalities an analysis has received any record of (either side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Log records.
    pub logs: bool,
    /// Spans of the selected services.
    pub spans: bool,
    /// Callers' spans.
    pub callers: bool,
}

/// The engine's rule for one spec metric.
pub fn metric_spec(m: &MetricEntry) -> MetricSpec {
    MetricSpec {
        rule: MetricRule {
            direction: match m.direction {
                DirectionSpec::Increase => Direction::Increase,
                DirectionSpec::Decrease => Direction::Decrease,
                DirectionSpec::Either => Direction::Either,
            },
            kind: match m.kind {
                KindSpec::Gauge => MetricKind::Gauge,
                KindSpec::Count => MetricKind::Count,
            },
            min_abs_shift: m.min_shift,
        },
        critical: m.critical,
    }
}

/// `t` as RFC 3339 (for messages).
pub fn rfc3339(t: f64) -> String {
    format_time(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
app: checkout
prometheus: {url: "http://127.0.0.1:9"}
baseline:
  labels: {app: checkout, version: v41}
  attributes: {service.name: checkout, service.version: v41}
canary:
  labels: {app: checkout, version: v42}
metrics:
  - name: errors
    query: sum(rate(http_errors_total{${scope}}[1m]))
    direction: increase
    kind: count
  - name: p90
    query: histogram_quantile(0.9, rate(latency_bucket{${scope}, route="${route}"}[1m]))
    direction: increase
    critical: false
baseline_vars_placeholder: 1
"#;

    fn good() -> String {
        GOOD.replace("baseline_vars_placeholder: 1\n", "lifetime: 10m\n")
            .replace(
                "  attributes: {service.name: checkout, service.version: v41}\n",
                "  attributes: {service.name: checkout, service.version: v41}\n  vars: {route: /pay}\n",
            )
            .replace(
                "  labels: {app: checkout, version: v42}\n",
                "  labels: {app: checkout, version: v42}\n  vars: {route: /pay}\n",
            )
    }

    #[test]
    fn a_good_spec_gets_its_defaults_and_a_plan() {
        let s = Spec::parse(&good()).unwrap();
        assert_eq!(s.interval, Dur(30.0));
        assert_eq!(s.on_inconclusive, OnInconclusive::Fail);
        assert!(s.metrics[0].critical && !s.metrics[1].critical);
        let p = s.plan(1000.0).unwrap();
        assert_eq!((p.t0, p.intervals, p.step), (1000.0, 20, 5.0));
        assert_eq!(p.end_of(20), 1600.0);
        // The canonical JSON parses back to the same spec, and JSON input works too.
        let again = Spec::parse(&s.to_json()).unwrap();
        assert_eq!(again, s);
    }

    fn err(text: &str) -> String {
        Spec::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn rollback_and_promote_are_typed_and_their_errors_name_the_field() {
        use crate::actions::{PromoteMode, RollbackMode};
        let with = |extra: &str| format!("{}{extra}", good());
        // YAML 1.2: `on` and `off` are strings, not booleans.
        let s = Spec::parse(&with(
            "rollback: {mode: on, target: {namespace: shop, app: shop}}\npromote: {mode: on}\n",
        ))
        .unwrap();
        let r = s.rollback.as_ref().unwrap();
        assert_eq!(r.mode, RollbackMode::On);
        assert_eq!(r.target.as_ref().unwrap().app.as_deref(), Some("shop"));
        assert_eq!(s.promote.as_ref().unwrap().mode, PromoteMode::On);
        assert_eq!(Spec::parse(&s.to_json()).unwrap(), s);
        let s = Spec::parse(&with(
            "rollback: {mode: dry_run, target: {namespace: shop, canary: deployment/shop-v2, baseline: shop-v1}}\n",
        ))
        .unwrap();
        assert_eq!(s.rollback.unwrap().mode, RollbackMode::DryRun);
        // Off needs no target; no rollback field is off.
        assert!(Spec::parse(&with("rollback: {mode: off}\n")).is_ok());
        assert!(Spec::parse(&good()).unwrap().rollback.is_none());
        for (extra, expected) in [
            (
                "rollback: {mode: yes}\n",
                "rollback.mode: unknown variant `yes`, expected one of `off`, `dry_run`, `on`",
            ),
            ("rollback: {mode: true}\n", "rollback.mode: "),
            (
                "promote: {mode: dry_run, target: {namespace: shop, app: shop}}\n",
                "promote.mode: unknown variant `dry_run`, expected `off` or `on`",
            ),
            (
                "rollback: {mode: on}\n",
                "rollback.target: missing: the namespace and app",
            ),
            (
                "promote: {mode: on}\n",
                "promote.target: missing (and rollback has no target to share)",
            ),
            (
                "rollback: {mode: on, target: {namespace: shop}}\n",
                "rollback.target: missing: app, or canary and baseline",
            ),
            (
                "rollback: {mode: on, target: {namespace: shop, canary: web-v2}}\n",
                "rollback.target.baseline: missing (canary is given)",
            ),
            (
                "rollback: {mode: on, target: {namespace: Shop, app: shop}}\n",
                "rollback.target.namespace: `Shop` is not a namespace name",
            ),
            (
                "rollback: {mode: on, target: {namespace: shop, app: shop, canary: a}}\n",
                "rollback.target.app: give either app or canary and baseline",
            ),
            (
                "rollback: {mode: on, target: {namespace: shop, app: shop, cluster: x}}\n",
                "rollback.target.cluster: rollback.target: unknown field `cluster`",
            ),
            (
                "rollback: {mode: on, taget: {}}\n",
                "rollback.taget: rollback: unknown field `taget`",
            ),
            (
                "promote: {mode: on, target: {namespace: shop, canary: pod/x, baseline: y}}\n",
                "promote.target.canary: `pod/x`: kind `pod` is not a server group",
            ),
        ] {
            let e = err(&with(extra));
            assert!(e.starts_with(expected), "{extra}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let g = good();
        let e = err(&g.replace("direction: increase\n    kind", "direction: up\n    kind"));
        assert!(
            e.starts_with("metrics[0].direction: unknown variant `up`"),
            "{e}"
        );
        let e = err(&g.replace("lifetime: 10m", "lifetime: 10m\non_inconclusiv: pass"));
        assert!(e.contains("unknown field `on_inconclusiv`"), "{e}");
        let e = err(&g.replace("lifetime: 10m", "lifetime: ten"));
        assert!(e.starts_with("lifetime: "), "{e}");
        let e = err(&g.replace("lifetime: 10m", "lifetime: 10s"));
        assert!(
            e.starts_with("lifetime: 10s is shorter than one interval"),
            "{e}"
        );
        let e = err(&g.replace("lifetime: 10m\n", ""));
        assert!(e.starts_with("lifetime: missing"), "{e}");
        let e = err(&g.replace("  vars: {route: /pay}\n", ""));
        assert!(
            e.starts_with("metrics[1].query: placeholder `${route}`"),
            "{e}"
        );
        let e = err(&g.replace("version: v42", "version: v41"));
        assert!(
            e.starts_with("canary.labels: the same as baseline.labels"),
            "{e}"
        );
        let e = err(&g.replace("http://127.0.0.1:9", "127.0.0.1:9"));
        assert!(e.starts_with("prometheus.url"), "{e}");
        let e = err(&g.replace(
            "lifetime: 10m",
            "lifetime: 10m\nthresholds: {pass: 40, marginal: 50}",
        ));
        assert!(e.starts_with("thresholds.marginal"), "{e}");
        let e = err(&g.replace("name: p90", "name: errors"));
        assert!(
            e.starts_with("metrics[1].name: `errors` is listed twice"),
            "{e}"
        );
        let e = err(
            r#"{"app": "x", "baseline": {}, "canary": {"labels": {"a": "b"}}, "lifetime": "1m"}"#,
        );
        assert!(e.starts_with("baseline: give at least one matcher"), "{e}");
        let e = err(r#"{"app": "x", "baseline": {"labels": {"a": 1}}}"#);
        assert!(e.starts_with("baseline.labels.a: invalid type"), "{e}");
    }

    #[test]
    fn windows_make_a_before_after_plan() {
        let text = r#"
app: pod
baseline: {attributes: {k8s.pod.name: p-1}, window: {start: "2026-12-01T10:00:00Z", end: "2026-12-01T10:30:00Z"}}
canary: {attributes: {k8s.pod.name: p-1}, window: {start: "2026-12-01T10:30:00Z", end: "2026-12-01T10:40:00Z"}}
interval: 1m
begin_after: 30s
on_inconclusive: extend
extend_by: 2m
"#;
        let s = Spec::parse(text).unwrap();
        let p = s.plan(0.0).unwrap();
        // 2026-12-01T10:30:30Z = 1796121030 (date -u -d '2026-12-01T10:30:30Z' +%s)
        assert_eq!(p.t0, 1_796_121_030.0);
        assert_eq!(p.lifetime, 570.0);
        assert_eq!((p.intervals, p.extra_intervals), (10, 2));
        assert_eq!(p.elapsed_of(10), 570.0);
        assert_eq!(p.elapsed_of(11), 630.0);
        assert_eq!(p.baseline_window, Some((1_796_119_200.0, 1_796_121_000.0)));
        let e = err(&text.replace("10:40:00Z", "10:20:00Z"));
        assert!(e.starts_with("canary.window.end"), "{e}");
    }

    #[test]
    fn an_event_time_spec_says_what_each_side_recorded_and_what_to_mask() {
        let text = r#"
app: pod
clock: event
baseline:
  attributes: {k8s.pod.name: p-1}
  window: {start: "2026-12-01T10:00:00Z", end: "2026-12-01T10:30:00Z"}
  records: [metrics, logs]
  log_window: {start: "2026-12-01T10:27:00Z", end: "2026-12-01T10:30:00Z"}
  log_seconds_covered: 120
canary:
  attributes: {k8s.pod.name: p-1}
  window: {start: "2026-12-01T10:30:00Z", end: "2026-12-01T10:35:00Z"}
  records: [spans, callers]
masking:
  known_incidents: [{start: "2026-12-01T10:05:00Z", end: "2026-12-01T10:08:00Z"}]
"#;
        let s = Spec::parse(text).unwrap();
        assert_eq!(s.clock, Clock::Event);
        let p = s.plan(0.0).unwrap();
        // Declared modalities are recorded before any record arrives (`seen` is empty).
        let a = s.analysis_spec_with(&p, Pushed::default());
        assert!(a.baseline.metrics && a.baseline.logs && !a.baseline.spans);
        assert!(!a.canary.metrics && !a.canary.logs && a.canary.spans && a.canary.callers);
        // 2026-12-01T10:27:00Z = 1796120820 (date -u -d … +%s)
        assert_eq!(
            a.baseline.log_window,
            Some(Window {
                start: 1_796_120_820.0,
                end: 1_796_121_000.0
            })
        );
        assert_eq!(a.baseline.log_seconds_covered, Some(120.0));
        // The canary's trace window defaults to its analysis window.
        assert_eq!(
            a.canary.trace_window,
            Some(Window {
                start: 1_796_121_000.0,
                end: 1_796_121_300.0
            })
        );
        assert!(a.masking.enabled);
        assert_eq!(a.masking.known_incidents.len(), 1);
        assert_eq!(a.masking.recovery_s, 300.0);
        // The canonical JSON keeps it all.
        assert_eq!(Spec::parse(&s.to_json()).unwrap(), s);
        // Event time needs pushed telemetry.
        let e = err(&text.replace(
            "  attributes: {k8s.pod.name: p-1}\n  window: {start: \"2026-12-01T10:30",
            "  labels: {pod: p-1}\n  window: {start: \"2026-12-01T10:30",
        ));
        assert!(
            e.starts_with("clock: event time needs pushed telemetry"),
            "{e}"
        );
        let e = err(&text.replace("log_seconds_covered: 120", "log_seconds_covered: -1"));
        assert!(e.starts_with("baseline.log_seconds_covered"), "{e}");
        let e = err(&text.replace("records: [spans, callers]", "records: [traces]"));
        assert!(
            e.starts_with("canary.records[0]: unknown variant `traces`"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("1h30m").unwrap(), Dur(5400.0));
        assert_eq!(Dur::parse("500ms").unwrap(), Dur(0.5));
        assert_eq!(Dur::parse("45").unwrap(), Dur(45.0));
        assert!(Dur::parse("5 minutes").is_err());
        assert!(Dur::parse("-5s").is_err());
        assert_eq!(Dur(90.0).to_string(), "90s");
        assert_eq!(Dur(0.25).to_string(), "250ms");
    }
}
