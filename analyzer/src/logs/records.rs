//! Log records as the judge consumes them, and a reader for the two file formats `vigil logs
//! compare` accepts: JSON lines with `time`, `severity`, `body` (the shape of OTLP log records
//! flattened, and of the incident corpus), or plain text with one message per line.
//!
//! The format is decided by the first non-empty line: an object (`{`) means JSON lines. JSON lines
//! are strict (a malformed line is an error naming it), because a half-read structured file would
//! silently bias the counts; plain text is lenient (empty lines are skipped, invalid UTF-8 is
//! replaced), because that is what raw logs look like, and both are counted in [`ReadStats`].

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::telemetry::parse_time;
pub use crate::telemetry::LogRecord;

/// What the reader skipped or repaired, so a caller can tell a clean read from a lossy one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// Lines read, including skipped ones.
    pub lines: u64,
    /// Empty (or whitespace-only) lines skipped.
    pub empty: u64,
    /// Plain-text lines whose invalid UTF-8 bytes were replaced by U+FFFD.
    pub non_utf8: u64,
    /// The format the first non-empty line decided.
    pub format: InputFormat,
}

/// The two file formats [`read_records`] accepts; serialised lowercase (`plain`, `jsonl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One message per line, no time or severity (the severity is guessed from keywords).
    /// The default, also for an empty file.
    #[default]
    Plain,
    /// One JSON object per line with `body` and optional `time`, `severity`.
    Jsonl,
}

/// Errors of [`read_records`]; each names the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// A line of a JSON lines file is not a log record object.
    #[error("line {line}: not a JSON log record: {reason} (expected an object with a string `body` and optional `time`, `severity`)")]
    Json {
        /// 1-based line number.
        line: u64,
        /// The JSON parser's message.
        reason: String,
    },
    /// A record's `time` is not an ISO-8601 UTC time.
    #[error(
        "line {line}: `time`: expected an ISO-8601 UTC time like 2023-01-29T08:52:06Z, got {got:?}"
    )]
    Time {
        /// 1-based line number.
        line: u64,
        /// The value as found.
        got: String,
    },
    /// A JSON lines file has invalid UTF-8 (plain text is repaired instead).
    #[error("line {line}: invalid UTF-8 in a JSON lines file")]
    Utf8 {
        /// 1-based line number.
        line: u64,
    },
    /// The reader failed.
    #[error("reading line {line}: {source}")]
    Io {
        /// 1-based number of the line being read.
        line: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct JsonRecord {
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    body: String,
}

/// Reads records from `input`, detecting the format from the first non-empty line.
pub fn read_records(mut input: impl BufRead) -> Result<(Vec<LogRecord>, ReadStats), RecordsError> {
    let mut records = Vec::new();
    let mut stats = ReadStats::default();
    let mut format: Option<InputFormat> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let line_no = stats.lines + 1;
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| RecordsError::Io {
                line: line_no,
                source,
            })?;
        if n == 0 {
            break;
        }
        stats.lines = line_no;
        let mut bytes = buf.as_slice();
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest;
        }
        if let Some(rest) = bytes.strip_suffix(b"\r") {
            bytes = rest;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            stats.empty += 1;
            continue;
        }
        let fmt = *format.get_or_insert_with(|| {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') {
                InputFormat::Jsonl
            } else {
                InputFormat::Plain
            }
        });
        match fmt {
            InputFormat::Jsonl => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| RecordsError::Utf8 { line: line_no })?;
                let rec: JsonRecord =
                    serde_json::from_str(text).map_err(|e| RecordsError::Json {
                        line: line_no,
                        reason: e.to_string(),
                    })?;
                let time = match rec.time {
                    None => None,
                    Some(t) => Some(parse_time(&t).ok_or(RecordsError::Time {
                        line: line_no,
                        got: t,
                    })?),
                };
                records.push(LogRecord {
                    time,
                    severity: rec.severity,
                    body: rec.body,
                });
            }
            InputFormat::Plain => {
                let body = match std::str::from_utf8(bytes) {
                    Ok(s) => s.to_owned(),
                    Err(_) => {
                        stats.non_utf8 += 1;
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                };
                records.push(LogRecord::from_body(body));
            }
        }
    }
    stats.format = format.unwrap_or_default();
    Ok((records, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_with_optional_fields() {
        let input = b"{\"time\":\"2023-01-29T10:03:11Z\",\"severity\":\"ERROR\",\"body\":\"boom\",\"trace_id\":\"x\"}\n\n{\"body\":\"ok\",\"severity\":null}\n";
        let (recs, stats) = read_records(&input[..]).unwrap();
        assert_eq!(stats.format, InputFormat::Jsonl);
        assert_eq!(stats.empty, 1);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].severity.as_deref(), Some("ERROR"));
        assert_eq!(recs[1].time, None);
        // python: datetime(2023,1,29,10,3,11,tzinfo=timezone.utc).timestamp()
        assert_eq!(recs[0].time, Some(1_674_986_591.0));
    }

    #[test]
    fn a_time_that_is_not_a_time_is_an_error_naming_the_line() {
        let input = b"{\"body\":\"a\",\"time\":\"2023-01-29T10:03:11Z\"}\n{\"body\":\"b\",\"time\":\"soon\"}\n";
        let e = read_records(&input[..]).unwrap_err().to_string();
        assert!(e.starts_with("line 2:") && e.contains("soon"), "{e}");
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let missing = b"{\"body\":\"a\"}\n{\"time\":\"t\"}\n";
        let e = read_records(&missing[..]).unwrap_err().to_string();
        assert!(e.starts_with("line 2:") && e.contains("body"), "{e}");
        let broken = b"{\"body\":\"a\"}\n{\"body\": \n";
        assert!(read_records(&broken[..])
            .unwrap_err()
            .to_string()
            .starts_with("line 2:"));
        let bad_utf8 = b"{\"body\":\"a\"}\n{\"body\":\"\xff\"}\n";
        assert!(matches!(
            read_records(&bad_utf8[..]),
            Err(RecordsError::Utf8 { line: 2 })
        ));
    }

    #[test]
    fn plain_text_is_lenient_and_counted() {
        let input = b"first line\r\n\nsecond \xff\xfe line\nno newline at end";
        let (recs, stats) = read_records(&input[..]).unwrap();
        assert_eq!(stats.format, InputFormat::Plain);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].body, "first line");
        assert_eq!(stats.non_utf8, 1);
        assert_eq!(stats.empty, 1);
        assert_eq!(stats.lines, 4);
        assert!(recs[1].body.contains('\u{FFFD}'));
    }
}
