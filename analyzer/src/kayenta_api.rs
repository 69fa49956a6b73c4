//! Kayenta's wire format for a judge: the RemoteJudge request Kayenta POSTs to `<endpoint>/judge`
//! (`canaryConfig`, `scoreThresholds`, `metricSetPairList`) and the `CanaryJudgeResult` it expects
//! back, with exactly Kayenta's field names, so that Vigil can stand in for NetflixACAJudge.
//!
//! Parsing is strict where Kayenta is lenient: an unknown `direction`, a string where a boolean
//! belongs, a metric with no config, or thresholds with marginal above pass are errors naming
//! the field, not silent defaults. Sample values may be numbers, `null` or `"NaN"`; all three
//! mean a missing point, as Kayenta's mixer pads missing points with NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use vigil_models::kayenta::{
    self, config, preprocess, score, ClassifierParams, Label, MetricInput, MetricSettings, Mode,
    ScoreInput, ScoreThresholds, Summary,
};
use vigil_models::vigil_judge::{self, MetricKind, MetricRule, Outcome, VigilJudgeConfig};

/// The judge whose behaviour `vigil judge` reproduces, and the name it reports.
pub const JUDGE_NAME: &str = "NetflixACAJudge-v1.0";

/// Judge names a request may carry: Kayenta's own name for this judge, and the name Kayenta
/// puts in the config it forwards to a remote judge.
const ACCEPTED_JUDGE_NAMES: [&str; 2] = [JUDGE_NAME, "RemoteJudge-v1.0"];

/// A request that cannot be judged; the message names the field and what was expected there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The body does not parse as JSON at all; the parser's message says where.
    #[error("request is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but a field is missing, of the wrong type or out of range.
    #[error("{path}: {message}")]
    Field {
        /// Where, as a JSON path (`metricSetPairList[2].values.control`).
        path: String,
        /// What was expected there.
        message: String,
    },
}

