//! orca's multi-interval canary (`RunCanaryIntervalsStage`, and Kayenta's standalone
//! `SetupAndExecuteCanariesStage`, which plans the same way): which windows are judged, and how
//! the interval scores become one pass/fail.
//!
//! Windows grow from a fixed start (or slide, with a lookback); the control window is the
//! experiment window moved back by the baseline offset. A run fails fast as soon as an interval
//! scores at or below `marginal`, and otherwise only the last interval's score decides. Times
//! are milliseconds from any origin; durations are whole minutes, as orca's are.

use std::collections::BTreeMap;

pub const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("canary config must include either `endTime` or `lifetimeDuration`")]
    NoLifetime,
    #[error("lifetime must be at least one minute, got {0} minutes")]
    LifetimeTooShort(i64),
    #[error("`{field}`: expected a whole number of minutes, got {value:?}")]
    Minutes { field: &'static str, value: String },
    #[error("`lifetimeDuration`: expected an ISO-8601 duration like \"PT1H\", got {0:?}")]
    Duration(String),
}

/// The timing fields of orca's `KayentaCanaryContext` (the standalone request has the same ones
/// under other names: `lifetimeDurationMins`, `beginAfterMins`, `analysisIntervalMins`,
/// `lookbackMins`, and `controlOffsetInMinutes` per scope).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CanaryTiming {
    /// `startTimeIso`; "now" when absent.
    pub start: Option<i64>,
    /// `endTimeIso`. When present the windows are in the past: no pacing waits, no warm-up shift.
    pub end: Option<i64>,
    /// `lifetimeDuration` / `lifetimeHours`, in minutes. `end` takes precedence.
    pub lifetime_mins: Option<i64>,
    /// `beginCanaryAnalysisAfterMins`.
    pub warmup_mins: i64,
    /// `canaryAnalysisIntervalMins`; absent, 0 or longer than the lifetime means one interval.
    pub interval_mins: Option<i64>,
    /// `lookbackMins`; 0 means growing windows.
    pub lookback_mins: i64,
    /// `baselineAnalysisOffsetInMins`.
    pub baseline_offset_mins: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    fn shifted_back(self, minutes: i64) -> Window {
        Window {
            start: self.start - minutes * MINUTE_MS,
            end: self.end - minutes * MINUTE_MS,
        }
    }
}

/// One entry of the context's `scopes[]`, carried unchanged into every interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeSpec {
    pub scope_name: String,
    pub control_scope: String,
    pub experiment_scope: String,
    pub step_seconds: i64,
    pub extended_scope_params: BTreeMap<String, String>,
}

impl ScopeSpec {
    /// orca's defaults: scope name "default", step 60 s.
    pub fn new(control_scope: &str, experiment_scope: &str) -> Self {
        ScopeSpec {
            scope_name: "default".to_string(),
            control_scope: control_scope.to_string(),
            experiment_scope: experiment_scope.to_string(),
            step_seconds: 60,
            extended_scope_params: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntervalScope {
    pub spec: ScopeSpec,
    pub control: Window,
    pub experiment: Window,
}

/// The child stages orca creates, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// "Warmup Wait" or "Interval Wait #i".
    Wait { name: String, seconds: i64 },
    /// "Run Canary #i" over these windows.
    RunCanary {
        number: usize,
        scopes: Vec<IntervalScope>,
    },
}

/// Minutes from start (or `now`) to `end`, truncated like `Instant.until(_, MINUTES)`, else the
/// configured lifetime.
pub fn lifetime_mins(timing: &CanaryTiming, now: i64) -> Result<i64, PlanError> {
    match (timing.end, timing.lifetime_mins) {
        (Some(end), _) => Ok((end - timing.start.unwrap_or(now)) / MINUTE_MS),
        (None, Some(l)) => Ok(l),
        (None, None) => Err(PlanError::NoLifetime),
    }
}

/// The interval actually used: the lifetime when none is set, it is 0, or it exceeds the lifetime.
pub fn effective_interval_mins(interval_mins: Option<i64>, lifetime_mins: i64) -> i64 {
    match interval_mins {
        Some(i) if i > 0 && i <= lifetime_mins => i,
        _ => lifetime_mins,
    }
}

/// The experiment window of judgement `number` (1-based).
pub fn experiment_window(
    timing: &CanaryTiming,
    now: i64,
    interval_mins: i64,
    number: usize,
) -> Window {
    let warmup = if timing.end.is_none() {
        timing.warmup_mins * MINUTE_MS
    } else {
        0
    };
    let start = timing.start.unwrap_or(now) + warmup;
    let end = start + number as i64 * interval_mins * MINUTE_MS;
    let start = if timing.lookback_mins > 0 {
        end - timing.lookback_mins * MINUTE_MS
    } else {
        start
    };
    Window { start, end }
}

/// The control window: the experiment window moved back by `offset_mins`.
pub fn control_window(experiment: Window, offset_mins: i64) -> Window {
    experiment.shifted_back(offset_mins)
}

/// orca's `RunCanaryIntervalsStage` child stages.
pub fn plan(
    timing: &CanaryTiming,
    scopes: &[ScopeSpec],
    now: i64,
) -> Result<Vec<Stage>, PlanError> {
    let lifetime = lifetime_mins(timing, now)?;
    if lifetime < 1 {
        return Err(PlanError::LifetimeTooShort(lifetime));
    }
    let interval = effective_interval_mins(timing.interval_mins, lifetime);
    let mut stages = Vec::new();
    if timing.warmup_mins > 0 {
        stages.push(Stage::Wait {
            name: "Warmup Wait".to_string(),
            seconds: timing.warmup_mins * 60,
        });
    }
    for number in 1..=(lifetime / interval) as usize {
        if timing.end.is_none() {
            stages.push(Stage::Wait {
                name: format!("Interval Wait #{number}"),
                seconds: interval * 60,
            });
        }
        let experiment = experiment_window(timing, now, interval, number);
        let control = control_window(experiment, timing.baseline_offset_mins);
        stages.push(Stage::RunCanary {
            number,
            scopes: scopes
                .iter()
                .map(|spec| IntervalScope {
                    spec: spec.clone(),
                    control,
                    experiment,
                })
                .collect(),
        });
    }
    Ok(stages)
}

/// orca reads minute fields through Jackson, which turns `""` into absent.
pub fn parse_context_minutes(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<i64>, PlanError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| PlanError::Minutes {
            field,
            value: v.to_string(),
        }),
    }
}

