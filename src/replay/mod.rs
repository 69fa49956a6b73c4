//! Replay: run recorded scenarios through the judges interval by interval, as a live analysis
//! would, and measure how often and how quickly each judge is right.
//!
//! Each interval (default 30 s) the canary window grows by one step and every judge runs on the
//! data seen so far; [`vigil_analyzer::analysis::Analysis`] applies the rules a live analysis follows (fail
//! fast, the last interval decides, time to detect), so replay differs from live only in where the
//! data comes from.

pub mod html;
pub mod pool;
pub mod references;
pub mod report;
pub mod scenario;

use serde::Serialize;

use scenario::{Expected, Scenario, Side};
use vigil_analyzer::analysis::Analysis;
pub use vigil_analyzer::analysis::{Outcome, Step};
use vigil_analyzer::judge::{self as judges, JudgeConfig, SideView, View};
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
    pub vigil: Outcome,
    pub kayenta: Outcome,
    pub naive: Outcome,
}

impl ScenarioResult {
    pub fn outcome(&self, judge: JudgeName) -> &Outcome {
        match judge {
            JudgeName::Vigil => &self.vigil,
            JudgeName::Kayenta => &self.kayenta,
            JudgeName::Naive => &self.naive,
        }
    }
}

/// A scenario that could not be loaded still appears in the results, as Error.
pub fn error_result(id: &str, message: &str) -> ScenarioResult {
    let o = Outcome {
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

fn upper_bound(times: impl Fn(usize) -> f64, n: usize, t: f64) -> usize {
    // first index with time >= t (times sorted)
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if times(mid) < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The view of one side with everything before `until` (Unix s).
fn side_view(side: &Side, until: f64, grow_from: Option<f64>) -> SideView<'_> {
    let metric_rows = side
        .metrics
        .as_ref()
        .map(|m| (0, upper_bound(|i| m.times[i], m.times.len(), until)))
        .unwrap_or((0, 0));
    let logs = side
        .logs
        .as_deref()
        .map(|l| &l[..upper_bound(|i| l[i].time, l.len(), until)]);
    let spans = side
        .spans
        .as_deref()
        .map(|s| &s[..upper_bound(|i| s[i].start, s.len(), until)]);
    // Exposure: the covered seconds of the window, pro rata for a window still growing.
    let exposure = |covered: Option<f64>, w: Option<scenario::Window>| -> f64 {
        let Some(w) = w else { return 0.0 };
        let full = covered.unwrap_or(w.len()).min(w.len());
        match grow_from {
            Some(start) if w.len() > 0.0 => full * ((until - start) / w.len()).clamp(0.0, 1.0),
            _ => full,
        }
    };
    SideView {
        metrics: side.metrics.as_ref(),
        metric_rows,
        logs,
        spans,
        log_exposure: exposure(side.log_seconds_covered, side.log_window),
        trace_exposure: exposure(side.trace_seconds_covered, side.trace_window),
        until,
    }
}

/// The baseline without its metric rows during (and just after) known incidents on the same pod,
/// or None when there is nothing to mask or too little would remain to judge metrics.
fn masked_baseline(s: &Scenario, config: &ReplayConfig) -> Option<Side> {
    if !config.mask_known_incidents {
        return None;
    }
    let incidents = if s.known_incidents.is_empty() {
        let since = s.baseline_clean_since?;
        vec![scenario::Window {
            start: f64::NEG_INFINITY,
            end: since - config.incident_recovery_s,
        }]
    } else {
        s.known_incidents.clone()
    };
    let table = s.baseline.metrics.as_ref()?;
    let masked = table.without(&incidents, config.incident_recovery_s);
    if masked.times.len() == table.times.len()
        || masked.times.len() < config.judges.metric.min_baseline_points
    {
        return None;
    }
    Some(Side {
        metrics: Some(masked),
        ..s.baseline.clone()
    })
}

/// Replays one scenario with every judge.
pub fn replay_scenario(s: &Scenario, config: &ReplayConfig) -> ScenarioResult {
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
    let steps = ((horizon / config.interval_s).ceil() as usize).max(1);
    let concurrent = s.concurrent_baseline();
    let masked_baseline = masked_baseline(s, config);
    let baseline_side = masked_baseline.as_ref().unwrap_or(&s.baseline);
    // The anomaly model needs more rows than the metric judge; when masking leaves too few, it
    // learns from the whole baseline rather than not at all.
    let anomaly_side = match &masked_baseline {
        Some(m)
            if m.metrics.as_ref().map_or(0, |t| t.times.len())
                < config.judges.anomaly.min_windows =>
        {
            &s.baseline
        }
        _ => baseline_side,
    };
    let mut model: Option<judges::AnomalyModels> = None;
    let mut runs = [Analysis::new(), Analysis::new(), Analysis::new()];
    for k in 1..=steps {
        let elapsed = (k as f64 * config.interval_s).min(horizon.max(config.interval_s));
        let until = t0 + elapsed;
        let b_until = if concurrent {
            s.baseline_window.start + elapsed
        } else {
            f64::INFINITY
        };
        let baseline = side_view(
            baseline_side,
            b_until,
            concurrent.then_some(s.baseline_window.start),
        );
        let canary = side_view(&s.canary, until, Some(t0));
        let view = View { baseline, canary };
        if model.is_none() || concurrent {
            let fit_view = View {
                baseline: side_view(
                    anomaly_side,
                    b_until,
                    concurrent.then_some(s.baseline_window.start),
                ),
                canary,
            };
            model = Some(judges::fit_anomaly(&fit_view, &config.judges.anomaly));
        }
        for (run, judge) in runs.iter_mut().zip(JudgeName::ALL) {
            if run.is_done() {
                continue;
            }
            let judgement = match judge {
                JudgeName::Vigil => judges::vigil(&view, model.as_ref(), &config.judges),
                JudgeName::Kayenta => references::kayenta(&view),
                JudgeName::Naive => references::naive(&view),
            };
            run.record(elapsed, judgement);
        }
        if runs.iter().all(Analysis::is_done) {
            break;
        }
    }
    ScenarioResult {
        id: s.id.clone(),
        system: s.system.clone(),
        fault_type: s.fault_type.clone(),
        expected: match s.expected {
            Expected::Pass => "pass",
            Expected::Fail => "fail",
        },
        vigil: runs[0].outcome(),
        kayenta: runs[1].outcome(),
        naive: runs[2].outcome(),
    }
}
