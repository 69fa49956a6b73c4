//! The Kayenta-compatible judge (NetflixACAJudge-v1.0) and orca's interval planning.
//!
//! This is the `kayenta` [`Mode`]: the same labels and scores a team running Kayenta gets today,
//! quirks included, so that moving to Vigil changes nothing until they choose to. Where Kayenta
//! is known to be wrong is written down in `docs/judge.md`; the better judge is a separate mode.
//!
//! The pieces, in the order a judgement uses them:
//! - [`preprocess`]: NaN and outlier handling, descriptive statistics.
//! - [`mann_whitney`]: the Hodges-Lehmann interval and estimate (fast, and a reference port).
//! - [`classify`]: one metric's label from the interval and the effect sizes.
//! - [`score`]: group scores, the summary score and its Pass / Marginal / Fail.
//! - [`intervals`]: orca's multi-interval windows and how interval scores aggregate.
//! - [`config`]: reading a metric's `analysisConfigurations` with Kayenta's defaults.

pub mod classify;
pub mod config;
pub mod intervals;
pub mod mann_whitney;
pub mod preprocess;
pub mod score;

pub use classify::{Classification, ClassifierParams, Label};
pub use preprocess::{NanStrategy, OutlierStrategy, Summary};
pub use score::{ScoreInput, ScoreLabel, ScoreResult, ScoreThresholds};

/// Which judge semantics to apply. Only Kayenta's exist today; `docs/judge.md` describes the
/// `vigil` mode this enum leaves room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Bit-for-bit NetflixACAJudge-v1.0, including its known weaknesses.
    #[default]
    Kayenta,
}

/// `canary.direction`: which way is a regression (the crate's one [`crate::Direction`]).
pub use crate::Direction;

/// `canary.effectSize.measure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectSizeMeasure {
    /// mean(experiment) / mean(control).
    MeanRatio,
    /// P(experiment > control) + ½ P(tie).
    Cles,
}

/// `canary.effectSize.*`: the second gate a metric must pass after the rank test to be High/Low,
/// and the stronger one that makes a critical metric's failure critical.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EffectSizeSettings {
    pub measure: EffectSizeMeasure,
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub critical_increase: f64,
    pub critical_decrease: f64,
}

impl EffectSizeSettings {
    /// "No effect" for the measure (1.0 for a ratio, 0.5 for CLES), which is Kayenta's default
    /// for all four thresholds: the gate is open unless configured.
    pub fn defaults(measure: EffectSizeMeasure) -> Self {
        let none = match measure {
            EffectSizeMeasure::MeanRatio => 1.0,
            EffectSizeMeasure::Cles => 0.5,
        };
        EffectSizeSettings {
            measure,
            allowed_increase: none,
            allowed_decrease: none,
            critical_increase: none,
            critical_decrease: none,
        }
    }
}

/// Everything NetflixACAJudge reads from one metric's `analysisConfigurations.canary`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSettings {
    pub direction: Direction,
    pub nan_strategy: NanStrategy,
    pub outliers: OutlierStrategy,
    pub critical: bool,
    pub must_have_data: bool,
    /// Reported, but left out of scoring.
    pub muted: bool,
    pub effect_size: EffectSizeSettings,
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            direction: Direction::Either,
            nan_strategy: NanStrategy::Remove,
            outliers: OutlierStrategy::Keep,
            critical: false,
            must_have_data: false,
            muted: false,
            effect_size: EffectSizeSettings::defaults(EffectSizeMeasure::MeanRatio),
        }
    }
}

/// One metric's result as NetflixACAJudge reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricVerdict {
    pub classification: Classification,
    /// Stats of the preprocessed sides (`controlMetadata.stats`, `experimentMetadata.stats`).
    pub control_stats: Summary,
    pub experiment_stats: Summary,
}

/// NetflixACAJudge's `classifyMetric` on raw samples (NaN = missing point): preprocess each side,
/// summarise it, classify. A failure of the rank test becomes the label `Error` with Kayenta's
/// reason, as in Kayenta. `standard_normal` supplies the tie-breaking noise (see
/// [`classify::classify`]); [`preprocess::JavaRandom`] is Kayenta's generator.
pub fn judge_metric(
    name: &str,
    control: &[f64],
    experiment: &[f64],
    settings: &MetricSettings,
    params: &ClassifierParams,
    standard_normal: &mut dyn FnMut() -> f64,
) -> MetricVerdict {
    let control = preprocess::preprocess(control, settings.nan_strategy, settings.outliers);
    let experiment = preprocess::preprocess(experiment, settings.nan_strategy, settings.outliers);
    let classification = classify::classify(
        name,
        &control,
        &experiment,
        settings,
        params,
        standard_normal,
    )
    .unwrap_or_else(|_| Classification {
        label: Label::Error,
        reason: Some("Metric Classification Failed".to_string()),
        deviation: f64::NAN,
        critical: false,
        interval: None,
        effect_size: None,
    });
    MetricVerdict {
        classification,
        control_stats: preprocess::summary(&control),
        experiment_stats: preprocess::summary(&experiment),
    }
}

/// A metric as the judge receives it: a name, its groups, its two raw samples and settings.
#[derive(Debug, Clone, Copy)]
pub struct MetricInput<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
    pub control: &'a [f64],
    pub experiment: &'a [f64],
    pub settings: MetricSettings,
}

/// The whole judgement: per-metric verdicts (in input order), scores and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub metrics: Vec<MetricVerdict>,
    pub score: ScoreResult,
    pub classification: ScoreLabel,
}

/// NetflixACAJudge's `judge`: classify every metric, score the unmuted ones with the group
/// weights, classify the summary against the request's thresholds.
pub fn judge(
    metrics: &[MetricInput<'_>],
    group_weights: &[(String, f64)],
    thresholds: &ScoreThresholds,
    params: &ClassifierParams,
    mode: Mode,
    standard_normal: &mut dyn FnMut() -> f64,
) -> Judgement {
    match mode {
        Mode::Kayenta => {}
    }
    let verdicts: Vec<MetricVerdict> = metrics
        .iter()
        .map(|m| {
            judge_metric(
                m.name,
                m.control,
                m.experiment,
                &m.settings,
                params,
                standard_normal,
            )
        })
        .collect();
    let inputs: Vec<ScoreInput<'_>> = metrics
        .iter()
        .zip(&verdicts)
        .filter(|(m, _)| !m.settings.muted)
        .map(|(m, v)| ScoreInput {
            label: v.classification.label,
            groups: m.groups,
            critical: v.classification.critical,
            reason: v.classification.reason.as_deref(),
        })
        .collect();
    let score = score::score(&inputs, group_weights);
    let classification = score::classify_score(score.summary, thresholds);
    Judgement {
        metrics: verdicts,
        score,
        classification,
    }
}
