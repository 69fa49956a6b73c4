//! The telemetry the engine judges: metric samples, log records and spans, whatever source they
//! come from (scenario files today, OTLP and Prometheus next). One type per kind, so a judge
//! written against them runs unchanged on every source.
//!
//! - [`MetricSample`]: one reading of one named metric at one time; a side's samples are kept as
//!   a [`MetricTable`] (one row per time, NaN where a metric had no reading).
//! - [`LogRecord`]: one log line with its time, level and body; [`LogRecord::level`] is the one
//!   rule for how bad a line is (its level field, else the words of its body).
//! - [`Span`]: one span; a caller's span on another pod carries a [`CallerEdge`] to the span of
//!   the judged pod it called.
//!
//! Times are Unix seconds (`f64`): every source converts at its edge, so judges never parse.

use serde::{Deserialize, Serialize};

/// A time interval in Unix seconds, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// First second in the window.
    pub start: f64,
    /// First second after it.
    pub end: f64,
}

impl Window {
    /// Seconds covered; 0 for an inverted window.
    pub fn len(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
    /// Covers no time.
    pub fn is_empty(&self) -> bool {
        self.len() <= 0.0
    }
}

/// One reading of one metric. `value` NaN means "no reading at this time" (a gap in an export
/// is recorded as such, never as zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSample<'a> {
    /// Unix seconds the reading is stamped with (the end of the step it summarises).
    pub time: f64,
    /// The metric's name, as the source names it (`CpuUsageRate(%)`, a PromQL alias).
    pub name: &'a str,
    /// The reading; NaN for none.
    pub value: f64,
}

/// Metric samples of one side: a time column and named value columns (NaN = no reading). Rows
/// are sorted by time, one row per time: [`MetricTable::insert`] keeps it so whatever order
/// samples arrive in, since judges slice the table by binary search on its times.
#[derive(Debug, Clone, Default)]
pub struct MetricTable {
    /// Row times, ascending, distinct.
    pub times: Vec<f64>,
    /// Per metric, in first-seen order: its name and one value per row.
    pub columns: Vec<(String, Vec<f64>)>,
}

/// Why a metric sample was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// The time is NaN or infinite.
    #[error("metric `{name}`: time {time} is not a finite number of seconds")]
    Time {
        /// The metric.
        name: String,
        /// The time given.
        time: f64,
    },
    /// The value is infinite (NaN is a gap and accepted).
    #[error("metric `{name}` at {time}: value {value} is infinite")]
    Value {
        /// The metric.
        name: String,
        /// Its time.
        time: f64,
        /// The value given.
        value: f64,
    },
    /// A second, different reading for a metric and time that already has one.
    #[error("metric `{name}` at {time}: a second reading ({value}, first {first})")]
    Duplicate {
        /// The metric.
        name: String,
        /// Its time.
        time: f64,
        /// The first reading.
        first: f64,
        /// The second one.
        value: f64,
    },
}

impl MetricTable {
    /// Adds one sample: its row is found (or inserted in time order) and its column created on
    /// first sight, NaN in every other row. A second reading of the same metric and time is
    /// refused unless it repeats the first (a source re-sending a batch).
    pub fn insert(&mut self, sample: MetricSample<'_>) -> Result<(), SampleError> {
        let MetricSample { time, name, value } = sample;
        if !time.is_finite() {
            return Err(SampleError::Time {
                name: name.to_owned(),
                time,
            });
        }
        if value.is_infinite() {
            return Err(SampleError::Value {
                name: name.to_owned(),
                time,
                value,
            });
        }
        // Appending is the usual case (samples arrive in time order).
        let row = match self.times.last() {
            Some(last) if time > *last => None,
            None => None,
            _ => Some(self.times.partition_point(|t| *t < time)),
        };
        let row = match row {
            None => {
                self.times.push(time);
                for (_, v) in &mut self.columns {
                    v.push(f64::NAN);
                }
                self.times.len() - 1
            }
            Some(r)
                if self
                    .times
                    .get(r)
                    .is_some_and(|t| t.total_cmp(&time).is_eq()) =>
            {
                r
            }
            Some(r) => {
                self.times.insert(r, time);
                for (_, v) in &mut self.columns {
                    v.insert(r, f64::NAN);
                }
                r
            }
        };
        let col = match self.columns.iter().position(|(n, _)| n == name) {
            Some(c) => c,
            None => {
                self.columns
                    .push((name.to_owned(), vec![f64::NAN; self.times.len()]));
                self.columns.len() - 1
            }
        };
        let slot = &mut self.columns[col].1[row];
        if value.is_nan() {
            return Ok(());
        }
        if !slot.is_nan() && slot.total_cmp(&value).is_ne() {
            return Err(SampleError::Duplicate {
                name: name.to_owned(),
                time,
                first: *slot,
                value,
            });
        }
        *slot = value;
        Ok(())
    }

