//! The log judge: compares the canary's log patterns with the baseline's over one analysis window.
//!
//! Both sides are mined by the same miner (baseline first, optionally seeded from a saved
//! library), so a pattern has one id on both sides. Each pattern is then:
//! - **new** when the canary has it and neither the baseline nor the library does;
//! - **rose** / **fell** when the exact two-sample rate test (counts normalised by each side's
//!   volume: total lines, or instance-seconds if the caller gives them) is significant after
//!   Benjamini-Hochberg control of the false discovery rate over all patterns;
//! - classified critical / error / warning / info / ignore from its severity and its change, with
//!   user rules (by template id or regex) overriding to `ignore` or `critical`.
//!
//! Lines are mined per severity (one miner per level): a Drain-style miner buckets messages by
//! length and first token, and with logback-style bodies that start with a timestamp a new ERROR
//! line could otherwise generalise into an INFO template of the same length and vanish.
//!
//! The score is 100 for "nothing in the logs suggests a regression" and falls with each critical,
//! error and warning pattern by fusion's [`Penalties`] — the same number fusion gives the logs
//! signal before weighting it against metrics and traces.

use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use vigil_models::counts::{bh_adjust, rate_test, CountsError};

use super::records::LogRecord;
use super::{Miner, MinerConfig, TemplateId, TemplateLibrary};
pub use crate::telemetry::Level;
use crate::verdict::Penalties;

/// How much a pattern matters to the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Silenced by a user `ignore` rule: listed, never scored.
    Ignore,
    /// Unchanged or fell, or rose/new at a level that says nothing about failure (info, debug):
    /// listed for context, never scored.
    Info,
    /// A new or risen WARN pattern, or a new ERROR pattern whose count is not yet significant
    /// (the same rate test and FDR as a rise): a Warn finding.
    Warning,
    /// A risen ERROR pattern, or a new one whose count is significant — 0 baseline lines against
    /// k canary lines, weighed by the two sides' volumes, under the FDR over all patterns: a Fail
    /// finding, and a regression. Healthy services log stray business errors, so a new ERROR
    /// pattern alone is not evidence; how many lines it takes depends on how much each side
    /// logged, which a fixed count (the rule before, 5 lines, chosen on the Nezha pairs) ignores.
    Error,
    /// A new or risen FATAL pattern, or a canary pattern matched by a user `critical` rule: a Fail
    /// finding, and a regression.
    Critical,
}

/// What happened to a pattern's rate from baseline to canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// In the canary, not in the baseline, not in the library.
    New,
    /// The canary's rate is significantly higher (q-value within the FDR) and at least
    /// [`LogJudgeConfig::min_rate_ratio`] times the baseline's.
    Rose,
    /// The canary's rate is significantly lower. Never counted against the canary.
    Fell,
    /// No significant difference, or a rise too small to matter.
    Unchanged,
}

/// A user rule: patterns it matches are classified `action` whatever the statistics say.
#[derive(Clone, Debug)]
pub struct LogRule {
    /// The class forced on matching patterns.
    pub action: RuleAction,
    /// Which patterns the rule applies to.
    pub matcher: RuleMatcher,
}

/// What a user rule does to the patterns it matches; spelled `ignore` / `critical` in the rules
/// file and in [`PatternFinding::rule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Known noise: the pattern is classified [`Class::Ignore`] whatever its change.
    Ignore,
    /// Any occurrence in the canary is critical (e.g. `OutOfMemoryError`).
    Critical,
}

/// How a user rule selects patterns.
#[derive(Clone, Debug)]
pub enum RuleMatcher {
    /// Exactly one template, by its stable id (the same in every run, see [`TemplateId`]).
    TemplateId(TemplateId),
    /// Searched in the template text and in the pattern's example lines.
    Regex(Regex),
}

