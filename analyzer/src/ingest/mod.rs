//! Pushed telemetry (OTLP) → the running analyses.
//!
//! The [`Hub`] knows every running analysis that selects telemetry by attributes, and for each a
//! buffer per side. An export request is converted ([`convert`]) and routed: each log record,
//! span and metric point goes to every analysis whose baseline or canary matchers all hold on
//! its resource attributes (or, for a key the resource lacks, its instrumentation scope's).
//! Logs and metrics that match nothing are counted and dropped before they are converted; spans
//! always pass through the caller join ([`join`]), since a caller's span runs on a pod no scope
//! selects. The runner drains its analysis's buffers at each interval ([`Hub::drain`]).
//!
//! Memory: everything routed to an analysis counts against one byte budget until the analysis
//! ends (the session keeps it for the analysis window); a request that would exceed it is
//! refused whole ([`Refusal::OverBudget`]), and the client retries later. The join holds a
//! bounded number of spans for a bounded time.
//!
//! [`receiver`] puts OTLP/gRPC and OTLP/HTTP in front of the hub.

pub mod convert;
pub mod join;
pub mod receiver;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, NumberDataPoint,
};

use self::convert::{Combine, Invalid, MetricSeries};
use self::join::Join;
use crate::analysis::Role;
use crate::telemetry::{LogRecord, Span};

/// The default memory budget of pushed telemetry (512 MiB).
pub const DEFAULT_BUDGET_BYTES: usize = 512 << 20;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Log records.
    Logs,
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
}

impl Signal {
    /// All three, in counter order.
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];

    /// The signal's name in `/metrics` labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    fn index(self) -> usize {
        match self {
            Signal::Logs => 0,
            Signal::Traces => 1,
            Signal::Metrics => 2,
        }
    }
}

/// Receiver counters per signal, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Records routed to at least one analysis (spans: also those kept for the join).
    pub accepted: [AtomicU64; 3],
    /// Records of refused requests (over budget) and invalid records.
    pub refused: [AtomicU64; 3],
    /// Records that matched no running analysis, came too late, or left the join unmatched.
    pub dropped: [AtomicU64; 3],
    /// Request bytes received (as decoded, before routing).
    pub bytes: [AtomicU64; 3],
    /// Records whose body or name was capped.
    pub capped: [AtomicU64; 3],
}

