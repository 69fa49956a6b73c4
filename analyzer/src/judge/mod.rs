//! Vigil's judges, one per signal, and their fusion, all reading one [`View`] of both sides as
//! of one interval. The engine ([`crate::analysis::Analysis`]) builds the view from its state; the
//! same judges run for a replayed scenario and a live analysis.
//!
//! - [`config`]: [`JudgeConfig`], every judge's settings and the `--set` keys a user may change;
//! - [`metrics`]: which metrics are judged in which direction, and the metric signal;
//! - [`logs`] and [`traces`]: the log and trace signals over the view;
//! - [`callers`]: the pod as its callers see it (callers' spans with their edge);
//! - [`anomaly`]: the anomaly models fitted on the baseline, and the anomaly signal;
//! - [`incremental`]: what the engine keeps up to date as telemetry arrives (miners and tallies,
//!   sorted durations, event windows), so that each judge reads it instead of the whole window
//!   (`vigil_with` and each judge's `_with` form; the plain forms build it from a view's slices).

pub mod anomaly;
pub mod callers;
pub mod config;
pub mod incremental;
pub mod logs;
pub mod metrics;
pub mod traces;

pub use anomaly::{
    fit_anomaly, fit_anomaly_with, vigil_anomaly, vigil_anomaly_with, AnomalyModels,
};
pub use callers::{vigil_callers, vigil_callers_with};
pub use config::{JudgeConfig, SettingError};
pub use incremental::Incremental;
pub use logs::{vigil_logs, vigil_logs_with};
pub use metrics::{column, metric_spec, name_words, vigil_metrics, MetricRules, MetricSpec};
pub use traces::{vigil_traces, vigil_traces_with};

use crate::telemetry::{LogRecord, MetricTable, Span};
use crate::verdict::{self, Coverage, Judgement, Signal, SignalReport};

/// The data of one side as of one interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct SideView<'a> {
    /// The side's metric table, if metrics are recorded.
    pub metrics: Option<&'a MetricTable>,
    /// Row range of `metrics` in this view.
    pub metric_rows: (usize, usize),
    /// Log records stamped before `until`, in time order.
    pub logs: Option<&'a [LogRecord]>,
    /// The pod's own spans started before `until`, in start order.
    pub spans: Option<&'a [Span]>,
    /// Callers' spans into the pod, each with its edge.
    pub caller_spans: Option<&'a [Span]>,
    /// Seconds of recording behind `logs` / `spans` (rates are per second of these).
    pub log_exposure: f64,
    /// Seconds of recording behind `spans` and `caller_spans`.
    pub trace_exposure: f64,
    /// Data up to this time (Unix s) is in the view; infinite for a finished recording.
    pub until: f64,
}

/// Both sides as of one interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct View<'a> {
    /// The baseline, masked rows left out.
    pub baseline: SideView<'a>,
    /// The canary.
    pub canary: SideView<'a>,
}

pub(crate) fn absent(signal: Signal) -> SignalReport {
    SignalReport {
        signal,
        coverage: Coverage::Absent,
        findings: Vec::new(),
    }
}

/// Vigil: every signal, fused.
pub fn vigil(view: &View, model: Option<&AnomalyModels>, config: &JudgeConfig) -> Judgement {
    vigil_with(view, None, model, config)
}

/// [`vigil`], reading logs and spans from the engine's incremental state when given (which must
/// hold exactly the view's records, settled): the same judgement without a pass over the window.
pub(crate) fn vigil_with(
    view: &View,
    kept: Option<&Incremental>,
    model: Option<&AnomalyModels>,
    config: &JudgeConfig,
) -> Judgement {
    let run = |signal: Signal, judge: &dyn Fn() -> SignalReport| {
        if config.without.contains(&signal) {
            absent(signal)
        } else {
            judge()
        }
    };
    let reports = [
        run(Signal::Metrics, &|| {
            vigil_metrics(view, &config.metric, &config.metrics)
        }),
        run(Signal::Logs, &|| {
            vigil_logs_with(view, kept.map(|k| &k.logs), &config.log)
        }),
        run(Signal::Traces, &|| {
            vigil_traces_with(view, kept.map(|k| &k.traces), &config.trace)
        }),
        run(Signal::Callers, &|| {
            vigil_callers_with(view, kept.map(|k| &k.callers), &config.callers)
        }),
        run(Signal::Anomaly, &|| vigil_anomaly_with(view, kept, model)),
    ];
    verdict::fuse(&reports, &config.fusion)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) struct Lcg(pub(crate) u64);
    impl Lcg {
        pub(crate) fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// 180 s of a pod: about 3 spans/s of two operations with log-uniform latency (times
    /// `slowdown`) and a log line per span.
    pub(crate) fn side(rng: &mut Lcg, start: f64, slowdown: f64) -> (Vec<LogRecord>, Vec<Span>) {
        let (mut logs, mut spans) = (Vec::new(), Vec::new());
        let mut t = start;
        let mut i = 0;
        while t < start + 180.0 {
            let (op, base) = if i % 3 == 0 {
                ("db", 2.0)
            } else {
                ("get", 20.0)
            };
            spans.push(Span {
                trace_id: format!("t{i}"),
                span_id: format!("s{start}-{i}"),
                parent_id: None,
                operation: op.into(),
                start: t,
                duration_ms: base * (1.0 + rng.uniform()) * slowdown,
                error: None,
                caller: None,
            });
            logs.push(LogRecord {
                time: Some(t),
                severity: Some("INFO".into()),
                body: format!("handled {op} {i}"),
            });
            t += 0.2 + 0.25 * rng.uniform();
            i += 1;
        }
        (logs, spans)
    }

    pub(crate) type Recorded = (Vec<LogRecord>, Vec<Span>);

    pub(crate) fn view<'a>(b: &'a Recorded, c: &'a Recorded) -> View<'a> {
        let sv = |s: &'a Recorded, until: f64| SideView {
            logs: Some(&s.0),
            spans: Some(&s.1),
            log_exposure: 180.0,
            trace_exposure: 180.0,
            until,
            ..SideView::default()
        };
        View {
            baseline: sv(b, f64::INFINITY),
            canary: sv(c, 360.0),
        }
    }
}