/// `java.time.Duration.parse` for the forms orca configs use (`PnDTnHnMn.nS`), in whole minutes.
pub fn parse_iso8601_duration_mins(text: &str) -> Result<i64, PlanError> {
    let err = || PlanError::Duration(text.to_string());
    let rest = text
        .strip_prefix('P')
        .or_else(|| text.strip_prefix('p'))
        .ok_or_else(err)?;
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut seconds = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Result<(), PlanError> {
        let mut number = String::new();
        for ch in part.chars() {
            if ch.is_ascii_digit() || ch == '.' || ch == '-' {
                number.push(ch);
            } else {
                let scale = units
                    .iter()
                    .find(|(u, _)| ch.eq_ignore_ascii_case(u))
                    .map(|(_, s)| *s)
                    .ok_or_else(err)?;
                let n: f64 = number.parse().map_err(|_| err())?;
                seconds += n * scale;
                number.clear();
                any = true;
            }
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(err())
        }
    };
    take(date, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(err());
        }
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any {
        return Err(err());
    }
    Ok((seconds / 60.0).trunc() as i64)
}

/// Pass / marginal thresholds as the aggregation sees them: either may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AggregationThresholds {
    pub pass: Option<f64>,
    pub marginal: Option<f64>,
}

/// `MonitorKayentaCanaryTask`: a completed interval at or below `marginal` ends the run.
/// Note the judge itself calls a score equal to `marginal` "Marginal", not "Fail".
pub fn interval_fails_fast(score: f64, marginal: Option<f64>) -> bool {
    marginal.is_some_and(|m| score <= m)
}

/// `getAggregatedJudgment`: does the final score pass?
pub fn aggregated_judgment(final_score: f64, thresholds: &AggregationThresholds) -> bool {
    match (thresholds.marginal, thresholds.pass) {
        (None, None) => true,
        (Some(m), _) if final_score <= m => false,
        (_, None) => true,
        (_, Some(p)) => final_score >= p,
    }
}

/// The outcome of a whole multi-interval run, in orca's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    Terminal,
}

/// Fail fast on any interval at or below marginal; otherwise the last interval decides. An empty
/// run has nothing that passed and is Terminal.
pub fn aggregate(
    interval_scores_in_order: &[f64],
    thresholds: &AggregationThresholds,
) -> RunStatus {
    let Some((last, earlier)) = interval_scores_in_order.split_last() else {
        return RunStatus::Terminal;
    };
    if earlier
        .iter()
        .any(|s| interval_fails_fast(*s, thresholds.marginal))
    {
        return RunStatus::Terminal;
    }
    if aggregated_judgment(*last, thresholds) {
        RunStatus::Succeeded
    } else {
        RunStatus::Terminal
    }
}

/// Run-canary stage names ordered by the integer after their last `#`, which is how the
/// aggregation finds "the last" interval. Names without a number sort first.
pub fn sort_by_stage_number<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let number = |s: &str| -> i64 {
        s.rsplit_once('#')
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or(i64::MIN)
    };
    let mut sorted: Vec<String> = names.iter().map(|s| s.as_ref().to_string()).collect();
    sorted.sort_by_key(|s| number(s));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_java() {
        assert_eq!(parse_iso8601_duration_mins("PT48H"), Ok(2880));
        assert_eq!(parse_iso8601_duration_mins("PT1H30M"), Ok(90));
        assert_eq!(parse_iso8601_duration_mins("P1DT1M"), Ok(1441));
        assert_eq!(parse_iso8601_duration_mins("PT90S"), Ok(1));
        for bad in ["", "P", "PT", "48H", "PT5X", "PT5"] {
            assert!(parse_iso8601_duration_mins(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fail_fast_stops_a_run_whose_last_interval_would_pass() {
        let t = AggregationThresholds {
            pass: Some(75.0),
            marginal: Some(50.0),
        };
        assert_eq!(aggregate(&[50.0, 90.0], &t), RunStatus::Terminal);
        assert_eq!(aggregate(&[50.01, 90.0], &t), RunStatus::Succeeded);
        assert_eq!(aggregate(&[], &t), RunStatus::Terminal);
    }
}