impl ReceiverCounters {
    fn add(c: &[AtomicU64; 3], s: Signal, n: u64) {
        if n > 0 {
            c[s.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, c) in [
            (
                "vigil_otlp_accepted_total",
                "OTLP records routed to a running analysis (spans: also those held only for the caller join).",
                &self.accepted,
            ),
            (
                "vigil_otlp_refused_total",
                "OTLP records refused (invalid, or the memory budget was exceeded).",
                &self.refused,
            ),
            (
                "vigil_otlp_dropped_total",
                "OTLP records that matched no running analysis, came late, or found no join partner.",
                &self.dropped,
            ),
            (
                "vigil_otlp_received_bytes_total",
                "OTLP request bytes received (decompressed).",
                &self.bytes,
            ),
            (
                "vigil_otlp_capped_total",
                "OTLP records kept with their body or name cut to the engine's limit.",
                &self.capped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in Signal::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{signal=\"{}\"}} {}",
                    s.as_str(),
                    c[s.index()].load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Accepting it would exceed the memory budget; retry after the given seconds.
    #[error("memory budget of {budget} bytes exhausted ({used} in use): retry later")]
    OverBudget {
        /// The budget.
        budget: usize,
        /// Bytes in use.
        used: usize,
        /// Suggested retry delay, seconds.
        retry_after_s: u64,
    },
}

/// What an export did: records refused (with why) and warnings, for `partial_success`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Records refused as invalid (the client should not resend them).
    pub rejected: u64,
    /// Records routed to at least one analysis.
    pub accepted: u64,
    /// Records matching no running analysis (dropped by design; a warning).
    pub unmatched: u64,
    /// Records kept with their body capped.
    pub capped: u64,
    /// The first reason for each kind of invalid record.
    pub reasons: Vec<Invalid>,
}

impl Outcome {
    fn reject(&mut self, why: Invalid) {
        self.rejected += 1;
        if !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }

    /// The `error_message` of a partial success; empty when there is nothing to say.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|r| format!("rejected: {}", r.describe()))
            .collect();
        if self.unmatched > 0 {
            parts.push(format!(
                "{} records matched no running analysis's baseline or canary attributes and were dropped",
                self.unmatched
            ));
        }
        if self.capped > 0 {
            parts.push(format!(
                "{} records were kept cut to the engine's limits (log bodies {} bytes, span names {} bytes)",
                self.capped,
                crate::telemetry::MAX_LOG_BODY_BYTES,
                convert::MAX_NAME_BYTES
            ));
        }
        parts.join("; ")
    }
}

/// What one side of an analysis received since the last drain.
#[derive(Debug)]
struct SideBuffer {
    matchers: Vec<(String, String)>,
    /// Event times this side takes, `[start, end)`; `None`: any (see [`Hub::set_windows`]).
    window: Option<(f64, f64)>,
    logs: Vec<LogRecord>,
    spans: Vec<Span>,
    metrics: MetricSeries,
}

impl SideBuffer {
    fn new(matchers: Vec<(String, String)>, step: f64) -> Self {
        SideBuffer {
            matchers,
            window: None,
            logs: Vec::new(),
            spans: Vec::new(),
            metrics: MetricSeries::new(step),
        }
    }
}

#[derive(Debug)]
struct Registered {
    id: String,
    sides: [SideBuffer; 2],
    /// Bytes routed to this analysis so far (held until it ends).
    bytes: usize,
    /// The latest event time (Unix seconds) of a log record or span matching either side.
    watermark: f64,
    /// The client said no more data will come ([`Hub::end_input`]).
    ended: bool,
}

impl SideBuffer {
    fn takes(&self, t: f64) -> bool {
        self.window.is_none_or(|(a, b)| t >= a && t < b)
    }
}

/// Whether side `role` of analysis `a` takes a record stamped `t`.
fn takes(a: &Registered, role: Role, t: f64) -> bool {
    a.sides[role_index(role)].takes(t)
}

/// What the runner takes from the hub at an interval, for one side.
#[derive(Debug, Default, Clone)]
pub struct Drained {
    /// Log records, any order.
    pub logs: Vec<LogRecord>,
    /// Spans, callers' spans (with an edge) among them.
    pub spans: Vec<Span>,
    /// Metric readings: time, name, value.
    pub metrics: Vec<(f64, String, f64)>,
    /// Metric points that arrived for a step already drained.
    pub late_points: u64,
}

#[derive(Debug)]
struct State {
    analyses: Vec<Registered>,
    join: Join,
    used: usize,
}

/// The router between the receivers and the running analyses.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    budget: usize,
    counters: ReceiverCounters,
}

fn role_index(r: Role) -> usize {
    match r {
        Role::Baseline => 0,
        Role::Canary => 1,
    }
}

const ROLES: [Role; 2] = [Role::Baseline, Role::Canary];

/// Rough bytes of a log record held by the engine.
fn log_bytes(r: &LogRecord) -> usize {
    r.body.len() + r.severity.as_ref().map_or(0, String::len) + 64
}

/// Rough bytes of a span held by the engine.
pub(crate) fn span_bytes(s: &Span) -> usize {
    s.trace_id.len()
        + s.span_id.len()
        + s.parent_id.as_ref().map_or(0, String::len)
        + s.operation.len()
        + s.caller.as_ref().map_or(0, |c| {
            c.callee_operation.len() + c.callee_span_id.len() + 24
        })
        + 96
}

impl Hub {
    /// A hub holding at most `budget` bytes of pushed telemetry.
    pub fn new(budget: usize) -> Self {
        Hub {
            state: Mutex::new(State {
                analyses: Vec::new(),
                join: Join::default(),
                used: 0,
            }),
            budget,
            counters: ReceiverCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the state consistent between statements.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receiver counters.
    pub fn counters(&self) -> &ReceiverCounters {
        &self.counters
    }

    /// Bytes held for running analyses and the join.
    pub fn used(&self) -> usize {
        let st = self.lock();
        st.used + st.join.bytes()
    }

    /// Bytes held for running analyses, and bytes held by the caller join.
    pub fn used_parts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.used, st.join.bytes())
    }

    /// Starts routing to analysis `id`: telemetry whose attributes match all of `baseline`
    /// (`canary`) goes to that side. Metric points are combined on a grid of `step` seconds.
    /// Registering an id again keeps what it holds.
    pub fn register(
        &self,
        id: &str,
        baseline: Vec<(String, String)>,
        canary: Vec<(String, String)>,
        step: f64,
    ) {
        let mut st = self.lock();
        if st.analyses.iter().any(|a| a.id == id) {
            return;
        }
        st.analyses.push(Registered {
            id: id.to_owned(),
            sides: [
                SideBuffer::new(baseline, step),
                SideBuffer::new(canary, step),
            ],
            bytes: 0,
            watermark: f64::NEG_INFINITY,
            ended: false,
        });
    }

    /// Gives the sides of `id` event-time windows `[start, end)`: a record stamped outside a
    /// side's window is not routed to it. A before/after analysis of one pod matches both sides'
    /// attributes with every record; its windows tell the sides apart. Metric points that fall
    /// outside are not added either.
    pub fn set_windows(&self, id: &str, windows: [Option<(f64, f64)>; 2]) {
        let mut st = self.lock();
        if let Some(a) = st.analyses.iter_mut().find(|a| a.id == id) {
            for (side, w) in a.sides.iter_mut().zip(windows) {
                side.window = w;
                side.metrics.window = w;
            }
        }
    }

    /// Starts the metric grid of `id` at `origin` (its first interval's start) instead of the
    /// epoch: with interval ends on step boundaries, a step's readings belong to exactly the
    /// interval that holds them, as the engine would place the raw points. Call it before
    /// points arrive.
    pub fn align(&self, id: &str, origin: f64) {
        let mut st = self.lock();
        if let Some(a) = st.analyses.iter_mut().find(|a| a.id == id) {
            for side in &mut a.sides {
                side.metrics.origin = origin;
            }
        }
    }

    /// Marks the input of `id` complete: the runner of an event-time analysis closes its
    /// remaining intervals. `false` when `id` is not registered.
    pub fn end_input(&self, id: &str) -> bool {
        let mut st = self.lock();
        match st.analyses.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                a.ended = true;
                true
            }
            None => false,
        }
    }

