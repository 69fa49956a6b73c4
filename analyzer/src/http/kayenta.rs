//! Kayenta's HTTP faces, so that tools built for Spinnaker Kayenta can use Vigil unchanged:
//!
//! - `POST /judge` — Kayenta's RemoteJudge: Kayenta POSTs `{canaryConfig, metricSetPairList,
//!   scoreThresholds}` and reads back a `CanaryJudgeResult`. The answer is exactly `vigil
//!   judge`'s (NetflixACAJudge-v1.0, same noise seed); `?mode=vigil` answers with Vigil's metric
//!   judge in the same shape.
//! - The canary REST subset Argo Rollouts' `kayenta` provider and Spinnaker call:
//!   `GET /canaryConfig` (the list Argo searches by name), `GET /canaryConfig/{id}`,
//!   `POST /canaryConfig`, `POST /canary/{configId}` (start an execution: each metric of the config
//!   is fetched from Prometheus for the control and experiment scopes, paired per label set as
//!   Kayenta's mixer does, and judged as NetflixACAJudge) and `GET /canary/{id}` (the
//!   `CanaryExecutionStatusResponse` Argo polls: `complete`, then `result.judgeResult.score.score`).
//!
//! Only Prometheus metrics (`query.type: prometheus`) are supported, with Kayenta's query forms:
//! a `customInlineTemplate` / `customFilterTemplate` starting `PromQL:` is the whole query;
//! otherwise `metricName` with the template as a label filter plus `labelBindings`, wrapped in
//! `avg(...)` and `by (groupByFields)`. Templates use Kayenta's variables: `${scope}`,
//! `${location}` (Argo sends it as `region`) and the scope's `extendedScopeParams`, inserted
//! verbatim as Kayenta's FreeMarker does. Auth is not here: the service wraps this router.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::kayenta_api::{self, CanaryJudgeResult, DEFAULT_NOISE_SEED};
use crate::source::prometheus::{render_vars, Prometheus, SourceError};
use crate::telemetry::{format_time_exact, parse_time};

/// The largest request body the routes read (the service's default request limit): axum's own
/// default of 2 MB would refuse a RemoteJudge request of a few dozen long series.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Executions kept in memory; beyond it the oldest finished ones are forgotten.
const MAX_EXECUTIONS: usize = 10_000;

/// Canary configs, by id. A small struct of its own so that the service's store can back it
/// later without the routes changing.
#[derive(Debug, Clone, Default)]
pub struct CanaryConfigs {
    inner: Arc<Mutex<BTreeMap<String, Value>>>,
}

/// Why a canary config was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A field is missing or has the wrong shape.
    #[error("{path}: {message}")]
    Field {
        /// The JSON path of the field.
        path: String,
        /// What was expected.
        message: String,
    },
    /// `POST /canaryConfig` with the id of a stored config (Kayenta refuses it too).
    #[error("canary config '{0}' already exists")]
    Exists(String),
}

fn field_error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        path: path.into(),
        message: message.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written (each update is one
    // insert), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CanaryConfigs {
    /// Validates and stores a config as `POST /canaryConfig` does: an id is assigned when it has
    /// none, created/updated timestamps are set. Returns the id.
    pub fn insert(&self, mut config: Value, now_ms: i64) -> Result<String, ConfigError> {
        validate_config(&config)?;
        let Some(obj) = config.as_object_mut() else {
            return Err(field_error("(body)", "expected a JSON object"));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) => new_id("cfg"),
            Some(Value::String(_)) => new_id("cfg"),
            Some(other) => {
                return Err(field_error("id", format!("expected a string, got {other}")))
            }
        };
        obj.insert("id".into(), Value::String(id.clone()));
        let created = obj
            .get("createdTimestamp")
            .and_then(Value::as_i64)
            .unwrap_or(now_ms);
        let updated = obj
            .get("updatedTimestamp")
            .and_then(Value::as_i64)
            .unwrap_or(created);
        obj.insert("createdTimestamp".into(), json!(created));
        obj.insert("createdTimestampIso".into(), json!(iso_ms(created)));
        obj.insert("updatedTimestamp".into(), json!(updated));
        obj.insert("updatedTimestampIso".into(), json!(iso_ms(updated)));
        let mut map = lock(&self.inner);
        if map.contains_key(&id) {
            return Err(ConfigError::Exists(id));
        }
        map.insert(id.clone(), config);
        Ok(id)
    }

    /// The stored config.
    pub fn get(&self, id: &str) -> Option<Value> {
        lock(&self.inner).get(id).cloned()
    }

    /// `{id, name, updatedTimestamp, updatedTimestampIso, applications}` of every config serving
    /// one of `applications` (all when empty), as Kayenta's list answers.
    pub fn list(&self, applications: &[String]) -> Vec<Value> {
        lock(&self.inner)
            .values()
            .filter(|c| {
                applications.is_empty()
                    || c["applications"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| applications.iter().any(|w| x == w)))
            })
            .map(|c| {
                json!({
                    "id": c["id"],
                    "name": c["name"],
                    "updatedTimestamp": c["updatedTimestamp"],
                    "updatedTimestampIso": c["updatedTimestampIso"],
                    "applications": c["applications"],
                })
            })
            .collect()
    }
}

