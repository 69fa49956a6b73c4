//! Replay: run recorded scenarios through the judges interval by interval, as a live analysis
//! would, and measure how often and how quickly each judge is right.
//!
//! Replay is a *source*: it loads scenario files, feeds an engine session
//! ([`vigil_analyzer::analysis::Analysis`]) interval by interval (default 30 s) as a live source
//! would, and measures. The engine owns everything a live analysis decides (masking, anomaly
//! fitting, the lifecycle), so replay differs from live only in where the data comes from. The
//! two reference judges Vigil is measured against run on the engine's view of each interval.

pub mod html;
pub mod pool;
pub mod references;
pub mod report;
pub mod scenario;
pub mod tables;

use serde::Serialize;

use scenario::{Scenario, Side};
use vigil_analyzer::analysis::{
    masked_metrics, Analysis, AnalysisSpec, BaselineTiming, Batch, IngestError, Lifecycle, Masking,
    Role, SideSpec,
};
pub use vigil_analyzer::analysis::{Conclusion, Step};
use vigil_analyzer::judge::JudgeConfig;
use vigil_analyzer::telemetry::{MetricSample, MetricTable};
use vigil_analyzer::verdict::Verdict;

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Analysis interval in seconds.
    pub interval_s: f64,
    /// Drop baseline metric rows that overlap an earlier known incident on the same pod
    /// (`context_faults`, or everything before `metrics_baseline_clean_since` when only that is
    /// given), when enough rows remain for the metric judge: a live system knows its own past
    /// incidents and would not use them as "healthy". Rows before and between incidents stay.
    pub mask_known_incidents: bool,
    /// Seconds after a known incident's end that are still masked (the service recovering).
    pub incident_recovery_s: f64,
    pub judges: JudgeConfig,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            interval_s: 30.0,
            mask_known_incidents: true,
            incident_recovery_s: 300.0,
            judges: JudgeConfig::default(),
        }
    }
}

/// Which judge produced an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeName {
    Vigil,
    Kayenta,
    Naive,
}

impl JudgeName {
    pub const ALL: [JudgeName; 3] = [JudgeName::Vigil, JudgeName::Kayenta, JudgeName::Naive];
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeName::Vigil => "vigil",
            JudgeName::Kayenta => "kayenta",
            JudgeName::Naive => "naive",
        }
    }
}

/// The replay of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub system: String,
    pub fault_type: Option<String>,
    pub expected: &'static str,
    pub vigil: Conclusion,
    pub kayenta: Conclusion,
    pub naive: Conclusion,
}

impl ScenarioResult {
    pub fn outcome(&self, judge: JudgeName) -> &Conclusion {
        match judge {
            JudgeName::Vigil => &self.vigil,
            JudgeName::Kayenta => &self.kayenta,
            JudgeName::Naive => &self.naive,
        }
    }
}

/// A scenario that could not be loaded still appears in the results, as Error.
pub fn error_result(id: &str, message: &str) -> ScenarioResult {
    let o = Conclusion {
        verdict: Verdict::Error,
        score: 0.0,
        time_to_detect_s: None,
        evidence: vec![],
        findings: vec![],
        note: Some(message.to_string()),
        timeline: vec![],
    };
    ScenarioResult {
        id: id.to_string(),
        system: "unknown".into(),
        fault_type: None,
        expected: "unknown",
        vigil: o.clone(),
        kayenta: o.clone(),
        naive: o,
    }
}

/// The engine's view of a scenario: what each side records, when the baseline ran, and which
/// baseline rows are known incidents.
pub fn analysis_spec(s: &Scenario, config: &ReplayConfig) -> AnalysisSpec {
    let side = |d: &Side| SideSpec {
        metrics: d.metrics.is_some(),
        logs: d.logs.is_some(),
        spans: d.spans.is_some(),
        callers: d.caller_spans.is_some(),
        log_window: d.log_window,
        trace_window: d.trace_window,
        log_seconds_covered: d.log_seconds_covered,
        trace_seconds_covered: d.trace_seconds_covered,
    };
    AnalysisSpec {
        judges: config.judges.clone(),
        canary_start: s.canary_window.start,
        baseline_timing: if s.concurrent_baseline() {
            BaselineTiming::Concurrent {
                start: s.baseline_window.start,
            }
        } else {
            BaselineTiming::Before
        },
        masking: Masking {
            enabled: config.mask_known_incidents,
            known_incidents: s.known_incidents.clone(),
            clean_since: s.baseline_clean_since,
            recovery_s: config.incident_recovery_s,
        },
        baseline: side(&s.baseline),
        canary: side(&s.canary),
    }
}

/// The baseline's metric table as the engine masks it (known incidents left out), or `None` when
/// the engine would judge all of it: for reports that show which rows were left out.
pub(crate) fn masked_baseline(s: &Scenario, config: &ReplayConfig) -> Option<MetricTable> {
    let spec = analysis_spec(s, config);
    masked_metrics(
        s.baseline.metrics.as_ref()?,
        &spec.masking,
        config.judges.metric.min_baseline_points,
    )
}

/// Hands one side's recording to a session in time order, a slice per interval, as a live
/// source would deliver it: each call passes what was stamped before `until` and not yet sent.
struct Feed<'a> {
    side: &'a Side,
    role: Role,
    metric_row: usize,
    log: usize,
    span: usize,
    caller: usize,
}