impl LogRule {
    /// Parses a rules file: `{"rules": [{"action": "ignore", "template_id": "…"},
    /// {"action": "critical", "regex": "OutOfMemory"}]}`; each rule has exactly one matcher.
    pub fn parse_rules(json: &str) -> Result<Vec<LogRule>, JudgeError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            rules: Vec<Raw>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            action: RuleAction,
            #[serde(default)]
            template_id: Option<String>,
            #[serde(default)]
            regex: Option<String>,
        }
        let file: File = serde_json::from_str(json).map_err(|e| JudgeError::Rules {
            index: None,
            reason: e.to_string(),
        })?;
        file.rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let err = |reason: String| JudgeError::Rules {
                    index: Some(i),
                    reason,
                };
                let matcher =
                    match (r.template_id, r.regex) {
                        (Some(id), None) => RuleMatcher::TemplateId(id.parse().map_err(|_| {
                            err(format!("template_id `{id}`: expected 16 hex digits"))
                        })?),
                        (None, Some(re)) => RuleMatcher::Regex(
                            Regex::new(&re).map_err(|e| err(format!("regex `{re}`: {e}")))?,
                        ),
                        _ => {
                            return Err(err(
                                "expected exactly one of `template_id` or `regex`".to_owned()
                            ))
                        }
                    };
                Ok(LogRule {
                    action: r.action,
                    matcher,
                })
            })
            .collect()
    }

    fn matches(&self, id: TemplateId, template: &str, examples: &[String]) -> bool {
        match &self.matcher {
            RuleMatcher::TemplateId(t) => *t == id,
            RuleMatcher::Regex(re) => {
                re.is_match(template) || examples.iter().any(|e| re.is_match(e))
            }
        }
    }
}

/// Errors of the log judge.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The rules file is malformed or a rule is invalid; nothing is judged with a partial rule set.
    #[error("rules{}: {reason}", index.map(|i| format!(" (rule {i})")).unwrap_or_default())]
    Rules {
        /// 0-based position of the offending rule in `rules`; `None` when the file as a whole
        /// does not parse.
        index: Option<usize>,
        /// What was wrong, naming the field.
        reason: String,
    },
    /// The rate test rejected its inputs: a non-positive or non-finite exposure, or a
    /// `confidence` outside (0, 1).
    #[error(transparent)]
    Counts(#[from] CountsError),
}

/// Settings of the judge. `Default` is what the incident evaluation was measured with.
#[derive(Clone, Debug)]
pub struct LogJudgeConfig {
    /// Configuration of every per-severity miner; both sides use it, so ids are comparable.
    pub miner: MinerConfig,
    /// False discovery rate for rose/fell (BH over all patterns).
    pub fdr: f64,
    /// Confidence level of the rate-ratio intervals.
    pub confidence: f64,
    /// A significant rise must also be at least this large to count as one (ratio of rates).
    pub min_rate_ratio: f64,
    /// Points the score loses per pattern: `critical` and `error` patterns are Fail findings,
    /// `warning` ones Warn findings, exactly as fusion scores the logs signal.
    pub penalties: Penalties,
    /// User rules, tried in order; the first that matches a pattern decides its class.
    pub rules: Vec<LogRule>,
}

impl Default for LogJudgeConfig {
    fn default() -> Self {
        LogJudgeConfig {
            miner: MinerConfig::default(),
            fdr: 0.05,
            confidence: 0.95,
            min_rate_ratio: 1.5,
            penalties: Penalties::default(),
            rules: Vec::new(),
        }
    }
}

/// Each side's volume, the denominator of the rates. Lines by default; instance-seconds when the
/// caller knows them (then a canary with fewer replicas is not mistaken for a quieter one).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The baseline's volume (lines or instance-seconds); must be positive and finite for the
    /// rate test.
    pub baseline: f64,
    /// The canary's volume, in the same unit as `baseline`.
    pub canary: f64,
}

/// One pattern's comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatternFinding {
    /// Final (resolved) id of the template: stable across runs, usable in a `template_id` rule.
    pub template_id: TemplateId,
    /// The template text, `<*>` where the miner found a variable.
    pub template: String,
    /// The level the pattern was mined under; the same text at two levels is two findings.
    pub severity: Level,
    /// How much the pattern matters to the verdict (drives the score).
    pub class: Class,
    /// What happened to its rate from baseline to canary.
    pub change: Change,
    /// Baseline lines with this pattern in the window.
    pub baseline_count: u64,
    /// Canary lines with this pattern in the window.
    pub canary_count: u64,
    /// Canary rate / baseline rate; `null` in JSON when unbounded (baseline count 0).
    pub rate_ratio: f64,
    /// Lower bound of the rate ratio's confidence interval (level
    /// [`LogJudgeConfig::confidence`]); 0 when the test could not run.
    pub ci_low: f64,
    /// `null` in JSON when unbounded.
    pub ci_high: f64,
    /// Two-sided exact p-value of the rate test.
    pub p_value: f64,
    /// BH-adjusted p-value over all patterns of this comparison.
    pub q_value: f64,
    /// Time of the first canary record with this pattern (input order), if records carry times.
    pub first_seen: Option<String>,
    /// Up to two distinct example lines, from the canary when it has the pattern.
    pub examples: Vec<String>,
    /// The user rule that decided the class, if any (`ignore` or `critical`).
    pub rule: Option<RuleAction>,
}

