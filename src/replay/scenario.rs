//! The scenario model (plain types) and its loader for the incident format documented in
//! `datasets/README.md`. Polars reads the CSV files; it is used here and nowhere else, so the
//! rest of Vigil works on plain vectors.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Deserialize;
use thiserror::Error;
pub use vigil_analyzer::telemetry::{
    format_time, parse_time, CallerEdge, LogRecord, MetricTable, Span, Window,
};

/// Why a scenario could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid scenario.json: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A table file (CSV or Parquet) that polars could not read, or that lacks a column.
    #[error("{path}: {message}")]
    Table { path: PathBuf, message: String },
    #[error(
        "{dir}: both {name}.csv and {name}.parquet exist; keep one so that no data is ignored"
    )]
    Ambiguous { dir: PathBuf, name: String },
    #[error("{path}: field `{field}`: expected {expected}, got {got:?}")]
    Field {
        path: PathBuf,
        field: String,
        expected: String,
        got: String,
    },
}

/// Expected outcome, from `scenario.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Pass,
    Fail,
}

impl Expected {
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Pass => "pass",
            Expected::Fail => "fail",
        }
    }
}

/// Everything recorded for one side. `None` means the modality was not recorded (no file),
/// which is different from a present but empty file (recorded, nothing happened).
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub metrics: Option<MetricTable>,
    pub logs: Option<Vec<LogRecord>>,
    pub spans: Option<Vec<Span>>,
    /// Callers' spans into the pod (`caller_spans.csv`), sorted by start like `spans`.
    pub caller_spans: Option<Vec<Span>>,
    pub metric_window: Option<Window>,
    pub log_window: Option<Window>,
    pub trace_window: Option<Window>,
    /// Seconds of the log / trace window actually covered by an export (exposure for rates).
    pub log_seconds_covered: Option<f64>,
    pub trace_seconds_covered: Option<f64>,
}

/// One replayable scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: String,
    pub dir: PathBuf,
    pub system: String,
    pub service: String,
    pub expected: Expected,
    pub fault_type: Option<String>,
    /// Fault onset (Unix s), None for fault-free scenarios.
    pub inject_time: Option<f64>,
    pub baseline_window: Window,
    pub canary_window: Window,
    /// Baseline metric rows before this time overlap an earlier known incident on the same pod.
    pub baseline_clean_since: Option<f64>,
    /// Active intervals of earlier known incidents on the same pod (`context_faults` with
    /// `same_pod`): a live system knows its past incidents and must not learn "healthy" from them.
    pub known_incidents: Vec<Window>,
    pub baseline: Side,
    pub canary: Side,
    /// Side folders that are absent or hold no data file, in words (`canary/ folder is missing`).
    /// Not an error — a canary that recorded nothing is a case the judges must answer
    /// Inconclusive — but the answer must name what is missing rather than say only "no signal".
    pub missing: Vec<String>,
}

impl Scenario {
    /// The baseline runs at the same time as the canary (healthy sibling replicas) rather than
    /// before it; then both sides grow together during replay.
    pub fn concurrent_baseline(&self) -> bool {
        self.baseline_window.start >= self.canary_window.start - 1.0
    }
}

#[derive(Deserialize)]
struct RawWindow {
    start: String,
    end: String,
}

#[derive(Deserialize, Default)]
struct RawModalityWindows {
    baseline: Option<RawWindow>,
    canary: Option<RawWindow>,
}

#[derive(Deserialize, Default)]
struct RawWindows {
    metrics: Option<RawModalityWindows>,
    logs: Option<RawModalityWindows>,
    traces: Option<RawModalityWindows>,
}

#[derive(Deserialize, Default)]
struct RawCoverage {
    log_seconds_covered: Option<f64>,
    trace_seconds_covered: Option<f64>,
}

#[derive(Deserialize, Default)]
struct RawCoverages {
    baseline: Option<RawCoverage>,
    canary: Option<RawCoverage>,
}

#[derive(Deserialize)]
struct RawContextFault {
    #[serde(default)]
    same_pod: bool,
    inject_time_utc: String,
    fault_end_utc: String,
}

#[derive(Deserialize, Default)]
struct RawCleanSince {
    same_pod: Option<String>,
}