/// What a config must hold for this face to run it: Kayenta's name and application rules, and
/// metrics it can fetch and judge.
fn validate_config(config: &Value) -> Result<(), ConfigError> {
    let Some(obj) = config.as_object() else {
        return Err(field_error(
            "(body)",
            "expected a JSON object (a canary config)",
        ));
    };
    match obj.get("name") {
        Some(Value::String(n))
            if !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {}
        Some(Value::String(n)) => {
            return Err(field_error(
                "name",
                format!("expected letters, digits, '-' and '_' only (Kayenta's rule), got {n:?}"),
            ))
        }
        _ => {
            return Err(field_error(
                "name",
                "required: the config's name (a string)",
            ))
        }
    }
    match obj.get("applications") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {}
        _ => {
            return Err(field_error(
                "applications",
                "required: a non-empty array of application names",
            ))
        }
    }
    if let Some(name) = config.pointer("/judge/name").filter(|v| !v.is_null()) {
        let ok = ["NetflixACAJudge-v1.0", "RemoteJudge-v1.0"];
        if !name.as_str().is_some_and(|n| ok.contains(&n)) {
            return Err(field_error(
                "judge.name",
                format!(
                    "expected \"NetflixACAJudge-v1.0\" (Vigil's judge answers as it), got {name}"
                ),
            ));
        }
    }
    let Some(metrics) = obj.get("metrics").and_then(Value::as_array) else {
        return Err(field_error(
            "metrics",
            "required: an array of metric configs",
        ));
    };
    if metrics.is_empty() {
        return Err(field_error("metrics", "expected at least one metric"));
    }
    for (i, m) in metrics.iter().enumerate() {
        let at = |f: &str| format!("metrics[{i}].{f}");
        let Some(name) = m.get("name").and_then(Value::as_str) else {
            return Err(field_error(at("name"), "required: a string"));
        };
        if metrics[..i].iter().any(|o| o["name"] == *name) {
            return Err(field_error(
                at("name"),
                format!("metric names must be unique; {name:?} appears twice"),
            ));
        }
        match m.pointer("/query/type").and_then(Value::as_str) {
            Some("prometheus") => {}
            Some(other) => {
                return Err(field_error(
                    at("query.type"),
                    format!(
                    "expected \"prometheus\" (the only metrics store Vigil reads), got {other:?}"
                ),
                ))
            }
            None => return Err(field_error(at("query.type"), "required: \"prometheus\"")),
        }
        let q = &m["query"];
        let has_template = [
            "customInlineTemplate",
            "customFilterTemplate",
            "customFilter",
        ]
        .iter()
        .any(|k| q[k].as_str().is_some_and(|s| !s.is_empty()));
        if !has_template && q["metricName"].as_str().is_none_or(str::is_empty) {
            return Err(field_error(
                at("query"),
                "expected customInlineTemplate (\"PromQL:...\") or metricName with a filter template",
            ));
        }
        if let Some(t) = q["customFilterTemplate"].as_str().filter(|s| !s.is_empty()) {
            if config
                .pointer(&format!("/templates/{t}"))
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(field_error(
                    at("query.customFilterTemplate"),
                    format!("names template {t:?}, which is not in the config's templates"),
                ));
            }
        }
        let analysis = m
            .get("analysisConfigurations")
            .cloned()
            .unwrap_or(Value::Null);
        vigil_models::kayenta::config::metric_settings(&analysis).map_err(|e| {
            field_error(
                at(&format!("analysisConfigurations.{}", e.path)),
                format!("expected {}, got {}", e.expected, e.got),
            )
        })?;
    }
    Ok(())
}

