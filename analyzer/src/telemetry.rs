//! The telemetry the engine judges: metric samples, log records and spans, whatever source they
//! come from (scenario files today, OTLP and Prometheus next). One type per kind, so a judge
//! written against them runs unchanged on every source.

/// A time interval in Unix seconds, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

impl Window {
    pub fn len(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0.0
    }
}

/// Metric samples of one side: a time column and named value columns (NaN = no reading).
#[derive(Debug, Clone, Default)]
pub struct MetricTable {
    pub times: Vec<f64>,
    pub columns: Vec<(String, Vec<f64>)>,
}

impl MetricTable {
    /// The rows that saw none of `windows` (each widened by `margin` seconds at its end, for the
    /// recovery after an incident). A row stamped `t` summarises the step before it, `[t - step,
    /// t)` with the table's median step, so a row stamped just after an incident's start is
    /// dropped too.
    pub fn without(&self, windows: &[Window], margin: f64) -> MetricTable {
        let mut steps: Vec<f64> = self.times.windows(2).map(|w| w[1] - w[0]).collect();
        steps.sort_by(f64::total_cmp);
        let step = steps.get(steps.len() / 2).copied().unwrap_or(0.0).max(0.0);
        let keep: Vec<bool> = self
            .times
            .iter()
            .map(|t| {
                !windows
                    .iter()
                    .any(|w| *t > w.start && *t - step < w.end + margin)
            })
            .collect();
        let pick = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        MetricTable {
            times: pick(&self.times),
            columns: self
                .columns
                .iter()
                .map(|(n, v)| (n.clone(), pick(v)))
                .collect(),
        }
    }
}

/// One log record.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub time: f64,
    pub severity: Option<String>,
    pub body: String,
}

/// One span emitted by the judged pod.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
    pub operation: String,
    pub start: f64,
    pub duration_ms: f64,
    /// From an optional `error` column (true/1); Nezha spans carry no status, so None there.
    pub error: Option<bool>,
}
