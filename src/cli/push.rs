//! `vigil push SCENARIO`: a recorded scenario sent to a running `vigil serve` as live telemetry
//! would be — OTLP/gRPC with the original timestamps — into an event-time analysis, whose final
//! verdict is printed as `vigil replay --json` prints the scenario's record.
//!
//! The analysis: a before/after analysis of the scenario's pod (`k8s.pod.name`), both sides
//! selecting it and told apart by their windows (a baseline recorded beside the canary is sent as
//! a sibling pod, `<pod>.baseline`), with what replay's engine session is told about the scenario:
//! the modalities each side recorded, their windows and coverage, the known incidents to mask,
//! replay's 30-s interval and the canary horizon (the latest canary window end).
//!
//! Order: records go in slices of one interval aligned to the canary's start, each slice's logs,
//! metrics and spans in time order, so that the watermark passes an interval's end only once
//! everything stamped before it was sent. A caller's span (from `caller_spans.csv`, sent on the
//! caller's own pod) is joined by the service with its child on the pod; a child that starts in
//! a later slice than its caller is sent at the end of the caller's slice, so that the edge is
//! there when the caller's interval closes, as replay has it.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tonic::transport::Channel;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLog, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status, ResourceSpans, ScopeSpans, Span as OtlpSpan, Status,
};
use prost::Message;

use crate::replay::scenario::{self, Scenario, Side, Span, Window};
use vigil_analyzer::telemetry::format_time;
use vigil_proto::v1 as pb;
use vigil_proto::v1::analyses_client::AnalysesClient;

use super::analysis::{finding_json, status as status_err, verdict_str};

/// Arguments of `vigil push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// A scenario folder (`scenario.json` and its side folders, the format of `datasets/`).
    pub scenario: PathBuf,
    /// The service's API (analyses).
    #[arg(long, default_value = "http://127.0.0.1:7700", value_name = "URL")]
    pub server: String,
    /// The service's OTLP/gRPC receiver.
    #[arg(long, default_value = "http://127.0.0.1:4317", value_name = "URL")]
    pub otlp: String,
    /// Bearer token, scope `write` (default: the VIGIL_TOKEN environment variable).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "VIGIL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A base spec (YAML or JSON) that the scenario's scopes and windows complete, e.g. with
    /// notifications or thresholds.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Pace the push at N× the recorded time (default: as fast as the service accepts).
    #[arg(long, value_name = "N")]
    pub speed: Option<f64>,
    /// The analysis id (default: the scenario's id and the time, so runs do not collide).
    #[arg(long)]
    pub id: Option<String>,
    /// For an `https://` service (API and receiver, which share its TLS): CA certificates (PEM)
    /// to verify it with.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// For a service that asks for client certificates: this certificate chain (PEM); needs
    /// --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// How long one export is retried while the service is over its memory budget.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(120);
/// Most records in one export request.
const BATCH: usize = 2000;

pub fn run(args: &PushArgs) -> Result<()> {
    if let Some(s) = args.speed {
        if !(s.is_finite() && s > 0.0) {
            bail!("--speed: expected a positive number (2 = twice real time), got {s}");
        }
    }
    let s = scenario::load(&args.scenario)
        .with_context(|| format!("loading {}", args.scenario.display()))?;
    let pod = pod_of(&args.scenario).unwrap_or_else(|| s.id.clone());
    let base = match &args.spec {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            base_spec(&text).with_context(|| format!("--spec {}", p.display()))?
        }
        None => json!({}),
    };
    let spec = spec_for(&s, &pod, base)?;
    let id = args.id.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut id: String =
            s.id.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect();
        id.push_str(&format!("-{now}"));
        id
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let record = rt.block_on(push(args, &s, &pod, &spec, &id))?;
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

/// The scenario's `pod` field, if any.
fn pod_of(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("scenario.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("pod")?.as_str().map(str::to_owned)
}

fn base_spec(text: &str) -> Result<Value> {
    let v: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)?
    } else {
        serde_yaml_ng::from_str(text)?
    };
    if !v.is_object() {
        bail!("a spec is a mapping of fields");
    }
    Ok(v)
}

fn rfc(t: f64) -> String {
    format_time(t)
}

fn window_json(w: Window) -> Value {
    json!({"start": rfc(w.start), "end": rfc(w.end)})
}

