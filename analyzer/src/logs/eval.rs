//! Accuracy on labelled logs (Loghub-2k), with the metrics exactly as logpai's evaluators define
//! them: GA and FGA from logparser's / Loghub-2.0's `get_accuracy`, PA as exact template-string
//! equality, FTA from Loghub-2.0's `evaluate_template_level` (Khan et al. 2022).
//!
//! A predicted group is the set of messages sharing a predicted template; since a template id is
//! the hash of its text, grouping by id and by text are the same thing.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{LogError, Miner, MinerConfig};

/// The four accuracy measures, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Scores {
    /// Grouping accuracy: share of messages whose predicted group equals their true group.
    pub ga: f64,
    /// Parsing accuracy: share of messages whose predicted template text equals the true one.
    pub pa: f64,
    /// F1 of the share of predicted groups (precision) and true groups (recall) matched exactly.
    pub fga: f64,
    /// F1 of template accuracy: a predicted template is correct when all its messages have exactly
    /// that true template.
    pub fta: f64,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Scores predictions against ground truth. `truth[i]` is the true template of message `i`,
/// `group[i]` its predicted group key and `template[i]` its predicted template text.
/// Returns all zeros for empty input.
pub fn score<G: Eq + Hash>(truth: &[&str], group: &[G], template: &[&str]) -> Scores {
    let n = truth.len().min(group.len()).min(template.len());
    if n == 0 {
        return Scores::default();
    }
    let mut truth_size: HashMap<&str, usize> = HashMap::new();
    for t in &truth[..n] {
        *truth_size.entry(t).or_default() += 1;
    }
    // Per predicted group: its size and its single true template, or None once it mixes two.
    let mut groups: HashMap<&G, (usize, Option<&str>)> = HashMap::new();
    for i in 0..n {
        let e = groups.entry(&group[i]).or_insert((0, Some(truth[i])));
        e.0 += 1;
        if e.1 != Some(truth[i]) {
            e.1 = None;
        }
    }
    let mut grouped_messages = 0usize;
    let mut grouped_events = 0usize;
    for (size, t) in groups.values() {
        if let Some(t) = t {
            if truth_size.get(t) == Some(size) {
                grouped_messages += size;
                grouped_events += 1;
            }
        }
    }
    let pa_count = (0..n).filter(|&i| truth[i] == template[i]).count();
    // FTA groups by predicted template *text*.
    let mut by_text: HashMap<&str, bool> = HashMap::new();
    for i in 0..n {
        let ok = truth[i] == template[i];
        by_text
            .entry(template[i])
            .and_modify(|c| *c &= ok)
            .or_insert(ok);
    }
    let correct_templates = by_text.values().filter(|&&c| c).count();
    let pga = grouped_events as f64 / groups.len() as f64;
    let rga = grouped_events as f64 / truth_size.len() as f64;
    let pta = correct_templates as f64 / by_text.len() as f64;
    let rta = correct_templates as f64 / truth_size.len() as f64;
    Scores {
        ga: grouped_messages as f64 / n as f64,
        pa: pa_count as f64 / n as f64,
        fga: f1(pga, rga),
        fta: f1(pta, rta),
    }
}

/// Result for one labelled system.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    /// Loghub system name (e.g. `HDFS`), as in `DRAIN_REFERENCE`.
    pub system: String,
    /// Labelled messages evaluated.
    pub messages: usize,
    /// Distinct ground-truth templates among them.
    pub true_templates: usize,
    /// Distinct final templates the miner produced for them.
    pub predicted_templates: usize,
    /// The accuracy metrics, flattened into this object in JSON.
    #[serde(flatten)]
    pub scores: Scores,
}

/// Drain's numbers on the corrected Loghub-2k labels (drain3 with logparser's per-system
/// settings), from the README of the shared Loghub slice; `(system, GA, PA, FGA, FTA)`.
pub(crate) const DRAIN_REFERENCE: [(&str, f64, f64, f64, f64); 10] = [
    ("HDFS", 0.998, 0.625, 0.867, 0.600),
    ("Hadoop", 0.948, 0.513, 0.820, 0.295),
    ("Spark", 0.920, 0.382, 0.769, 0.400),
    ("Zookeeper", 0.967, 0.497, 0.854, 0.354),
    ("BGL", 0.963, 0.344, 0.833, 0.219),
    ("HPC", 0.887, 0.635, 0.753, 0.366),
    ("Thunderbird", 0.955, 0.046, 0.773, 0.248),
    ("Windows", 0.997, 0.462, 0.932, 0.408),
    ("Linux", 0.876, 0.172, 0.947, 0.421),
    ("Android", 0.857, 0.530, 0.770, 0.516),
];

