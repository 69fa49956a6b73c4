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
//! Memory: everything routed to an analysis counts against one byte budget — what the records
//! really hold (`log_cost`, `span_cost`: allocator rounding, vector capacity, the session's
//! copy while it takes them in) — until the runner has drained them and the session has reduced
//! them to its judges' state ([`Hub::release`]); a request that would exceed it is refused whole
//! ([`Refusal::OverBudget`]), and the client retries later. The join holds a bounded number of
//! spans for a bounded time.
//!
//! [`receiver`] puts OTLP/gRPC and OTLP/HTTP in front of the hub.

pub mod convert;
pub mod join;
pub mod receiver;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, NumberDataPoint,
};

use self::convert::{Combine, Invalid, LiveSpan, MetricSeries};
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
    spans: Vec<LiveSpan>,
    metrics: MetricSeries,
    /// Bytes of `logs` and `spans` (see [`log_cost`], [`span_cost`]), `Vec` capacity included.
    bytes: usize,
}

impl SideBuffer {
    fn new(matchers: Vec<(String, String)>, step: f64) -> Self {
        SideBuffer {
            matchers,
            window: None,
            logs: Vec::new(),
            spans: Vec::new(),
            metrics: MetricSeries::new(step),
            bytes: 0,
        }
    }
}