/// Earliest and latest record time of a side (metrics, logs, spans, callers' spans).
fn extent(side: &Side) -> Option<(f64, f64)> {
    let mut times: Vec<f64> = Vec::new();
    if let Some(m) = &side.metrics {
        times.extend(m.times.first());
        times.extend(m.times.last());
    }
    if let Some(l) = &side.logs {
        times.extend(l.iter().filter_map(|r| r.time));
    }
    for v in [&side.spans, &side.caller_spans].into_iter().flatten() {
        times.extend(v.iter().map(|s| s.start));
    }
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo <= hi).then_some((lo, hi))
}

/// The latest end of the canary's windows: how far replay judges (its horizon).
pub fn horizon_end(s: &Scenario) -> f64 {
    [
        s.canary.metric_window,
        s.canary.log_window,
        s.canary.trace_window,
        Some(s.canary_window),
    ]
    .iter()
    .flatten()
    .map(|w| w.end)
    .fold(s.canary_window.start, f64::max)
}

fn records(side: &Side) -> Vec<&'static str> {
    let mut r = Vec::new();
    if side.metrics.is_some() {
        r.push("metrics");
    }
    if side.logs.is_some() {
        r.push("logs");
    }
    if side.spans.is_some() {
        r.push("spans");
    }
    if side.caller_spans.is_some() {
        r.push("callers");
    }
    r
}

/// Attributes of the pod a side's telemetry is sent from.
fn side_attributes(s: &Scenario, pod: &str, canary: bool) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let name = if canary || !s.concurrent_baseline() {
        pod.to_owned()
    } else {
        format!("{pod}.baseline")
    };
    a.insert("k8s.pod.name".to_owned(), name);
    a
}

/// The spec of the scenario's analysis: `base`'s fields, completed by the scenario's scopes,
/// windows and what replay's engine session is told about it.
pub fn spec_for(s: &Scenario, pod: &str, mut base: Value) -> Result<Value> {
    let app: String = if s.service.is_empty() {
        &s.id
    } else {
        &s.service
    }
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':') {
            c
        } else {
            '_'
        }
    })
    .take(200)
    .collect();
    let Some(obj) = base.as_object_mut() else {
        bail!("a spec is a mapping of fields");
    };
    obj.entry("app").or_insert_with(|| json!(app));
    obj.entry("interval").or_insert_with(|| json!("30s"));
    obj.insert("clock".into(), json!("event"));
    // Replay's judges: the engine's defaults, which the spec's own defaults do not all equal.
    let judges = vigil_analyzer::judge::JudgeConfig::default();
    obj.entry("min_samples").or_insert_with(|| {
        json!({"metrics": {
            "baseline": judges.metric.min_baseline_points,
            "canary": judges.metric.min_canary_points,
        }})
    });
    obj.entry("thresholds").or_insert_with(|| {
        json!({"pass": judges.fusion.pass_threshold, "marginal": judges.fusion.marginal_threshold})
    });
    obj.remove("lifetime");
    obj.remove("start");
    let end = horizon_end(s);
    let t0 = s.canary_window.start;
    let concurrent = s.concurrent_baseline();
    let side = |canary: bool, sd: &Side| -> Value {
        let mut v = json!({
            "attributes": side_attributes(s, pod, canary),
            "records": records(sd),
        });
        if let Some(w) = sd.log_window {
            v["log_window"] = window_json(w);
        }
        if let Some(w) = sd.trace_window {
            v["trace_window"] = window_json(w);
        }
        if let Some(c) = sd.log_seconds_covered {
            v["log_seconds_covered"] = json!(c);
        }
        if let Some(c) = sd.trace_seconds_covered {
            v["trace_seconds_covered"] = json!(c);
        }
        v
    };
    let mut baseline = side(false, &s.baseline);
    let mut canary = side(true, &s.canary);
    if concurrent {
        obj.insert("start".into(), json!(rfc(t0)));
        obj.insert("lifetime".into(), json!(end - t0));
    } else {
        // The baseline: everything it recorded, up to the canary's start.
        let from = [
            Some(s.baseline_window.start),
            s.baseline.metric_window.map(|w| w.start),
            s.baseline.log_window.map(|w| w.start),
            s.baseline.trace_window.map(|w| w.start),
            extent(&s.baseline).map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
        // The canary: from its earliest record or window (a canary's metrics may start before
        // `canary_window`: replay judges them as the canary's), its analysis from `t0`.
        let split = [
            Some(t0),
            s.canary.metric_window.map(|w| w.start),
            s.canary.log_window.map(|w| w.start),
            s.canary.trace_window.map(|w| w.start),
            extent(&s.canary).map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min)
        .floor();
        // Unless the baseline reaches past it: then the sides split at the canary's start.
        let split = match extent(&s.baseline) {
            Some((_, last)) if last >= split => t0,
            _ => split,
        };
        let from = from.floor().min(split - 1.0);
        baseline["window"] = window_json(Window {
            start: from,
            end: split,
        });
        if split < t0 {
            obj.insert("begin_after".into(), json!(t0 - split));
        }
        canary["window"] = window_json(Window { start: split, end });
    }
    for (name, v) in [("baseline", baseline), ("canary", canary)] {
        let slot = obj.entry(name).or_insert_with(|| json!({}));
        let Some(slot) = slot.as_object_mut() else {
            bail!("{name}: a mapping of fields");
        };
        if let Some(fields) = v.as_object() {
            for (k, x) in fields {
                slot.insert(k.clone(), x.clone());
            }
        }
    }
    if !s.known_incidents.is_empty() || s.baseline_clean_since.is_some() {
        let mut m = json!({
            "known_incidents": s.known_incidents.iter().map(|w| window_json(*w)).collect::<Vec<_>>(),
        });
        if let Some(c) = s.baseline_clean_since {
            m["clean_since"] = json!(rfc(c));
        }
        obj.insert("masking".into(), m);
    }
    Ok(base)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn resource(attrs: &BTreeMap<String, String>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Resource::default()
    })
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "recorded times after 1970 and before 2554 in ns fit a u64"
)]
fn ns(t: f64) -> u64 {
    (t * 1e9).round().max(0.0) as u64
}

