//! `vigil replay [DIR]`: replay recorded scenarios through the judges and report how often and
//! how quickly they were right.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::replay::judges::JudgeConfig;
use crate::replay::{self, report, scenario, JudgeName, ReplayConfig, ScenarioResult};
use crate::verdict::Signal;

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
    /// Analysis interval in seconds.
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
    /// (four more runs of the corpus).
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
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("datasets")
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
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!(
            "--interval: expected a positive number of seconds, got {}",
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

/// Loads and replays every folder on `jobs` threads, keeping input order. A folder that fails to
/// load is an Error result with the loader's message, not an abort.
pub fn replay_all(
    folders: &[PathBuf],
    config: &ReplayConfig,
    jobs: Option<usize>,
    progress: bool,
) -> Result<Vec<ScenarioResult>> {
    let mut runs = replay_variants(folders, std::slice::from_ref(config), jobs, progress)?;
    Ok(runs.pop().unwrap_or_default())
}

/// [`replay_all`] under several configurations at once: each folder is loaded once and replayed
/// under every configuration, so `--ablation` does not read the corpus again per variant. Returns
/// one result list per configuration, each in input order.
pub fn replay_variants(
    folders: &[PathBuf],
    configs: &[ReplayConfig],
    jobs: Option<usize>,
    progress: bool,
) -> Result<Vec<Vec<ScenarioResult>>> {
    let jobs = jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Vec<ScenarioResult>>>> = Mutex::new(vec![None; folders.len()]);
    let bar = Progress::new(folders.len(), progress);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(folders.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= folders.len() {
                    break;
                }
                let folder = &folders[i];
                let results: Vec<ScenarioResult> = match scenario::load(folder) {
                    Ok(s) => configs
                        .iter()
                        .map(|c| replay::replay_scenario(&s, c))
                        .collect(),
                    Err(e) => {
                        tracing::warn!("{e}");
                        let id = folder
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let mut r = replay::error_result(&id, &e.to_string());
                        r.expected = expected_of(folder);
                        vec![r; configs.len()]
                    }
                };
                if let Ok(mut s) = slots.lock() {
                    s[i] = Some(results);
                }
                bar.tick(finished.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    bar.finish();
    let slots = slots
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a replay worker panicked"))?;
    // Transpose: per folder, per configuration -> per configuration, per folder.
    let mut runs: Vec<Vec<ScenarioResult>> = vec![Vec::with_capacity(folders.len()); configs.len()];
    for per_config in slots.into_iter().flatten() {
        for (run, r) in runs.iter_mut().zip(per_config) {
            run.push(r);
        }
    }
    Ok(runs)
}

/// `expected` of a scenario that failed to load, if its scenario.json still says it, so that the
/// Error is counted against the right side of the measures.
fn expected_of(folder: &Path) -> &'static str {
    let text = std::fs::read_to_string(folder.join("scenario.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match v.get("expected").and_then(|e| e.as_str()) {
        Some("pass") => "pass",
        Some("fail") => "fail",
        _ => "unknown",
    }
}

/// A one-line progress bar on stderr (only when stderr is a terminal).
struct Progress {
    total: usize,
    enabled: bool,
    start: Instant,
}

impl Progress {
    fn new(total: usize, wanted: bool) -> Self {
        Self {
            total,
            enabled: wanted && std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    fn tick(&self, done: usize) {
        if !self.enabled {
            return;
        }
        let width = 30;
        let filled = done * width / self.total.max(1);
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rreplaying [{}{}] {done}/{} ({rate:.1}/s)",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.total
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}