/// One side of a canary execution request (Kayenta's `CanaryScope`; Argo sends `region` where
/// Kayenta names it `location`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CanaryScope {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    region: Option<String>,
    start: Value,
    end: Value,
    #[serde(default)]
    step: Option<Value>,
    #[serde(default)]
    extended_scope_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopePair {
    control_scope: CanaryScope,
    experiment_scope: CanaryScope,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct Thresholds {
    pass: f64,
    marginal: f64,
}

/// Kayenta's `CanaryExecutionRequest`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionRequest {
    scopes: BTreeMap<String, ScopePair>,
    #[serde(default)]
    thresholds: Option<Thresholds>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    site_local: Option<Value>,
}

/// A side resolved for fetching: window, step and template variables.
#[derive(Debug, Clone)]
struct Side {
    start: f64,
    end: f64,
    step: f64,
    vars: BTreeMap<String, String>,
}

/// Unix seconds of an RFC 3339 time (`Z`, `±HH:MM` or no zone), as Argo and Spinnaker send.
fn parse_instant(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.len() > 6 {
        let (head, tail) = s.split_at(s.len() - 6);
        let b = tail.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let h: f64 = tail[1..3].parse().ok()?;
            let m: f64 = tail[4..6].parse().ok()?;
            let offset = (h * 3600.0 + m * 60.0) * if b[0] == b'-' { -1.0 } else { 1.0 };
            return parse_time(head).map(|t| t - offset);
        }
    }
    parse_time(s)
}

fn resolve_side(s: &CanaryScope, path: &str) -> Result<Side, ConfigError> {
    let time = |v: &Value, f: &str| -> Result<f64, ConfigError> {
        match v {
            Value::String(t) => parse_instant(t).ok_or_else(|| {
                field_error(
                    format!("{path}.{f}"),
                    format!("expected an RFC 3339 time such as 2026-01-05T12:00:00Z, got {t:?}"),
                )
            }),
            other => Err(field_error(
                format!("{path}.{f}"),
                format!("expected an RFC 3339 time string, got {other}"),
            )),
        }
    };
    let start = time(&s.start, "start")?;
    let end = time(&s.end, "end")?;
    if end <= start {
        return Err(field_error(
            format!("{path}.end"),
            "expected an end after the start",
        ));
    }
    let step = match &s.step {
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x >= 1.0)
            .ok_or_else(|| {
                field_error(
                    format!("{path}.step"),
                    format!("expected a step of at least 1 (seconds), got {v}"),
                )
            })?,
        None => {
            return Err(field_error(
                format!("{path}.step"),
                "required: the step in seconds",
            ))
        }
    };
    // Each side is padded to its expected number of points: bound it, so a window of years at a
    // 1-s step is a clear error rather than gigabytes of padding.
    let points = (end - start) / step;
    if points > MAX_SCOPE_POINTS {
        return Err(field_error(
            format!("{path}.step"),
            format!(
                "{points:.0} points from start to end at this step; at most {MAX_SCOPE_POINTS:.0} (use a longer step or a shorter window)"
            ),
        ));
    }
    let mut vars = s.extended_scope_params.clone();
    vars.insert("scope".into(), s.scope.clone().unwrap_or_default());
    let location = s
        .location
        .clone()
        .filter(|l| !l.is_empty())
        .or_else(|| s.region.clone())
        .unwrap_or_default();
    vars.insert("location".into(), location);
    vars.entry("project".into()).or_default();
    vars.entry("resourceType".into()).or_default();
    Ok(Side {
        start,
        end,
        step,
        vars,
    })
}