/// A hex id as bytes of `len`; an id that is not hex of that length is hashed to one (the same
/// text always gives the same bytes, so parent links hold).
fn id_bytes(hex: &str, len: usize) -> Vec<u8> {
    let clean = hex.trim();
    if clean.len() == 2 * len && clean.bytes().all(|b| b.is_ascii_hexdigit()) {
        let out: Option<Vec<u8>> = (0..len)
            .map(|i| u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).ok())
            .collect();
        if let Some(v) = out {
            if v.iter().any(|b| *b != 0) {
                return v;
            }
        }
    }
    // FNV-1a, stretched.
    let mut out = Vec::with_capacity(len);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut round = 0u8;
    while out.len() < len {
        for b in clean.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.extend(h.to_be_bytes());
        round += 1;
    }
    out.truncate(len);
    out
}

fn otlp_span(s: &Span) -> OtlpSpan {
    let start = ns(s.start);
    let dur = (s.duration_ms * 1e6).round().max(0.0);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative duration in ns"
    )]
    let end = start.saturating_add(dur as u64);
    OtlpSpan {
        trace_id: id_bytes(&s.trace_id, 16),
        span_id: id_bytes(&s.span_id, 8),
        parent_span_id: s
            .parent_id
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| id_bytes(p, 8))
            .unwrap_or_default(),
        name: s.operation.clone(),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        status: s.error.map(|e| Status {
            code: if e {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Ok as i32
            },
            ..Status::default()
        }),
        ..OtlpSpan::default()
    }
}

/// Spans with their start (for ordering).
type Timed = Vec<(f64, OtlpSpan)>;

/// One side's records, by slice.
#[derive(Default)]
struct Slice {
    logs: Vec<OtlpLog>,
    spans: Vec<(f64, OtlpSpan)>,
    /// Children on the pod pulled forward into this slice (their caller starts here).
    pulled: Vec<(f64, OtlpSpan)>,
    /// Metric points: time, name, value.
    metrics: Vec<(f64, String, f64)>,
}

/// Sender-side: the pod's records and the callers' spans, per slice index.
struct Plan {
    /// (slice, side is canary) → records.
    slices: BTreeMap<(i64, bool), Slice>,
    /// Callers' spans per slice (sent from the callers' pods).
    callers: BTreeMap<i64, Vec<(f64, String, OtlpSpan)>>,
}

/// Which slice of `len` seconds, counted from `t0`, holds `t`.
fn slice_of(t: f64, t0: f64, len: f64) -> i64 {
    #[allow(clippy::cast_possible_truncation, reason = "slices of recorded times")]
    let i = ((t - t0) / len).floor() as i64;
    i
}