    /// Rows with `time < until` (the table is sorted).
    pub fn rows_before(&self, until: f64) -> usize {
        self.times.partition_point(|t| *t < until)
    }

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

/// The longest log body the engine keeps, in bytes (4 MiB). Longer bodies are cut at a character
/// boundary when they are ingested and counted ([`crate::analysis::Dropped::capped_logs`], the
/// `truncated` count of `vigil logs parse`): no real log line is that long, and the miner's token
/// offsets, 31-bit, must never see a body that could overflow them.
pub const MAX_LOG_BODY_BYTES: usize = 1 << 22;

/// `body` cut to at most [`MAX_LOG_BODY_BYTES`] at a character boundary; `None` when it fits.
pub(crate) fn capped_body(body: &str) -> Option<&str> {
    if body.len() <= MAX_LOG_BODY_BYTES {
        return None;
    }
    let mut cut = MAX_LOG_BODY_BYTES;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(&body[..cut])
}

/// One log record. `time` is Unix seconds; `None` when the source gave none (a plain-text line):
/// such records can be compared as a whole (`vigil logs compare`) but not placed in an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// Unix seconds, if known.
    pub time: Option<f64>,
    /// The record's level as given (`ERROR`, `warn`, `Fatal`…), if any.
    pub severity: Option<String>,
    /// The message.
    pub body: String,
}

impl LogRecord {
    /// A record with only a body, as read from a plain-text line.
    pub fn from_body(body: impl Into<String>) -> LogRecord {
        LogRecord {
            time: None,
            severity: None,
            body: body.into(),
        }
    }

    /// How bad the line is — the one rule every judge uses (the log judge, the event features of
    /// the anomaly model, replay's naive reference): the level field when it names a level, else
    /// the words of the body (`Exception`, `FATAL`, `Traceback`…, whole words).
    pub fn level(&self) -> Level {
        Level::of_record(self)
    }

    /// Cuts the body to [`MAX_LOG_BODY_BYTES`]; true when it was longer.
    pub(crate) fn cap_body(&mut self) -> bool {
        match capped_body(&self.body).map(str::len) {
            Some(n) => {
                self.body.truncate(n);
                true
            }
            None => false,
        }
    }
}

/// How bad a log line is: its level. Read from the record's own level where it names one, else
/// from the words of its body ([`LogRecord::level`]); one type for the meaning "log level", apart
/// from the verdict's [`crate::verdict::Level`] of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Finer than debug.
    Trace,
    /// Debug.
    Debug,
    /// Information; also what a line without a level or keyword is.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
    /// Fatal, critical, panic.
    Fatal,
}