    /// The event-time progress of `id`: its watermark (the latest event time received for
    /// either side: log records, spans and metric points) and whether its input ended. `None`
    /// when `id` is not registered.
    pub fn progress(&self, id: &str) -> Option<(f64, bool)> {
        let st = self.lock();
        let a = st.analyses.iter().find(|a| a.id == id)?;
        let metrics = a
            .sides
            .iter()
            .map(|s| s.metrics.latest)
            .fold(f64::NEG_INFINITY, f64::max);
        Some((a.watermark.max(metrics), a.ended))
    }

    /// Stops routing to `id` and releases its bytes.
    pub fn unregister(&self, id: &str) {
        let mut st = self.lock();
        if let Some(i) = st.analyses.iter().position(|a| a.id == id) {
            let a = st.analyses.swap_remove(i);
            st.used = st.used.saturating_sub(a.bytes);
        }
    }

    /// Whether `id` is registered.
    pub fn is_registered(&self, id: &str) -> bool {
        self.lock().analyses.iter().any(|a| a.id == id)
    }

    /// Takes what `id` received: log records and spans so far, metric steps ending by `until`.
    /// `None` when `id` is not registered.
    pub fn drain(&self, id: &str, until: f64) -> Option<[Drained; 2]> {
        let mut st = self.lock();
        let now = crate::service::runner::now_s();
        // Children whose parent never came are given up on here too (no request may arrive).
        let expired = st.join.expire(now);
        ReceiverCounters::add(&self.counters.dropped, Signal::Traces, expired);
        let a = st.analyses.iter_mut().find(|a| a.id == id)?;
        let mut out: [Drained; 2] = Default::default();
        for (side, d) in a.sides.iter_mut().zip(out.iter_mut()) {
            d.logs = std::mem::take(&mut side.logs);
            d.spans = std::mem::take(&mut side.spans);
            d.metrics = side.metrics.drain(until);
            d.late_points = std::mem::take(&mut side.metrics.late);
        }
        let late: u64 = out.iter().map(|d| d.late_points).sum();
        ReceiverCounters::add(&self.counters.dropped, Signal::Metrics, late);
        drop(st);
        // In time order (stable: arrival order among equal times), sorted here once, outside
        // the lock: the session inserts each record at its place in time, which for records
        // from concurrent exporters arriving interleaved was a `Vec::insert` in the middle per
        // record — quadratic, minutes of memmove for an interval of a few million records
        // (benches/otlp.rs). Sorted, each goes at the end.
        for d in &mut out {
            d.logs.sort_by(|a, b| key(a.time).total_cmp(&key(b.time)));
            d.spans.sort_by(|a, b| a.start.total_cmp(&b.start));
        }
        Some(out)
    }

