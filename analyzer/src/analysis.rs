//! An analysis session: the engine that any source feeds. It owns its configuration (the judges'
//! settings), the telemetry of both sides received so far, the anomaly models and the lifecycle.
//! A source hands it batches of telemetry as they arrive ([`Analysis::ingest`]) and, at the end
//! of each interval, asks for the interim judgement ([`Analysis::judge`]); the lifecycle rules
//! (fail fast on the first Fail, the last interval decides, time to detect) are applied here, so
//! a replayed time to detect is the one a live analysis would have had.
//!
//! The judges are incremental ([`crate::judge::Incremental`]): each judgement first hands them
//! what arrived since the last one — log lines are mined once by miners that persist for the
//! whole analysis, span durations merge into per-operation buffers kept sorted, events into
//! 10-second windows — so an interval costs the new data plus the number of templates,
//! operations and windows, not a pass over the window. With a before/after baseline this gives
//! the batch judgement of each interval exactly; with a concurrent baseline, lines are mined in
//! interval order (see [`Analysis::judge`]).
//!
//! Memory: the judges' state holds counts, at most two example lines per template and side, and
//! one duration per span; it does not grow with the lines of a template already seen. The
//! session also keeps every record of the analysis window (bodies capped at
//! [`crate::telemetry::MAX_LOG_BODY_BYTES`]) for [`Analysis::view`], which replay's reference
//! judges read; the window bounds it, and [`Analysis::keep_records`] turns it off.
//!
//! Replay is one such source (scenario files); OTLP receivers and a Prometheus poller are the
//! next. What the engine decides and no source may: which baseline rows are masked as known
//! incidents, when the anomaly models are fitted (once from a baseline recorded before the
//! canary, every interval from a baseline running beside it), and how a side's exposure grows.

use serde::Serialize;

use crate::judge::{self, AnomalyModels, Incremental, JudgeConfig, SideView, View};
use crate::telemetry::{LogRecord, MetricSample, MetricTable, SampleError, Span, Window};
use crate::verdict::{Finding, Judgement, Verdict};

/// One interval of the verdict timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Seconds of canary time the judged data covers.
    pub elapsed_s: f64,
    /// The interval's verdict.
    pub verdict: Verdict,
    /// Its score.
    pub score: f64,
}

/// What an analysis concluded (one name apart from the metric classifier's
/// `vigil_models::vigil_judge::Outcome`, which is one metric's classification).
#[derive(Debug, Clone, Serialize)]
pub struct Conclusion {
    /// The verdict of the deciding interval.
    pub verdict: Verdict,
    /// Its score.
    pub score: f64,
    /// Elapsed canary time of the first interval of the final flagged streak, when the final
    /// verdict flags the canary: an earlier alarm that cleared again was not a detection.
    pub time_to_detect_s: Option<f64>,
    /// The deciding interval's top findings.
    pub evidence: Vec<Finding>,
    /// Every finding of the deciding interval (the evidence is its top three).
    pub findings: Vec<Finding>,
    /// Why, when the verdict is Inconclusive or Error.
    pub note: Option<String>,
    /// Every interval judged.
    pub timeline: Vec<Step>,
}

/// Which side of the comparison telemetry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The version serving now.
    Baseline,
    /// The new version.
    Canary,
}

/// When the baseline was recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaselineTiming {
    /// Before the canary started (a before/after analysis): all of it is known at the first
    /// interval, and the anomaly models are fitted once.
    Before,
    /// Beside the canary (healthy sibling replicas), from `start`: it grows interval by interval
    /// like the canary, and the anomaly models are refitted each interval.
    Concurrent {
        /// Unix seconds the baseline's recording started.
        start: f64,
    },
}

/// What a side records, as the source declares it. A modality the source does not record is
/// absent (the signal is not judged); a recorded one with no data yet is present and empty — not
/// the same thing: "nothing happened" is evidence, "not measured" is not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideSpec {
    /// Metrics are recorded.
    pub metrics: bool,
    /// Logs are recorded.
    pub logs: bool,
    /// Spans are recorded.
    pub spans: bool,
    /// Callers' spans are recorded (spans with a [`crate::telemetry::CallerEdge`]).
    pub callers: bool,
    /// The window logs are recorded over, if bounded; with `log_seconds_covered`, the exposure
    /// that log rates are per.
    pub log_window: Option<Window>,
    /// The window spans are recorded over, if bounded.
    pub trace_window: Option<Window>,
    /// Seconds of the log window an export actually covered (default: all of it).
    pub log_seconds_covered: Option<f64>,
    /// Seconds of the trace window an export actually covered (default: all of it).
    pub trace_seconds_covered: Option<f64>,
}

/// Baseline rows the engine leaves out: a live system knows its own past incidents on the pod
/// and must not learn "healthy" from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Masking {
    /// Mask at all.
    pub enabled: bool,
    /// Earlier incidents on the same pod.
    pub known_incidents: Vec<Window>,
    /// When no incident is listed: baseline rows before this time overlap an earlier one.
    pub clean_since: Option<f64>,
    /// Seconds after an incident's end still masked (the service recovering).
    pub recovery_s: f64,
}

impl Default for Masking {
    fn default() -> Self {
        Self {
            enabled: true,
            known_incidents: Vec::new(),
            clean_since: None,
            recovery_s: 300.0,
        }
    }
}

/// Everything an analysis needs to know before data arrives.
#[derive(Debug, Clone)]
pub struct AnalysisSpec {
    /// The judges' settings.
    pub judges: JudgeConfig,
    /// Unix seconds the canary started: interval `k` judges canary data before
    /// `canary_start + elapsed`.
    pub canary_start: f64,
    /// When the baseline was recorded.
    pub baseline_timing: BaselineTiming,
    /// Baseline masking.
    pub masking: Masking,
    /// What the baseline records.
    pub baseline: SideSpec,
    /// What the canary records.
    pub canary: SideSpec,
}