impl Level {
    /// Every level, least severe first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// A level name as loggers write it (log4j/logback, syslog, Python, OTLP severity text);
    /// `None` for names we do not know, so the caller can fall back to keywords.
    pub(crate) fn from_level(level: &str) -> Option<Level> {
        // Compared in place, case-insensitively: every mined line asks this, and lower-casing
        // a copy first was an allocation a line (5 % of the service's mining time).
        const NAMES: &[(&str, Level)] = &[
            ("trace", Level::Trace),
            ("finest", Level::Trace),
            ("finer", Level::Trace),
            ("verbose", Level::Trace),
            ("debug", Level::Debug),
            ("fine", Level::Debug),
            ("config", Level::Debug),
            ("dbg", Level::Debug),
            ("info", Level::Info),
            ("information", Level::Info),
            ("informational", Level::Info),
            ("notice", Level::Info),
            ("i", Level::Info),
            ("warn", Level::Warn),
            ("warning", Level::Warn),
            ("w", Level::Warn),
            ("error", Level::Error),
            ("err", Level::Error),
            ("severe", Level::Error),
            ("e", Level::Error),
            ("fatal", Level::Fatal),
            ("critical", Level::Fatal),
            ("crit", Level::Fatal),
            ("alert", Level::Fatal),
            ("emerg", Level::Fatal),
            ("emergency", Level::Fatal),
            ("panic", Level::Fatal),
            ("f", Level::Fatal),
        ];
        // OTLP severity texts may carry a number suffix (ERROR2, WARN3).
        let l = level.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(l))
            .map(|&(_, level)| level)
    }

    /// Level from the words of a message. Words are maximal runs of letters, digits and `_`,
    /// compared case-insensitively and whole (so `TERROR` or `errorCount` are not errors); Java- and
    /// Python-style class names ending in `Exception` or `Error` count as errors.
    pub(crate) fn from_keywords(body: &str) -> Level {
        let mut sev = Level::Info;
        for word in body
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
        {
            let lower = word.to_ascii_lowercase();
            let s = match lower.as_str() {
                "fatal" | "panic" | "panicked" | "critical" | "emerg" | "emergency" | "sigsegv"
                | "segfault" | "outofmemoryerror" => Level::Fatal,
                "error" | "err" | "errors" | "exception" | "traceback" | "failed" | "failure"
                | "severe" | "stacktrace" => Level::Error,
                "warn" | "warning" | "deprecated" => Level::Warn,
                _ if is_class_suffixed(word, "Exception") || is_class_suffixed(word, "Error") => {
                    Level::Error
                }
                _ => continue,
            };
            if s > sev {
                sev = s;
                if sev == Level::Fatal {
                    break;
                }
            }
        }
        sev
    }

    /// The record's level if it names one, else the keywords of its body.
    pub fn of_record(record: &LogRecord) -> Level {
        record
            .severity
            .as_deref()
            .and_then(Level::from_level)
            .unwrap_or_else(|| Level::from_keywords(&record.body))
    }
}

/// `NullPointerException`, `ValueError`: a capitalised identifier with the suffix after a prefix.
fn is_class_suffixed(word: &str, suffix: &str) -> bool {
    word.len() > suffix.len()
        && word.ends_with(suffix)
        && word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// The caller side of an edge into the judged pod: this span runs on another pod or service, and
/// its direct child is the judged pod's span `callee_span_id`. The time the caller spends outside
/// the callee (network, queues, the callee's own slow accept) shows here and nowhere in the pod's
/// own spans.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerEdge {
    /// The child span, on the judged pod.
    pub callee_span_id: String,
    /// Its operation.
    pub callee_operation: String,
    /// Its duration in milliseconds.
    pub callee_duration_ms: f64,
}

/// One span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: String,
    /// Its id, unique within the trace.
    pub span_id: String,
    /// Its parent's id; `None` for a root span.
    pub parent_id: Option<String>,
    /// The operation (endpoint, RPC method, query kind).
    pub operation: String,
    /// Start, Unix seconds.
    pub start: f64,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// The span's status when the source records one (`true` = error); Nezha spans carry none.
    pub error: Option<bool>,
    /// `Some` for a caller's span on another pod: the edge into the judged pod.
    pub caller: Option<CallerEdge>,
}

/// Parses an RFC 3339 / ISO 8601 time into Unix seconds: with a zone (`Z`, `+02:00`) it is
/// honoured; without one (`2023-01-29T08:52:06`, or a space for the `T`) it is read as UTC, the
/// corpus's convention. jiff does the calendar (leap years, days per month): an impossible date is
/// `None`, never a neighbouring day.
pub fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    let ts = match s.parse::<jiff::Timestamp>() {
        Ok(ts) => ts,
        // No zone: a civil time, read as UTC. (An offset makes the first parse succeed, so a
        // civil parse here never drops one.)
        Err(_) => {
            let civil = s.parse::<jiff::civil::DateTime>().ok()?;
            // A date alone is not a time of day: refuse it rather than read midnight.
            if !s.contains(['T', 't', ' ']) {
                return None;
            }
            jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()?
        }
    };
    Some(seconds_f64(ts))
}

#[allow(
    clippy::cast_precision_loss,
    reason = "seconds since 1970 are far below 2^53, so the whole part is exact"
)]
fn seconds_f64(ts: jiff::Timestamp) -> f64 {
    ts.as_second() as f64 + f64::from(ts.subsec_nanosecond()) / 1e9
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (for the generator and reports); a time
/// outside jiff's calendar (years -9999 to 9999) or not finite is shown as raw seconds.
#[allow(
    clippy::cast_possible_truncation,
    reason = "display only; `as` saturates, and jiff rejects what lies beyond its calendar"
)]
pub fn format_time(t: f64) -> String {
    match jiff::Timestamp::from_second(t.floor() as i64) {
        Ok(ts) if t.is_finite() => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => format!("{t}s"),
    }
}