fn field(path: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError::Field {
        path: path.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------- request (wire)

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    canary_config: WireCanaryConfig,
    score_thresholds: Option<WireThresholds>,
    metric_set_pair_list: Vec<WireMetricSetPair>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCanaryConfig {
    #[serde(default)]
    judge: Option<WireJudge>,
    metrics: Vec<WireMetricConfig>,
    #[serde(default)]
    classifier: Option<WireClassifier>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireJudge {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMetricConfig {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    analysis_configurations: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireClassifier {
    #[serde(default)]
    group_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireThresholds {
    pass: f64,
    marginal: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct WireMetricSetPair {
    name: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    values: WireValues,
}

#[derive(Debug, Clone, Deserialize)]
struct WireValues {
    control: Vec<Sample>,
    experiment: Vec<Sample>,
}

/// One sample: a number, or `null` / `"NaN"` for a missing point.
#[derive(Debug, Clone, Copy)]
struct Sample(f64);

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
            Null(()),
        }
        match Option::<Raw>::deserialize(d)? {
            None | Some(Raw::Null(())) => Ok(Sample(f64::NAN)),
            Some(Raw::Number(v)) => Ok(Sample(v)),
            Some(Raw::Text(s)) if s == "NaN" => Ok(Sample(f64::NAN)),
            Some(Raw::Text(s)) => Err(serde::de::Error::custom(format!(
                "expected a number, null or \"NaN\", got the string {s:?}"
            ))),
        }
    }
}

// ---------------------------------------------------------------- request (validated)

/// One metric of a validated request: its pair, and the settings from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMetric {
    /// The metric's name, echoed in its result.
    pub name: String,
    /// The pair's id, echoed in its result (Kayenta copies it through).
    pub id: Option<String>,
    /// The pair's tags (the scope's labels), echoed in its result.
    pub tags: BTreeMap<String, String>,
    /// The groups the metric's config puts it in; group scores are per group.
    pub groups: Vec<String>,
    /// The baseline's points; NaN marks a missing point.
    pub control: Vec<f64>,
    /// The canary's points; NaN marks a missing point.
    pub experiment: Vec<f64>,
    /// How the config says to judge it (direction, NaN strategy, effect sizes, critical).
    pub settings: MetricSettings,
}

/// A RemoteJudge request that has been checked and is ready to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeRequest {
    /// Every metric pair, in the request's order (results keep it).
    pub metrics: Vec<RequestMetric>,
    /// `canaryConfig.classifier.groupWeights`.
    pub group_weights: Vec<(String, f64)>,
    /// `scoreThresholds`: pass and marginal, on the 0–100 score.
    pub thresholds: ScoreThresholds,
}

/// Parses and validates a RemoteJudge request from JSON text.
pub fn parse_request(text: &str) -> Result<JudgeRequest, RequestError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?;
    parse_request_value(value)
}

/// Parses and validates a RemoteJudge request from a JSON value.
pub fn parse_request_value(value: Value) -> Result<JudgeRequest, RequestError> {
    if !value.is_object() {
        return Err(field(
            "(request)",
            "expected a JSON object with canaryConfig, scoreThresholds and metricSetPairList",
        ));
    }
    let wire: WireRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(request)".to_string()
        } else {
            path
        };
        field(path, e.inner().to_string())
    })?;

    if let Some(name) = wire
        .canary_config
        .judge
        .as_ref()
        .and_then(|j| j.name.as_deref())
    {
        if !ACCEPTED_JUDGE_NAMES.contains(&name) {
            return Err(field(
                "canaryConfig.judge.name",
                format!("expected \"{JUDGE_NAME}\" (or \"RemoteJudge-v1.0\"), got {name:?}"),
            ));
        }
    }

    let thresholds = wire.score_thresholds.ok_or_else(|| {
        field(
            "scoreThresholds",
            "missing; expected {\"pass\": number, \"marginal\": number}",
        )
    })?;
    for (name, v) in [("pass", thresholds.pass), ("marginal", thresholds.marginal)] {
        if !v.is_finite() {
            return Err(field(
                format!("scoreThresholds.{name}"),
                "expected a finite number",
            ));
        }
    }
    if thresholds.marginal > thresholds.pass {
        return Err(field(
            "scoreThresholds",
            format!(
                "expected marginal <= pass, got marginal {} above pass {}",
                thresholds.marginal, thresholds.pass
            ),
        ));
    }

    let mut group_weights = Vec::new();
    if let Some(weights) = wire.canary_config.classifier.and_then(|c| c.group_weights) {
        for (group, w) in weights {
            if !w.is_finite() {
                return Err(field(
                    format!("canaryConfig.classifier.groupWeights.{group}"),
                    "expected a finite number",
                ));
            }
            group_weights.push((group, w));
        }
    }

    let configs = &wire.canary_config.metrics;
    let mut settings = Vec::with_capacity(configs.len());
    for (i, m) in configs.iter().enumerate() {
        if configs[..i].iter().any(|o| o.name == m.name) {
            return Err(field(
                format!("canaryConfig.metrics[{i}].name"),
                format!("metric names must be unique; {:?} appears twice", m.name),
            ));
        }
        let s = config::metric_settings(&m.analysis_configurations).map_err(|e| {
            field(
                format!(
                    "canaryConfig.metrics[{i}].analysisConfigurations.{}",
                    e.path
                ),
                format!("expected {}, got {}", e.expected, e.got),
            )
        })?;
        settings.push(s);
    }

    if wire.metric_set_pair_list.is_empty() {
        return Err(field(
            "metricSetPairList",
            "expected at least one metric set pair, got an empty list",
        ));
    }
    let mut metrics = Vec::with_capacity(wire.metric_set_pair_list.len());
    for (i, pair) in wire.metric_set_pair_list.into_iter().enumerate() {
        let Some(idx) = configs.iter().position(|m| m.name == pair.name) else {
            return Err(field(
                format!("metricSetPairList[{i}].name"),
                format!(
                    "expected the name of a metric in canaryConfig.metrics, got {:?}",
                    pair.name
                ),
            ));
        };
        metrics.push(RequestMetric {
            name: pair.name,
            id: pair.id,
            tags: pair.tags,
            groups: configs[idx].groups.clone(),
            control: pair.values.control.into_iter().map(|s| s.0).collect(),
            experiment: pair.values.experiment.into_iter().map(|s| s.0).collect(),
            settings: settings[idx],
        });
    }
    Ok(JudgeRequest {
        metrics,
        group_weights,
        thresholds: ScoreThresholds {
            pass: thresholds.pass,
            marginal: thresholds.marginal,
        },
    })
}