/// The judge's result for one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogFindings {
    /// 0–100; 100 = no evidence of a regression in the logs. NaN (`null` in JSON) when the
    /// judgement is inconclusive: no data on a side is not evidence of health.
    pub score: f64,
    /// Why the logs cannot be judged (a side without records), `None` when they were.
    pub inconclusive: Option<String>,
    /// At least one `critical` or `error` pattern.
    pub regression: bool,
    /// Baseline records judged (all severities).
    pub baseline_lines: u64,
    /// Canary records judged (all severities).
    pub canary_lines: u64,
    /// The denominators the rates were computed with (lines unless the caller gave
    /// instance-seconds).
    pub exposure: Exposure,
    /// Patterns per class, for a one-line summary.
    pub counts: ClassCounts,
    /// All patterns, most important first (class, then new before changed, then q-value).
    pub patterns: Vec<PatternFinding>,
}

/// Patterns per [`Class`] of one comparison; the class fields add up to the number of patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    /// Patterns classified [`Class::Critical`].
    pub critical: usize,
    /// Patterns classified [`Class::Error`].
    pub error: usize,
    /// Patterns classified [`Class::Warning`].
    pub warning: usize,
    /// Patterns classified [`Class::Info`].
    pub info: usize,
    /// Patterns classified [`Class::Ignore`] by a user rule.
    pub ignore: usize,
    /// Patterns new in the canary, any class.
    pub new: usize,
}

/// Judges a canary's logs against its baseline's, with line volume as exposure.
pub fn judge_logs(
    baseline: &[LogRecord],
    canary: &[LogRecord],
    library: Option<&TemplateLibrary>,
    cfg: &LogJudgeConfig,
) -> Result<LogFindings, JudgeError> {
    let exposure = Exposure {
        baseline: baseline.len() as f64,
        canary: canary.len() as f64,
    };
    judge_logs_with_exposure(baseline, canary, exposure, library, cfg)
}

/// The first two distinct bodies of a run of lines, each with its position in mining order, so
/// that runs mined apart (lines whose add-time templates later merged) combine into exactly the
/// first two distinct bodies of all their lines together: the earliest line of the union is the
/// earliest of one run, and the earliest line with another body is the first or second distinct
/// body of one run — so two per run always suffice.
#[derive(Clone, Debug, Default)]
struct Examples(Vec<(u64, String)>);

impl Examples {
    fn push(&mut self, seq: u64, body: &str) {
        if self.0.len() < 2 && self.0.iter().all(|(_, e)| e != body) {
            self.0.push((seq, body.to_owned()));
        }
    }

    /// The first two distinct bodies of several runs together, in mining order.
    fn combined<'a>(runs: impl Iterator<Item = &'a Examples>) -> Vec<String> {
        let mut all: Vec<&(u64, String)> = runs.flat_map(|r| r.0.iter()).collect();
        all.sort_by_key(|(seq, _)| *seq);
        let mut out: Vec<String> = Vec::with_capacity(2);
        for (_, body) in all {
            if out.len() < 2 && out.iter().all(|e| e != body) {
                out.push(body.clone());
            }
        }
        out
    }
}

/// What the session keeps of the lines one add-time template id received: counts, the first
/// canary line's time and two examples per side — never the lines themselves.
#[derive(Clone, Debug, Default)]
struct Tally {
    baseline: u64,
    canary: u64,
    /// Mining position and time of the first canary line with a time.
    first_seen: Option<(u64, f64)>,
    canary_examples: Examples,
    baseline_examples: Examples,
}