/// Drain's reference scores for a system name, if it is one of the ten.
pub fn drain_reference(system: &str) -> Option<Scores> {
    DRAIN_REFERENCE
        .iter()
        .find(|r| r.0 == system)
        .map(|r| Scores {
            ga: r.1,
            pa: r.2,
            fga: r.3,
            fta: r.4,
        })
}

/// Every `*_structured_corrected.csv` under `dir` (recursively), sorted by path.
pub fn find_datasets(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| io_err(&d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&d, e))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_structured_corrected.csv"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn io_err(p: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        path: p.display().to_string(),
        source,
    }
}

/// The system name of a dataset file: `HDFS_2k.log_structured_corrected.csv` gives `HDFS`.
pub(crate) fn system_name(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name
        .strip_suffix("_structured_corrected.csv")
        .unwrap_or(name);
    let stem = stem.strip_suffix(".log").unwrap_or(stem);
    stem.strip_suffix("_2k").unwrap_or(stem).to_owned()
}

/// One labelled system, read once so that several configurations can be scored on it.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Loghub system name (e.g. `HDFS`).
    pub system: String,
    /// The `Content` column, one message per row.
    pub contents: Vec<String>,
    /// The `EventTemplate` column (the corrected labels), row for row.
    pub truth: Vec<String>,
}

/// Reads one labelled CSV (`Content` and `EventTemplate` columns).
pub fn load_dataset(path: &Path) -> Result<Dataset, LogError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let dataset_err = |reason: String| LogError::Dataset {
        path: path.display().to_string(),
        reason,
    };
    let rows = parse_csv(&text).map_err(dataset_err)?;
    let header = rows
        .first()
        .ok_or_else(|| dataset_err("empty file, expected a header row".into()))?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| dataset_err(format!("expected a `{name}` column in the header")))
    };
    let content_col = col("Content")?;
    let truth_col = col("EventTemplate")?;
    let mut contents = Vec::with_capacity(rows.len());
    let mut truth = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate().skip(1) {
        if r.len() == 1 && r[0].is_empty() {
            continue;
        }
        let (Some(c), Some(t)) = (r.get(content_col), r.get(truth_col)) else {
            return Err(dataset_err(format!(
                "row {}: expected {} fields, found {}",
                i + 1,
                header.len(),
                r.len()
            )));
        };
        contents.push(c.clone());
        truth.push(t.clone());
    }
    Ok(Dataset {
        system: system_name(path),
        contents,
        truth,
    })
}

/// Runs a miner with `config` over a dataset's messages and scores its final grouping.
pub fn evaluate(data: &Dataset, config: &MinerConfig) -> SystemResult {
    let mut miner = Miner::new(config.clone());
    let ids: Vec<_> = data.contents.iter().map(|c| miner.add_id(c)).collect();
    let finals: Vec<_> = ids.iter().map(|&id| miner.resolve(id)).collect();
    let templates: Vec<&str> = finals
        .iter()
        .map(|&id| miner.template(id).unwrap_or(""))
        .collect();
    let truth: Vec<&str> = data.truth.iter().map(String::as_str).collect();
    let scores = score(&truth, &finals, &templates);
    let predicted_templates = finals
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let true_templates = truth.iter().collect::<std::collections::HashSet<_>>().len();
    SystemResult {
        system: data.system.clone(),
        messages: truth.len(),
        true_templates,
        predicted_templates,
        scores,
    }
}

/// Runs the default miner over the `Content` column of one labelled CSV and scores it against
/// its `EventTemplate` column.
pub fn evaluate_file(path: &Path) -> Result<SystemResult, LogError> {
    Ok(evaluate(&load_dataset(path)?, &MinerConfig::default()))
}