#[derive(Debug)]
struct Registered {
    /// The hub's own key for it: stable while it is registered, never reused.
    key: u64,
    id: String,
    sides: [SideBuffer; 2],
    /// Bytes held for this analysis: what its buffers hold, plus what the runner drained and
    /// has not yet released ([`Hub::release`]) — the records until the session has reduced
    /// them to its judges' state.
    bytes: usize,
    /// The latest event time (Unix seconds) of a log record or span matching either side.
    watermark: f64,
    /// The client said no more data will come ([`Hub::end_input`]).
    ended: bool,
    /// Some record has been routed here.
    received: bool,
    /// Told when the first record is routed here ([`Hub::first_record`]).
    on_first: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Registered {
    /// Notes that a record was routed here.
    fn receive(&mut self) {
        self.received = true;
        if let Some(tx) = self.on_first.take() {
            // The runner may have ended: then nobody needs to know.
            let _ = tx.send(());
        }
    }
}

/// What the runner takes from the hub at an interval, for one side.
#[derive(Debug, Default, Clone)]
pub struct Drained {
    /// Log records, in time order.
    pub logs: Vec<LogRecord>,
    /// Spans, callers' spans (with an edge) among them, in time order.
    pub spans: Vec<Span>,
    /// Metric readings: time, name, value.
    pub metrics: Vec<(f64, String, f64)>,
    /// Metric points that arrived for a step already drained.
    pub late_points: u64,
    /// Bytes these records count against the budget: still counted until the runner hands
    /// them back with [`Hub::release`] (once the session has reduced them to its state).
    pub held_bytes: usize,
    /// Of `held_bytes`, those of records stamped at or after the drain's `until`: the session
    /// keeps them pending until a later interval's judgement admits them.
    pub held_after: usize,
}

#[derive(Debug)]
struct State {
    analyses: Vec<Registered>,
    join: Join,
    used: usize,
    next_key: u64,
}

impl State {
    /// Appends one request's groups to the buffers `field` picks on each routed analysis side,
    /// counting their bytes, and moves each analysis's watermark. Routes whose analysis left
    /// since the snapshot are skipped.
    fn append_groups<T>(
        &mut self,
        routes: &[Route],
        groups: Groups<T>,
        field: impl Fn(&mut SideBuffer) -> &mut Vec<T>,
        cost: impl Fn(&T) -> usize + Copy,
    ) {
        for (route, (items, mark)) in routes
            .iter()
            .zip(groups.items.into_iter().zip(groups.marks))
        {
            let Some(a) = self.analyses.iter_mut().find(|a| a.key == route.key) else {
                continue;
            };
            a.watermark = a.watermark.max(mark);
            let mut any = false;
            for (side, records) in a.sides.iter_mut().zip(items) {
                if records.is_empty() {
                    continue;
                }
                let b = append(field(side), records, cost);
                side.bytes += b;
                a.bytes += b;
                self.used += b;
                any = true;
            }
            if any {
                a.receive();
            }
        }
    }
}

/// One side's matchers and event-time window.
type RouteSide = (Vec<(String, String)>, Option<(f64, f64)>);

/// One analysis as the request path routes to it, without the hub's lock: a copy of its
/// matchers and windows, replaced whenever they change.
#[derive(Debug)]
struct Route {
    key: u64,
    sides: [RouteSide; 2],
}

impl Route {
    fn takes(&self, role: Role, t: f64) -> bool {
        self.sides[role_index(role)]
            .1
            .is_none_or(|(a, b)| t >= a && t < b)
    }
}

/// The router between the receivers and the running analyses.
///
/// A request is converted without the lock: the routing table is a snapshot (`Route`), and
/// records are converted and grouped per analysis side first; the lock is then taken once per
/// request to append the groups (and to run the caller join, whose work per span is a hash of
/// fixed-size ids).
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    routes: Mutex<Arc<Vec<Route>>>,
    /// `used` plus the join's bytes, readable without the lock (the admission check).
    held: AtomicUsize,
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

/// Bytes the allocator takes for a request of `n` bytes: glibc's malloc rounds `n` plus its
/// 8-byte header up to 16, at least 32 (measured: `tests/ingest_memory.rs`).
pub(crate) fn alloc_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Slots a drained record takes besides its own while the session takes it in: the session's
/// vector, which grows by doubling (up to two slots a record) while the drained one is still
/// whole (the bench measured about 190 MiB above a 512 MiB budget before they were counted).
const INGEST_SLOTS: usize = 2;

/// Bytes a log record holds outside its `Vec` slot: its body and severity text, and the slots
/// it takes in the session's vector while the session takes it in ([`INGEST_SLOTS`]).
pub(crate) fn log_cost(r: &LogRecord) -> usize {
    alloc_bytes(r.body.capacity())
        + r.severity.as_ref().map_or(0, |s| alloc_bytes(s.capacity()))
        + INGEST_SLOTS * std::mem::size_of::<LogRecord>()
}

/// Bytes a span holds once drained ([`convert::LiveSpan::into_span`]: hex ids, owned names),
/// slot included, and its slots in the session's vector ([`INGEST_SLOTS`]). With the slot it had in the hub (counted by [`append`]), both of which exist
/// while it is converted, this is its peak.
pub(crate) fn span_cost(s: &LiveSpan) -> usize {
    (1 + INGEST_SLOTS) * std::mem::size_of::<Span>()
        + alloc_bytes(32)
        + alloc_bytes(16)
        + s.parent.map_or(0, |_| alloc_bytes(16))
        + alloc_bytes(s.operation.len())
        + s.caller
            .as_ref()
            .map_or(0, |c| alloc_bytes(16) + alloc_bytes(c.operation.len()))
}

/// Appends `items` to `v`, returning the bytes it grew by: new capacity times the slot size
/// plus `cost` of each item.
fn append<T>(v: &mut Vec<T>, items: Vec<T>, cost: impl Fn(&T) -> usize) -> usize {
    let before = v.capacity();
    let heap: usize = items.iter().map(cost).sum();
    if v.is_empty() && v.capacity() < items.len() {
        // The batch's own allocation becomes the buffer.
        *v = items;
    } else {
        v.extend(items);
    }
    heap + v.capacity().saturating_sub(before) * std::mem::size_of::<T>()
}

/// The engine's spans of `live`, stably sorted by start. The sort moves 16-byte keys, not
/// spans: a stable sort of the spans themselves (about 150 bytes each) took a scratch copy of
/// half the interval and a tenth of the server's time under span load (benches/otlp.rs).
fn in_time_order(live: Vec<LiveSpan>) -> Vec<Span> {
    // Arrival order breaks ties, so an unstable sort of (start, index) is stable in effect.
    let mut order: Vec<(f64, usize)> = live.iter().map(|s| s.start).zip(0..).collect();
    if order.is_sorted_by(|a, b| a.0.total_cmp(&b.0).is_le()) {
        return live.into_iter().map(LiveSpan::into_span).collect();
    }
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut slots: Vec<Option<LiveSpan>> = live.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| slots.get_mut(i).and_then(Option::take))
        .map(LiveSpan::into_span)
        .collect()
}

