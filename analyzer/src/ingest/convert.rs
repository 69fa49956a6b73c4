//! OTLP records → the engine's telemetry ([`crate::telemetry`]): attribute values as text, log
//! records, spans, and metric points turned into per-step series.
//!
//! Every conversion is total: a record the engine cannot place (no time, a span id of the wrong
//! length) comes back as an [`Invalid`] reason, never a panic, so the receiver can count it in
//! `partial_success`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLog;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span as OtlpSpan};

use crate::telemetry::{capped_body, LogRecord, Span};

/// The longest span name or attribute value kept, in bytes: an operation name is a label, and
/// a longer one is a bug of the instrumentation, not information.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why one record was refused (the count goes to `partial_success`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Neither `time_unix_nano` nor `observed_time_unix_nano` is set.
    NoTime,
    /// `trace_id` is not 16 bytes or `span_id` not 8 (or all zero).
    BadId,
    /// The end of a span is before its start.
    NegativeDuration,
}

impl Invalid {
    /// For the `error_message` of a partial success.
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::NoTime => "log record without time_unix_nano or observed_time_unix_nano",
            Invalid::BadId => {
                "span with a trace_id that is not 16 bytes or a span_id that is not 8 (or all zero)"
            }
            Invalid::NegativeDuration => "span ending before it starts",
        }
    }
}

/// Nanoseconds since the epoch as Unix seconds.
#[allow(
    clippy::cast_precision_loss,
    reason = "ns since 1970 as f64 keeps sub-microsecond precision for centuries"
)]
pub fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// An attribute value as text: strings as they are, numbers and booleans printed, arrays and
/// maps as JSON-ish text (for matching and for a log body that is not a string).
pub fn value_text(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => {
            b.iter()
                .fold(String::with_capacity(b.len() * 2), |mut s, x| {
                    s.push_str(&format!("{x:02x}"));
                    s
                })
        }
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(value_text).collect();
            format!("[{}]", items.join(", "))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.key,
                        p.value.as_ref().map(value_text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        // String tables (profiles) are not used by logs, traces or metrics.
        #[allow(unreachable_patterns)]
        Some(_) => String::new(),
    }
}

/// The value of attribute `key`, as text.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// Whether every matcher `(key, value)` is an attribute of `resource` or, failing that, of the
/// instrumentation scope, with exactly that value.
pub fn matches(matchers: &[(String, String)], resource: &[KeyValue], scope: &[KeyValue]) -> bool {
    matchers.iter().all(|(k, v)| {
        let found = attr(resource, k).or_else(|| attr(scope, k));
        found.is_some_and(|a| match &a.value {
            Some(any_value::Value::StringValue(s)) => s == v,
            _ => value_text(a) == *v,
        })
    })
}

/// Who emitted a record: the resource attributes that tell one pod or service from another. Two
/// spans with different identities run in different processes — a parent with another identity
/// than its child is a caller.
pub fn identity(resource: &[KeyValue]) -> String {
    let mut id = String::new();
    for key in [
        "service.namespace",
        "service.name",
        "service.instance.id",
        "k8s.pod.name",
        "k8s.pod.uid",
        "host.name",
    ] {
        if let Some(v) = attr(resource, key) {
            id.push_str(key);
            id.push('=');
            id.push_str(&value_text(v));
            id.push(';');
        }
    }
    id
}

fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The engine's severity text for an OTLP severity number (1-24), when the record has no text.
fn severity_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    })
}

/// A log record: time (`time_unix_nano`, else `observed_time_unix_nano`), severity (its text,
/// else the name of its number), body as text. When the body is empty, `exception.type` and
/// `exception.message` attributes stand in for it (an SDK's `logger.exception` carries them
/// there). The bool is whether the body was capped at the engine's limit.
pub fn log_record(mut r: OtlpLog) -> Result<(LogRecord, bool), Invalid> {
    let ns = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    if ns == 0 {
        return Err(Invalid::NoTime);
    }
    let severity = if r.severity_text.is_empty() {
        severity_name(r.severity_number).map(str::to_owned)
    } else {
        Some(cap(std::mem::take(&mut r.severity_text), MAX_NAME_BYTES))
    };
    // A string body (the usual case) moves out of the decoded request: no copy.
    let mut body = match r.body.take() {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => s,
        other => other.as_ref().map(value_text).unwrap_or_default(),
    };
    if body.is_empty() {
        let parts: Vec<String> = ["exception.type", "exception.message"]
            .iter()
            .filter_map(|k| attr(&r.attributes, k).map(value_text))
            .collect();
        body = parts.join(": ");
    }
    let capped = match capped_body(&body) {
        Some(c) => {
            body = c.to_owned();
            true
        }
        None => false,
    };
    // What the record holds is what the budget counts: no spare capacity.
    body.shrink_to_fit();
    Ok((
        LogRecord {
            time: Some(seconds(ns)),
            severity,
            body,
        },
        capped,
    ))
}

