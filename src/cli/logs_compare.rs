//! `vigil logs compare`: the log judge on two files, baseline and canary; `vigil logs learn`:
//! the pattern library that `compare --library` reads, mined from known-good logs.
//!
//! Output is the findings: a table of the patterns that matter by default, the full
//! [`LogFindings`] as one JSON object with `--json`. The exit code is 0 whether or not a
//! regression is found (the verdict is in the output); errors in the input exit non-zero.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use vigil_analyzer::logs::judge::{
    judge_logs, judge_logs_with_exposure, Change, Class, Exposure, Level, LogFindings,
    LogJudgeConfig, LogRule,
};
use vigil_analyzer::logs::records::{read_records, LogRecord, ReadStats};
use vigil_analyzer::logs::TemplateLibrary;
use vigil_analyzer::logs::{LibraryTemplate, Miner};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Baseline logs: JSON lines with `body` (and optional `time`, `severity`), or plain text,
    /// one message per line.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Canary logs, same formats.
    #[arg(long)]
    pub canary: PathBuf,
    /// Print the findings as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A saved template library (JSON); its patterns are not reported as new.
    #[arg(long)]
    pub library: Option<PathBuf>,
    /// Rules file (JSON): `{"rules": [{"action": "ignore"|"critical", "template_id"|"regex": …}]}`.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// The baseline's exposure (e.g. instance-seconds) for the rates, instead of its line count.
    /// Give both exposures or neither.
    #[arg(long, requires = "canary_exposure")]
    pub baseline_exposure: Option<f64>,
    /// The canary's exposure, in the same unit as `--baseline-exposure`.
    #[arg(long, requires = "baseline_exposure")]
    pub canary_exposure: Option<f64>,
}

#[derive(Args, Debug)]
pub struct LearnArgs {
    /// Where to write the library (JSON); an existing file is replaced.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Logs to learn from (a known-good baseline), in the formats `logs compare` reads.
    pub input: PathBuf,
}

/// Mines `input` the way the log judge mines a side (one miner per severity, the judge's
/// default miner settings) and writes the templates as a [`TemplateLibrary`]. Per severity, so
/// that a library pattern is the same pattern `compare` finds: an ERROR line never generalises
/// into an INFO template of the same shape.
pub fn learn(args: LearnArgs) -> anyhow::Result<()> {
    let (records, _) = read_file(&args.input)?;
    if records.is_empty() {
        anyhow::bail!(
            "{} has no log records: a library learned from nothing would mark nothing as known",
            args.input.display()
        );
    }
    let cfg = LogJudgeConfig::default();
    let mut miners: Vec<(Level, Miner)> = Vec::new();
    for rec in &records {
        let sev = Level::of_record(rec);
        let idx = match miners.iter().position(|(s, _)| *s == sev) {
            Some(i) => i,
            None => {
                miners.push((sev, Miner::new(cfg.miner.clone())));
                miners.len() - 1
            }
        };
        miners[idx].1.add_id(&rec.body);
    }
    miners.sort_by_key(|(s, _)| *s);
    let mut templates: Vec<LibraryTemplate> = Vec::new();
    for (_, miner) in &miners {
        for t in miner.library().templates {
            match templates.iter_mut().find(|e| e.id == t.id) {
                Some(e) => e.count += t.count,
                None => templates.push(t),
            }
        }
    }
    let library = TemplateLibrary {
        version: TemplateLibrary::VERSION,
        templates,
    };
    std::fs::write(&args.out, library.to_json())
        .with_context(|| format!("writing library {}", args.out.display()))?;
    eprintln!(
        "{} templates from {} records written to {}",
        library.templates.len(),
        records.len(),
        args.out.display()
    );
    Ok(())
}

fn read_file(path: &Path) -> anyhow::Result<(Vec<LogRecord>, ReadStats)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (records, stats) =
        read_records(BufReader::new(f)).with_context(|| format!("reading {}", path.display()))?;
    if stats.non_utf8 > 0 || stats.empty > 0 {
        tracing::warn!(
            file = %path.display(),
            empty_lines_skipped = stats.empty,
            non_utf8_lines_replaced = stats.non_utf8,
            "unusual input lines"
        );
    }
    Ok((records, stats))
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let (baseline, _) = read_file(&args.baseline)?;
    let (canary, _) = read_file(&args.canary)?;
    let mut cfg = LogJudgeConfig::default();
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rules {}", path.display()))?;
        cfg.rules =
            LogRule::parse_rules(&text).with_context(|| format!("rules {}", path.display()))?;
    }
    let library = match &args.library {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading library {}", path.display()))?;
            Some(
                TemplateLibrary::from_json(&text)
                    .with_context(|| format!("library {}", path.display()))?,
            )
        }
        None => None,
    };
    let findings = match (args.baseline_exposure, args.canary_exposure) {
        (Some(b), Some(c)) => {
            for (name, v) in [("--baseline-exposure", b), ("--canary-exposure", c)] {
                if !(v.is_finite() && v > 0.0) {
                    anyhow::bail!("{name} must be a finite number > 0, got {v}");
                }
            }
            let exposure = Exposure {
                baseline: b,
                canary: c,
            };
            judge_logs_with_exposure(&baseline, &canary, exposure, library.as_ref(), &cfg)?
        }
        _ => judge_logs(&baseline, &canary, library.as_ref(), &cfg)?,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer(&mut out, &findings)?;
        writeln!(out)?;
    } else {
        print_human(&mut out, &findings)?;
    }
    out.flush()?;
    Ok(())
}

fn fmt_ratio(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else if x.is_infinite() {
        "inf".to_owned()
    } else {
        format!("{x:.2}")
    }
}

fn print_human(out: &mut impl Write, f: &LogFindings) -> std::io::Result<()> {
    let c = &f.counts;
    if let Some(why) = &f.inconclusive {
        writeln!(out, "log judge inconclusive: {why}")?;
    } else {
        writeln!(
            out,
            "log score {:.0}/100: {}",
            f.score,
            if f.regression {
                "REGRESSION"
            } else {
                "no regression"
            }
        )?;
    }
    writeln!(
        out,
        "baseline {} lines, canary {} lines; {} patterns: {} critical, {} error, {} warning, {} info, {} ignored; {} new",
        f.baseline_lines,
        f.canary_lines,
        f.patterns.len(),
        c.critical,
        c.error,
        c.warning,
        c.info,
        c.ignore,
        c.new
    )?;
    let shown: Vec<_> = f
        .patterns
        .iter()
        .filter(|p| p.class > Class::Info || p.change == Change::New)
        .collect();
    if shown.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<9} {:<6} {:<9} {:>8} {:>8} {:>22} {:>9}  template",
        "class", "sev", "change", "baseline", "canary", "rate ratio [95% CI]", "q"
    )?;
    for p in shown {
        let ci = format!(
            "{} [{}, {}]",
            fmt_ratio(p.rate_ratio),
            fmt_ratio(p.ci_low),
            fmt_ratio(p.ci_high)
        );
        writeln!(
            out,
            "{:<9} {:<6} {:<9} {:>8} {:>8} {:>22} {:>9.2e}  {} ({})",
            format!("{:?}", p.class).to_lowercase(),
            format!("{:?}", p.severity).to_lowercase(),
            format!("{:?}", p.change).to_lowercase(),
            p.baseline_count,
            p.canary_count,
            ci,
            p.q_value,
            p.template,
            p.template_id
        )?;
        if let Some(t) = &p.first_seen {
            writeln!(out, "    first seen {t}")?;
        }
        for e in &p.examples {
            writeln!(out, "    e.g. {e}")?;
        }
    }
    Ok(())
}
