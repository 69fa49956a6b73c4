//! The configuration of every judge, and the few settings a user may change by key
//! (`vigil replay --set KEY=VALUE`, and the analysis spec of the service next).

use vigil_models::anomaly::AnomalyConfig;
use vigil_models::vigil_judge::VigilJudgeConfig;

use super::metrics::MetricRules;
use crate::callers::CallerConfig;
use crate::logs::judge::LogJudgeConfig;
use crate::traces::TraceConfig;
use crate::verdict::{FusionConfig, Signal};

/// Configuration of all judges.
#[derive(Debug, Clone, Default)]
pub struct JudgeConfig {
    /// The metric classifier's settings.
    pub metric: VigilJudgeConfig,
    /// The trace judge's settings.
    pub trace: TraceConfig,
    /// The callers' judge's settings.
    pub callers: CallerConfig,
    /// The anomaly models' settings.
    pub anomaly: AnomalyConfig,
    /// How signals fuse into a verdict.
    pub fusion: FusionConfig,
    /// The log judge's settings.
    pub log: LogJudgeConfig,
    /// Which metrics are judged, in which direction (name defaults unless overridden).
    pub metrics: MetricRules,
    /// Signals Vigil leaves out, as if they had not been recorded (`vigil replay --ablation`
    /// measures what each one adds this way).
    pub without: Vec<Signal>,
}

/// A `--set KEY=VALUE` that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting `{key}`; known: {}", JudgeConfig::SETTINGS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "))]
    /// No such key.
    Unknown {
        /// The key given.
        key: String,
    },
    #[error("setting `{key}`: expected {expected}, got {got:?}")]
    /// A value the key does not accept.
    Value {
        /// The key.
        key: String,
        /// What it accepts.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    #[error("{0}")]
    /// Settings that contradict each other.
    Conflict(String),
}

impl JudgeConfig {
    /// The settings a user may change from the command line, with what each accepts. Only the
    /// knobs that decide how sensitive Vigil is: enough to trace its whole trade-off between
    /// faults caught and false alarms, few enough to list.
    pub const SETTINGS: &'static [(&'static str, &'static str)] = &[
        ("metric.alpha", "a probability in (0, 1)"),
        ("metric.min_relative_effect", "a non-negative fraction"),
        ("trace.alpha", "a probability in (0, 1)"),
        ("trace.tail_ratio_fail", "a ratio of at least 1"),
        ("callers.alpha", "a probability in (0, 1)"),
        (
            "callers.transport_ceiling_ms",
            "milliseconds above 0 (inf turns the check off)",
        ),
        ("anomaly.false_alarm_rate", "a probability in (0, 1)"),
        ("fusion.pass_threshold", "a score in [0, 100]"),
        ("fusion.marginal_threshold", "a score in [0, 100]"),
        ("fusion.warn_penalty", "points in [0, 100]"),
        ("fusion.fail_penalty", "points in [0, 100]"),
    ];

    /// Applies one setting (`key`, `value` as typed). Values are checked, so a typo cannot turn
    /// into a judge that never fails or always does; [`JudgeConfig::check`] then checks how the
    /// settings fit together, once all are applied (so their order does not matter).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let Some((_, expected)) = Self::SETTINGS.iter().find(|(k, _)| *k == key) else {
            return Err(SettingError::Unknown { key: key.into() });
        };
        let bad = || SettingError::Value {
            key: key.into(),
            expected,
            got: value.into(),
        };
        let x: f64 = value.trim().parse().map_err(|_| bad())?;
        fn probability(x: f64) -> bool {
            x > 0.0 && x < 1.0
        }
        fn score(x: f64) -> bool {
            (0.0..=100.0).contains(&x)
        }
        let (slot, valid): (&mut f64, fn(f64) -> bool) = match key {
            "metric.alpha" => (&mut self.metric.alpha, probability),
            "metric.min_relative_effect" => (&mut self.metric.min_relative_effect, |x| {
                x >= 0.0 && x.is_finite()
            }),
            "trace.alpha" => (&mut self.trace.alpha, probability),
            "trace.tail_ratio_fail" => (&mut self.trace.tail_ratio_fail, |x| {
                x >= 1.0 && x.is_finite()
            }),
            "callers.alpha" => (&mut self.callers.alpha, probability),
            "callers.transport_ceiling_ms" => (&mut self.callers.transport_ceiling_ms, |x| x > 0.0),
            "anomaly.false_alarm_rate" => (&mut self.anomaly.false_alarm_rate, probability),
            "fusion.pass_threshold" => (&mut self.fusion.pass_threshold, score),
            "fusion.marginal_threshold" => (&mut self.fusion.marginal_threshold, score),
            "fusion.warn_penalty" => (&mut self.fusion.penalties.warn, score),
            "fusion.fail_penalty" => (&mut self.fusion.penalties.fail, score),
            _ => return Err(SettingError::Unknown { key: key.into() }),
        };
        if !valid(x) {
            return Err(bad());
        }
        *slot = x;
        // One penalty schedule: the log judge's own score follows fusion's.
        self.log.penalties = self.fusion.penalties;
        Ok(())
    }

    /// Constraints between settings.
    pub fn check(&self) -> Result<(), SettingError> {
        if self.fusion.marginal_threshold > self.fusion.pass_threshold {
            return Err(SettingError::Conflict(format!(
                "fusion.marginal_threshold ({}) is above fusion.pass_threshold ({}): nothing could be Marginal",
                self.fusion.marginal_threshold, self.fusion.pass_threshold
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_before_they_reach_a_judge() {
        let mut c = JudgeConfig::default();
        c.set("metric.alpha", "0.02").unwrap();
        assert_eq!(c.metric.alpha, 0.02);
        c.set("fusion.marginal_threshold", " 30 ").unwrap();
        assert_eq!(c.fusion.marginal_threshold, 30.0);
        c.set("fusion.warn_penalty", "10").unwrap();
        assert_eq!(
            c.log.penalties.warn, 10.0,
            "the log judge's score follows fusion's"
        );
        for (key, value) in [
            ("metric.alpha", "1"),
            ("trace.alpha", "0"),
            ("anomaly.false_alarm_rate", "NaN"),
            ("trace.tail_ratio_fail", "0.5"),
            ("metric.min_relative_effect", "-0.1"),
            ("fusion.pass_threshold", "101"),
            ("fusion.warn_penalty", "lots"),
        ] {
            let e = c.set(key, value).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value), "{e}");
        }
        assert!(matches!(
            c.set("metric.alfa", "0.1"),
            Err(SettingError::Unknown { .. })
        ));
        // Every listed key reaches a setting (0.5 is valid for some, out of range for others).
        for (key, _) in JudgeConfig::SETTINGS {
            let mut fresh = JudgeConfig::default();
            let r = fresh.set(key, "0.5");
            assert!(!matches!(r, Err(SettingError::Unknown { .. })), "{key}");
        }
        // A rejected value leaves the setting as it was.
        assert_eq!(c.metric.alpha, 0.02);
        c.set("fusion.pass_threshold", "20").unwrap();
        assert!(matches!(c.check(), Err(SettingError::Conflict(_))));
        c.set("fusion.marginal_threshold", "10").unwrap();
        c.check().unwrap();
    }
}
