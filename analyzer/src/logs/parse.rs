//! The `vigil logs parse` path as a library: raw bytes (any reader) to one final template id per
//! line, a chunk of complete lines at a time, with the oddities of the input counted. It lives
//! with the miner because a service that mines uploaded or streamed logs needs the same path.

use std::io::Read;

use super::{LogFormat, Miner, MinerConfig, TemplateId};
use crate::telemetry::MAX_LOG_BODY_BYTES;

/// Counts of unusual input, reported on stderr after parsing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Lines split from the input, empty ones included (a final newline does not start one).
    pub lines: usize,
    /// Empty lines; they are still mined (each gets an id), so ids stay one per line.
    pub empty: usize,
    /// Lines with invalid UTF-8, mined with the bad bytes replaced by U+FFFD.
    pub invalid_utf8: usize,
    /// Lines containing a NUL byte, mined as they are (a hint that the input is binary).
    pub with_nul: usize,
    /// Lines of 64 KiB or more.
    pub long: usize,
    /// Lines longer than [`crate::telemetry::MAX_LOG_BODY_BYTES`], mined on their first that many
    /// bytes.
    pub truncated: usize,
    /// Lines that do not match the `--header` format, mined whole instead of their content field.
    pub header_mismatch: usize,
}

const LONG_LINE: usize = 64 * 1024;

/// Splits raw input into lines (LF, with an optional CR before it), decoding each as UTF-8 with
/// invalid bytes replaced by U+FFFD, and counts the oddities.
pub(crate) fn split_lines<'a>(
    input: &'a [u8],
    stats: &mut InputStats,
) -> Vec<std::borrow::Cow<'a, str>> {
    let mut out = Vec::new();
    if input.is_empty() {
        return out;
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    // Valid UTF-8 throughout (the usual case) is checked once, not per line.
    if let Ok(text) = std::str::from_utf8(body) {
        let any_nul = body.contains(&0);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            stats.lines += 1;
            stats.empty += usize::from(line.is_empty());
            stats.long += usize::from(line.len() >= LONG_LINE);
            stats.truncated += usize::from(line.len() > MAX_LOG_BODY_BYTES);
            stats.with_nul += usize::from(any_nul && line.as_bytes().contains(&0));
            out.push(std::borrow::Cow::Borrowed(line));
        }
        return out;
    }
    for raw in body.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        stats.lines += 1;
        if raw.is_empty() {
            stats.empty += 1;
        }
        if raw.len() >= LONG_LINE {
            stats.long += 1;
        }
        stats.truncated += usize::from(raw.len() > MAX_LOG_BODY_BYTES);
        if raw.contains(&0) {
            stats.with_nul += 1;
        }
        let text = String::from_utf8_lossy(raw);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            stats.invalid_utf8 += 1;
        }
        out.push(text);
    }
    out
}

/// Bytes read per step: input is mined chunk by chunk, so memory holds one chunk and the ids,
/// not the whole input.
const CHUNK: usize = 1 << 20;

/// The whole `parse` path on an in-memory input: returns the final template id of every line,
/// the miner, and the input counts. Separate from I/O so it can be property-tested.
pub fn parse_bytes(
    input: &[u8],
    header: Option<&LogFormat>,
    threads: usize,
) -> (Vec<TemplateId>, Miner, InputStats) {
    match parse_reader(input, header, threads) {
        Ok(r) => r,
        // Reading from a byte slice cannot fail.
        Err(_) => (
            Vec::new(),
            Miner::new(MinerConfig::default()),
            InputStats::default(),
        ),
    }
}

/// The `parse` path over any reader, one chunk of complete lines at a time.
pub fn parse_reader<R: Read>(
    mut input: R,
    header: Option<&LogFormat>,
    threads: usize,
) -> std::io::Result<(Vec<TemplateId>, Miner, InputStats)> {
    let mut stats = InputStats::default();
    let mut miner = Miner::new(MinerConfig::default());
    let mut ids = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut eof = false;
    while !eof {
        let n = input.by_ref().take(CHUNK as u64).read_to_end(&mut buf)?;
        eof = n == 0;
        let end = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(p) => p + 1,
                // A line longer than a chunk: keep reading until it ends.
                None => continue,
            }
        };
        let lines = split_lines(&buf[..end], &mut stats);
        let contents: Vec<&str> = lines
            .iter()
            .map(|l| match header {
                Some(f) => f.content(l).unwrap_or_else(|| {
                    stats.header_mismatch += 1;
                    l
                }),
                None => l,
            })
            .collect();
        ids.extend(miner.add_batch(&contents, threads));
        drop(contents);
        drop(lines);
        buf.drain(..end);
    }
    for id in ids.iter_mut() {
        *id = miner.resolve(*id);
    }
    Ok((ids, miner, stats))
}