/// The records of `s` in slices of `len` seconds from `t0` (the analysis's intervals).
fn plan(s: &Scenario, t0: f64, len: f64) -> Plan {
    let slice_of = |t: f64, t0: f64| slice_of(t, t0, len);
    let mut slices: BTreeMap<(i64, bool), Slice> = BTreeMap::new();
    let mut callers: BTreeMap<i64, Vec<(f64, String, OtlpSpan)>> = BTreeMap::new();
    for (canary, side) in [(false, &s.baseline), (true, &s.canary)] {
        if let Some(m) = &side.metrics {
            for (row, t) in m.times.iter().enumerate() {
                let sl = slices.entry((slice_of(*t, t0), canary)).or_default();
                for (name, values) in &m.columns {
                    let v = values[row];
                    if v.is_finite() {
                        sl.metrics.push((*t, name.clone(), v));
                    }
                }
            }
        }
        for r in side.logs.iter().flatten() {
            let Some(t) = r.time else { continue };
            slices
                .entry((slice_of(t, t0), canary))
                .or_default()
                .logs
                .push(OtlpLog {
                    time_unix_nano: ns(t),
                    observed_time_unix_nano: ns(t),
                    severity_text: r.severity.clone().unwrap_or_default(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(r.body.clone())),
                    }),
                    ..OtlpLog::default()
                });
        }
        // Where each callee's caller starts: the child goes no later than that slice.
        let mut caller_start: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut sent: HashSet<(String, String)> = HashSet::new();
        for c in side.caller_spans.iter().flatten() {
            let Some(edge) = &c.caller else { continue };
            let key = (c.trace_id.clone(), edge.callee_span_id.clone());
            let e = caller_start.entry(key).or_insert(c.start);
            *e = e.min(c.start);
            if sent.insert((c.trace_id.clone(), c.span_id.clone())) {
                callers.entry(slice_of(c.start, t0)).or_default().push((
                    c.start,
                    caller_pod(s),
                    otlp_span(c),
                ));
            }
        }
        for sp in side.spans.iter().flatten() {
            let own = slice_of(sp.start, t0);
            let pulled = caller_start
                .get(&(sp.trace_id.clone(), sp.span_id.clone()))
                .map(|t| slice_of(*t, t0))
                .filter(|c| *c < own);
            match pulled {
                Some(c) => slices
                    .entry((c, canary))
                    .or_default()
                    .pulled
                    .push((sp.start, otlp_span(sp))),
                None => slices
                    .entry((own, canary))
                    .or_default()
                    .spans
                    .push((sp.start, otlp_span(sp))),
            }
        }
    }
    Plan { slices, callers }
}

/// The pod a caller's span ran on: its `pod` column is not kept by the loader, so all callers
/// are one pod other than the judged one (the join only needs them to be another process).
fn caller_pod(s: &Scenario) -> String {
    format!("{}.callers", s.service)
}

struct Clients {
    logs: LogsServiceClient<Channel>,
    traces: TraceServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Clients {
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }
}

/// How long RESOURCE_EXHAUSTED asks to wait (its `RetryInfo`), default one second.
fn retry_delay(st: &tonic::Status) -> Duration {
    use vigil_analyzer::ingest::receiver::{RetryInfo, RpcStatus};
    let from_details = RpcStatus::decode(st.details()).ok().and_then(|s| {
        s.details
            .iter()
            .find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))
            .and_then(|d| RetryInfo::decode(d.value.as_slice()).ok())
            .and_then(|r| r.retry_delay)
    });
    match from_details {
        Some(d) => {
            let secs = u64::try_from(d.seconds).unwrap_or(0);
            let nanos = u32::try_from(d.nanos).unwrap_or(0);
            Duration::new(secs, nanos.min(999_999_999))
        }
        None => Duration::from_secs(1),
    }
}