/// Lower-case hex of an id (only where an id is printed: a drained span's text ids).
pub fn hex(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes first, one allocation, no per-char UTF-8 encoding (a tenth of the server's time
    // under span load went here): the digits are ASCII, so the conversion cannot fail.
    let mut b = Vec::with_capacity(id.len() * 2);
    for &x in id {
        b.push(DIGITS[usize::from(x >> 4)]);
        b.push(DIGITS[usize::from(x & 0xf)]);
    }
    String::from_utf8(b).unwrap_or_default()
}

/// A span as the hub and the join hold it until the runner takes it: ids as the fixed bytes
/// OTLP carries (hashed and compared without allocating; hex text only when drained, see
/// [`LiveSpan::into_span`]), the name shared between the copies routed to analyses and the one
/// the join keeps.
#[derive(Debug, Clone)]
pub struct LiveSpan {
    /// The trace id.
    pub trace: [u8; 16],
    /// The span id.
    pub id: [u8; 8],
    /// The parent's span id; `None` for a root span.
    pub parent: Option<[u8; 8]>,
    /// The span's name, capped at [`MAX_NAME_BYTES`].
    pub operation: std::sync::Arc<str>,
    /// Start, Unix seconds.
    pub start: f64,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// Error status, when the span has one.
    pub error: Option<bool>,
    /// Set by the join: the edge into the callee.
    pub caller: Option<LiveEdge>,
}

/// A caller's edge into the judged pod's span, as the hub holds it.
#[derive(Debug, Clone)]
pub struct LiveEdge {
    /// The callee's span id.
    pub callee: [u8; 8],
    /// The callee's name.
    pub operation: std::sync::Arc<str>,
    /// The callee's duration, ms.
    pub duration_ms: f64,
}

impl LiveSpan {
    /// The engine's span, ids as lower-case hex.
    pub fn into_span(self) -> Span {
        Span {
            trace_id: hex(&self.trace),
            span_id: hex(&self.id),
            parent_id: self.parent.map(|p| hex(&p)),
            operation: self.operation.as_ref().to_owned(),
            start: self.start,
            duration_ms: self.duration_ms,
            error: self.error,
            caller: self.caller.map(|c| crate::telemetry::CallerEdge {
                callee_span_id: hex(&c.callee),
                callee_operation: c.operation.as_ref().to_owned(),
                callee_duration_ms: c.duration_ms,
            }),
        }
    }
}

/// A span: ids as bytes, name as operation, start in seconds, duration in ms, error from its
/// status (Unset and Ok are not errors; no status: unknown). The caller edge is set by the
/// join, not here. Takes the span by value: its name moves, nothing else is allocated.
pub fn span(s: OtlpSpan) -> Result<LiveSpan, Invalid> {
    let zero = |id: &[u8]| id.iter().all(|b| *b == 0);
    let (Ok(trace), Ok(id)) = (
        <[u8; 16]>::try_from(s.trace_id.as_slice()),
        <[u8; 8]>::try_from(s.span_id.as_slice()),
    ) else {
        return Err(Invalid::BadId);
    };
    if zero(&trace) || zero(&id) {
        return Err(Invalid::BadId);
    }
    if s.end_time_unix_nano < s.start_time_unix_nano {
        return Err(Invalid::NegativeDuration);
    }
    let parent = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
        .ok()
        .filter(|p| !zero(p));
    let error = s
        .status
        .as_ref()
        .map(|st| st.code == StatusCode::Error as i32);
    #[allow(
        clippy::cast_precision_loss,
        reason = "a span's duration in ns fits f64's 53 bits for 104 days"
    )]
    let duration_ms = (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
    Ok(LiveSpan {
        trace,
        id,
        parent,
        operation: std::sync::Arc::from(cap(s.name, MAX_NAME_BYTES)),
        start: seconds(s.start_time_unix_nano),
        duration_ms,
        // No status at all says nothing (as a corpus without an error column): the judges then
        // leave error rates out rather than compare zeros.
        error,
        caller: None,
    })
}

/// How a metric's points combine within one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// A level (gauge, non-monotonic sum): the mean of the step's readings.
    Mean,
    /// Increments (a counter's deltas, a histogram's count): their total over the step.
    Total,
    /// A histogram's mean: total sum over total count.
    Ratio,
}