    fn check_budget(&self, st: &State, incoming: usize) -> Result<(), Refusal> {
        let used = st.used + st.join.bytes();
        if used.saturating_add(incoming) > self.budget {
            return Err(Refusal::OverBudget {
                budget: self.budget,
                used,
                retry_after_s: 5,
            });
        }
        Ok(())
    }

    /// Counts an export of `size` bytes holding `n` records of `sig`, and locks the state for it
    /// unless it would exceed the budget (then all `n` are counted refused).
    fn admit(&self, sig: Signal, size: usize, n: usize) -> Result<MutexGuard<'_, State>, Refusal> {
        ReceiverCounters::add(&self.counters.bytes, sig, size as u64);
        let st = self.lock();
        if let Err(e) = self.check_budget(&st, size) {
            ReceiverCounters::add(&self.counters.refused, sig, n as u64);
            return Err(e);
        }
        Ok(st)
    }

    /// Routes one logs export of `size` bytes.
    pub fn logs(&self, req: ExportLogsServiceRequest, size: usize) -> Result<Outcome, Refusal> {
        let n: usize = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let sig = Signal::Logs;
        let mut st = self.admit(sig, size, n)?;
        let mut out = Outcome::default();
        let st = &mut *st;
        for rl in req.resource_logs {
            let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.attributes).unwrap_or_default();
                let targets = targets(&st.analyses, &resource, &scope);
                if targets.is_empty() {
                    // Dropped before anything is converted.
                    out.unmatched += sl.log_records.len() as u64;
                    continue;
                }
                for r in &sl.log_records {
                    match convert::log_record(r) {
                        Err(why) => out.reject(why),
                        Ok((rec, capped)) => {
                            out.capped += u64::from(capped);
                            out.accepted += 1;
                            let b = log_bytes(&rec);
                            let t = rec.time.unwrap_or(f64::NEG_INFINITY);
                            for &(ai, role) in &targets {
                                let a = &mut st.analyses[ai];
                                a.watermark = a.watermark.max(t);
                                if !takes(a, role, t) {
                                    continue;
                                }
                                a.bytes += b;
                                st.used += b;
                                a.sides[role_index(role)].logs.push(rec.clone());
                            }
                        }
                    }
                }
            }
        }
        self.count(sig, &out);
        Ok(out)
    }

    fn count(&self, sig: Signal, out: &Outcome) {
        let c = &self.counters;
        ReceiverCounters::add(&c.accepted, sig, out.accepted);
        ReceiverCounters::add(&c.refused, sig, out.rejected);
        ReceiverCounters::add(&c.dropped, sig, out.unmatched);
        ReceiverCounters::add(&c.capped, sig, out.capped);
    }

    /// Routes one traces export of `size` bytes. Every valid span goes through the join (a
    /// span no scope selects may be a caller of one that is selected); spans of a matched
    /// resource also go to their analyses as they are.
    pub fn traces(&self, req: ExportTraceServiceRequest, size: usize) -> Result<Outcome, Refusal> {
        let n: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let sig = Signal::Traces;
        let mut st = self.admit(sig, size, n)?;
        let now = crate::service::runner::now_s();
        let mut out = Outcome::default();
        let st = &mut *st;
        let expired = st.join.expire(now);
        ReceiverCounters::add(&self.counters.dropped, sig, expired);
        for rs in req.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            let who = convert::identity(&resource);
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.attributes).unwrap_or_default();
                let all_targets = targets(&st.analyses, &resource, &scope);
                for s in &ss.spans {
                    let span = match convert::span(s) {
                        Ok(span) => span,
                        Err(why) => {
                            out.reject(why);
                            continue;
                        }
                    };
                    if s.name.len() > convert::MAX_NAME_BYTES {
                        out.capped += 1;
                    }
                    for &(ai, _) in &all_targets {
                        let a = &mut st.analyses[ai];
                        a.watermark = a.watermark.max(span.start);
                    }
                    // The sides whose window holds the span (an edge into it goes there too).
                    let targets: Vec<(usize, Role)> = all_targets
                        .iter()
                        .copied()
                        .filter(|&(ai, role)| takes(&st.analyses[ai], role, span.start))
                        .collect();
                    let ids: Vec<(String, Role)> = targets
                        .iter()
                        .map(|&(ai, role)| (st.analyses[ai].id.clone(), role))
                        .collect();
                    if all_targets.is_empty() {
                        out.unmatched += 1;
                    } else {
                        out.accepted += 1;
                        let b = span_bytes(&span);
                        for &(ai, role) in &targets {
                            let a = &mut st.analyses[ai];
                            a.bytes += b;
                            st.used += b;
                            a.sides[role_index(role)].spans.push(span.clone());
                        }
                    }
                    for (edge, to) in st.join.add(span, &who, &ids, now) {
                        let b = span_bytes(&edge);
                        for (id, role) in to {
                            if let Some(a) = st.analyses.iter_mut().find(|a| a.id == id) {
                                a.bytes += b;
                                st.used += b;
                                a.sides[role_index(role)].spans.push(edge.clone());
                            }
                        }
                    }
                }
            }
        }
        // Unmatched spans are kept for the join, not dropped: counted as dropped only if they
        // leave it unjoined (`expire`).
        let c = &self.counters;
        ReceiverCounters::add(&c.accepted, sig, out.accepted + out.unmatched);
        ReceiverCounters::add(&c.refused, sig, out.rejected);
        ReceiverCounters::add(&c.capped, sig, out.capped);
        // Not a warning for the client: they were not dropped.
        out.unmatched = 0;
        Ok(out)
    }

    /// Routes one metrics export of `size` bytes. Counts data points.
    pub fn metrics(
        &self,
        req: ExportMetricsServiceRequest,
        size: usize,
    ) -> Result<Outcome, Refusal> {
        let sig = Signal::Metrics;
        let n: usize = req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(points)
            .sum();
        let mut st = self.admit(sig, size, n)?;
        let mut out = Outcome::default();
        let st = &mut *st;
        for rm in req.resource_metrics {
            let resource = rm.resource.map(|r| r.attributes).unwrap_or_default();
            let who = convert::identity(&resource);
            for sm in rm.scope_metrics {
                let scope = sm.scope.map(|s| s.attributes).unwrap_or_default();
                let targets = targets(&st.analyses, &resource, &scope);
                if targets.is_empty() {
                    out.unmatched += sm.metrics.iter().map(points).sum::<usize>() as u64;
                    continue;
                }
                for m in &sm.metrics {
                    for &(ai, role) in &targets {
                        let a = &mut st.analyses[ai];
                        let series = &mut a.sides[role_index(role)].metrics;
                        let before = series.bytes();
                        let (ok, bad) = add_metric(series, m, &who);
                        let after = series.bytes();
                        let grew = after.saturating_sub(before);
                        a.bytes += grew;
                        st.used += grew;
                        // Counted once per point, not once per analysis it went to.
                        if role == targets[0].1 && ai == targets[0].0 {
                            out.accepted += ok;
                            for _ in 0..bad {
                                out.reject(Invalid::NoTime);
                            }
                        }
                    }
                }
            }
        }
        self.count(sig, &out);
        Ok(out)
    }
}