/// The log judge's state over a whole analysis: the miners (one per level) and, per add-time
/// template id, a [`Tally`]. Lines are mined once, as they arrive ([`LogSession::mine`]); a
/// judgement ([`LogSession::judge`]) groups the tallies by the templates' *current* ids, so it
/// costs the number of templates, not of lines.
///
/// Memory: the miners hold templates, and the tallies hold counts and at most two examples per
/// side for each id a template ever had; neither grows with the lines of a template already seen
/// (a body is read while mining and not kept). Record bodies are capped at ingestion
/// ([`crate::telemetry::MAX_LOG_BODY_BYTES`]), which bounds an example.
///
/// Tallies are kept per *add-time* id and resolved only when judging, exactly as a batch
/// judgement resolves once its input is consumed: a template id can be superseded (the text
/// generalised) and, later, taken again by a new cluster with the old text, so folding a tally
/// into its current template early could put lines in a different group than the batch does.
///
/// The order lines are mined in decides templates (Drain is order-dependent): mining the
/// baseline's lines and then the canary's, each in time order, gives the batch judgement's
/// templates exactly. An engine with a before/after baseline does that (the whole baseline is
/// there at the first interval); with a concurrent baseline it mines each interval's baseline
/// slice, then its canary slice.
#[derive(Clone)]
pub struct LogSession {
    miner_config: MinerConfig,
    library: Option<TemplateLibrary>,
    miners: HashMap<Level, Miner>,
    tallies: HashMap<(Level, TemplateId), Tally>,
    seq: u64,
    baseline_lines: u64,
    canary_lines: u64,
    /// Threads that tokenise and mask a large batch ([`LogSession::mine_all`]); 1: the calling
    /// thread alone, 0: every core.
    threads: usize,
}

/// Below this many lines a batch is mined on the calling thread: starting workers costs more
/// than they save (the miner goes parallel only from two blocks of 1,024 lines anyway).
const PARALLEL_MIN_LINES: usize = 4096;

impl std::fmt::Debug for LogSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSession")
            .field("templates", &self.tallies.len())
            .field("baseline_lines", &self.baseline_lines)
            .field("canary_lines", &self.canary_lines)
            .finish_non_exhaustive()
    }
}

impl LogSession {
    /// A session with nothing mined, its miners seeded from `library` if given.
    pub fn new(miner: &MinerConfig, library: Option<&TemplateLibrary>) -> Self {
        Self {
            miner_config: miner.clone(),
            library: library.cloned(),
            miners: HashMap::new(),
            tallies: HashMap::new(),
            seq: 0,
            baseline_lines: 0,
            canary_lines: 0,
            threads: 1,
        }
    }