/// The PromQL Kayenta's Prometheus service would send for one metric and side.
fn build_query(config: &Value, metric: &Value, side: &Side) -> Result<String, SourceError> {
    let q = &metric["query"];
    let template = match q["customInlineTemplate"].as_str().filter(|s| !s.is_empty()) {
        Some(t) => Some(t.to_string()),
        None => match q["customFilterTemplate"].as_str().filter(|s| !s.is_empty()) {
            Some(name) => config
                .pointer(&format!("/templates/{name}"))
                .and_then(Value::as_str)
                .map(str::to_string),
            None => q["customFilter"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        },
    };
    let filter = match &template {
        Some(t) => Some(render_vars(t, &side.vars)?),
        None => None,
    };
    if let Some(promql) = filter.as_deref().and_then(|f| f.strip_prefix("PromQL:")) {
        return Ok(promql.to_string());
    }
    let name = q["metricName"].as_str().unwrap_or_default();
    let mut filters: Vec<String> = filter
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(bindings) = q["labelBindings"].as_array() {
        filters.extend(
            bindings
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    let mut query = format!("avg({name}{{{}}})", filters.join(","));
    if let Some(by) = q["groupByFields"].as_array().filter(|a| !a.is_empty()) {
        let by: Vec<&str> = by.iter().filter_map(Value::as_str).collect();
        query.push_str(&format!(" by ({})", by.join(",")));
    }
    Ok(query)
}

/// The state of one execution.
#[derive(Debug, Clone)]
struct Execution {
    id: String,
    config_id: String,
    config: Value,
    request: Value,
    params: BTreeMap<String, String>,
    build_ms: i64,
    end_ms: Option<i64>,
    /// `None` while running.
    outcome: Option<Result<CanaryJudgeResult, String>>,
    duration_s: f64,
    metric_count: usize,
}

impl Execution {
    fn status_json(&self) -> Value {
        let (complete, status) = match &self.outcome {
            None => (false, "running"),
            Some(Ok(_)) => (true, "succeeded"),
            Some(Err(_)) => (true, "terminal"),
        };
        let stage = |done: bool| {
            if done {
                status
            } else {
                "running"
            }
        };
        let mut stages = Map::new();
        stages.insert("setupContext".into(), json!("succeeded"));
        for i in 0..self.metric_count {
            stages.insert(format!("fetchControl{i}"), json!(stage(complete)));
            stages.insert(format!("fetchExperiment{i}"), json!(stage(complete)));
        }
        stages.insert("mixMetrics".into(), json!(stage(complete)));
        stages.insert("judge".into(), json!(stage(complete)));
        let mut out = json!({
            "application": self.params.get("application"),
            "parentPipelineExecutionId": self.params.get("parentPipelineExecutionId"),
            "pipelineId": self.id,
            "stageStatus": stages,
            "complete": complete,
            "status": status,
            "exception": null,
            "result": null,
            "config": self.config,
            "canaryConfigId": self.config_id,
            "canaryExecutionRequest": self.request,
            "buildTimeMillis": self.build_ms,
            "buildTimeIso": iso_ms(self.build_ms),
            "startTimeMillis": self.build_ms,
            "startTimeIso": iso_ms(self.build_ms),
            "metricsAccountName": self.params.get("metricsAccountName"),
            "storageAccountName": self.params.get("storageAccountName"),
            "configurationAccountName": self.params.get("configurationAccountName"),
        });
        if let Some(end) = self.end_ms {
            out["endTimeMillis"] = json!(end);
            out["endTimeIso"] = json!(iso_ms(end));
        }
        match &self.outcome {
            Some(Ok(result)) => {
                out["result"] = json!({
                    "judgeResult": result,
                    "canaryDuration": java_duration(self.duration_s),
                });
            }
            Some(Err(message)) => {
                out["exception"] = json!({
                    "exceptionType": "VigilCanaryError",
                    "shouldRetry": false,
                    "details": {"error": message, "errors": [message]},
                });
            }
            None => {}
        }
        out
    }
}

/// The Kayenta faces' state: the metrics source, the configs and the executions.
#[derive(Debug, Clone)]
pub struct KayentaState {
    prometheus: Option<Prometheus>,
    configs: CanaryConfigs,
    executions: Arc<Mutex<HashMap<String, Execution>>>,
    noise_seed: i64,
}

impl KayentaState {
    /// A state reading metrics from `prometheus` (`None`: `POST /canary` answers that no
    /// metrics source is configured; `/judge` and the configs work without one).
    pub fn new(prometheus: Option<Prometheus>) -> Self {
        Self {
            prometheus,
            configs: CanaryConfigs::default(),
            executions: Arc::default(),
            noise_seed: DEFAULT_NOISE_SEED,
        }
    }

    /// The same, with configs kept in `configs` (shared with another holder).
    pub fn with_configs(prometheus: Option<Prometheus>, configs: CanaryConfigs) -> Self {
        Self {
            configs,
            ..Self::new(prometheus)
        }
    }

    /// The canary configs.
    pub fn configs(&self) -> &CanaryConfigs {
        &self.configs
    }
}

/// The Kayenta routes, to be merged into the service's router (behind its auth layer).
pub fn router(state: KayentaState) -> Router {
    Router::new()
        .route("/judge", post(judge))
        .route("/canaryConfig", get(list_configs).post(create_config))
        .route("/canaryConfig/{id}", get(get_config))
        .route("/canary/{id}", post(start_canary).get(get_canary))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error answer in the shape Spring gives Kayenta's clients: `{status, error, message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        Json(json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("error"),
            "message": message,
        })),
    )
        .into_response()
}