/// `table` without its rows during (and just after) known incidents, or `None` when nothing is
/// masked or fewer than `min_rows` rows would remain (then the whole baseline is judged rather
/// than too little of it).
pub fn masked_metrics(
    table: &MetricTable,
    masking: &Masking,
    min_rows: usize,
) -> Option<MetricTable> {
    if !masking.enabled {
        return None;
    }
    let incidents = if masking.known_incidents.is_empty() {
        let since = masking.clean_since?;
        vec![Window {
            start: f64::NEG_INFINITY,
            end: since - masking.recovery_s,
        }]
    } else {
        masking.known_incidents.clone()
    };
    let masked = table.without(&incidents, masking.recovery_s);
    if masked.times.len() == table.times.len() || masked.times.len() < min_rows {
        return None;
    }
    Some(masked)
}

/// What a batch brought that the engine could not keep; a source reports it, nothing is dropped
/// without a count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Log records without a time: they cannot be placed in an interval.
    pub untimed_logs: u64,
    /// Records of a modality the side does not record.
    pub undeclared: u64,
    /// Log records kept with their body cut to [`crate::telemetry::MAX_LOG_BODY_BYTES`].
    pub capped_logs: u64,
}

/// One batch of telemetry for one side. Logs and spans are moved in (the engine keeps them for
/// the analysis window and judges them by reference); metric samples are borrowed and copied
/// into the side's table.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Metric samples, any order.
    pub metrics: &'a [MetricSample<'a>],
    /// Log records, any order.
    pub logs: Vec<LogRecord>,
    /// Spans of the side's own pod and callers' spans (those with a caller edge), any order.
    pub spans: Vec<Span>,
}

/// A batch the engine refused; nothing of it was kept.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A metric sample that cannot be placed.
    #[error("{role:?} {source}")]
    Metric {
        /// The side.
        role: Role,
        /// What was wrong.
        source: SampleError,
    },
}

/// The telemetry of one side received so far, each modality sorted by time, and how much of it
/// the incremental judges have taken in.
#[derive(Debug, Clone, Default)]
struct SideState {
    spec: SideSpec,
    metrics: Option<MetricTable>,
    logs: Option<Vec<LogRecord>>,
    spans: Option<Vec<Span>>,
    callers: Option<Vec<Span>>,
    /// Records stamped before this time were handed to the incremental judges (a judgement
    /// admits everything before its interval's end).
    admitted_until: f64,
    /// Records that arrived after their time was admitted: admitted at the next judgement.
    late_logs: Vec<LogRecord>,
    late_spans: Vec<Span>,
    /// Keep log records and spans once admitted (for [`Analysis::view`]).
    retain: bool,
}

/// Restores `v`'s order by `key` after records were pushed at its end from `from` on, stably
/// (equal keys keep arrival order). Records appended in order — the usual case — cost one
/// check; otherwise only the part from the first record the new ones overtake is re-sorted.
/// (Inserting each record at its place was a `Vec::insert` per record: pushed intervals of
/// half a million lines carry records stamped before the pending ones, and those inserts were
/// a quarter of the service's time under load, benches/otlp.rs.)
fn restore_order<T>(v: &mut [T], from: usize, key: impl Fn(&T) -> f64) {
    let tail = v.get(from.saturating_sub(1)..).unwrap_or_default();
    if tail.is_sorted_by(|a, b| key(a) <= key(b)) {
        return;
    }
    let first_new = v[from..]
        .iter()
        .map(&key)
        .min_by(f64::total_cmp)
        .unwrap_or(f64::INFINITY);
    let at = v[..from].partition_point(|x| key(x) <= first_new);
    v[at..].sort_by(|a, b| key(a).total_cmp(&key(b)));
}

impl SideState {
    fn new(spec: SideSpec) -> Self {
        Self {
            metrics: spec.metrics.then(MetricTable::default),
            logs: spec.logs.then(Vec::new),
            spans: spec.spans.then(Vec::new),
            callers: spec.callers.then(Vec::new),
            spec,
            admitted_until: f64::NEG_INFINITY,
            late_logs: Vec::new(),
            late_spans: Vec::new(),
            retain: true,
        }
    }

    /// Hands the incremental judges every record stamped before `until` not handed yet: first
    /// the late arrivals, then the new slice of each modality in time order.
    fn admit(&mut self, until: f64, canary: bool, kept: &mut Incremental) {
        let late = std::mem::take(&mut self.late_logs);
        kept.add_logs(canary, &late);
        let late = std::mem::take(&mut self.late_spans);
        let (callers, own): (Vec<Span>, Vec<Span>) =
            late.into_iter().partition(|s| s.caller.is_some());
        kept.add_spans(canary, &own);
        kept.add_caller_spans(canary, &callers);
        let from = self.admitted_until;
        if until <= from {
            return;
        }
        // Without retention only records not yet admitted are held, so everything before
        // `until` goes (and nothing stamped before `from` is left to skip).
        let retain = self.retain;
        if let Some(logs) = &mut self.logs {
            let time = |r: &LogRecord| r.time.unwrap_or(f64::NEG_INFINITY);
            let lo = logs.partition_point(|r| time(r) < from);
            let hi = logs.partition_point(|r| time(r) < until);
            kept.add_logs(canary, &logs[lo..hi]);
            if !retain {
                logs.drain(..hi);
            }
        }
        for (spans, own) in [(&mut self.spans, true), (&mut self.callers, false)] {
            let Some(spans) = spans else { continue };
            let lo = spans.partition_point(|s| s.start < from);
            let hi = spans.partition_point(|s| s.start < until);
            if own {
                kept.add_spans(canary, &spans[lo..hi]);
            } else {
                kept.add_caller_spans(canary, &spans[lo..hi]);
            }
            if !retain {
                spans.drain(..hi);
            }
        }
        self.admitted_until = until;
    }