/// One step of one metric on one side: what its points added up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    num: f64,
    den: f64,
}

/// Metric points of one side turned into one reading per metric and step: gauges averaged,
/// counters' increments summed (cumulative points differenced per series, a counter reset
/// starting over), histograms as their mean and their count. Steps close at `until` when the
/// runner drains them; a point for a step already drained is late and counted.
#[derive(Debug, Default)]
pub struct MetricSeries {
    step: f64,
    /// (metric, step index) → combine rule and cell.
    cells: HashMap<(String, i64), (Combine, Cell)>,
    /// Cumulative series (identity + metric + point attributes) → start and last (value, count).
    last: HashMap<String, (u64, f64, f64)>,
    /// Steps before this index were drained.
    drained_below: i64,
    /// Points for drained steps.
    pub late: u64,
    /// Points stamped outside `[start, end)` are not this side's (see `Hub::set_windows`).
    pub window: Option<(f64, f64)>,
    /// The latest time of a point offered (in the window or not): the event-time watermark.
    pub latest: f64,
    /// Where the grid starts (Unix seconds): an analysis's first interval start, so that its
    /// interval ends are step boundaries and a step never straddles one.
    pub origin: f64,
}

impl MetricSeries {
    /// Series on a grid of `step` seconds (at least 1).
    pub fn new(step: f64) -> Self {
        MetricSeries {
            step: if step.is_finite() && step >= 1.0 {
                step
            } else {
                1.0
            },
            drained_below: i64::MIN,
            latest: f64::NEG_INFINITY,
            ..MetricSeries::default()
        }
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "step index of a finite time, clamped to i64 by `as`"
    )]
    fn index(&self, t: f64) -> i64 {
        ((t - self.origin) / self.step).floor() as i64
    }

    /// Adds a point; returns false when its step was already drained (late) or its value is
    /// not finite.
    pub fn add(&mut self, name: &str, combine: Combine, t: f64, num: f64, den: f64) -> bool {
        if !t.is_finite() || !num.is_finite() || !den.is_finite() {
            return false;
        }
        self.latest = self.latest.max(t);
        if self.window.is_some_and(|(a, b)| t < a || t >= b) {
            return false;
        }
        let i = self.index(t);
        if i < self.drained_below {
            self.late += 1;
            return false;
        }
        let (_, cell) = self
            .cells
            .entry((name.to_owned(), i))
            .or_insert((combine, Cell::default()));
        cell.num += num;
        cell.den += den;
        true
    }

    /// The increment of a cumulative point of series `key` started at `start_ns`: the first point
    /// and a decreasing series count from zero (a counter reset). A series is also told apart by
    /// its start, so a restart (new start time) is a new series counted from zero, and two
    /// processes that share a resource identity but not a start do not take each other's
    /// values for resets.
    pub fn delta(&mut self, key: String, start_ns: u64, value: f64, count: f64) -> (f64, f64) {
        let key = if start_ns == 0 {
            key
        } else {
            format!("{key}@{start_ns}")
        };
        let prev = self.last.insert(key, (start_ns, value, count));
        match prev {
            Some((s, v, c)) if s == start_ns && value >= v && count >= c => (value - v, count - c),
            _ => (value, count),
        }
    }

    /// Readings of every step that ends at or before `until`, as (time, name, value); those
    /// steps are closed. A reading is stamped at the middle of its step, so the interval whose
    /// end closes the step also contains it (the engine admits rows stamped before the end).
    pub fn drain(&mut self, until: f64) -> Vec<(f64, String, f64)> {
        let below = self.index(until);
        let mut out = Vec::new();
        let step = self.step;
        let origin = self.origin;
        self.cells.retain(|(name, i), (combine, cell)| {
            if *i >= below {
                return true;
            }
            #[allow(clippy::cast_precision_loss, reason = "step index back to seconds")]
            let t = origin + (*i as f64 + 0.5) * step;
            let v = match combine {
                Combine::Total => cell.num,
                Combine::Mean | Combine::Ratio if cell.den > 0.0 => cell.num / cell.den,
                _ => f64::NAN,
            };
            if v.is_finite() {
                out.push((t, name.clone(), v));
            }
            false
        });
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        self.drained_below = self.drained_below.max(below);
        out
    }

    /// Bytes held (for the budget).
    pub fn bytes(&self) -> usize {
        self.cells.keys().map(|(n, _)| n.len() + 64).sum::<usize>()
            + self.last.keys().map(|k| k.len() + 48).sum::<usize>()
    }
}
