//! `vigil replay [DIR]`: replay recorded scenarios through the judges and report how often and
//! how quickly they were right.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::replay::pool::{replay_all, replay_variants};
use crate::replay::{self, report, scenario, JudgeName, ReplayConfig};
use vigil_analyzer::judge::JudgeConfig;
use vigil_analyzer::verdict::Signal;

/// Arguments of `vigil replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A directory of scenario folders, or one scenario folder. Default: the bundled `datasets/`.
    pub dir: Option<PathBuf>,
    /// Print one JSON object (`scenarios`, `summary`) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Analysis interval in seconds, from 1 up to a scenario's canary window (a longer one makes
    /// that scenario an Error row).
    #[arg(long, default_value_t = 30.0)]
    pub interval: f64,
    /// Use the whole metric baseline, even rows overlapping earlier known incidents.
    #[arg(long)]
    pub no_mask: bool,
    /// Seconds after an earlier known incident's end during which baseline rows are still masked
    /// (the service recovering).
    #[arg(long, value_name = "SECONDS", default_value_t = ReplayConfig::default().incident_recovery_s)]
    pub recovery: f64,
    /// Worker threads (default: available cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also replay with each of Vigil's signals left out in turn and report what each one adds
    /// (one more run of the corpus per signal).
    #[arg(long)]
    pub ablation: bool,
    /// Change one of the judges' settings, `KEY=VALUE` (repeatable), e.g. `--set metric.alpha=0.02`,
    /// to see what a more or less sensitive Vigil catches and costs. `--set help` lists the keys.
    /// The settings used are printed with the summary (`summary.settings` in JSON).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn default_dir() -> PathBuf {
    let here = PathBuf::from("datasets");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets")
}

/// Runs `vigil replay`; returns the results so callers (tests) can inspect them.
pub fn run(args: &ReplayArgs) -> Result<()> {
    if args.settings.iter().any(|s| s == "help") {
        let mut out = std::io::stdout().lock();
        for (key, accepts) in JudgeConfig::SETTINGS {
            writeln!(out, "{key:<28} {accepts}")?;
        }
        return Ok(());
    }
    // Below a second, per-interval work is all overhead (0.001 ran 44 s on two scenarios) and no
    // source delivers telemetry that finely; the upper bound, the canary window, is checked per
    // scenario when it is known.
    if !(args.interval.is_finite() && args.interval >= 1.0) {
        bail!(
            "--interval: expected seconds from 1 up to the canary window's length, got {}",
            args.interval
        );
    }
    if !(args.recovery.is_finite() && args.recovery >= 0.0) {
        bail!(
            "--recovery: expected a non-negative number of seconds, got {}",
            args.recovery
        );
    }
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let folders = scenario::discover(&dir)
        .with_context(|| format!("reading scenarios from {}", dir.display()))?;
    if folders.is_empty() {
        bail!(
            "{}: no scenario folders (a folder with scenario.json, or a directory of them)",
            dir.display()
        );
    }
    let mut config = ReplayConfig {
        interval_s: args.interval,
        mask_known_incidents: !args.no_mask,
        incident_recovery_s: args.recovery,
        ..ReplayConfig::default()
    };
    let mut settings = std::collections::BTreeMap::new();
    for s in &args.settings {
        let Some((key, value)) = s.split_once('=') else {
            bail!("--set {s}: expected KEY=VALUE (`--set help` lists the keys)");
        };
        let key = key.trim();
        config.judges.set(key, value)?;
        settings.insert(key.to_string(), value.trim().to_string());
    }
    config.judges.check()?;
    let start = Instant::now();
    let results = replay_all(&folders, &config, args.jobs, !args.quiet)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut summary = report::summarise(&results, seconds);
    summary.settings = settings;
    if args.ablation {
        let variants: Vec<ReplayConfig> = Signal::ALL
            .iter()
            .map(|signal| {
                let mut without = config.clone();
                without.judges.without = vec![*signal];
                without
            })
            .collect();
        let runs = replay_variants(&folders, &variants, args.jobs, false)?;
        for (signal, rs) in Signal::ALL.iter().zip(&runs) {
            summary
                .ablation
                .insert(signal.as_str(), report::measures(rs, JudgeName::Vigil));
            summary
                .ablation_by_fault_type
                .insert(signal.as_str(), report::by_fault_type(rs, JudgeName::Vigil));
        }
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &report::to_json(&results, &summary))?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report::to_text(&results, &summary))?;
    }
    if let Some(path) = &args.html {
        let html = replay::html::render(&folders, &results, &summary, &config);
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
        tracing::info!("HTML report written to {}", path.display());
    }
    Ok(())
}