    /// The view of this side with everything before `until`; `grow_from` is where a side still
    /// recording started, so that its exposure grows pro rata.
    fn view<'a>(
        &'a self,
        metrics: Option<&'a MetricTable>,
        until: f64,
        grow_from: Option<f64>,
    ) -> SideView<'a> {
        let metric_rows = metrics.map_or((0, 0), |m| (0, m.rows_before(until)));
        let logs = self
            .logs
            .as_deref()
            .map(|l| &l[..l.partition_point(|r| r.time.is_some_and(|t| t < until))]);
        let spans = self
            .spans
            .as_deref()
            .map(|s| &s[..s.partition_point(|x| x.start < until)]);
        let caller_spans = self
            .callers
            .as_deref()
            .map(|s| &s[..s.partition_point(|x| x.start < until)]);
        // Exposure: the covered seconds of the window, pro rata for a window still growing.
        let exposure = |covered: Option<f64>, w: Option<Window>| -> f64 {
            let Some(w) = w else { return 0.0 };
            let full = covered.unwrap_or(w.len()).min(w.len());
            match grow_from {
                Some(start) if w.len() > 0.0 => full * ((until - start) / w.len()).clamp(0.0, 1.0),
                _ => full,
            }
        };
        SideView {
            metrics,
            metric_rows,
            logs,
            spans,
            caller_spans,
            log_exposure: exposure(self.spec.log_seconds_covered, self.spec.log_window),
            trace_exposure: exposure(self.spec.trace_seconds_covered, self.spec.trace_window),
            until,
        }
    }
}

/// One analysis: configuration, both sides' telemetry, the anomaly models and the lifecycle.
#[derive(Debug, Clone)]
pub struct Analysis {
    spec: AnalysisSpec,
    baseline: SideState,
    canary: SideState,
    dropped: Dropped,
    /// The baseline's metric table without masked rows, and the row count it was computed from;
    /// `None` inside when nothing is masked or too little would remain.
    masked: Option<(usize, Option<MetricTable>)>,
    model: Option<AnomalyModels>,
    /// The judges' state kept up to date interval by interval.
    kept: Incremental,
    lifecycle: Lifecycle,
}

impl Analysis {
    /// A session with no data yet.
    pub fn new(spec: AnalysisSpec) -> Self {
        let kept = Incremental::new(&spec.judges);
        Self {
            baseline: SideState::new(spec.baseline.clone()),
            canary: SideState::new(spec.canary.clone()),
            spec,
            dropped: Dropped::default(),
            masked: None,
            model: None,
            kept,
            lifecycle: Lifecycle::new(),
        }
    }

    /// The analysis's configuration.
    pub fn spec(&self) -> &AnalysisSpec {
        &self.spec
    }

    /// Whether the session keeps every log record and span of the analysis window once the
    /// judges have taken it in (the default: [`Analysis::view`] shows them, and replay's
    /// reference judges read them), or drops them then. Vigil's own judgement is the same either
    /// way — its judges read their incremental state, not the records — and without the records
    /// the session's memory is that state: counts, two examples per template and side, one
    /// duration per span. A view of a recorded modality is then present and empty.
    pub fn keep_records(&mut self, keep: bool) {
        self.baseline.retain = keep;
        self.canary.retain = keep;
    }

    /// How many threads mine a large batch of log lines (0: every core; the default, 1, suits
    /// replay's one scenario per core). Judgements are the same for any number
    /// ([`crate::logs::judge::LogSession::set_threads`]).
    pub fn mining_threads(&mut self, threads: usize) {
        self.kept.logs.set_threads(threads);
    }

    /// Replaces which metrics are judged and how ([`crate::judge::JudgeConfig::metrics`]: what
    /// feedback on a metric's findings changes) in a running session. No incremental state
    /// depends on these rules — the metric judges read the tables at each judgement — so the
    /// session goes on as if it had been built with them, without being fed its records again
    /// (a service that no longer keeps pushed records could not).
    pub fn set_metric_rules(&mut self, rules: crate::judge::MetricRules) {
        self.spec.judges.metrics = rules;
    }

    /// What was received and not kept so far.
    pub fn dropped(&self) -> &Dropped {
        &self.dropped
    }