/// A log record's place in time; untimed ones first (the session drops them).
fn key(t: Option<f64>) -> f64 {
    t.unwrap_or(f64::NEG_INFINITY)
}

/// The (analysis index, side) pairs whose matchers hold on these attributes.
fn targets(
    analyses: &[Registered],
    resource: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    scope: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(usize, Role)> {
    let mut out = Vec::new();
    for (i, a) in analyses.iter().enumerate() {
        for role in ROLES {
            let m = &a.sides[role_index(role)].matchers;
            if !m.is_empty() && convert::matches(m, resource, scope) {
                out.push((i, role));
            }
        }
    }
    out
}

fn points(m: &opentelemetry_proto::tonic::metrics::v1::Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a counter above 2^53 loses its last digits, as in Prometheus"
    )]
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn series_key(
    who: &str,
    name: &str,
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> String {
    let mut k = format!("{who}|{name}|");
    for kv in attrs {
        k.push_str(&kv.key);
        k.push('=');
        k.push_str(
            &kv.value
                .as_ref()
                .map(convert::value_text)
                .unwrap_or_default(),
        );
        k.push(';');
    }
    k
}

/// What a histogram point of either kind (explicit or exponential buckets) contributes: its count
/// and sum; the buckets themselves are not judged.
struct Distribution<'a> {
    time: u64,
    start: u64,
    sum: Option<f64>,
    count: u64,
    attributes: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
}