#[derive(Deserialize)]
struct RawScenario {
    id: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    service: Option<String>,
    expected: String,
    #[serde(default)]
    fault_type: Option<String>,
    #[serde(default)]
    inject_time_utc: Option<String>,
    baseline_window: RawWindow,
    canary_window: RawWindow,
    #[serde(default)]
    windows: RawWindows,
    #[serde(default)]
    coverage: RawCoverages,
    #[serde(default)]
    metrics_baseline_clean_since: Option<RawCleanSince>,
    #[serde(default)]
    context_faults: Vec<RawContextFault>,
}

/// Every top-level field of the scenario format (`datasets/README.md` and the shared incidents'
/// README), read or not.
const SCENARIO_FIELDS: &[&str] = &[
    "id",
    "split",
    "system",
    "day",
    "pod",
    "service",
    "expected",
    "fault_type",
    "inject_time_utc",
    "fault_end_utc",
    "baseline_window",
    "canary_window",
    "windows",
    "coverage",
    "files",
    "pre_window_clean",
    "pre_window_clean_with_recovery",
    "metrics_baseline_has_same_pod_fault",
    "metrics_baseline_clean_since",
    "context_faults",
    "truncation",
    "notes",
    "source_ref",
    "provenance",
];

/// Finds scenario folders: `dir` itself if it holds a `scenario.json`, else every folder below it
/// that does (not descending into scenario folders), sorted by path.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if dir.join("scenario.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| LoadError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| LoadError::Io {
                path: d.clone(),
                source,
            })?;
            let p = entry.path();
            if !p.is_dir() {
                continue;
            }
            if p.join("scenario.json").is_file() {
                out.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one scenario folder.
pub fn load(dir: &Path) -> Result<Scenario, LoadError> {
    let json_path = dir.join("scenario.json");
    let text = std::fs::read_to_string(&json_path).map_err(|source| LoadError::Io {
        path: json_path.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| LoadError::Json {
            path: json_path.clone(),
            source,
        })?;
    // Replay reads a few of the format's fields and ignores the rest by design, but a field the
    // format does not have at all is most likely a typo (`context_fault`) whose meaning would be
    // lost without a word, so it is named. Not an error: a newer corpus may add fields.
    if let Some(map) = value.as_object() {
        for key in map
            .keys()
            .filter(|k| !SCENARIO_FIELDS.contains(&k.as_str()))
        {
            tracing::warn!(
                "{}: unknown field `{key}` (not part of the scenario format), ignored",
                json_path.display()
            );
        }
    }
    let raw: RawScenario = serde_json::from_value(value).map_err(|source| LoadError::Json {
        path: json_path.clone(),
        source,
    })?;
    let field_time = |field: &str, s: &str| -> Result<f64, LoadError> {
        parse_time(s).ok_or_else(|| LoadError::Field {
            path: json_path.clone(),
            field: field.into(),
            expected: "an ISO-8601 UTC time like 2023-01-29T08:52:06Z".into(),
            got: s.into(),
        })
    };
    let window = |field: &str, w: &RawWindow| -> Result<Window, LoadError> {
        let start = field_time(&format!("{field}.start"), &w.start)?;
        let end = field_time(&format!("{field}.end"), &w.end)?;
        if end <= start {
            return Err(LoadError::Field {
                path: json_path.clone(),
                field: format!("{field}.end"),
                expected: format!("a time after {field}.start ({})", w.start),
                got: w.end.clone(),
            });
        }
        Ok(Window { start, end })
    };
    let expected = match raw.expected.as_str() {
        "pass" => Expected::Pass,
        "fail" => Expected::Fail,
        other => {
            return Err(LoadError::Field {
                path: json_path,
                field: "expected".into(),
                expected: "\"pass\" or \"fail\"".into(),
                got: other.into(),
            })
        }
    };
    let baseline_window = window("baseline_window", &raw.baseline_window)?;
    let canary_window = window("canary_window", &raw.canary_window)?;
    let inject_time = raw
        .inject_time_utc
        .as_deref()
        .map(|s| field_time("inject_time_utc", s))
        .transpose()?;
    let modality = |m: &Option<RawModalityWindows>,
                    name: &str|
     -> Result<(Option<Window>, Option<Window>), LoadError> {
        let Some(m) = m else { return Ok((None, None)) };
        let b = m
            .baseline
            .as_ref()
            .map(|w| window(&format!("windows.{name}.baseline"), w))
            .transpose()?;
        let c = m
            .canary
            .as_ref()
            .map(|w| window(&format!("windows.{name}.canary"), w))
            .transpose()?;
        Ok((b, c))
    };
    let (mb, mc) = modality(&raw.windows.metrics, "metrics")?;
    let (lb, lc) = modality(&raw.windows.logs, "logs")?;
    let (tb, tc) = modality(&raw.windows.traces, "traces")?;
    let baseline_clean_since = raw
        .metrics_baseline_clean_since
        .as_ref()
        .and_then(|c| c.same_pod.as_deref())
        .map(|s| field_time("metrics_baseline_clean_since.same_pod", s))
        .transpose()?;
    let known_incidents = raw
        .context_faults
        .iter()
        .filter(|f| f.same_pod)
        .map(|f| {
            Ok(Window {
                start: field_time("context_faults.inject_time_utc", &f.inject_time_utc)?,
                end: field_time("context_faults.fault_end_utc", &f.fault_end_utc)?,
            })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    let side = |name: &str,
                mw: Option<Window>,
                lw: Option<Window>,
                tw: Option<Window>,
                cov: Option<&RawCoverage>|
     -> Result<Side, LoadError> {
        let d = dir.join(name);
        let metrics = optional_table(&d, "metrics", read_metrics)?;
        let logs = optional(&d.join("logs.jsonl"), read_logs)?;
        let spans = optional_table(&d, "spans", read_spans)?;
        let caller_spans = optional_table(&d, "caller_spans", read_caller_spans)?;
        Ok(Side {
            metrics,
            logs,
            spans,
            caller_spans,
            metric_window: mw,
            log_window: lw,
            trace_window: tw,
            log_seconds_covered: cov.and_then(|c| c.log_seconds_covered),
            trace_seconds_covered: cov.and_then(|c| c.trace_seconds_covered),
        })
    };
    let baseline = side("baseline", mb, lb, tb, raw.coverage.baseline.as_ref())?;
    let canary = side("canary", mc, lc, tc, raw.coverage.canary.as_ref())?;
    let mut missing = Vec::new();
    for (name, side) in [("baseline", &baseline), ("canary", &canary)] {
        let d = dir.join(name);
        if !d.is_dir() {
            missing.push(format!("the {name}/ folder is missing ({})", d.display()));
        } else if side.metrics.is_none() && side.logs.is_none() && side.spans.is_none() {
            missing.push(format!(
                "{name}/ has no data file (none of metrics.csv, metrics.parquet, logs.jsonl, spans.csv, spans.parquet in {})",
                d.display()
            ));
        }
    }
    Ok(Scenario {
        id: raw.id,
        dir: dir.to_path_buf(),
        system: raw.system.unwrap_or_else(|| "unknown".into()),
        service: raw.service.unwrap_or_default(),
        expected,
        fault_type: raw.fault_type,
        inject_time,
        baseline_window,
        canary_window,
        baseline_clean_since,
        known_incidents,
        baseline,
        canary,
        missing,
    })
}

fn optional<T>(
    path: &Path,
    read: fn(&Path) -> Result<T, LoadError>,
) -> Result<Option<T>, LoadError> {
    if path.is_file() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A table may come as `NAME.csv` or `NAME.parquet`; both at once is an error rather than a silent
/// choice, since the two could disagree.
fn optional_table<T>(
    dir: &Path,
    name: &str,
    read: fn(&Path) -> Result<T, LoadError>,
) -> Result<Option<T>, LoadError> {
    let csv = dir.join(format!("{name}.csv"));
    let parquet = dir.join(format!("{name}.parquet"));
    match (csv.is_file(), parquet.is_file()) {
        (true, true) => Err(LoadError::Ambiguous {
            dir: dir.to_path_buf(),
            name: name.into(),
        }),
        (true, false) => read(&csv).map(Some),
        (false, true) => read(&parquet).map(Some),
        (false, false) => Ok(None),
    }
}

/// A polars error, attributed to the file it came from.
fn polars_error(path: &Path) -> impl Fn(PolarsError) -> LoadError + '_ {
    move |e| LoadError::Table {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn column<'a>(df: &'a DataFrame, path: &Path, name: &str) -> Result<&'a Column, LoadError> {
    df.column(name).map_err(|_| LoadError::Table {
        path: path.to_path_buf(),
        message: format!("missing column `{name}`"),
    })
}

/// Reads a CSV or Parquet file (by extension) into a frame; the one place polars touches files.
fn table_frame(path: &Path) -> Result<DataFrame, LoadError> {
    let err = polars_error(path);
    if path.extension().and_then(|e| e.to_str()) == Some("parquet") {
        let file = std::fs::File::open(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return ParquetReader::new(file).finish().map_err(&err);
    }
    // An empty file (not even a header) is a recorded window with nothing in it.
    if std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(false)
    {
        return Ok(DataFrame::empty());
    }
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .map_err(&err)?
        .finish()
        .map_err(&err)
}

fn string_column(
    df: &DataFrame,
    path: &Path,
    name: &str,
) -> Result<Vec<Option<String>>, LoadError> {
    let col = column(df, path, name)?;
    let s = col.cast(&DataType::String).map_err(polars_error(path))?;
    let ca = s.str().map_err(polars_error(path))?;
    Ok(ca.into_iter().map(|v| v.map(str::to_owned)).collect())
}

/// A numeric column; missing values (empty, `NaN`) become NaN, which the judges read as "no
/// sample". Anything else that is not a finite number is an error naming the row: a silent NaN
/// would hide a broken export, and an infinite value would poison every mean downstream.
fn float_column(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<f64>, LoadError> {
    let col = column(df, path, name)?;
    let bad = |row: usize, got: String| LoadError::Field {
        path: path.to_path_buf(),
        field: format!("{name} (row {})", row + 1),
        expected: "a finite number, or empty/NaN for a missing sample".into(),
        got,
    };
    if col.dtype() == &DataType::String {
        // Polars reads a column with any non-numeric cell as text; a cast would turn those cells
        // into nulls without a word, so each cell is parsed here instead.
        let ca = col.str().map_err(polars_error(path))?;
        return ca
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let text = v.unwrap_or_default().trim();
                if text.is_empty() || text.eq_ignore_ascii_case("nan") {
                    return Ok(f64::NAN);
                }
                match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(bad(i, text.to_string())),
                }
            })
            .collect();
    }
    let s = col.cast(&DataType::Float64).map_err(|e| LoadError::Table {
        path: path.to_path_buf(),
        message: format!("column `{name}`: expected numbers: {e}"),
    })?;
    let ca = s.f64().map_err(polars_error(path))?;
    ca.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Ok(f64::NAN),
            Some(x) if x.is_infinite() => Err(bad(i, x.to_string())),
            Some(x) => Ok(x),
        })
        .collect()
}

fn times(path: &Path, column: &str, raw: Vec<Option<String>>) -> Result<Vec<f64>, LoadError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let s = v.unwrap_or_default();
            parse_time(&s).ok_or_else(|| LoadError::Field {
                path: path.to_path_buf(),
                field: format!("{column} (row {})", i + 1),
                expected: "an ISO-8601 UTC time".into(),
                got: s,
            })
        })
        .collect()
}