    /// Takes one batch of one side's telemetry. Records may arrive in any order and ahead of
    /// the interval being judged: each interval sees exactly the data stamped before its end.
    /// A refused batch leaves the state as it was for logs and spans; metric samples before the
    /// refused one are kept.
    pub fn ingest(&mut self, role: Role, batch: Batch<'_>) -> Result<(), IngestError> {
        let side = match role {
            Role::Baseline => &mut self.baseline,
            Role::Canary => &mut self.canary,
        };
        if !batch.metrics.is_empty() {
            match &mut side.metrics {
                None => self.dropped.undeclared += batch.metrics.len() as u64,
                Some(table) => {
                    for s in batch.metrics {
                        table
                            .insert(*s)
                            .map_err(|source| IngestError::Metric { role, source })?;
                    }
                }
            }
        }
        match &mut side.logs {
            None => self.dropped.undeclared += batch.logs.len() as u64,
            Some(logs) => {
                // One growth for the batch, not a doubling per power of two as it is pushed.
                logs.reserve(batch.logs.len());
                let from = logs.len();
                for mut r in batch.logs {
                    if r.time.is_none() {
                        self.dropped.untimed_logs += 1;
                        continue;
                    }
                    if r.cap_body() {
                        self.dropped.capped_logs += 1;
                    }
                    if r.time.is_some_and(|t| t < side.admitted_until) {
                        if !side.retain {
                            side.late_logs.push(r);
                            continue;
                        }
                        side.late_logs.push(r.clone());
                    }
                    logs.push(r);
                }
                restore_order(logs, from, |r| r.time.unwrap_or(f64::NEG_INFINITY));
            }
        }
        let callers = batch.spans.iter().filter(|s| s.caller.is_some()).count();
        if let Some(v) = &mut side.callers {
            v.reserve(callers);
        }
        if let Some(v) = &mut side.spans {
            v.reserve(batch.spans.len() - callers);
        }
        let from = [&side.spans, &side.callers].map(|v| v.as_ref().map_or(0, Vec::len));
        for s in batch.spans {
            let target = if s.caller.is_some() {
                &mut side.callers
            } else {
                &mut side.spans
            };
            match target {
                None => self.dropped.undeclared += 1,
                Some(v) => {
                    if s.start < side.admitted_until {
                        if !side.retain {
                            side.late_spans.push(s);
                            continue;
                        }
                        side.late_spans.push(s.clone());
                    }
                    v.push(s);
                }
            }
        }
        for (v, from) in [&mut side.spans, &mut side.callers].into_iter().zip(from) {
            if let Some(v) = v {
                restore_order(v, from, |s| s.start);
            }
        }
        Ok(())
    }

    /// The baseline runs beside the canary.
    pub fn concurrent(&self) -> bool {
        matches!(self.spec.baseline_timing, BaselineTiming::Concurrent { .. })
    }

    /// Recomputes the masked baseline table when baseline rows arrived since.
    fn refresh_mask(&mut self) {
        let rows = self.baseline.metrics.as_ref().map_or(0, |t| t.times.len());
        if self.masked.as_ref().is_some_and(|(n, _)| *n == rows) {
            return;
        }
        let masked = self.baseline.metrics.as_ref().and_then(|table| {
            masked_metrics(
                table,
                &self.spec.masking,
                self.spec.judges.metric.min_baseline_points,
            )
        });
        self.masked = Some((rows, masked));
    }

    fn masked_table(&self) -> Option<&MetricTable> {
        self.masked.as_ref().and_then(|(_, m)| m.as_ref())
    }

    /// Both sides as of the interval ending `elapsed_s` into the canary, the baseline with its
    /// masked rows left out: what Vigil's judges read (and replay's reference judges too).
    pub fn view(&mut self, elapsed_s: f64) -> View<'_> {
        self.refresh_mask();
        self.view_with(elapsed_s, false)
    }

    fn baseline_until(&self, elapsed_s: f64) -> (f64, Option<f64>) {
        match self.spec.baseline_timing {
            BaselineTiming::Before => (f64::INFINITY, None),
            BaselineTiming::Concurrent { start } => (start + elapsed_s, Some(start)),
        }
    }

    /// `for_fit`: the baseline the anomaly model learns from — masked unless masking leaves it
    /// fewer rows than the model needs, then the whole baseline rather than none.
    fn view_with(&self, elapsed_s: f64, for_fit: bool) -> View<'_> {
        let (b_until, b_grow) = self.baseline_until(elapsed_s);
        let masked = self.masked_table();
        let baseline_metrics = match masked {
            Some(m) if for_fit && m.times.len() < self.spec.judges.anomaly.min_windows => {
                self.baseline.metrics.as_ref()
            }
            Some(m) => Some(m),
            None => self.baseline.metrics.as_ref(),
        };
        let t0 = self.spec.canary_start;
        View {
            baseline: self.baseline.view(baseline_metrics, b_until, b_grow),
            canary: self
                .canary
                .view(self.canary.metrics.as_ref(), t0 + elapsed_s, Some(t0)),
        }
    }

    /// Judges the interval ending `elapsed_s` into the canary on the data received so far and
    /// records it; returns the interim judgement, or `None` once the analysis is done (a Fail
    /// ends it: later intervals cannot overturn it).
    ///
    /// Log lines are mined once, in the order they are admitted: at each judgement the
    /// baseline's lines not yet mined (with a before/after baseline, all of it at the first
    /// interval), then the canary's, each in time order, late arrivals first. Drain-style mining
    /// depends on order, so this is the batch judgement's order exactly for a before/after
    /// baseline; for a concurrent baseline the order is interval by interval (baseline slice,
    /// canary slice), which keeps a pattern's id shared by both sides without re-mining.
    pub fn judge(&mut self, elapsed_s: f64) -> Option<&Judgement> {
        if self.lifecycle.is_done() {
            return None;
        }
        self.refresh_mask();
        // The incremental judges take in what this interval brought: baseline first, then the
        // canary. With a before/after baseline all of it is there at the first interval, so lines
        // are mined exactly as a batch judgement mines them (the whole baseline, then the canary
        // in time order); a concurrent baseline is mined interval by interval, each interval's
        // baseline slice before its canary slice (re-mining the window to keep the batch order
        // is what this state exists to avoid).
        let (b_until, _) = self.baseline_until(elapsed_s);
        let c_until = self.spec.canary_start + elapsed_s;
        self.baseline.admit(b_until, false, &mut self.kept);
        self.canary.admit(c_until, true, &mut self.kept);
        self.kept.settle();
        if self.model.is_none() || self.concurrent() {
            let fit = judge::fit_anomaly_with(
                &self.view_with(elapsed_s, true),
                Some(&self.kept),
                &self.spec.judges.anomaly,
                &self.spec.judges.metrics,
            );
            self.model = Some(fit);
        }
        let judgement = judge::vigil_with(
            &self.view_with(elapsed_s, false),
            Some(&self.kept),
            self.model.as_ref(),
            &self.spec.judges,
        );
        self.lifecycle.record(elapsed_s, judgement);
        self.lifecycle.last()
    }

    /// A Fail ended the analysis.
    pub fn is_done(&self) -> bool {
        self.lifecycle.is_done()
    }

    /// The verdict so far.
    pub fn outcome(&self) -> Conclusion {
        self.lifecycle.outcome()
    }
}