/// Adds histogram points as `NAME.count` (observations per step) and `NAME` (their mean), the
/// cumulative ones differenced per series; `count` tallies each point as in [`add_metric`].
fn add_distribution<'a>(
    series: &mut MetricSeries,
    who: &str,
    name: &str,
    cumulative: bool,
    points: impl Iterator<Item = Distribution<'a>>,
    count: &mut impl FnMut(bool, u64),
) {
    for p in points {
        let t = convert::seconds(p.time);
        #[allow(clippy::cast_precision_loss, reason = "observation counts")]
        let (sum, n) = (p.sum.unwrap_or(f64::NAN), p.count as f64);
        let (sum, n) = if cumulative {
            series.delta(series_key(who, name, p.attributes), p.start, sum, n)
        } else {
            (sum, n)
        };
        let added = p.time != 0 && series.add(&format!("{name}.count"), Combine::Total, t, n, 0.0);
        if p.sum.is_some() && p.time != 0 {
            series.add(name, Combine::Ratio, t, sum, n);
        }
        count(added, p.time);
    }
}

/// Adds one metric's points to a side's series: (points added, points without a time).
/// Gauges and non-monotonic sums are levels (averaged per step); monotonic sums are counters
/// (increments summed per step; cumulative points differenced per series, a reset starting
/// over); histograms give `NAME` (mean: sum over count) and `NAME.count` (observations).
/// Exponential histograms and summaries: their count and mean the same way.
fn add_metric(
    series: &mut MetricSeries,
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    who: &str,
) -> (u64, u64) {
    let cumulative = |t: i32| t == AggregationTemporality::Cumulative as i32;
    let name = m.name.as_str();
    let mut ok = 0;
    let mut bad = 0;
    let mut count = |added: bool, t: u64| {
        if t == 0 {
            bad += 1;
        } else if added {
            ok += 1;
        }
    };
    match &m.data {
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                let t = convert::seconds(p.time_unix_nano);
                let added =
                    p.time_unix_nano != 0 && series.add(name, Combine::Mean, t, number(p), 1.0);
                count(added, p.time_unix_nano);
            }
        }
        Some(Data::Sum(s)) => {
            for p in &s.data_points {
                let t = convert::seconds(p.time_unix_nano);
                let v = number(p);
                let added = p.time_unix_nano != 0
                    && if !s.is_monotonic {
                        series.add(name, Combine::Mean, t, v, 1.0)
                    } else if cumulative(s.aggregation_temporality) {
                        let (d, _) = series.delta(
                            series_key(who, name, &p.attributes),
                            p.start_time_unix_nano,
                            v,
                            0.0,
                        );
                        series.add(name, Combine::Total, t, d, 0.0)
                    } else {
                        series.add(name, Combine::Total, t, v, 0.0)
                    };
                count(added, p.time_unix_nano);
            }
        }
        Some(Data::Histogram(h)) => add_distribution(
            series,
            who,
            name,
            cumulative(h.aggregation_temporality),
            h.data_points.iter().map(|p| Distribution {
                time: p.time_unix_nano,
                start: p.start_time_unix_nano,
                sum: p.sum,
                count: p.count,
                attributes: &p.attributes,
            }),
            &mut count,
        ),
        Some(Data::ExponentialHistogram(h)) => add_distribution(
            series,
            who,
            name,
            cumulative(h.aggregation_temporality),
            h.data_points.iter().map(|p| Distribution {
                time: p.time_unix_nano,
                start: p.start_time_unix_nano,
                sum: p.sum,
                count: p.count,
                attributes: &p.attributes,
            }),
            &mut count,
        ),
        Some(Data::Summary(s)) =>
        {
            #[allow(clippy::cast_precision_loss, reason = "observation counts")]
            for p in &s.data_points {
                let t = convert::seconds(p.time_unix_nano);
                let (sum, n) = series.delta(
                    series_key(who, name, &p.attributes),
                    p.start_time_unix_nano,
                    p.sum,
                    p.count as f64,
                );
                let added = p.time_unix_nano != 0
                    && series.add(&format!("{name}.count"), Combine::Total, t, n, 0.0);
                if p.time_unix_nano != 0 {
                    series.add(name, Combine::Ratio, t, sum, n);
                }
                count(added, p.time_unix_nano);
            }
        }
        None => {}
    }
    (ok, bad)
}

#[cfg(test)]
mod tests;