/// The most points a scope may span (start to end at its step): a week at a 1-s step.
const MAX_SCOPE_POINTS: f64 = 604_800.0;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn iso_ms(ms: i64) -> String {
    format_time_exact(ms as f64 / 1000.0)
}

/// Java's `Duration.toString()` (`PT5M`, `PT1H30M`, `PT12.5S`), as Jackson writes Kayenta's
/// `canaryDuration`.
fn java_duration(seconds: f64) -> String {
    let total = seconds.max(0.0);
    let h = (total / 3600.0).floor();
    let m = ((total - h * 3600.0) / 60.0).floor();
    let s = total - h * 3600.0 - m * 60.0;
    let mut out = String::from("PT");
    if h > 0.0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0.0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0.0 || (h == 0.0 && m == 0.0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// A fresh, time-sortable id (Kayenta's are UUIDs or ULIDs; callers treat them as opaque).
fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{prefix}-{:012x}{:016x}", now_ms(), h.finish())
}

#[derive(Deserialize)]
struct JudgeParams {
    #[serde(default)]
    mode: Option<String>,
}

async fn judge(Query(params): Query<JudgeParams>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "request body is not UTF-8 text");
    };
    let request = match kayenta_api::parse_request(text) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match params.mode.as_deref() {
        None | Some("kayenta") => {
            Json(kayenta_api::judge(&request, DEFAULT_NOISE_SEED)).into_response()
        }
        Some("vigil") => match kayenta_api::judge_vigil(&request) {
            Ok(r) => Json(r).into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("mode: expected \"kayenta\" or \"vigil\", got {other:?}"),
        ),
    }
}

async fn list_configs(
    State(state): State<KayentaState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let applications: Vec<String> = params
        .into_iter()
        .filter(|(k, _)| k == "application")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|a| !a.is_empty())
        .collect();
    Json(state.configs.list(&applications)).into_response()
}

async fn get_config(State(state): State<KayentaState>, Path(id): Path<String>) -> Response {
    match state.configs.get(&id) {
        Some(c) => Json(c).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no canary config with id {id:?}"),
        ),
    }
}