    /// How many threads mine a large batch (0: every core). The result is the same for any
    /// number — the miner clusters in input order — so this is a matter of where the CPU is:
    /// a live service mining an interval of a few hundred thousand lines wants both cores,
    /// replay already runs one scenario per core and wants one.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads;
    }

    fn miner(&mut self, sev: Level) -> &mut Miner {
        let (config, library) = (&self.miner_config, self.library.as_ref());
        self.miners.entry(sev).or_insert_with(|| match library {
            Some(lib) => Miner::with_library(config.clone(), lib),
            None => Miner::new(config.clone()),
        })
    }

    /// Mines one record of one side (`canary` = the canary's) and counts it.
    pub fn mine(&mut self, canary: bool, rec: &LogRecord) {
        let sev = Level::of_record(rec);
        let id = self.miner(sev).add_id(&rec.body);
        self.count(canary, rec, sev, id);
    }

    /// Mines records of one side in order: the same state as [`LogSession::mine`] on each,
    /// with a large batch tokenised and masked on [`LogSession::set_threads`] threads.
    pub fn mine_all(&mut self, canary: bool, recs: &[LogRecord]) {
        if self.threads == 1 || recs.len() < PARALLEL_MIN_LINES {
            for r in recs {
                self.mine(canary, r);
            }
            return;
        }
        let levels: Vec<Level> = recs.iter().map(Level::of_record).collect();
        // One miner a level: each level's lines go to its miner as one batch, in input order,
        // which is all a miner's result depends on.
        let mut ids = vec![TemplateId(0); recs.len()];
        for sev in Level::ALL {
            let at: Vec<usize> = (0..recs.len()).filter(|&i| levels[i] == sev).collect();
            if at.is_empty() {
                continue;
            }
            let bodies: Vec<&str> = at.iter().map(|&i| recs[i].body.as_str()).collect();
            let threads = self.threads;
            let got = self.miner(sev).add_batch(&bodies, threads);
            for (i, id) in at.into_iter().zip(got) {
                ids[i] = id;
            }
        }
        for ((r, sev), id) in recs.iter().zip(levels).zip(ids) {
            self.count(canary, r, sev, id);
        }
    }

    /// Counts a mined record in its tally.
    fn count(&mut self, canary: bool, rec: &LogRecord, sev: Level, id: TemplateId) {
        let seq = self.seq;
        self.seq += 1;
        let t = self.tallies.entry((sev, id)).or_default();
        if canary {
            self.canary_lines += 1;
            t.canary += 1;
            if let (None, Some(time)) = (t.first_seen, rec.time) {
                t.first_seen = Some((seq, time));
            }
            t.canary_examples.push(seq, &rec.body);
        } else {
            self.baseline_lines += 1;
            t.baseline += 1;
            t.baseline_examples.push(seq, &rec.body);
        }
    }

    /// Lines mined per side: (baseline, canary).
    pub fn lines(&self) -> (u64, u64) {
        (self.baseline_lines, self.canary_lines)
    }

    /// How many add-time template ids hold a tally: what the session's memory grows with
    /// (templates, never lines of a template already seen).
    pub fn tallied_ids(&self) -> usize {
        self.tallies.len()
    }

    /// Templates the miners hold, over all levels.
    pub fn templates(&self) -> usize {
        self.miners.values().map(|m| m.templates().count()).sum()
    }

    /// Judges what was mined so far: [`judge_logs_with_exposure`] on the same lines.
    pub fn judge(
        &self,
        exposure: Exposure,
        cfg: &LogJudgeConfig,
    ) -> Result<LogFindings, JudgeError> {
        let library = self.library.as_ref();
        let miners = &self.miners;
        // Templates generalise as lines arrive: group by current ids only.
        let mut groups: HashMap<(Level, TemplateId), Vec<&Tally>> = HashMap::new();
        for (&(sev, id), t) in &self.tallies {
            let final_id = miners.get(&sev).map_or(id, |m| m.resolve(id));
            groups.entry((sev, final_id)).or_default().push(t);
        }
        let known: HashSet<(Level, TemplateId)> = match library {
            Some(lib) => miners
                .iter()
                .flat_map(|(sev, m)| lib.templates.iter().map(|t| (*sev, m.resolve(t.id))))
                .collect(),
            None => HashSet::new(),
        };

        let mut keys: Vec<(Level, TemplateId)> = groups.keys().copied().collect();
        keys.sort();
        let testable = exposure.baseline > 0.0
            && exposure.canary > 0.0
            && exposure.baseline.is_finite()
            && exposure.canary.is_finite();
        struct Combined {
            baseline: u64,
            canary: u64,
            first_seen: Option<f64>,
            examples: Vec<String>,
        }
        let combined: Vec<Combined> = keys
            .iter()
            .map(|key| {
                let runs = groups.get(key).map(Vec::as_slice).unwrap_or_default();
                let canary_examples = Examples::combined(runs.iter().map(|t| &t.canary_examples));
                Combined {
                    baseline: runs.iter().map(|t| t.baseline).sum(),
                    canary: runs.iter().map(|t| t.canary).sum(),
                    first_seen: runs
                        .iter()
                        .filter_map(|t| t.first_seen)
                        .min_by_key(|(seq, _)| *seq)
                        .map(|(_, time)| time),
                    examples: if canary_examples.is_empty() {
                        Examples::combined(runs.iter().map(|t| &t.baseline_examples))
                    } else {
                        canary_examples
                    },
                }
            })
            .collect();
        let mut tests = Vec::with_capacity(keys.len());
        for t in &combined {
            let test = if testable {
                Some(rate_test(
                    t.canary,
                    exposure.canary,
                    t.baseline,
                    exposure.baseline,
                    cfg.confidence,
                )?)
            } else {
                None
            };
            tests.push(test);
        }
        let p_values: Vec<f64> = tests
            .iter()
            .map(|t| t.map_or(1.0, |t| t.p_two_sided))
            .collect();
        let q_values = bh_adjust(&p_values)?;

        let mut patterns = Vec::with_capacity(keys.len());
        for (idx, (key @ (sev, id), t)) in keys.iter().zip(combined).enumerate() {
            let template = miners
                .get(sev)
                .and_then(|m| m.template(*id))
                .unwrap_or_default()
                .to_owned();
            let (rate_ratio, ci_low, ci_high) = match tests[idx] {
                Some(r) => (r.rate_ratio, r.ci_low, r.ci_high),
                None => (f64::NAN, 0.0, f64::INFINITY),
            };
            let q = q_values[idx];
            let change = if t.baseline == 0 && t.canary > 0 && !known.contains(key) {
                Change::New
            } else if q <= cfg.fdr && rate_ratio >= cfg.min_rate_ratio {
                Change::Rose
            } else if q <= cfg.fdr && rate_ratio < 1.0 {
                Change::Fell
            } else {
                Change::Unchanged
            };
            let examples = t.examples;
            let rule = cfg
                .rules
                .iter()
                .find(|r| r.matches(*id, &template, &examples))
                .map(|r| r.action);
            let class = classify(*sev, change, t.canary, q, rule, cfg);
            patterns.push(PatternFinding {
                template_id: *id,
                template,
                severity: *sev,
                class,
                change,
                baseline_count: t.baseline,
                canary_count: t.canary,
                rate_ratio,
                ci_low,
                ci_high,
                p_value: p_values[idx],
                q_value: q,
                first_seen: t.first_seen.map(crate::telemetry::format_time_exact),
                examples,
                rule,
            });
        }
        patterns.sort_by(|a, b| {
            b.class
                .cmp(&a.class)
                .then_with(|| (b.change == Change::New).cmp(&(a.change == Change::New)))
                .then_with(|| a.q_value.total_cmp(&b.q_value))
                .then_with(|| b.canary_count.cmp(&a.canary_count))
                .then_with(|| a.template_id.cmp(&b.template_id))
        });

        let mut counts = ClassCounts::default();
        for p in &patterns {
            match p.class {
                Class::Critical => counts.critical += 1,
                Class::Error => counts.error += 1,
                Class::Warning => counts.warning += 1,
                Class::Info => counts.info += 1,
                Class::Ignore => counts.ignore += 1,
            }
            if p.change == Change::New {
                counts.new += 1;
            }
        }
        // An empty side would otherwise score 100 ("no regression"): nothing was compared.
        let inconclusive = match (self.baseline_lines == 0, self.canary_lines == 0) {
            (true, true) => Some("neither the baseline nor the canary had any log records"),
            (true, false) => {
                Some("the baseline had no log records: nothing to compare the canary with")
            }
            (false, true) => Some("the canary had no log records: no evidence either way"),
            (false, false) => None,
        };
        Ok(LogFindings {
            score: if inconclusive.is_some() {
                f64::NAN
            } else {
                cfg.penalties
                    .score(counts.critical + counts.error, counts.warning)
            },
            inconclusive: inconclusive.map(str::to_owned),
            regression: inconclusive.is_none() && counts.critical + counts.error > 0,
            baseline_lines: self.baseline_lines,
            canary_lines: self.canary_lines,
            exposure,
            counts,
            patterns,
        })
    }
}

