//! The polars side of the loader: CSV and Parquet tables (metrics, spans, callers' spans) and the
//! JSON-lines log file, read into the engine's plain types. Kept apart from the scenario model so
//! that the one place that knows polars' column types is small and on its own.

use std::path::Path;

use polars::prelude::*;
use serde::Deserialize;

use super::scenario::LoadError;
use vigil_analyzer::telemetry::{
    format_time, parse_time, CallerEdge, LogRecord, MetricTable, Span,
};

/// A file that may be absent: `None` when it is (the modality was not recorded).
pub(super) fn optional<T>(
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
pub(super) fn optional_table<T>(
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
}