/// The rules of a running analysis over the intervals judged so far: fail fast, the last
/// interval decides, time to detect. Replay also runs its reference judges through it.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    steps: Vec<(Step, Judgement)>,
}

impl Lifecycle {
    /// No interval judged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Fail ends the analysis: there is no reason to keep a bad canary running.
    pub fn is_done(&self) -> bool {
        self.steps
            .last()
            .is_some_and(|(_, j)| j.verdict == Verdict::Fail)
    }

    /// Records the judgement of the interval ending `elapsed_s` into the canary. Ignored once the
    /// analysis is done, so a caller cannot overturn a Fail by judging again.
    pub fn record(&mut self, elapsed_s: f64, judgement: Judgement) {
        if self.is_done() {
            return;
        }
        let step = Step {
            elapsed_s,
            verdict: judgement.verdict,
            score: judgement.score,
        };
        self.steps.push((step, judgement));
    }

    /// The judgement of the last interval recorded.
    pub fn last(&self) -> Option<&Judgement> {
        self.steps.last().map(|(_, j)| j)
    }

    /// The verdict so far: the last interval's, with its evidence and the whole timeline.
    pub fn outcome(&self) -> Conclusion {
        let timeline: Vec<Step> = self.steps.iter().map(|(s, _)| s.clone()).collect();
        let Some((_, last)) = self.steps.last() else {
            return Conclusion {
                verdict: Verdict::Error,
                score: 0.0,
                time_to_detect_s: None,
                evidence: vec![],
                findings: vec![],
                note: Some("no interval ran".into()),
                timeline,
            };
        };
        let time_to_detect_s = if last.verdict.flagged() {
            let streak = self
                .steps
                .iter()
                .rev()
                .take_while(|(_, j)| j.verdict.flagged())
                .count();
            Some(self.steps[self.steps.len() - streak].0.elapsed_s)
        } else {
            None
        };
        Conclusion {
            verdict: last.verdict,
            score: last.score,
            time_to_detect_s,
            evidence: last.evidence.clone(),
            findings: last.findings.clone(),
            note: last.note.clone(),
            timeline,
        }
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use crate::judge::tests::{side, Lcg};

    fn spec() -> AnalysisSpec {
        let recorded = |start: f64| SideSpec {
            metrics: true,
            logs: true,
            spans: true,
            callers: false,
            log_window: Some(Window {
                start,
                end: start + 180.0,
            }),
            trace_window: Some(Window {
                start,
                end: start + 180.0,
            }),
            log_seconds_covered: None,
            trace_seconds_covered: None,
        };
        AnalysisSpec {
            judges: JudgeConfig::default(),
            canary_start: 180.0,
            baseline_timing: BaselineTiming::Before,
            masking: Masking::default(),
            baseline: recorded(0.0),
            canary: recorded(180.0),
        }
    }

    fn timeline(a: &Analysis) -> Vec<(f64, Verdict, f64)> {
        a.outcome()
            .timeline
            .iter()
            .map(|s| (s.elapsed_s, s.verdict, s.score))
            .collect()
    }

    #[test]
    fn batches_in_any_order_and_ahead_of_time_judge_like_data_in_order() {
        let mut rng = Lcg(5);
        let (b_logs, b_spans) = side(&mut rng, 0.0, 1.0);
        let (c_logs, c_spans) = side(&mut rng, 180.0, 2.5);
        // A: everything at once, the canary's records reversed.
        let mut a = Analysis::new(spec());
        a.ingest(
            Role::Baseline,
            Batch {
                logs: b_logs.clone(),
                spans: b_spans.clone(),
                ..Batch::default()
            },
        )
        .unwrap();
        a.ingest(
            Role::Canary,
            Batch {
                logs: c_logs.iter().rev().cloned().collect(),
                spans: c_spans.iter().rev().cloned().collect(),
                ..Batch::default()
            },
        )
        .unwrap();
        // B: the canary interval by interval, as a live source delivers it.
        let mut b = Analysis::new(spec());
        b.ingest(
            Role::Baseline,
            Batch {
                logs: b_logs,
                spans: b_spans,
                ..Batch::default()
            },
        )
        .unwrap();
        let (mut li, mut si) = (0, 0);
        for k in 1..=6 {
            let elapsed = 30.0 * k as f64;
            let until = 180.0 + elapsed;
            let le = c_logs.partition_point(|r| r.time.is_some_and(|t| t < until));
            let se = c_spans.partition_point(|s| s.start < until);
            b.ingest(
                Role::Canary,
                Batch {
                    logs: c_logs[li..le].to_vec(),
                    spans: c_spans[si..se].to_vec(),
                    ..Batch::default()
                },
            )
            .unwrap();
            (li, si) = (le, se);
            let interim_a = a.judge(elapsed).map(|j| j.verdict);
            let interim_b = b.judge(elapsed).map(|j| j.verdict);
            assert_eq!(interim_a, interim_b, "interval {k}");
        }
        assert_eq!(timeline(&a), timeline(&b));
        // 2.5 times slower spans: the engine fails the canary, and then stops judging.
        assert_eq!(a.outcome().verdict, Verdict::Fail);
        assert!(a.is_done() && a.judge(210.0).is_none());
    }

    /// A side with what every incremental judge keeps: log templates that generalise as lines
    /// arrive (numbers, then words with three distinct values), spans with parents (fan-out),
    /// statuses, and callers' spans with their edge.
    fn rich_side(rng: &mut Lcg, start: f64, slowdown: f64) -> (Vec<LogRecord>, Vec<Span>) {
        let words = ["alpha", "beta", "gamma", "delta"];
        let (mut logs, mut spans) = (Vec::new(), Vec::new());
        let mut t = start;
        let mut i = 0usize;
        while t < start + 180.0 {
            let w = words[(rng.uniform() * 4.0) as usize % 4];
            let (severity, body) = match i % 5 {
                0 => ("INFO", format!("user {} logged in from {w}", 1000 + i)),
                1 => ("INFO", format!("cache {w} refreshed in {} ms", i % 17)),
                2 if slowdown > 1.0 && i % 15 == 2 => {
                    ("ERROR", format!("payment {i} failed: TimeoutException"))
                }
                3 => ("WARN", format!("queue {w} depth {}", i % 9)),
                _ => ("INFO", format!("handled get {i}")),
            };
            logs.push(LogRecord {
                time: Some(t),
                severity: Some(severity.into()),
                body,
            });
            let id = format!("s{start}-{i}");
            spans.push(Span {
                trace_id: format!("t{start}-{i}"),
                span_id: id.clone(),
                parent_id: None,
                operation: "get".into(),
                start: t,
                duration_ms: 20.0 * (1.0 + rng.uniform()) * slowdown,
                error: Some(rng.uniform() < 0.02 * slowdown),
                caller: None,
            });
            for c in 0..(1 + usize::from(slowdown > 1.0 && i.is_multiple_of(2))) {
                spans.push(Span {
                    trace_id: format!("t{start}-{i}"),
                    span_id: format!("{id}-db{c}"),
                    parent_id: Some(id.clone()),
                    operation: "db".into(),
                    start: t + 0.001,
                    duration_ms: 2.0 * (1.0 + rng.uniform()),
                    error: Some(false),
                    caller: None,
                });
            }
            spans.push(Span {
                trace_id: format!("t{start}-{i}"),
                span_id: format!("{id}-caller"),
                parent_id: None,
                operation: "HTTP GET".into(),
                start: t - 0.001,
                duration_ms: 25.0 * (1.0 + rng.uniform()) * slowdown,
                error: Some(false),
                caller: Some(crate::telemetry::CallerEdge {
                    callee_span_id: id,
                    callee_operation: "get".into(),
                    callee_duration_ms: 20.0,
                }),
            });
            t += 0.2 + 0.25 * rng.uniform();
            i += 1;
        }
        (logs, spans)
    }

    /// The engine's incremental judgement of every interval equals the batch judgement of the
    /// same view (every line mined again, every span sorted again), for a before/after baseline.
    #[test]
    fn incremental_judgements_equal_the_batch_judgement_of_each_interval() {
        for slowdown in [1.0, 2.5] {
            let mut rng = Lcg(17);
            let (b_logs, b_spans) = rich_side(&mut rng, 0.0, 1.0);
            let (c_logs, c_spans) = rich_side(&mut rng, 180.0, slowdown);
            let mut spec = spec();
            spec.baseline.callers = true;
            spec.canary.callers = true;
            let config = spec.judges.clone();
            let mut a = Analysis::new(spec);
            a.ingest(
                Role::Baseline,
                Batch {
                    logs: b_logs,
                    spans: b_spans,
                    ..Batch::default()
                },
            )
            .unwrap();
            let (mut li, mut si) = (0, 0);
            for k in 1..=6 {
                let elapsed = 30.0 * k as f64;
                let until = 180.0 + elapsed;
                let le = c_logs.partition_point(|r| r.time.is_some_and(|t| t < until));
                let se = c_spans.partition_point(|s| s.start < until);
                a.ingest(
                    Role::Canary,
                    Batch {
                        logs: c_logs[li..le].to_vec(),
                        spans: c_spans[si..se].to_vec(),
                        ..Batch::default()
                    },
                )
                .unwrap();
                (li, si) = (le, se);
                let Some(got) = a.judge(elapsed).cloned() else {
                    break;
                };
                let model = judge::fit_anomaly(
                    &a.view_with(elapsed, true),
                    &config.anomaly,
                    &config.metrics,
                );
                let want = judge::vigil(&a.view_with(elapsed, false), Some(&model), &config);
                let json = |j: &Judgement| serde_json::to_string(j).unwrap();
                assert_eq!(json(&got), json(&want), "slowdown {slowdown}, interval {k}");
                assert!(!want.findings.is_empty() || slowdown == 1.0);
            }
        }
    }

    #[test]
    fn without_records_kept_the_judgements_are_the_same_and_the_view_is_empty() {
        let mut rng = Lcg(29);
        let (b_logs, b_spans) = rich_side(&mut rng, 0.0, 1.0);
        let (c_logs, c_spans) = rich_side(&mut rng, 180.0, 2.5);
        let mut spec = spec();
        spec.baseline.callers = true;
        spec.canary.callers = true;
        let mut runs = Vec::new();
        for keep in [true, false] {
            let mut a = Analysis::new(spec.clone());
            a.keep_records(keep);
            a.ingest(
                Role::Baseline,
                Batch {
                    logs: b_logs.clone(),
                    spans: b_spans.clone(),
                    ..Batch::default()
                },
            )
            .unwrap();
            let (mut judged, mut last) = (Vec::new(), 0.0);
            for k in 1..=6 {
                let elapsed = 30.0 * k as f64;
                let until = 180.0 + elapsed;
                let from = until - 30.0;
                let new = |t: f64| t >= from && t < until;
                a.ingest(
                    Role::Canary,
                    Batch {
                        logs: c_logs
                            .iter()
                            .filter(|r| r.time.is_some_and(new))
                            .cloned()
                            .collect(),
                        spans: c_spans.iter().filter(|s| new(s.start)).cloned().collect(),
                        ..Batch::default()
                    },
                )
                .unwrap();
                if let Some(j) = a.judge(elapsed) {
                    judged.push(serde_json::to_string(j).unwrap());
                    last = elapsed;
                }
            }
            // Up to the last interval judged, everything was handed to the judges.
            let view = a.view(last);
            let held = view.canary.logs.map(<[LogRecord]>::len);
            assert_eq!(held.is_some_and(|n| n > 0), keep, "{held:?}");
            assert_eq!(view.baseline.spans.is_some_and(|s| s.is_empty()), !keep);
            runs.push(judged);
        }
        assert!(!runs[0].is_empty());
        assert_eq!(runs[0], runs[1]);
    }

    #[test]
    fn records_arriving_after_their_interval_are_judged_at_the_next() {
        let mut rng = Lcg(23);
        let (b_logs, b_spans) = rich_side(&mut rng, 0.0, 1.0);
        let (c_logs, c_spans) = rich_side(&mut rng, 180.0, 1.0);
        let mut a = Analysis::new(spec());
        a.ingest(
            Role::Baseline,
            Batch {
                logs: b_logs,
                spans: b_spans,
                ..Batch::default()
            },
        )
        .unwrap();
        let early = |r: &LogRecord| r.time.is_some_and(|t| t < 200.0);
        let (first, late): (Vec<_>, Vec<_>) = c_logs.iter().cloned().partition(early);
        a.ingest(
            Role::Canary,
            Batch {
                logs: late
                    .iter()
                    .filter(|r| r.time.is_some_and(|t| t >= 210.0))
                    .cloned()
                    .collect(),
                spans: c_spans.clone(),
                ..Batch::default()
            },
        )
        .unwrap();
        a.judge(30.0);
        // Lines of [180, 210) come after the interval that covered them.
        a.ingest(
            Role::Canary,
            Batch {
                logs: first
                    .into_iter()
                    .chain(
                        late.into_iter()
                            .filter(|r| r.time.is_some_and(|t| t < 210.0)),
                    )
                    .collect(),
                ..Batch::default()
            },
        )
        .unwrap();
        a.judge(60.0);
        let in_view = a.view(60.0).canary.logs.map_or(0, <[LogRecord]>::len) as u64;
        assert!(in_view > 0);
        assert_eq!(a.kept.logs().lines().1, in_view);
    }

    #[test]
    fn baseline_rows_of_a_known_incident_are_masked_by_the_engine() {
        let mut spec = spec();
        spec.masking.known_incidents = vec![Window {
            start: -1800.0,
            end: -1500.0,
        }];
        spec.masking.recovery_s = 60.0;
        let mut a = Analysis::new(spec.clone());
        // 60 one-minute rows before the canary; the incident and its recovery touch 6 of them.
        let names = ["CpuUsageRate(%)"];
        let samples: Vec<MetricSample> = (0..60)
            .map(|i| MetricSample {
                time: -3600.0 + 60.0 * f64::from(i),
                name: names[0],
                value: 10.0,
            })
            .collect();
        a.ingest(
            Role::Baseline,
            Batch {
                metrics: &samples,
                ..Batch::default()
            },
        )
        .unwrap();
        let kept = a
            .view(30.0)
            .baseline
            .metrics
            .map(|m| m.times.clone())
            .unwrap();
        // Rows stamped t summarise [t - 60, t): masked are those with t in (-1800, -1380).
        assert_eq!(kept.len(), 60 - 6, "{kept:?}");
        assert!(
            kept.iter().all(|t| *t <= -1800.0 || *t >= -1380.0),
            "{kept:?}"
        );
        // Masking off: the whole baseline.
        spec.masking.enabled = false;
        let mut b = Analysis::new(spec);
        b.ingest(
            Role::Baseline,
            Batch {
                metrics: &samples,
                ..Batch::default()
            },
        )
        .unwrap();
        assert_eq!(
            b.view(30.0).baseline.metrics.map(|m| m.times.len()),
            Some(60)
        );
    }

    /// What the service does when feedback on a metric arrives mid-analysis: the running
    /// session takes the new rules in place ([`Analysis::set_metric_rules`]) and from then on
    /// judges exactly as a session built with them from the start (which the runner used to
    /// rebuild, feeding it every pushed record again).
    #[test]
    fn metric_rules_set_mid_analysis_judge_as_if_set_from_the_start() {
        let samples = |start: f64, shifted_from: f64| -> Vec<MetricSample<'static>> {
            (0..36)
                .map(|i| {
                    let t = start + 5.0 * f64::from(i);
                    let noise = f64::from((i * 7919) % 13) - 6.0;
                    MetricSample {
                        time: t,
                        name: "latency_ms",
                        value: if t >= shifted_from { 400.0 } else { 100.0 } + noise,
                    }
                })
                .collect()
        };
        let (base, can) = (samples(0.0, f64::INFINITY), samples(180.0, 240.0));
        let mut relaxed = JudgeConfig::default().metrics;
        let mut s = relaxed.spec("latency_ms").unwrap();
        s.critical = !s.critical;
        relaxed.overrides.insert("latency_ms".into(), Some(s));
        let session = |rules: Option<&crate::judge::MetricRules>| {
            let mut spec = spec();
            if let Some(r) = rules {
                spec.judges.metrics = r.clone();
            }
            let mut a = Analysis::new(spec);
            for (role, m) in [(Role::Baseline, &base), (Role::Canary, &can)] {
                a.ingest(
                    role,
                    Batch {
                        metrics: m,
                        ..Batch::default()
                    },
                )
                .unwrap();
            }
            a
        };
        let summary = |j: &Judgement| {
            let f: Vec<String> = j
                .findings
                .iter()
                .map(|f| format!("{} {:?} {:.6}", f.subject, f.severity, f.strength))
                .collect();
            (j.verdict, j.score, f)
        };
        let mut from_start = session(Some(&relaxed));
        let mut default = session(None);
        let mut switched = session(None);
        // Interval 1 (before the shift) under the default rules; the new rules from interval 2.
        let first = switched.judge(30.0).map(summary);
        assert_eq!(first, default.judge(30.0).map(summary));
        switched.set_metric_rules(relaxed.clone());
        let _ = from_start.judge(30.0);
        let mut differs = false;
        for k in 2..=6 {
            let elapsed = 30.0 * f64::from(k);
            let a = from_start.judge(elapsed).map(summary);
            let b = switched.judge(elapsed).map(summary);
            assert_eq!(a, b, "interval {k}");
            differs |= default.judge(elapsed).map(summary) != a;
        }
        // The rules matter here: the default session judged the shifted metric otherwise.
        assert!(
            differs,
            "the override changed no judgement: the test shows nothing"
        );
    }