// ---------------------------------------------------------------- response

/// Kayenta's `CanaryJudgeResult`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryJudgeResult {
    /// Which judge answered (`NetflixACAJudge-v1.0`, or Vigil's name in `--mode vigil`).
    pub judge_name: String,
    /// One result per metric, in the request's order.
    pub results: Vec<CanaryAnalysisResult>,
    /// One score per group, by the share of its metrics that passed.
    pub group_scores: Vec<CanaryJudgeGroupScore>,
    /// The weighted score over groups and its classification against the thresholds.
    pub score: CanaryJudgeScore,
    /// What Kayenta would not say: settings that make its answer meaningless (e.g. a negative
    /// group weight that scores a canary 150). Not a Kayenta field, so it is left out of the
    /// JSON when empty and a clean request gives Kayenta's exact shape.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Kayenta's per-metric `CanaryAnalysisResult`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysisResult {
    /// The metric's name.
    pub name: String,
    /// The pair's id, as sent.
    pub id: Option<String>,
    /// The pair's tags, as sent.
    pub tags: BTreeMap<String, String>,
    /// `Pass`, `High`, `Low`, `Nodata`, `NodataFailMetric` or `Error`, as Kayenta spells them.
    pub classification: String,
    /// Why, when the classification is not a plain Pass (Kayenta's sentence).
    pub classification_reason: Option<String>,
    /// The metric's groups.
    pub groups: Vec<String>,
    /// The canary's summary after preprocessing.
    pub experiment_metadata: StatsMetadata,
    /// The baseline's summary after preprocessing.
    pub control_metadata: StatsMetadata,
    /// The effect that was compared (the ratio of means).
    pub result_metadata: ResultMetadata,
    /// A failure of this metric fails the whole canary.
    pub critical: bool,
    /// Kayenta's `muted`: never set by this judge, kept for the shape.
    pub muted: bool,
}

/// Kayenta's `{"stats": …}` wrapper around one side's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsMetadata {
    /// The side's summary.
    pub stats: Stats,
}

/// One side's summary as Kayenta reports it; non-finite values are written as Jackson writes
/// them (`"NaN"`), because Kayenta's clients parse that.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Smallest point.
    #[serde(serialize_with = "number_or_nan")]
    pub min: f64,
    /// Largest point.
    #[serde(serialize_with = "number_or_nan")]
    pub max: f64,
    /// Mean of the points.
    #[serde(serialize_with = "number_or_nan")]
    pub mean: f64,
    /// Standard deviation of the points.
    #[serde(serialize_with = "number_or_nan")]
    pub std: f64,
    /// How many points were left after preprocessing.
    pub count: usize,
}

impl From<Summary> for Stats {
    fn from(s: Summary) -> Self {
        Stats {
            min: s.min,
            max: s.max,
            mean: s.mean,
            std: s.std,
            count: s.count,
        }
    }
}

/// The effect Kayenta compares against the metric's effect-size gates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultMetadata {
    /// mean(experiment) / mean(control); `"NaN"` when either mean is 0, as Jackson writes it.
    #[serde(serialize_with = "number_or_nan")]
    pub ratio: f64,
}

/// Kayenta's per-group score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryJudgeGroupScore {
    /// The group's name.
    pub name: String,
    /// 0–100: the share of the group's metrics that passed.
    pub score: f64,
    /// Always "" in Kayenta.
    pub classification: String,
    /// Always "" in Kayenta.
    pub classification_reason: String,
}

/// Kayenta's overall score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryJudgeScore {
    /// 0–100: group scores weighted by `groupWeights`.
    pub score: f64,
    /// `Pass`, `Marginal` or `Fail` against the thresholds (`Fail` also when a critical metric failed).
    pub classification: String,
    /// Why, for a critical failure; otherwise "".
    pub classification_reason: String,
}

/// Jackson's default for non-finite doubles: a quoted `"NaN"` / `"Infinity"`.
fn number_or_nan<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