async fn create_config(State(state): State<KayentaState>, body: Bytes) -> Response {
    let config: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    match state.configs.insert(config, now_ms()) {
        Ok(id) => Json(json!({ "canaryConfigId": id })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_canary(State(state): State<KayentaState>, Path(id): Path<String>) -> Response {
    let found = lock(&state.executions).get(&id).map(Execution::status_json);
    match found {
        Some(status) => Json(status).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no canary execution with id {id:?}"),
        ),
    }
}

/// Everything checked before an execution is accepted, so that a bad request is a 400 naming
/// its field rather than an execution that fails later.
struct Plan {
    config: Value,
    request: ExecutionRequest,
    thresholds: Thresholds,
    /// Per metric: (control, experiment).
    sides: Vec<(Side, Side)>,
}

fn plan(config: Value, body: &[u8]) -> Result<Plan, ConfigError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| field_error("(body)", format!("not JSON: {e}")))?;
    let request: ExecutionRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(body)".to_string()
        } else {
            path
        };
        field_error(path, e.inner().to_string())
    })?;
    let thresholds = request.thresholds.clone().ok_or_else(|| {
        field_error(
            "thresholds",
            "required: {\"pass\": number, \"marginal\": number} (Kayenta: \"Execution request must contain thresholds\")",
        )
    })?;
    if !(thresholds.pass.is_finite() && thresholds.marginal.is_finite())
        || thresholds.marginal > thresholds.pass
    {
        return Err(field_error(
            "thresholds",
            format!(
                "expected finite numbers with marginal <= pass, got pass {} and marginal {}",
                thresholds.pass, thresholds.marginal
            ),
        ));
    }
    let mut resolved: BTreeMap<&str, (Side, Side)> = BTreeMap::new();
    for (name, pair) in &request.scopes {
        let control = resolve_side(&pair.control_scope, &format!("scopes.{name}.controlScope"))?;
        let experiment = resolve_side(
            &pair.experiment_scope,
            &format!("scopes.{name}.experimentScope"),
        )?;
        resolved.insert(name, (control, experiment));
    }
    let metrics = config["metrics"].as_array().cloned().unwrap_or_default();
    let mut sides = Vec::with_capacity(metrics.len());
    for (i, m) in metrics.iter().enumerate() {
        let scope_name = m["scopeName"].as_str().unwrap_or("default");
        let Some(pair) = resolved.get(scope_name) else {
            return Err(field_error(
                "scopes",
                format!(
                    "metric {:?} (config metrics[{i}]) needs the scope {scope_name:?}, which the request does not provide",
                    m["name"].as_str().unwrap_or_default()
                ),
            ));
        };
        sides.push(pair.clone());
    }
    Ok(Plan {
        config,
        request,
        thresholds,
        sides,
    })
}

/// The query parameters of `POST /canary/{configId}` that Kayenta reads and echoes back.
const KAYENTA_PARAMS: [&str; 5] = [
    "application",
    "parentPipelineExecutionId",
    "metricsAccountName",
    "configurationAccountName",
    "storageAccountName",
];

#[derive(Deserialize)]
struct CanaryParams {
    #[serde(flatten)]
    all: BTreeMap<String, String>,
}

async fn start_canary(
    State(state): State<KayentaState>,
    Path(config_id): Path<String>,
    Query(params): Query<CanaryParams>,
    body: Bytes,
) -> Response {
    let Some(config) = state.configs.get(&config_id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no canary config with id {config_id:?}"),
        );
    };
    let plan = match plan(config, &body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(prometheus) = state.prometheus.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "metricsAccountName: this server has no Prometheus configured to fetch canary metrics from",
        );
    };
    let id = new_id("canary");
    let duration_s = plan
        .sides
        .first()
        .map(|(c, _)| c.end - c.start)
        .unwrap_or(0.0);
    let execution = Execution {
        id: id.clone(),
        config_id,
        config: plan.config.clone(),
        request: serde_json::to_value(&plan.request).unwrap_or(Value::Null),
        // Only Kayenta's own parameters: a `token` parameter (auth for tools that cannot send a
        // header) must not be kept with the execution.
        params: params
            .all
            .into_iter()
            .filter(|(k, _)| KAYENTA_PARAMS.contains(&k.as_str()))
            .collect(),
        build_ms: now_ms(),
        end_ms: None,
        outcome: None,
        duration_s,
        metric_count: plan.sides.len(),
    };
    {
        let mut map = lock(&state.executions);
        if map.len() >= MAX_EXECUTIONS {
            let oldest = map
                .values()
                .filter(|e| e.outcome.is_some())
                .min_by_key(|e| e.build_ms)
                .map(|e| e.id.clone());
            if let Some(old) = oldest {
                map.remove(&old);
            }
        }
        map.insert(id.clone(), execution);
    }
    let executions = state.executions.clone();
    let seed = state.noise_seed;
    let run_id = id.clone();
    tokio::spawn(async move {
        let outcome = run_canary(&prometheus, &plan, seed).await;
        if let Err(e) = &outcome {
            tracing::warn!(execution = %run_id, error = %e, "canary execution failed");
        }
        if let Some(e) = lock(&executions).get_mut(&run_id) {
            e.outcome = Some(outcome);
            e.end_ms = Some(now_ms());
        }
    });
    Json(json!({ "canaryExecutionId": id })).into_response()
}

