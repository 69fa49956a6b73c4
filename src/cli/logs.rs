//! `vigil logs …`: mine templates from log lines (`parse`) and measure accuracy on labelled
//! logs (`eval`). The nested enum is the place to add further `logs` subcommands.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use vigil_analyzer::logs::eval::{self, SystemResult};
use vigil_analyzer::logs::parse::parse_reader;
use vigil_analyzer::logs::{IdMap, LogFormat};

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Assign each input line a template; prints line, template_id, template per line.
    Parse(ParseArgs),
    /// Accuracy (GA, PA, FGA, FTA) on every `*_structured_corrected.csv` under DIR.
    Eval(EvalArgs),
    /// Compare a canary's logs with its baseline's: new patterns, significant rate changes, score.
    Compare(super::logs_compare::CompareArgs),
    /// Mine a baseline's logs into a pattern library (JSON) for `logs compare --library`.
    Learn(super::logs_compare::LearnArgs),
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
    /// Also choose the miner's settings (`similarity`, `distinct_constants`) on all systems but
    /// one and score them on that one, for each system in turn: the honest estimate for a system
    /// never seen.
    #[arg(long)]
    pub leave_one_out: bool,
}

pub fn run(cmd: LogsCommand) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Parse(a) => parse(a),
        LogsCommand::Eval(a) => eval_cmd(a),
        LogsCommand::Compare(a) => super::logs_compare::compare(a),
        LogsCommand::Learn(a) => super::logs_compare::learn(a),
    }
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
    if stats.empty
        + stats.invalid_utf8
        + stats.with_nul
        + stats.long
        + stats.truncated
        + stats.header_mismatch
        > 0
    {
        tracing::warn!(
            empty = stats.empty,
            invalid_utf8 = stats.invalid_utf8,
            with_nul = stats.with_nul,
            long = stats.long,
            truncated = stats.truncated,
            header_mismatch = stats.header_mismatch,
            "unusual input lines (invalid UTF-8 replaced by U+FFFD; unmatched headers mined whole; lines over 4 MiB mined on their first 4 MiB)"
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
    let data = files
        .iter()
        .map(|f| eval::load_dataset(f))
        .collect::<Result<Vec<_>, _>>()?;
    let default = vigil_analyzer::logs::MinerConfig::default();
    let results: Vec<SystemResult> = data.iter().map(|d| eval::evaluate(d, &default)).collect();
    let avg = eval::average(&results);
    let loo = a
        .leave_one_out
        .then(|| eval::leave_one_out(&data, &eval::candidate_configs()));
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::json!({ "systems": results, "average": avg });
        if let Some(loo) = &loo {
            v["leave_one_out"] = serde_json::json!({
                "systems": loo,
                "average": eval::average_held_out(loo),
            });
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write_table(&mut out, &results, &avg)?;
        if let Some(loo) = &loo {
            write_loo_table(&mut out, loo)?;
        }
    }
    Ok(())
}

fn write_loo_table(out: &mut impl Write, loo: &[eval::HeldOut]) -> std::io::Result<()> {
    writeln!(
        out,
        "\nleave one system out (settings chosen on the other systems, scored on this one):"
    )?;
    writeln!(
        out,
        "{:<12} {:>6} {:>6} {:>6} {:>6}  {:>10} {:>9} {:>8}",
        "held out", "GA", "PA", "FGA", "FTA", "similarity", "distinct", "train GA"
    )?;
    for h in loo {
        let s = &h.scores;
        writeln!(
            out,
            "{:<12} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {:>10.2} {:>9} {:>8.3}",
            h.system, s.ga, s.pa, s.fga, s.fta, h.similarity, h.distinct_constants, h.train_ga
        )?;
    }
    let avg = eval::average_held_out(loo);
    writeln!(
        out,
        "{:<12} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
        "LOSO average", avg.ga, avg.pa, avg.fga, avg.fta
    )
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
                self.0[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
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