/// Seed of the tie-breaking noise when the caller gives none. Kayenta seeds from the clock; a
/// fixed seed makes the same request give the same result every time.
pub const DEFAULT_NOISE_SEED: i64 = 0;

/// Judges a validated request as NetflixACAJudge-v1.0 does (tolerance 0.25, confidence 0.98).
pub fn judge(request: &JudgeRequest, noise_seed: i64) -> CanaryJudgeResult {
    let inputs: Vec<MetricInput<'_>> = request
        .metrics
        .iter()
        .map(|m| MetricInput {
            name: &m.name,
            groups: &m.groups,
            control: &m.control,
            experiment: &m.experiment,
            settings: m.settings,
        })
        .collect();
    let mut rng = kayenta::preprocess::JavaRandom::new(noise_seed);
    let mut normal = || rng.next_gaussian();
    let judgement = kayenta::judge(
        &inputs,
        &request.group_weights,
        &request.thresholds,
        &ClassifierParams::NETFLIX_ACA_JUDGE,
        Mode::Kayenta,
        &mut normal,
    );
    let results = request
        .metrics
        .iter()
        .zip(judgement.metrics)
        .map(|(m, v)| CanaryAnalysisResult {
            name: m.name.clone(),
            id: m.id.clone(),
            tags: m.tags.clone(),
            classification: v.classification.label.to_string(),
            classification_reason: v.classification.reason,
            groups: m.groups.clone(),
            experiment_metadata: StatsMetadata {
                stats: v.experiment_stats.into(),
            },
            control_metadata: StatsMetadata {
                stats: v.control_stats.into(),
            },
            result_metadata: ResultMetadata {
                ratio: v.classification.deviation,
            },
            critical: v.classification.critical,
            muted: m.settings.muted,
        })
        .collect();
    CanaryJudgeResult {
        judge_name: JUDGE_NAME.to_string(),
        results,
        group_scores: judgement
            .score
            .group_scores
            .into_iter()
            .map(|g| CanaryJudgeGroupScore {
                name: g.name,
                score: g.score,
                classification: String::new(),
                classification_reason: String::new(),
            })
            .collect(),
        score: CanaryJudgeScore {
            score: judgement.score.summary,
            classification: judgement.classification.to_string(),
            classification_reason: judgement.score.reason.unwrap_or_default(),
        },
        warnings: score_setting_problems(request)
            .into_iter()
            .map(|e| e.to_string())
            .collect(),
    }
}

/// Which judge answers a request: Kayenta's, bit for bit, or Vigil's own metric judge in
/// Kayenta's result shape (`vigil judge --mode`, and the service's `POST /judge?mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JudgeMode {
    /// Kayenta's NetflixACAJudge-v1.0 semantics, quirks included: what a Kayenta user expects.
    #[default]
    Kayenta,
    /// Vigil's metric judge (rank test plus effect size with an interval), in Kayenta's shape.
    Vigil,
}

/// The name `--mode vigil` reports in `judgeName`.
pub const VIGIL_JUDGE_NAME: &str = "Vigil-v1";

/// Group weights and thresholds that make a score leave 0–100 or mean nothing, each named by its
/// field. Kayenta checks none of them: a weight of -50 scores a passing canary 150 and passes
/// it. `--mode vigil` rejects a request with any of these; Kayenta's mode reports them as
/// warnings and keeps Kayenta's answer.
pub fn score_setting_problems(request: &JudgeRequest) -> Vec<RequestError> {
    let mut problems = Vec::new();
    for (group, w) in &request.group_weights {
        if *w < 0.0 {
            problems.push(field(
                format!("canaryConfig.classifier.groupWeights.{group}"),
                format!("expected a weight >= 0, got {w}: a negative weight can push the score outside 0-100"),
            ));
        }
    }
    let sum: f64 = request.group_weights.iter().map(|(_, w)| w).sum();
    if sum > 100.0 {
        problems.push(field(
            "canaryConfig.classifier.groupWeights",
            format!("expected weights that sum to at most 100, got {sum}: the score could exceed 100 (and groups without a weight get a negative share)"),
        ));
    }
    for (name, v) in [
        ("pass", request.thresholds.pass),
        ("marginal", request.thresholds.marginal),
    ] {
        if !(0.0..=100.0).contains(&v) {
            problems.push(field(
                format!("scoreThresholds.{name}"),
                format!("expected a threshold between 0 and 100 (a score's range), got {v}"),
            ));
        }
    }
    problems
}