/// A time column as Unix seconds: ISO-8601 strings (CSV, or Parquet written from CSV) or a Parquet
/// timestamp of any unit. Polars keeps zoned timestamps as UTC instants, so the zone needs no care.
fn time_column(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<f64>, LoadError> {
    let col = column(df, path, name)?;
    if let DataType::Datetime(unit, _) = col.dtype() {
        let per_second = match unit {
            TimeUnit::Nanoseconds => 1e9,
            TimeUnit::Microseconds => 1e6,
            TimeUnit::Milliseconds => 1e3,
        };
        let phys = col.to_physical_repr();
        let ca = phys.i64().map_err(polars_error(path))?;
        return ca
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.map(|v| v as f64 / per_second)
                    .ok_or_else(|| LoadError::Field {
                        path: path.to_path_buf(),
                        field: format!("{name} (row {})", i + 1),
                        expected: "a timestamp".into(),
                        got: "null".into(),
                    })
            })
            .collect();
    }
    times(path, name, string_column(df, path, name)?)
}

/// `metrics.csv` / `metrics.parquet`: a `timestamp` column and numeric columns.
pub fn read_metrics(path: &Path) -> Result<MetricTable, LoadError> {
    let df = table_frame(path)?;
    if df.width() == 0 {
        return Ok(MetricTable::default());
    }
    let t = time_column(&df, path, "timestamp")?;
    let mut columns = Vec::new();
    for name in df.get_column_names() {
        if name.as_str() == "timestamp" {
            continue;
        }
        columns.push((name.to_string(), float_column(&df, path, name.as_str())?));
    }
    sorted_rows(path, MetricTable { times: t, columns })
}