impl<'a> Feed<'a> {
    fn new(side: &'a Side, role: Role) -> Self {
        Self {
            side,
            role,
            metric_row: 0,
            log: 0,
            span: 0,
            caller: 0,
        }
    }

    fn until(&mut self, until: f64, session: &mut Analysis) -> Result<(), IngestError> {
        let mut samples = Vec::new();
        if let Some(m) = &self.side.metrics {
            let end = m.rows_before(until);
            for row in self.metric_row..end {
                for (name, values) in &m.columns {
                    samples.push(MetricSample {
                        time: m.times[row],
                        name,
                        value: values[row],
                    });
                }
            }
            self.metric_row = end.max(self.metric_row);
        }
        let logs = match &self.side.logs {
            Some(l) => {
                let end = l.partition_point(|r| r.time.is_some_and(|t| t < until));
                let batch = l[self.log..end.max(self.log)].to_vec();
                self.log = end.max(self.log);
                batch
            }
            None => Vec::new(),
        };
        let mut spans = match &self.side.spans {
            Some(v) => {
                let end = v.partition_point(|x| x.start < until);
                let batch = v[self.span..end.max(self.span)].to_vec();
                self.span = end.max(self.span);
                batch
            }
            None => Vec::new(),
        };
        // Callers' spans travel with the pod's own: the engine tells them apart by their edge.
        if let Some(v) = &self.side.caller_spans {
            let end = v.partition_point(|x| x.start < until);
            spans.extend_from_slice(&v[self.caller..end.max(self.caller)]);
            self.caller = end.max(self.caller);
        }
        session.ingest(
            self.role,
            Batch {
                metrics: &samples,
                logs,
                spans,
            },
        )
    }
}

/// Replays one scenario: Vigil through an engine session fed interval by interval, and the two
/// reference judges on the same view of the data.
pub fn replay_scenario(s: &Scenario, config: &ReplayConfig) -> ScenarioResult {
    let failed = |message: &str| {
        let mut r = error_result(&s.id, message);
        r.system.clone_from(&s.system);
        r.fault_type.clone_from(&s.fault_type);
        r.expected = s.expected.as_str();
        r
    };
    // An interval longer than the canary window would judge once, after the window, and report a
    // time to detect of that interval: not an analysis of this scenario. (The command line already
    // refuses intervals under a second.)
    let window = s.canary_window.len();
    if !(config.interval_s.is_finite() && config.interval_s <= window) {
        return failed(&format!(
            "--interval {} s is longer than this scenario's canary window ({window} s); use 1 s to {window} s",
            config.interval_s
        ));
    }
    match run(s, config) {
        Ok(mut r) => {
            for o in [&mut r.vigil, &mut r.kayenta, &mut r.naive] {
                name_missing_sides(o, &s.missing);
            }
            r
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// An Inconclusive outcome of a scenario with a missing or empty side says which, first: "no
/// signal was recorded" alone would not tell a user that a whole folder is absent.
fn name_missing_sides(o: &mut Conclusion, missing: &[String]) {
    if missing.is_empty() || o.verdict != Verdict::Inconclusive {
        return;
    }
    let what = missing.join("; ");
    o.note = Some(match o.note.take() {
        Some(n) => format!("{what}; {n}"),
        None => what,
    });
}

fn run(s: &Scenario, config: &ReplayConfig) -> Result<ScenarioResult, IngestError> {
    let t0 = s.canary_window.start;
    let horizon = [
        s.canary.metric_window,
        s.canary.log_window,
        s.canary.trace_window,
        Some(s.canary_window),
    ]
    .iter()
    .flatten()
    .map(|w| w.end - t0)
    .fold(0.0f64, f64::max);
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the interval is at least 1 s and the horizon a scenario's windows"
    )]
    let steps = ((horizon / config.interval_s).ceil() as usize).max(1);
    let concurrent = s.concurrent_baseline();
    let mut session = Analysis::new(analysis_spec(s, config));
    let mut baseline = Feed::new(&s.baseline, Role::Baseline);
    let mut canary = Feed::new(&s.canary, Role::Canary);
    if !concurrent {
        // Recorded before the canary: all of it is there when the analysis starts.
        baseline.until(f64::INFINITY, &mut session)?;
    }
    let mut kayenta = Lifecycle::new();
    let mut naive = Lifecycle::new();
    for k in 1..=steps {
        let elapsed = (k as f64 * config.interval_s).min(horizon.max(config.interval_s));
        canary.until(t0 + elapsed, &mut session)?;
        if concurrent {
            baseline.until(s.baseline_window.start + elapsed, &mut session)?;
        }
        session.judge(elapsed);
        if !(kayenta.is_done() && naive.is_done()) {
            let view = session.view(elapsed);
            if !kayenta.is_done() {
                kayenta.record(elapsed, references::kayenta(&view));
            }
            if !naive.is_done() {
                naive.record(elapsed, references::naive(&view));
            }
        }
        if session.is_done() && kayenta.is_done() && naive.is_done() {
            break;
        }
    }
    Ok(ScenarioResult {
        id: s.id.clone(),
        system: s.system.clone(),
        fault_type: s.fault_type.clone(),
        expected: s.expected.as_str(),
        vigil: session.outcome(),
        kayenta: kayenta.outcome(),
        naive: naive.outcome(),
    })
}