/// Judges a request with Vigil's metric judge ([`vigil_judge::classify`]: a one-sided rank test
/// with a Hodges-Lehmann effect and its interval, a dispersion test, an exact count test, and
/// Inconclusive with the numbers when a side has too few points), scored with Kayenta's group
/// weights and thresholds, and answered in Kayenta's `CanaryJudgeResult` so that a Kayenta
/// pipeline can switch judges without changing its parser.
///
/// Labels in Kayenta's vocabulary: a harmful rise, a spread blow-up or a steady climb is `High`,
/// a harmful fall `Low`, too little data `Nodata` (`NodataFailMetric` when the metric must have
/// data); `classificationReason` always carries Vigil's own outcome and numbers.
///
/// Rejects what [`score_setting_problems`] finds, with the first problem's field.
pub fn judge_vigil(request: &JudgeRequest) -> Result<CanaryJudgeResult, RequestError> {
    if let Some(problem) = score_setting_problems(request).into_iter().next() {
        return Err(problem);
    }
    let config = VigilJudgeConfig::default();
    let mut labels = Vec::with_capacity(request.metrics.len());
    let mut results = Vec::with_capacity(request.metrics.len());
    for m in &request.metrics {
        let direction = m.settings.direction;
        let control =
            preprocess::preprocess(&m.control, m.settings.nan_strategy, m.settings.outliers);
        let experiment =
            preprocess::preprocess(&m.experiment, m.settings.nan_strategy, m.settings.outliers);
        let j = vigil_judge::classify(
            &control,
            &experiment,
            MetricRule::new(direction, MetricKind::Gauge),
            &config,
        );
        let label = match j.outcome {
            Outcome::Pass => Label::Pass,
            Outcome::High | Outcome::Dispersed | Outcome::Trend => Label::High,
            Outcome::Low => Label::Low,
            Outcome::Inconclusive if m.settings.must_have_data => Label::NodataFailMetric,
            Outcome::Inconclusive => Label::Nodata,
        };
        let critical = m.settings.critical && matches!(label, Label::High | Label::Low);
        let reason = format!("{:?}: {}", j.outcome, j.reason);
        let (cs, es) = (
            preprocess::summary(&control),
            preprocess::summary(&experiment),
        );
        let ratio = if cs.mean == 0.0 || es.mean == 0.0 {
            f64::NAN
        } else {
            es.mean / cs.mean
        };
        labels.push((label, critical, reason.clone()));
        results.push(CanaryAnalysisResult {
            name: m.name.clone(),
            id: m.id.clone(),
            tags: m.tags.clone(),
            classification: label.to_string(),
            classification_reason: Some(reason),
            groups: m.groups.clone(),
            experiment_metadata: StatsMetadata { stats: es.into() },
            control_metadata: StatsMetadata { stats: cs.into() },
            result_metadata: ResultMetadata { ratio },
            critical,
            muted: m.settings.muted,
        });
    }
    let inputs: Vec<ScoreInput<'_>> = request
        .metrics
        .iter()
        .zip(&labels)
        .filter(|(m, _)| !m.settings.muted)
        .map(|(m, (label, critical, reason))| ScoreInput {
            label: *label,
            groups: &m.groups,
            critical: *critical,
            reason: Some(reason.as_str()),
        })
        .collect();
    let scored = score::score(&inputs, &request.group_weights);
    let classification = score::classify_score(scored.summary, &request.thresholds);
    Ok(CanaryJudgeResult {
        judge_name: VIGIL_JUDGE_NAME.to_string(),
        results,
        group_scores: scored
            .group_scores
            .into_iter()
            .map(|g| CanaryJudgeGroupScore {
                name: g.name,
                score: g.score,
                classification: String::new(),
                classification_reason: String::new(),
            })
            .collect(),
        score: CanaryJudgeScore {
            score: scored.summary,
            classification: classification.to_string(),
            classification_reason: scored.reason.unwrap_or_default(),
        },
        warnings: Vec::new(),
    })
}
