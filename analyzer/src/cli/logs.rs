//! `vigil logs …`: mine templates from log lines (`parse`) and measure accuracy on labelled
//! logs (`eval`). The nested enum is the place to add further `logs` subcommands.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use crate::logs::eval::{self, SystemResult};
use crate::logs::{LogFormat, Miner, MinerConfig, TemplateId};

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

/// The whole `parse` path on an in-memory input: returns the final template id of every line,
/// the miner, and the input counts. Separate from I/O so it can be property-tested.
pub fn parse_bytes(
    input: &[u8],
    header: Option<&LogFormat>,
    threads: usize,
) -> (Vec<TemplateId>, Miner, InputStats) {
    let mut stats = InputStats::default();
    let lines = split_lines(input, &mut stats);
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
    let mut miner = Miner::new(MinerConfig::default());
    let ids = miner.add_batch(&contents, threads);
    let finals = ids.into_iter().map(|id| miner.resolve(id)).collect();
    (finals, miner, stats)
}

fn parse(a: ParseArgs) -> anyhow::Result<()> {
    let header = match &a.header {
        Some(h) => Some(LogFormat::parse(h)?),
        None => None,
    };
    let mut input = Vec::new();
    if a.input.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut input)
            .context("reading standard input")?;
    } else {
        input =
            std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    }
    let (ids, miner, stats) = parse_bytes(&input, header.as_ref(), a.threads);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    // Template text is looked up once per template, not per line.
    let mut cache: std::collections::HashMap<TemplateId, String> = std::collections::HashMap::new();
    if matches!(a.format, OutputFormat::Csv) {
        writeln!(out, "LineId,EventId,EventTemplate")?;
    }
    for (i, id) in ids.iter().enumerate() {
        let rendered = cache.entry(*id).or_insert_with(|| {
            let text = miner.template(*id).unwrap_or_default();
            match a.format {
                OutputFormat::Jsonl => serde_json::to_string(text).unwrap_or_default(),
                OutputFormat::Csv => csv_field(text),
            }
        });
        match a.format {
            OutputFormat::Jsonl => writeln!(
                out,
                "{{\"line\":{},\"template_id\":\"{}\",\"template\":{}}}",
                i + 1,
                id,
                rendered
            )?,
            OutputFormat::Csv => writeln!(out, "{},{},{}", i + 1, id, rendered)?,
        }
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