/// The miner settings that are chosen from data: the candidates [`leave_one_out`] picks from.
/// The default configuration comes first, so a tie keeps it.
pub fn candidate_configs() -> Vec<MinerConfig> {
    let default = MinerConfig::default();
    let mut out = vec![default.clone()];
    for similarity in [0.4, 0.5, 0.6, 0.7] {
        for distinct_constants in [2, 3, 4] {
            if (similarity - default.similarity).abs() < 1e-9
                && distinct_constants == default.distinct_constants
            {
                continue;
            }
            let mut c = MinerConfig::default();
            c.similarity = similarity;
            c.distinct_constants = distinct_constants;
            out.push(c);
        }
    }
    out
}

/// One fold of [`leave_one_out`]: the setting chosen without the held-out system and its score
/// there.
#[derive(Clone, Debug, Serialize)]
pub struct HeldOut {
    /// The system left out of the choice and scored.
    pub system: String,
    /// `similarity` of the configuration chosen on the other systems.
    pub similarity: f64,
    /// `distinct_constants` of the configuration chosen on the other systems.
    pub distinct_constants: usize,
    /// Mean GA of the chosen configuration on the other systems.
    pub train_ga: f64,
    /// The held-out system's scores with the chosen configuration, flattened in JSON.
    #[serde(flatten)]
    pub scores: Scores,
}

/// Leave-one-system-out: for each system, the candidate with the best mean GA on all the *other*
/// systems (the first on a tie) is scored on it. The mean of these held-out scores estimates how
/// settings chosen on the systems we have do on a system nobody tuned for, which the scores with
/// the default settings on the same systems (chosen looking at all of them) overstate.
pub fn leave_one_out(data: &[Dataset], candidates: &[MinerConfig]) -> Vec<HeldOut> {
    // ga[c][s]: candidate c on system s.
    let runs: Vec<Vec<SystemResult>> = candidates
        .iter()
        .map(|c| data.iter().map(|d| evaluate(d, c)).collect())
        .collect();
    let mut out = Vec::with_capacity(data.len());
    for (s, d) in data.iter().enumerate() {
        let mut best: Option<(usize, f64)> = None;
        for (c, run) in runs.iter().enumerate() {
            let others = run
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != s)
                .map(|(_, r)| r.scores.ga);
            let n = data.len().saturating_sub(1).max(1) as f64;
            let mean = others.sum::<f64>() / n;
            if best.is_none_or(|(_, b)| mean > b + 1e-12) {
                best = Some((c, mean));
            }
        }
        let Some((c, train_ga)) = best else {
            continue;
        };
        out.push(HeldOut {
            system: d.system.clone(),
            similarity: candidates[c].similarity,
            distinct_constants: candidates[c].distinct_constants,
            train_ga,
            scores: runs[c][s].scores,
        });
    }
    out
}

/// Mean of each score over systems (zeros for none).
pub fn average(results: &[SystemResult]) -> Scores {
    let n = results.len() as f64;
    if results.is_empty() {
        return Scores::default();
    }
    let sum = |f: fn(&Scores) -> f64| results.iter().map(|r| f(&r.scores)).sum::<f64>() / n;
    Scores {
        ga: sum(|s| s.ga),
        pa: sum(|s| s.pa),
        fga: sum(|s| s.fga),
        fta: sum(|s| s.fta),
    }
}

/// Mean of each held-out score over the folds of [`leave_one_out`] (zeros for none).
pub fn average_held_out(folds: &[HeldOut]) -> Scores {
    if folds.is_empty() {
        return Scores::default();
    }
    let n = folds.len() as f64;
    let sum = |f: fn(&Scores) -> f64| folds.iter().map(|h| f(&h.scores)).sum::<f64>() / n;
    Scores {
        ga: sum(|s| s.ga),
        pa: sum(|s| s.pa),
        fga: sum(|s| s.fga),
        fta: sum(|s| s.fta),
    }
}

/// Minimal RFC 4180 reader: comma-separated, `"`-quoted fields with `""` escapes and embedded
/// newlines; CRLF or LF row ends. Enough for Loghub's pandas-written CSVs without a dependency.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
                line += 1;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err(format!(
            "line {line}: a quoted field is not closed (expected `\"`)"
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}