/// Sends one export, retrying while the service says RESOURCE_EXHAUSTED (after the delay its
/// RetryInfo gives) or UNAVAILABLE (briefly); any other error ends the push.
macro_rules! export {
    ($clients:expr, $method:ident, $req:expr, $what:expr) => {{
        let mut tries = 0u32;
        let mut waited = Duration::ZERO;
        loop {
            let r = $clients.request($req.clone());
            match $clients.$method.export(r).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if let Some(p) = resp.partial_success {
                        if !p.error_message.is_empty() && tries == 0 {
                            tracing::warn!("{}: partial success: {}", $what, p.error_message);
                        }
                    }
                    break;
                }
                Err(st) if st.code() == tonic::Code::ResourceExhausted => {
                    // What is pushed stays in the budget until the analysis ends: a budget too
                    // small for the scenario never frees up, so give up after a while.
                    let delay = retry_delay(&st);
                    waited += delay;
                    if waited > MAX_RETRY_WAIT {
                        bail!(
                            "{} export refused for {} s: {} (the service's --memory-budget may be too small for this scenario)",
                            $what,
                            MAX_RETRY_WAIT.as_secs(),
                            status_err(st)
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(st) if st.code() == tonic::Code::Unavailable && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(st) => {
                    bail!("{} export refused: {}", $what, status_err(st));
                }
            }
        }
    }};
}

async fn send_logs(
    c: &mut Clients,
    attrs: &BTreeMap<String, String>,
    mut logs: Vec<OtlpLog>,
) -> Result<()> {
    logs.sort_by_key(|l| l.time_unix_nano);
    for chunk in logs.chunks(BATCH) {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(attrs),
                scope_logs: vec![ScopeLogs {
                    log_records: chunk.to_vec(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        export!(c, logs, req, "logs");
    }
    Ok(())
}

async fn send_spans(
    c: &mut Clients,
    attrs: &BTreeMap<String, String>,
    mut spans: Vec<(f64, OtlpSpan)>,
) -> Result<()> {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let spans: Vec<OtlpSpan> = spans.into_iter().map(|(_, s)| s).collect();
    for chunk in spans.chunks(BATCH) {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(attrs),
                scope_spans: vec![ScopeSpans {
                    spans: chunk.to_vec(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        export!(c, traces, req, "traces");
    }
    Ok(())
}

async fn send_metrics(
    c: &mut Clients,
    attrs: &BTreeMap<String, String>,
    points: Vec<(f64, String, f64)>,
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    // One gauge per metric, its points in time order.
    let mut by_name: BTreeMap<String, Vec<NumberDataPoint>> = BTreeMap::new();
    let mut sorted = points;
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, name, v) in sorted {
        by_name.entry(name).or_default().push(NumberDataPoint {
            time_unix_nano: ns(t),
            value: Some(number_data_point::Value::AsDouble(v)),
            ..NumberDataPoint::default()
        });
    }
    let metrics: Vec<Metric> = by_name
        .into_iter()
        .map(|(name, data_points)| Metric {
            name,
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Metric::default()
        })
        .collect();
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(attrs),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    };
    export!(c, metrics, req, "metrics");
    Ok(())
}

async fn push(args: &PushArgs, s: &Scenario, pod: &str, spec: &Value, id: &str) -> Result<Value> {
    let token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = match &args.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("the token has characters a header cannot carry")?,
        ),
        None => None,
    };
    // The spec as the service will read it: its errors before anything is sent, and the
    // intervals the records are sliced by.
    let checked = vigil_analyzer::service::spec::Spec::parse(&spec.to_string())
        .map_err(|e| anyhow::anyhow!("the scenario's spec: {e}"))?;
    let analysis_plan = checked
        .plan(0.0)
        .map_err(|e| anyhow::anyhow!("the scenario's spec: {e}"))?;
    let slice_s = analysis_plan.interval;
    let tls = super::ClientTls {
        ca_file: args.ca_file.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    let api_channel = super::grpc_channel(&args.server, "--server", &tls).await?;
    let mut api = AnalysesClient::new(api_channel).max_decoding_message_size(64 << 20);
    let otlp = super::grpc_channel(&args.otlp, "--otlp", &tls).await?;
    let mut clients = Clients {
        logs: LogsServiceClient::new(otlp.clone()),
        traces: TraceServiceClient::new(otlp.clone()),
        metrics: MetricsServiceClient::new(otlp),
        token: token.clone(),
    };
    let created = api
        .create_analysis(clients.request(pb::CreateAnalysisRequest {
            id: id.to_owned(),
            spec: spec.to_string(),
        }))
        .await
        .map_err(status_err)
        .context("creating the analysis")?
        .into_inner();
    let analysis = created.analysis.context("the server sent no analysis")?;
    if !created.created {
        // Its data was pushed already: a second copy would count every record twice.
        bail!(
            "analysis `{}` exists already (state {}): choose another --id",
            analysis.id,
            super::analysis::state_str(analysis.state)
        );
    }
    // The record on stdout is replay's; the analysis's id (for `vigil analysis get`) on stderr.
    eprintln!("vigil push: analysis {}", analysis.id);
    let p = plan(s, analysis_plan.t0, slice_s);
    let started = Instant::now();
    let first = p
        .slices
        .keys()
        .map(|(i, _)| *i)
        .chain(p.callers.keys().copied())
        .min()
        .unwrap_or(0);
    let mut indices: Vec<i64> = p
        .slices
        .keys()
        .map(|(i, _)| *i)
        .chain(p.callers.keys().copied())
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let Plan {
        mut slices,
        mut callers,
    } = p;
    for i in indices {
        if let Some(speed) = args.speed {
            #[allow(clippy::cast_precision_loss, reason = "slice indices are small")]
            let due = (i - first) as f64 * slice_s / speed;
            let now = started.elapsed().as_secs_f64();
            if due > now {
                tokio::time::sleep(Duration::from_secs_f64(due - now)).await;
            }
        }
        // Logs and metrics, then callers' spans (parents before their children, though the
        // join takes either order), then the pod's spans; last, children that start after this
        // slice whose callers start in it.
        let parts: Vec<(bool, Slice)> = [false, true]
            .into_iter()
            .filter_map(|canary| slices.remove(&(i, canary)).map(|sl| (canary, sl)))
            .collect();
        let mut rest: Vec<(bool, Timed, Timed)> = Vec::new();
        for (canary, sl) in parts {
            let attrs = side_attributes(s, pod, canary);
            send_logs(&mut clients, &attrs, sl.logs).await?;
            send_metrics(&mut clients, &attrs, sl.metrics).await?;
            rest.push((canary, sl.spans, sl.pulled));
        }
        if let Some(cs) = callers.remove(&i) {
            send_callers(&mut clients, cs).await?;
        }
        let mut pulled_all = Vec::new();
        for (canary, spans, pulled) in rest {
            let attrs = side_attributes(s, pod, canary);
            send_spans(&mut clients, &attrs, spans).await?;
            pulled_all.push((attrs, pulled));
        }
        for (attrs, pulled) in pulled_all {
            send_spans(&mut clients, &attrs, pulled).await?;
        }
    }
    api.end_input(clients.request(pb::EndInputRequest { id: id.to_owned() }))
        .await
        .map_err(status_err)
        .context("ending the input")?;
    // The judgements as they come, then the final state.
    let mut timeline: Vec<Value> = Vec::new();
    let mut stream = api
        .watch_analysis(clients.request(pb::WatchAnalysisRequest {
            id: id.to_owned(),
            after_seq: 0,
        }))
        .await
        .map_err(status_err)
        .context("watching the analysis")?
        .into_inner();
    while let Some(u) = stream.message().await.map_err(status_err)? {
        if let Some(pb::watch_update::Update::Judgement(j)) = u.update {
            let jd = j.judgement.unwrap_or_default();
            timeline.push(json!({
                "elapsed_s": j.elapsed_s,
                "verdict": verdict_str(jd.verdict),
                "score": jd.score,
            }));
        }
    }
    let a = api
        .get_analysis(clients.request(pb::GetAnalysisRequest { id: id.to_owned() }))
        .await
        .map_err(status_err)?
        .into_inner();
    let last = a
        .last_judgement
        .as_ref()
        .and_then(|j| j.judgement.clone())
        .unwrap_or_default();
    Ok(json!({
        "id": s.id,
        "system": s.system,
        "fault_type": s.fault_type,
        "expected": s.expected.as_str(),
        "verdict": verdict_str(a.verdict),
        "score": a.score,
        "time_to_detect_s": a.time_to_detect_s,
        "evidence": last.evidence.iter().map(finding_json).collect::<Vec<_>>(),
        "findings": last.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "note": if last.note.is_empty() { Value::Null } else { Value::from(last.note.clone()) },
        "timeline": timeline,
    }))
}

async fn send_callers(c: &mut Clients, mut cs: Vec<(f64, String, OtlpSpan)>) -> Result<()> {
    cs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut by_pod: BTreeMap<String, Vec<(f64, OtlpSpan)>> = BTreeMap::new();
    for (t, pod, sp) in cs {
        by_pod.entry(pod).or_default().push((t, sp));
    }
    for (pod, spans) in by_pod {
        let mut attrs = BTreeMap::new();
        attrs.insert("k8s.pod.name".to_owned(), pod);
        send_spans(c, &attrs, spans).await?;
    }
    Ok(())
}