/// One side of one metric, per label set (Kayenta's tags: the labels without `__name__`).
async fn fetch_sets(
    prometheus: &Prometheus,
    config: &Value,
    metric: &Value,
    side: &Side,
) -> Result<BTreeMap<BTreeMap<String, String>, Vec<f64>>, SourceError> {
    let query = build_query(config, metric, side)?;
    let series = prometheus
        .query_range(&query, side.start, side.end, side.step)
        .await?;
    let mut sets = BTreeMap::new();
    for mut s in series {
        s.labels.remove("__name__");
        let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        sets.insert(s.labels, values);
    }
    Ok(sets)
}

/// Fetches, mixes and judges: what Kayenta's pipeline of fetch stages, mixer and judge does.
async fn run_canary(
    prometheus: &Prometheus,
    plan: &Plan,
    seed: i64,
) -> Result<CanaryJudgeResult, String> {
    let metrics = plan.config["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut pairs = Vec::new();
    let mut mismatched = Vec::new();
    for (m, (control, experiment)) in metrics.iter().zip(&plan.sides) {
        let name = m["name"].as_str().unwrap_or_default();
        let in_metric = |e: SourceError| format!("metric {name:?}: {e}");
        let c = fetch_sets(prometheus, &plan.config, m, control)
            .await
            .map_err(in_metric)?;
        let e = fetch_sets(prometheus, &plan.config, m, experiment)
            .await
            .map_err(in_metric)?;
        // The mixer pads each side to the expected number of points with NaN (a missing side
        // entirely NaN), so a metric without data is Nodata, never an empty Pass.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "at most MAX_SCOPE_POINTS, checked when the scope was read"
        )]
        let expected = |s: &Side| ((s.end - s.start) / s.step).floor().max(0.0) as usize;
        let pad = |mut v: Vec<f64>, n: usize| -> Vec<Value> {
            if v.len() < n {
                v.resize(n, f64::NAN);
            }
            v.into_iter()
                .map(|x| {
                    if x.is_finite() {
                        json!(x)
                    } else {
                        json!("NaN")
                    }
                })
                .collect()
        };
        let mut tag_sets: Vec<&BTreeMap<String, String>> = c.keys().chain(e.keys()).collect();
        tag_sets.sort();
        tag_sets.dedup();
        if !c.is_empty() && !e.is_empty() && c.keys().ne(e.keys()) {
            mismatched.push(name.to_string());
        }
        if tag_sets.is_empty() {
            tag_sets.push(&EMPTY_TAGS);
        }
        for tags in tag_sets {
            let cv = c.get(tags).cloned().unwrap_or_default();
            let ev = e.get(tags).cloned().unwrap_or_default();
            pairs.push(json!({
                "name": name,
                "id": format!("{name}-{}", pairs.len()),
                "tags": tags,
                "values": {
                    "control": pad(cv, expected(control)),
                    "experiment": pad(ev, expected(experiment)),
                },
            }));
        }
    }
    let request = json!({
        "canaryConfig": plan.config,
        "scoreThresholds": {"pass": plan.thresholds.pass, "marginal": plan.thresholds.marginal},
        "metricSetPairList": pairs,
    });
    let request = kayenta_api::parse_request_value(request).map_err(|e| e.to_string())?;
    let mut result = kayenta_api::judge(&request, seed);
    for name in mismatched {
        result.warnings.push(format!(
            "metric {name:?}: control and experiment series carry different labels, so Kayenta's mixer pairs them with nothing (NODATA, kayenta#738); aggregate the query or drop the scope label"
        ));
    }
    Ok(result)
}