    #[test]
    fn untimed_and_undeclared_records_are_counted_not_kept() {
        let mut spec = spec();
        spec.canary.spans = false;
        let mut a = Analysis::new(spec);
        let mut rng = Lcg(3);
        let (logs, spans) = side(&mut rng, 180.0, 1.0);
        let n_spans = spans.len() as u64;
        a.ingest(
            Role::Canary,
            Batch {
                logs: vec![LogRecord::from_body("no time")],
                spans,
                ..Batch::default()
            },
        )
        .unwrap();
        assert_eq!(a.dropped().untimed_logs, 1);
        let long = LogRecord {
            time: Some(200.0),
            severity: None,
            body: "y".repeat(crate::telemetry::MAX_LOG_BODY_BYTES + 10),
        };
        a.ingest(
            Role::Canary,
            Batch {
                logs: vec![long],
                ..Batch::default()
            },
        )
        .unwrap();
        assert_eq!(a.dropped().capped_logs, 1);
        let kept = a.view(30.0).canary.logs.map(|l| l[0].body.len());
        assert_eq!(kept, Some(crate::telemetry::MAX_LOG_BODY_BYTES));
        assert_eq!(a.dropped().undeclared, n_spans);
        drop(logs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(verdict: Verdict) -> Judgement {
        Judgement {
            verdict,
            score: match verdict {
                Verdict::Pass => 100.0,
                Verdict::Marginal => 60.0,
                _ => 0.0,
            },
            evidence: vec![],
            findings: vec![],
            signal_scores: vec![],
            note: None,
        }
    }

    #[test]
    fn restoring_order_after_a_batch_equals_a_stable_sort_of_everything() {
        // (time, arrival): a stable sort by time of the whole vector is the reference.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for case in 0..300 {
            let mut v: Vec<(f64, usize)> = Vec::new();
            let mut reference: Vec<(f64, usize)> = Vec::new();
            for _batch in 0..1 + case % 5 {
                let from = v.len();
                let base = next(50) as f64;
                for _ in 0..next(40) {
                    // Few distinct times, so equal keys are common; some before the pending.
                    let item = (base + next(20) as f64 - 10.0, reference.len());
                    v.push(item);
                    reference.push(item);
                }
                restore_order(&mut v, from, |x| x.0);
                reference.sort_by(|a, b| a.0.total_cmp(&b.0));
                assert_eq!(v, reference, "case {case}");
            }
        }
    }

    fn run(verdicts: &[Verdict]) -> Lifecycle {
        let mut a = Lifecycle::new();
        for (i, v) in verdicts.iter().enumerate() {
            a.record(30.0 * (i + 1) as f64, judged(*v));
        }
        a
    }

    #[test]
    fn fail_ends_the_analysis_and_later_intervals_cannot_overturn_it() {
        use Verdict::*;
        let a = run(&[Pass, Marginal, Fail, Pass, Pass]);
        assert!(a.is_done());
        let o = a.outcome();
        assert_eq!(o.verdict, Fail);
        assert_eq!(o.timeline.len(), 3);
        assert_eq!(o.time_to_detect_s, Some(60.0), "the streak began at 60 s");
    }

    #[test]
    fn the_last_interval_decides_and_a_cleared_alarm_is_no_detection() {
        use Verdict::*;
        let cleared = run(&[Marginal, Pass, Pass]).outcome();
        assert_eq!(cleared.verdict, Pass);
        assert_eq!(cleared.time_to_detect_s, None);
        let late = run(&[Marginal, Pass, Marginal, Marginal]).outcome();
        assert_eq!(late.verdict, Marginal);
        assert_eq!(late.time_to_detect_s, Some(90.0));
        let unsure = run(&[Inconclusive, Inconclusive]).outcome();
        assert_eq!(unsure.verdict, Inconclusive);
        assert_eq!(unsure.time_to_detect_s, None);
    }

    #[test]
    fn an_analysis_that_never_ran_is_an_error_not_a_pass() {
        let o = Lifecycle::new().outcome();
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.timeline.is_empty());
    }
}