/// As [`judge_logs`], with the exposures given (e.g. instance-seconds). An exposure ≤ 0 (an empty
/// side) makes every rate test inconclusive (p = 1); new patterns are still reported.
pub fn judge_logs_with_exposure(
    baseline: &[LogRecord],
    canary: &[LogRecord],
    exposure: Exposure,
    library: Option<&TemplateLibrary>,
    cfg: &LogJudgeConfig,
) -> Result<LogFindings, JudgeError> {
    let mut session = LogSession::new(&cfg.miner, library);
    // Baseline first, so canary lines join the baseline's templates.
    for rec in baseline {
        session.mine(false, rec);
    }
    for rec in canary {
        session.mine(true, rec);
    }
    session.judge(exposure, cfg)
}

fn classify(
    severity: Level,
    change: Change,
    canary_count: u64,
    q: f64,
    rule: Option<RuleAction>,
    cfg: &LogJudgeConfig,
) -> Class {
    match rule {
        Some(RuleAction::Ignore) => return Class::Ignore,
        Some(RuleAction::Critical) if canary_count > 0 => return Class::Critical,
        _ => {}
    }
    let worse = matches!(change, Change::New | Change::Rose);
    if !worse {
        return Class::Info;
    }
    match severity {
        Level::Fatal => Class::Critical,
        Level::Error if change == Change::Rose || (change == Change::New && q <= cfg.fdr) => {
            Class::Error
        }
        Level::Error | Level::Warn => Class::Warning,
        _ => Class::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_keywords() {
        assert_eq!(Level::from_level("WARNING"), Some(Level::Warn));
        assert_eq!(Level::from_level(" error "), Some(Level::Error));
        assert_eq!(Level::from_level("ERROR2"), Some(Level::Error));
        assert_eq!(Level::from_level("chatty"), None);
        assert_eq!(
            Level::from_keywords("java.lang.NullPointerException: null"),
            Level::Error
        );
        assert_eq!(
            Level::from_keywords("thread 'main' panicked at src/x.rs"),
            Level::Fatal
        );
        assert_eq!(
            Level::from_keywords("Traceback (most recent call last):"),
            Level::Error
        );
        assert_eq!(
            Level::from_keywords("TERROR level: errorCount=0"),
            Level::Info
        );
        assert_eq!(Level::from_keywords("[WARN] disk almost full"), Level::Warn);
        assert_eq!(
            Level::from_keywords("Error: connection refused"),
            Level::Error
        );
        let rec = LogRecord {
            time: None,
            severity: Some("INFO".into()),
            body: "Exception handler registered".into(),
        };
        assert_eq!(Level::of_record(&rec), Level::Info);
    }

    #[test]
    fn rules_parse_and_reject() {
        let rules = LogRule::parse_rules(
            r#"{"rules":[{"action":"ignore","template_id":"00000000000000ff"},{"action":"critical","regex":"OutOfMemory"}]}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert!(matches!(
            rules[0].matcher,
            RuleMatcher::TemplateId(TemplateId(255))
        ));
        let e = LogRule::parse_rules(r#"{"rules":[{"action":"ignore"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rule 0") && e.contains("exactly one"), "{e}");
        let e = LogRule::parse_rules(r#"{"rules":[{"action":"critical","regex":"("}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("regex"), "{e}");
        assert!(LogRule::parse_rules(r#"{"rules":[{"action":"drop","regex":"x"}]}"#).is_err());
    }

    /// The judgement before the session existed, kept here as the reference: every line mined
    /// (baseline, then canary), then each line's add-time id resolved once the input is
    /// consumed, and counts, first canary time and the first two distinct examples taken per
    /// final template in input order.
    type Reference = HashMap<(Level, TemplateId), (u64, u64, Option<f64>, Vec<String>)>;
    fn reference(baseline: &[LogRecord], canary: &[LogRecord]) -> Reference {
        let mut miners: HashMap<Level, Miner> = HashMap::new();
        let mut assigned = Vec::new();
        for (is_canary, records) in [(false, baseline), (true, canary)] {
            for rec in records {
                let sev = Level::of_record(rec);
                let m = miners
                    .entry(sev)
                    .or_insert_with(|| Miner::new(MinerConfig::default()));
                assigned.push((sev, m.add_id(&rec.body), is_canary, rec));
            }
        }
        type Sides = (u64, u64, Option<f64>, Vec<String>, Vec<String>);
        let mut out: HashMap<_, Sides> = HashMap::new();
        for (sev, id, is_canary, rec) in assigned {
            let key = (sev, miners[&sev].resolve(id));
            let t = out.entry(key).or_default();
            let examples = if is_canary {
                t.1 += 1;
                if t.2.is_none() {
                    t.2 = rec.time;
                }
                &mut t.4
            } else {
                t.0 += 1;
                &mut t.3
            };
            if examples.len() < 2 && !examples.contains(&rec.body) {
                examples.push(rec.body.clone());
            }
        }
        out.into_iter()
            .map(|(k, (b, c, first, be, ce))| {
                (k, (b, c, first, if ce.is_empty() { be } else { ce }))
            })
            .collect()
    }

    /// The bundled Loghub systems whose lines the session tests mine.
    const SYSTEMS: [&str; 8] = [
        "Android",
        "BGL",
        "HDFS",
        "HPC",
        "Hadoop",
        "Linux",
        "Spark",
        "Thunderbird",
    ];

    fn loghub(system: &str) -> Vec<LogRecord> {
        let path = format!(
            "{}/../datasets/loghub/{system}_2k.log_structured_corrected.csv",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let rows = crate::logs::eval::parse_csv(&text).unwrap();
        let col = |name: &str| rows[0].iter().position(|h| h == name);
        let (content, level) = (col("Content").unwrap(), col("Level"));
        rows[1..]
            .iter()
            .enumerate()
            .map(|(i, r)| LogRecord {
                // Some lines untimed: the first canary line *with* a time is the first seen.
                time: (i % 7 != 3).then_some(i as f64),
                severity: level.map(|l| r[l].clone()),
                body: r[content].clone(),
            })
            .collect()
    }

    #[test]
    fn a_session_mined_in_slices_tallies_exactly_as_resolving_every_line_at_the_end() {
        let mut merged_somewhere = false;
        for system in SYSTEMS {
            let records = loghub(system);
            let (baseline, canary) = records.split_at(800);
            let cfg = LogJudgeConfig::default();
            let mut session = LogSession::new(&cfg.miner, None);
            for r in baseline {
                session.mine(false, r);
            }
            // The canary in slices, judged after each (as the engine does at every interval).
            for (k, slice) in canary.chunks(300).enumerate() {
                for r in slice {
                    session.mine(true, r);
                }
                let seen = &canary[..(300 * (k + 1)).min(canary.len())];
                let expected = reference(baseline, seen);
                let exposure = Exposure {
                    baseline: 800.0,
                    canary: seen.len() as f64,
                };
                let found = session.judge(exposure, &cfg).unwrap();
                assert_eq!(found.patterns.len(), expected.len(), "{system} slice {k}");
                for p in &found.patterns {
                    let (b, c, first, examples) = &expected[&(p.severity, p.template_id)];
                    assert_eq!(
                        (p.baseline_count, p.canary_count, &p.examples),
                        (*b, *c, examples),
                        "{system} slice {k}: {}",
                        p.template
                    );
                    assert_eq!(
                        p.first_seen,
                        first.map(crate::telemetry::format_time_exact),
                        "{system}"
                    );
                }
                merged_somewhere |= session.tallied_ids() > found.patterns.len();
            }
        }
        // Templates generalised under lines already tallied: the merging path was exercised.
        assert!(merged_somewhere);
    }

    #[test]
    fn mining_a_batch_on_two_threads_gives_the_state_of_mining_each_line() {
        // Eight systems' lines, levels mixed, in batches above the parallel threshold.
        let records: Vec<LogRecord> = SYSTEMS.iter().flat_map(|s| loghub(s)).collect();
        let (baseline, canary) = records.split_at(6000);
        let cfg = LogJudgeConfig::default();
        let mut one = LogSession::new(&cfg.miner, None);
        let mut two = LogSession::new(&cfg.miner, None);
        two.set_threads(2);
        for r in baseline {
            one.mine(false, r);
        }
        two.mine_all(false, baseline);
        for slice in canary.chunks(PARALLEL_MIN_LINES + 1000) {
            for r in slice {
                one.mine(true, r);
            }
            two.mine_all(true, slice);
            let exposure = Exposure {
                baseline: 6000.0,
                canary: slice.len() as f64,
            };
            let a = serde_json::to_string(&one.judge(exposure, &cfg).unwrap()).unwrap();
            let b = serde_json::to_string(&two.judge(exposure, &cfg).unwrap()).unwrap();
            assert_eq!(a, b);
            assert!(a.contains("template_id"), "{a}");
        }
        assert_eq!(one.lines(), two.lines());
        assert_eq!(one.templates(), two.templates());
    }

    #[test]
    fn the_session_does_not_grow_with_lines_of_a_template_already_seen() {
        let cfg = LogJudgeConfig::default();
        let mut session = LogSession::new(&cfg.miner, None);
        let line = |i: u64| LogRecord {
            time: Some(i as f64),
            severity: Some(if i.is_multiple_of(10) { "WARN" } else { "INFO" }.into()),
            body: format!(
                "request {} for user u{} took {} ms on 10.0.{}.{}",
                i * 7919 % 100_003,
                i * 31 % 997,
                i % 300,
                i % 4,
                i % 255
            ),
        };
        for i in 0..200 {
            session.mine(i % 2 == 1, &line(i));
        }
        let (ids, templates) = (session.tallied_ids(), session.templates());
        for i in 200..20_000 {
            session.mine(i % 2 == 1, &line(i));
        }
        assert_eq!(session.lines(), (10_000, 10_000));
        assert_eq!(
            (session.tallied_ids(), session.templates()),
            (ids, templates)
        );
        let found = session
            .judge(
                Exposure {
                    baseline: 1.0,
                    canary: 1.0,
                },
                &cfg,
            )
            .unwrap();
        assert_eq!(found.patterns.len(), 2, "{:?}", found.patterns);
        assert!(found.patterns.iter().all(|p| p.examples.len() == 2));
    }
}
