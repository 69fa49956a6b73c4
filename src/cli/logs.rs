//! `vigil logs …`: mine templates from log lines (`parse`) and measure accuracy on labelled
//! logs (`eval`). The nested enum is the place to add further `logs` subcommands.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use crate::logs::eval::{self, SystemResult};
use crate::logs::{IdMap, LogFormat, Miner, MinerConfig, TemplateId};

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Assign each input line a template; prints line, template_id, template per line.
    Parse(ParseArgs),
    /// Accuracy (GA, PA, FGA, FTA) on every `*_structured_corrected.csv` under DIR.
    Eval(EvalArgs),
    /// Compare a canary's logs with its baseline's: new patterns, significant rate changes, score.
    Compare(super::logs_compare::CompareArgs),
}

#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Header format in logparser notation, e.g. `<Date> <Time> <Level> <Component>: <Content>`;
    /// only the `Content` field is mined. Lines that do not fit are mined whole (and counted).
    #[arg(long)]
    pub header: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub format: OutputFormat,
    /// Worker threads for masking (0 = available cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Input file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Directory searched recursively for `*_structured_corrected.csv`.
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: LogsCommand) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Parse(a) => parse(a),
        LogsCommand::Eval(a) => eval_cmd(a),
        LogsCommand::Compare(a) => super::logs_compare::compare(a),
    }
}

/// Counts of unusual input, reported on stderr after parsing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    pub lines: usize,
    pub empty: usize,
    pub invalid_utf8: usize,
    pub with_nul: usize,
    /// Lines of 64 KiB or more.
    pub long: usize,
    pub header_mismatch: usize,
}

const LONG_LINE: usize = 64 * 1024;

/// Splits raw input into lines (LF, with an optional CR before it), decoding each as UTF-8 with
/// invalid bytes replaced by U+FFFD, and counts the oddities.
pub fn split_lines<'a>(input: &'a [u8], stats: &mut InputStats) -> Vec<std::borrow::Cow<'a, str>> {
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

fn parse(a: ParseArgs) -> anyhow::Result<()> {
    let header = match &a.header {
        Some(h) => Some(LogFormat::parse(h)?),
        None => None,
    };
    let (ids, miner, stats) = if a.input.as_os_str() == "-" {
        parse_reader(std::io::stdin().lock(), header.as_ref(), a.threads)
            .context("reading standard input")?
    } else {
        let f = std::fs::File::open(&a.input)
            .with_context(|| format!("opening {}", a.input.display()))?;
        parse_reader(f, header.as_ref(), a.threads)
            .with_context(|| format!("reading {}", a.input.display()))?
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    // Everything after the line number is rendered once per template, not once per line.
    let mut cache: IdMap<String> = IdMap::default();
    let prefix: &[u8] = match a.format {
        OutputFormat::Csv => {
            out.write_all(b"LineId,EventId,EventTemplate\n")?;
            b""
        }
        OutputFormat::Jsonl => b"{\"line\":",
    };
    let mut num = itoa_buf::Buffer::default();
    for (i, id) in ids.iter().enumerate() {
        let rest = cache.entry(*id).or_insert_with(|| {
            let text = miner.template(*id).unwrap_or_default();
            match a.format {
                OutputFormat::Jsonl => format!(
                    ",\"template_id\":\"{id}\",\"template\":{}}}\n",
                    serde_json::to_string(text).unwrap_or_default()
                ),
                OutputFormat::Csv => format!(",{id},{}\n", csv_field(text)),
            }
        });
        out.write_all(prefix)?;
        out.write_all(num.format(i + 1))?;
        out.write_all(rest.as_bytes())?;
    }
    out.flush()?;
    tracing::info!(
        lines = stats.lines,
        templates = miner.templates().count(),
        "parsed"
    );
    if stats.empty + stats.invalid_utf8 + stats.with_nul + stats.long + stats.header_mismatch > 0 {
        tracing::warn!(
            empty = stats.empty,
            invalid_utf8 = stats.invalid_utf8,
            with_nul = stats.with_nul,
            long = stats.long,
            header_mismatch = stats.header_mismatch,
            "unusual input lines (invalid UTF-8 replaced by U+FFFD; unmatched headers mined whole)"
        );
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    let files = eval::find_datasets(&a.dir)?;
    if files.is_empty() {
        bail!("{}: no *_structured_corrected.csv found", a.dir.display());
    }
    let results = files
        .iter()
        .map(|f| eval::evaluate_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    let avg = eval::average(&results);
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({ "systems": results, "average": avg });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write_table(&mut out, &results, &avg)?;
    }
    Ok(())
}

fn write_table(
    out: &mut impl Write,
    results: &[SystemResult],
    avg: &eval::Scores,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<12} {:>6} {:>6} {:>6} {:>6}  {:>9} {:>9}",
        "system", "GA", "PA", "FGA", "FTA", "drain GA", "templates"
    )?;
    for r in results {
        let d = eval::drain_reference(&r.system).map_or("-".to_owned(), |d| format!("{:.3}", d.ga));
        let s = &r.scores;
        writeln!(
            out,
            "{:<12} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {:>9} {:>4}/{:<4}",
            r.system, s.ga, s.pa, s.fga, s.fta, d, r.predicted_templates, r.true_templates
        )?;
    }
    writeln!(
        out,
        "{:<12} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
        "average", avg.ga, avg.pa, avg.fga, avg.fta
    )
}

/// Decimal formatting of line numbers without the `fmt` machinery (the per-line cost of
/// `parse` output is otherwise dominated by it).
mod itoa_buf {
    #[derive(Default)]
    pub struct Buffer([u8; 20]);

    impl Buffer {
        pub fn format(&mut self, mut n: usize) -> &[u8] {
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            &self.0[i..]
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn formats_decimal() {
            let mut b = super::Buffer::default();
            assert_eq!(b.format(0), b"0");
            assert_eq!(b.format(1_000_000), b"1000000");
            assert_eq!(b.format(usize::MAX), usize::MAX.to_string().as_bytes());
        }
    }
}