/// Per (route, side) groups of one request, built without the lock.
struct Groups<T> {
    items: Vec<[Vec<T>; 2]>,
    /// Latest event time per route (its watermark), whether or not a window took the record.
    marks: Vec<f64>,
}

impl<T> Groups<T> {
    fn new(routes: usize) -> Self {
        Groups {
            items: (0..routes).map(|_| [Vec::new(), Vec::new()]).collect(),
            marks: vec![f64::NEG_INFINITY; routes],
        }
    }
}

impl Hub {
    /// A hub holding at most `budget` bytes of pushed telemetry.
    pub fn new(budget: usize) -> Self {
        Hub {
            state: Mutex::new(State {
                analyses: Vec::new(),
                join: Join::default(),
                used: 0,
                next_key: 1,
            }),
            routes: Mutex::new(Arc::new(Vec::new())),
            held: AtomicUsize::new(0),
            budget,
            counters: ReceiverCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the state consistent between statements.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn routes(&self) -> Arc<Vec<Route>> {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes the routing table of `st` (call with the state locked, after a change).
    fn publish(&self, st: &State) {
        let table: Vec<Route> = st
            .analyses
            .iter()
            .map(|a| Route {
                key: a.key,
                sides: [
                    (a.sides[0].matchers.clone(), a.sides[0].window),
                    (a.sides[1].matchers.clone(), a.sides[1].window),
                ],
            })
            .collect();
        *self.routes.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    /// Updates the lock-free copy of the bytes held (call with the state locked).
    fn settle(&self, st: &State) {
        self.held
            .store(st.used + st.join.bytes(), Ordering::Relaxed);
    }

    /// The receiver counters.
    pub fn counters(&self) -> &ReceiverCounters {
        &self.counters
    }

    /// Bytes held for running analyses (buffered, or drained and not yet released) and the
    /// join.
    pub fn used(&self) -> usize {
        let st = self.lock();
        st.used + st.join.bytes()
    }

    /// Bytes held for running analyses, and bytes held by the caller join.
    pub fn used_parts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.used, st.join.bytes())
    }

    /// The budget, bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Resolves when the first record is routed to `id` (at once if one was already); `None`
    /// when `id` is not registered. The runner stores that moment: after a restart, an analysis
    /// that had received pushed records knows they were lost (the hub holds them in memory).
    pub fn first_record(&self, id: &str) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut st = self.lock();
        let a = st.analyses.iter_mut().find(|a| a.id == id)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if a.received {
            let _ = tx.send(());
        } else {
            a.on_first = Some(tx);
        }
        Some(rx)
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
        let key = st.next_key;
        st.next_key += 1;
        st.analyses.push(Registered {
            key,
            id: id.to_owned(),
            sides: [
                SideBuffer::new(baseline, step),
                SideBuffer::new(canary, step),
            ],
            bytes: 0,
            watermark: f64::NEG_INFINITY,
            ended: false,
            received: false,
            on_first: None,
        });
        self.publish(&st);
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
        self.publish(&st);
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

    /// Stops routing to `id` and releases its bytes (drained ones too).
    pub fn unregister(&self, id: &str) {
        let mut st = self.lock();
        if let Some(i) = st.analyses.iter().position(|a| a.id == id) {
            let a = st.analyses.swap_remove(i);
            st.used = st.used.saturating_sub(a.bytes);
            self.publish(&st);
            self.settle(&st);
        }
    }

    /// Whether `id` is registered.
    pub fn is_registered(&self, id: &str) -> bool {
        self.lock().analyses.iter().any(|a| a.id == id)
    }

    /// Takes what `id` received: log records and spans so far, metric steps ending by `until`.
    /// `None` when `id` is not registered. The records stay counted against the budget
    /// ([`Drained::held_bytes`]) until the caller hands them back with [`Hub::release`].
    pub fn drain(&self, id: &str, until: f64) -> Option<[Drained; 2]> {
        let mut out: [Drained; 2] = Default::default();
        let mut live: [Vec<LiveSpan>; 2] = Default::default();
        {
            let mut st = self.lock();
            let now = crate::service::runner::now_s();
            // Children whose parent never came are given up on here too (no request may arrive).
            let expired = st.join.expire(now);
            ReceiverCounters::add(&self.counters.dropped, Signal::Traces, expired);
            let st = &mut *st;
            let a = st.analyses.iter_mut().find(|a| a.id == id)?;
            let mut metric_freed = 0;
            for ((side, d), spans) in a.sides.iter_mut().zip(out.iter_mut()).zip(live.iter_mut()) {
                d.logs = std::mem::take(&mut side.logs);
                *spans = std::mem::take(&mut side.spans);
                d.held_bytes = std::mem::take(&mut side.bytes);
                let before = side.metrics.bytes();
                d.metrics = side.metrics.drain(until);
                metric_freed += before.saturating_sub(side.metrics.bytes());
                d.late_points = std::mem::take(&mut side.metrics.late);
            }
            // Closed metric steps become a few readings: released now.
            let freed = metric_freed.min(a.bytes);
            a.bytes -= freed;
            st.used = st.used.saturating_sub(freed);
            self.settle(st);
        }
        let late: u64 = out.iter().map(|d| d.late_points).sum();
        ReceiverCounters::add(&self.counters.dropped, Signal::Metrics, late);
        // In time order (stable: arrival order among equal times), sorted here once and outside
        // the lock (the guard is dropped above: converting and sorting an interval of half a
        // million spans under it stalled every export for a quarter of a second — the spans'
        // p99 in benches/otlp.rs): the session inserts each record at its place in time, which
        // for records from concurrent exporters arriving interleaved was a `Vec::insert` in
        // the middle per record — quadratic, minutes of memmove for an interval of a few
        // million records (benches/otlp.rs). Sorted, each goes at the end.
        for (d, spans) in out.iter_mut().zip(live) {
            d.logs.sort_by(|a, b| key(a.time).total_cmp(&key(b.time)));
            let slot = std::mem::size_of::<LogRecord>();
            d.held_after = d
                .logs
                .iter()
                .filter(|r| r.time.is_some_and(|t| t >= until))
                .map(|r| log_cost(r) + slot)
                .sum();
            d.held_after += spans
                .iter()
                .filter(|s| s.start >= until)
                .map(|s| span_cost(s) + std::mem::size_of::<LiveSpan>())
                .sum::<usize>();
            d.spans = in_time_order(spans);
            d.held_after = d.held_after.min(d.held_bytes);
        }
        Some(out)
    }

    /// Hands back `bytes` drained from `id` ([`Drained::held_bytes`]) once the session has
    /// taken them in: they no longer count against the budget. Nothing when `id` ended.
    pub fn release(&self, id: &str, bytes: usize) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(a) = st.analyses.iter_mut().find(|a| a.id == id) {
            let b = bytes.min(a.bytes);
            a.bytes -= b;
            st.used = st.used.saturating_sub(b);
            self.settle(st);
        }
    }

    fn check_budget(&self, incoming: usize) -> Result<(), Refusal> {
        let used = self.held.load(Ordering::Relaxed);
        if used.saturating_add(incoming) > self.budget {
            return Err(Refusal::OverBudget {
                budget: self.budget,
                used,
                retry_after_s: 5,
            });
        }
        Ok(())
    }

    /// Counts an export of `size` bytes holding `n` records of `sig`, and admits it unless it
    /// would exceed the budget (then all `n` are counted refused). Requests converted at the
    /// same time may together pass the budget by their own size.
    fn admit(&self, sig: Signal, size: usize, n: usize) -> Result<(), Refusal> {
        ReceiverCounters::add(&self.counters.bytes, sig, size as u64);
        if let Err(e) = self.check_budget(size) {
            ReceiverCounters::add(&self.counters.refused, sig, n as u64);
            return Err(e);
        }
        Ok(())
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
        self.admit(sig, size, n)?;
        let routes = self.routes();
        let mut out = Outcome::default();
        let mut groups = Groups::<LogRecord>::new(routes.len());
        let mut takers: Vec<(usize, Role)> = Vec::new();
        for rl in req.resource_logs {
            let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.attributes).unwrap_or_default();
                let targets = route_targets(&routes, &resource, &scope);
                if targets.is_empty() {
                    // Dropped before anything is converted.
                    out.unmatched += sl.log_records.len() as u64;
                    continue;
                }
                for r in sl.log_records {
                    match convert::log_record(r) {
                        Err(why) => out.reject(why),
                        Ok((rec, capped)) => {
                            out.capped += u64::from(capped);
                            out.accepted += 1;
                            let t = rec.time.unwrap_or(f64::NEG_INFINITY);
                            takers.clear();
                            for &(ri, role) in &targets {
                                groups.marks[ri] = groups.marks[ri].max(t);
                                if routes[ri].takes(role, t) {
                                    takers.push((ri, role));
                                }
                            }
                            // Moved into the last side that takes it, cloned for the others.
                            if let Some((&(ri, role), rest)) = takers.split_last() {
                                for &(rj, rrole) in rest {
                                    groups.items[rj][role_index(rrole)].push(rec.clone());
                                }
                                groups.items[ri][role_index(role)].push(rec);
                            }
                        }
                    }
                }
            }
        }
        if out.accepted > 0 {
            let mut st = self.lock();
            let st = &mut *st;
            st.append_groups(&routes, groups, |side| &mut side.logs, log_cost);
            self.settle(st);
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
        self.admit(sig, size, n)?;
        let routes = self.routes();
        let now = crate::service::runner::now_s();
        let mut out = Outcome::default();
        let mut groups = Groups::<LiveSpan>::new(routes.len());
        // Converted without the lock: each span, who emitted it, and the sides it goes to
        // (`to[from..until]`, as (route key, side)).
        let mut spans: Vec<(LiveSpan, usize, usize, usize)> = Vec::with_capacity(n);
        let mut whos: Vec<Arc<str>> = Vec::new();
        let mut to: Vec<join::Target> = Vec::new();
        for rs in req.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            whos.push(Arc::from(convert::identity(&resource)));
            let who = whos.len() - 1;
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.attributes).unwrap_or_default();
                let all_targets = route_targets(&routes, &resource, &scope);
                for s in ss.spans {
                    let long = s.name.len() > convert::MAX_NAME_BYTES;
                    let span = match convert::span(s) {
                        Ok(span) => span,
                        Err(why) => {
                            out.reject(why);
                            continue;
                        }
                    };
                    out.capped += u64::from(long);
                    if all_targets.is_empty() {
                        out.unmatched += 1;
                    } else {
                        out.accepted += 1;
                    }
                    let from = to.len();
                    for &(ri, role) in &all_targets {
                        groups.marks[ri] = groups.marks[ri].max(span.start);
                        // The sides whose window holds the span (an edge into it goes there too).
                        if routes[ri].takes(role, span.start) {
                            groups.items[ri][role_index(role)].push(span.clone());
                            to.push((routes[ri].key, role));
                        }
                    }
                    spans.push((span, who, from, to.len()));
                }
            }
        }
        let mut edges = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let expired = st.join.expire(now);
            ReceiverCounters::add(&self.counters.dropped, sig, expired);
            for (span, who, from, until) in spans {
                st.join
                    .add(span, &whos[who], &to[from..until], now, &mut edges);
            }
            st.append_groups(&routes, groups, |side| &mut side.spans, span_cost);
            for (edge, to) in edges {
                for (key, role) in to {
                    if let Some(a) = st.analyses.iter_mut().find(|a| a.key == key) {
                        let side = &mut a.sides[role_index(role)];
                        let b = append(&mut side.spans, vec![edge.clone()], span_cost);
                        side.bytes += b;
                        a.bytes += b;
                        st.used += b;
                        a.receive();
                    }
                }
            }
            self.settle(st);
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
        self.admit(sig, size, n)?;
        let mut out = Outcome::default();
        let mut st = self.lock();
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
                        if ok > 0 {
                            a.receive();
                        }
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
        self.settle(st);
        self.count(sig, &out);
        Ok(out)
    }
}

/// A log record's place in time; untimed ones first (the session drops them).
fn key(t: Option<f64>) -> f64 {
    t.unwrap_or(f64::NEG_INFINITY)
}

/// The (route index, side) pairs whose matchers hold on these attributes.
fn route_targets(
    routes: &[Route],
    resource: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    scope: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(usize, Role)> {
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        for role in ROLES {
            let m = &r.sides[role_index(role)].0;
            if !m.is_empty() && convert::matches(m, resource, scope) {
                out.push((i, role));
            }
        }
    }
    out
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