/// As [`format_time`], with the fraction of a second when there is one (microseconds, trailing
/// zeros dropped): the form reports give a record's own time in.
#[allow(
    clippy::cast_possible_truncation,
    reason = "micros is checked to lie in [1, 1e6) first"
)]
pub(crate) fn format_time_exact(t: f64) -> String {
    let whole = format_time(t);
    let micros = ((t - t.floor()) * 1e6).round();
    if !(1.0..1e6).contains(&micros) {
        return whole;
    }
    let fraction = format!("{:06}", micros as u32);
    let fraction = fraction.trim_end_matches('0');
    format!("{}.{fraction}Z", whole.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_with_their_zone_and_a_real_calendar() {
        // python: datetime(2023,1,29,8,52,6,tzinfo=timezone.utc).timestamp() == 1674982326
        for s in [
            "2023-01-29T08:52:06Z",
            "2023-01-29T08:52:06",
            "2023-01-29 08:52:06",
            "2023-01-29T09:52:06+01:00",
            " 2023-01-29T08:52:06+00:00 ",
        ] {
            assert_eq!(parse_time(s), Some(1_674_982_326.0), "{s}");
        }
        // python: datetime(2024,2,29,tzinfo=timezone.utc).timestamp() == 1709164800
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-01-29",
            "",
            "noon",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(format_time(1_709_164_800.0), "2024-02-29T00:00:00Z");
        assert_eq!(format_time(f64::NAN), "NaNs");
    }

    #[test]
    fn exact_times_keep_their_fraction() {
        // python: datetime.fromtimestamp(1674982327.5601, timezone.utc).isoformat()
        assert_eq!(
            format_time_exact(1_674_982_327.560_1),
            "2023-01-29T08:52:07.5601Z"
        );
        assert_eq!(format_time_exact(1_674_982_326.0), "2023-01-29T08:52:06Z");
    }

    #[test]
    fn an_overlong_body_is_cut_at_a_character_boundary() {
        let mut r = LogRecord::from_body(format!("x{}", "é".repeat(MAX_LOG_BODY_BYTES / 2)));
        assert!(r.cap_body());
        assert!(r.body.len() <= MAX_LOG_BODY_BYTES && r.body.len() > MAX_LOG_BODY_BYTES - 2);
        assert!(!r.cap_body());
        let mut short = LogRecord::from_body("fine");
        assert!(!short.cap_body());
        assert_eq!(short.body, "fine");
    }

    #[test]
    fn samples_arriving_out_of_order_make_a_sorted_table() {
        let mut t = MetricTable::default();
        for (time, name, value) in [
            (120.0, "cpu", 3.0),
            (0.0, "cpu", 1.0),
            (60.0, "mem", 20.0),
            (60.0, "cpu", 2.0),
            (0.0, "mem", f64::NAN),
        ] {
            t.insert(MetricSample { time, name, value }).unwrap();
        }
        assert_eq!(t.times, vec![0.0, 60.0, 120.0]);
        assert_eq!(t.columns[0].0, "cpu");
        assert_eq!(t.columns[0].1, vec![1.0, 2.0, 3.0]);
        assert_eq!(t.columns[1].0, "mem");
        assert!(t.columns[1].1[0].is_nan() && t.columns[1].1[2].is_nan());
        assert_eq!(t.columns[1].1[1], 20.0);
        assert_eq!(t.rows_before(60.0), 1);
        // A repeat of the same reading is fine; a different second reading is refused.
        t.insert(MetricSample {
            time: 60.0,
            name: "cpu",
            value: 2.0,
        })
        .unwrap();
        let e = t.insert(MetricSample {
            time: 60.0,
            name: "cpu",
            value: 9.0,
        });
        assert!(matches!(e, Err(SampleError::Duplicate { .. })), "{e:?}");
        let e = t.insert(MetricSample {
            time: f64::NAN,
            name: "cpu",
            value: 1.0,
        });
        assert!(matches!(e, Err(SampleError::Time { .. })), "{e:?}");
    }
}