/// The table with its rows in time order (replay slices it by binary search on the times), and
/// an error naming both rows when two share a timestamp: which of them is the reading is not
/// something to guess.
fn sorted_rows(path: &Path, table: MetricTable) -> Result<MetricTable, LoadError> {
    let mut order: Vec<usize> = (0..table.times.len()).collect();
    order.sort_by(|a, b| table.times[*a].total_cmp(&table.times[*b]));
    if let Some(w) = order
        .windows(2)
        .find(|w| table.times[w[0]].total_cmp(&table.times[w[1]]).is_eq())
    {
        let (a, b) = (w[0].min(w[1]) + 1, w[0].max(w[1]) + 1);
        return Err(LoadError::Field {
            path: path.to_path_buf(),
            field: format!("timestamp (rows {a} and {b})"),
            expected: "one row per timestamp".into(),
            got: format_time(table.times[w[0]]),
        });
    }
    if order.iter().enumerate().all(|(i, j)| i == *j) {
        return Ok(table);
    }
    let pick = |v: &[f64]| order.iter().map(|i| v[*i]).collect::<Vec<f64>>();
    Ok(MetricTable {
        times: pick(&table.times),
        columns: table
            .columns
            .iter()
            .map(|(n, v)| (n.clone(), pick(v)))
            .collect(),
    })
}

