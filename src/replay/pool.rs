//! The replay worker pool: scenario folders loaded and replayed on several threads, results in
//! input order. A library function rather than command code, so tests and benchmarks replay a
//! corpus exactly as `vigil replay` does.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;

use super::{scenario, ReplayConfig, ScenarioResult};
use crate::replay;

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