static EMPTY_TAGS: BTreeMap<String, String> = BTreeMap::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn side(vars: &[(&str, &str)]) -> Side {
        Side {
            start: 0.0,
            end: 600.0,
            step: 60.0,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn queries_are_built_as_kayenta_builds_them() {
        let config = json!({"templates": {"byApp": "app=\"${scope}\""}});
        let s = side(&[("scope", "web-canary"), ("location", "eu")]);
        let inline = json!({"query": {"type": "prometheus",
            "customInlineTemplate": "PromQL:sum(rate(errors{app=\"${scope}\",region=\"${location}\"}[1m]))"}});
        assert_eq!(
            build_query(&config, &inline, &s).unwrap(),
            "sum(rate(errors{app=\"web-canary\",region=\"eu\"}[1m]))"
        );
        let filtered = json!({"query": {"type": "prometheus", "metricName": "cpu",
            "customFilterTemplate": "byApp", "labelBindings": ["mode=\"user\""], "groupByFields": ["pod"]}});
        assert_eq!(
            build_query(&config, &filtered, &s).unwrap(),
            "avg(cpu{app=\"web-canary\",mode=\"user\"}) by (pod)"
        );
        let unknown = json!({"query": {"type": "prometheus", "customInlineTemplate": "PromQL:x{a=\"${nope}\"}"}});
        let e = build_query(&config, &unknown, &s).unwrap_err();
        assert!(e.to_string().contains("${nope}"), "{e}");
    }

    #[test]
    fn rfc3339_offsets_are_honoured() {
        assert_eq!(parse_instant("2026-01-05T12:00:00Z"), Some(1_767_614_400.0));
        assert_eq!(
            parse_instant("2026-01-05T13:30:00+01:30"),
            Some(1_767_614_400.0)
        );
        assert_eq!(
            parse_instant("2026-01-05T10:00:00-02:00"),
            Some(1_767_614_400.0)
        );
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn java_durations() {
        assert_eq!(java_duration(300.0), "PT5M");
        assert_eq!(java_duration(5400.0), "PT1H30M");
        assert_eq!(java_duration(12.5), "PT12.5S");
        assert_eq!(java_duration(0.0), "PT0S");
    }

    #[test]
    fn configs_name_the_bad_field() {
        let store = CanaryConfigs::default();
        let base = json!({"name": "web", "applications": ["web"], "metrics": [
            {"name": "cpu", "query": {"type": "prometheus", "customInlineTemplate": "PromQL:cpu"},
             "analysisConfigurations": {"canary": {"direction": "sideways"}}}]});
        let e = store.insert(base.clone(), 0).unwrap_err();
        assert!(
            e.to_string().contains("metrics[0].analysisConfigurations"),
            "{e}"
        );
        let mut atlas = base.clone();
        atlas["metrics"][0]["analysisConfigurations"] = json!({});
        atlas["metrics"][0]["query"]["type"] = json!("atlas");
        let e = store.insert(atlas, 0).unwrap_err();
        assert!(e.to_string().contains("metrics[0].query.type"), "{e}");
        let mut ok = base;
        ok["metrics"][0]["analysisConfigurations"] = json!({});
        ok["id"] = json!("fixed");
        assert_eq!(store.insert(ok.clone(), 1_000).unwrap(), "fixed");
        assert_eq!(
            store.insert(ok, 0).unwrap_err(),
            ConfigError::Exists("fixed".into())
        );
        assert_eq!(store.list(&["web".into()]).len(), 1);
        assert!(store.list(&["other".into()]).is_empty());
        assert_eq!(
            store.get("fixed").unwrap()["updatedTimestampIso"],
            "1970-01-01T00:00:01Z"
        );
    }
}