/// `spans.csv`: trace_id, span_id, parent_id, operation, start, duration_ms[, pod][, error].
pub fn read_spans(path: &Path) -> Result<Vec<Span>, LoadError> {
    read_span_table(path, false)
}

/// Reads `caller_spans.csv` (or `.parquet`): the spans of other pods whose direct child runs on
/// the judged pod, each with its edge (`callee_span_id`, `callee_operation`,
/// `callee_duration_ms`); the columns of `spans.csv` come first.
pub fn read_caller_spans(path: &Path) -> Result<Vec<Span>, LoadError> {
    read_span_table(path, true)
}

fn read_span_table(path: &Path, callers: bool) -> Result<Vec<Span>, LoadError> {
    let df = table_frame(path)?;
    if df.height() == 0 {
        return Ok(Vec::new());
    }
    let trace = string_column(&df, path, "trace_id")?;
    let span = string_column(&df, path, "span_id")?;
    let parent = string_column(&df, path, "parent_id")?;
    let op = string_column(&df, path, "operation")?;
    let start = time_column(&df, path, "start")?;
    let dur = float_column(&df, path, "duration_ms")?;
    let err: Option<Vec<Option<String>>> = if df.column("error").is_ok() {
        Some(string_column(&df, path, "error")?)
    } else {
        None
    };
    let edges = if callers {
        Some((
            string_column(&df, path, "callee_span_id")?,
            string_column(&df, path, "callee_operation")?,
            float_column(&df, path, "callee_duration_ms")?,
        ))
    } else {
        None
    };
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let caller = match &edges {
            None => None,
            Some((ids, ops, durs)) => {
                if !(durs[i].is_finite() && durs[i] >= 0.0) {
                    return Err(LoadError::Field {
                        path: path.to_path_buf(),
                        field: format!("callee_duration_ms (row {})", i + 1),
                        expected: "a non-negative number of milliseconds".into(),
                        got: if durs[i].is_nan() {
                            "empty".into()
                        } else {
                            durs[i].to_string()
                        },
                    });
                }
                Some(CallerEdge {
                    callee_span_id: ids[i].clone().unwrap_or_default(),
                    callee_operation: ops[i].clone().unwrap_or_default(),
                    callee_duration_ms: durs[i],
                })
            }
        };
        let error = match &err {
            None => None,
            Some(col) => match col[i].as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("true" | "1") => Some(true),
                Some("false" | "0") | None | Some("") => Some(false),
                Some(other) => {
                    return Err(LoadError::Field {
                        path: path.to_path_buf(),
                        field: format!("error (row {})", i + 1),
                        expected: "true/false or 1/0".into(),
                        got: other.into(),
                    })
                }
            },
        };
        if !(dur[i].is_finite() && dur[i] >= 0.0) {
            return Err(LoadError::Field {
                path: path.to_path_buf(),
                field: format!("duration_ms (row {})", i + 1),
                expected: "a non-negative number of milliseconds".into(),
                got: if dur[i].is_nan() {
                    "empty".into()
                } else {
                    dur[i].to_string()
                },
            });
        }
        out.push(Span {
            trace_id: trace[i].clone().unwrap_or_default(),
            span_id: span[i].clone().unwrap_or_default(),
            parent_id: parent[i].clone().filter(|p| !p.is_empty() && p != "root"),
            operation: op[i].clone().unwrap_or_default(),
            start: start[i],
            duration_ms: dur[i],
            error,
            caller,
        });
    }
    // Replay slices by start time.
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(out)
}

#[derive(Deserialize)]
struct RawLog {
    time: String,
    #[serde(default)]
    severity: Option<String>,
    body: String,
}

/// `logs.jsonl`: one JSON object per line with `time`, `severity`, `body`.
pub fn read_logs(path: &Path) -> Result<Vec<LogRecord>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawLog = serde_json::from_str(line).map_err(|e| LoadError::Field {
            path: path.to_path_buf(),
            field: format!("line {}", i + 1),
            expected: "a JSON object with time, severity, body".into(),
            got: e.to_string(),
        })?;
        let time = parse_time(&raw.time).ok_or_else(|| LoadError::Field {
            path: path.to_path_buf(),
            field: format!("time (line {})", i + 1),
            expected: "an ISO-8601 UTC time".into(),
            got: raw.time.clone(),
        })?;
        out.push(LogRecord {
            time: Some(time),
            severity: raw.severity,
            body: raw.body,
        });
    }
    out.sort_by(|a, b| {
        let t = |r: &LogRecord| r.time.unwrap_or(f64::NEG_INFINITY);
        t(a).total_cmp(&t(b))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_times_like_python() {
        // python: datetime(2023,1,29,8,52,6,tzinfo=timezone.utc).timestamp() == 1674982326
        assert_eq!(parse_time("2023-01-29T08:52:06Z"), Some(1674982326.0));
        let t = parse_time("2023-01-29T08:52:07.560115455Z").unwrap();
        assert!((t - 1_674_982_327.560_115).abs() < 1e-6);
        assert_eq!(format_time(1674982326.0), "2023-01-29T08:52:06Z");
        assert_eq!(parse_time("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn metric_rows_are_sorted_by_time_and_a_repeated_timestamp_is_an_error() {
        let dir = std::env::temp_dir().join(format!("vigil-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unsorted = dir.join("unsorted.csv");
        std::fs::write(
            &unsorted,
            "timestamp,cpu\n2023-01-29T08:02:00Z,3\n2023-01-29T08:00:00Z,1\n2023-01-29T08:01:00Z,2\n",
        )
        .unwrap();
        let t = read_metrics(&unsorted).unwrap();
        // python: datetime(2023,1,29,8,0,tzinfo=timezone.utc).timestamp() == 1674979200
        assert_eq!(t.times, vec![1674979200.0, 1674979260.0, 1674979320.0]);
        assert_eq!(t.columns[0].1, vec![1.0, 2.0, 3.0]);
        let repeated = dir.join("repeated.csv");
        std::fs::write(
            &repeated,
            "timestamp,cpu\n2023-01-29T08:00:00Z,1\n2023-01-29T08:01:00Z,2\n2023-01-29T08:00:00Z,5\n",
        )
        .unwrap();
        let e = read_metrics(&repeated).unwrap_err().to_string();
        assert!(e.contains("rows 1 and 3") && e.contains("timestamp"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn masking_drops_every_row_whose_minute_saw_the_incident_or_its_recovery() {
        // Rows stamped t summarise [t - 60, t). The incident [100, 130) plus 60 s of recovery
        // is [100, 190): rows 120 ([60, 120)), 180 and 240 ([180, 240)) saw it; 0, 60, 300 did not.
        let t = MetricTable {
            times: vec![0.0, 60.0, 120.0, 180.0, 240.0, 300.0],
            columns: vec![("cpu".into(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
        };
        let m = t.without(
            &[Window {
                start: 100.0,
                end: 130.0,
            }],
            60.0,
        );
        assert_eq!(m.times, vec![0.0, 60.0, 300.0]);
        assert_eq!(m.columns[0].1, vec![1.0, 2.0, 6.0]);
        assert_eq!(t.without(&[], 60.0).times.len(), 6);
    }
}
