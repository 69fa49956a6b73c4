//! HTTP routes of the service itself: the verdict Argo Rollouts' `web` provider polls, and
//! `/metrics`, Vigil's own health in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::runner::Core;
use super::store::ListFilter;

/// Counters the service keeps for `/metrics` (lock-free; read as a snapshot).
#[derive(Debug, Default)]
pub struct Counters {
    /// Interval judgements appended, by verdict (Pass, Marginal, Fail, Inconclusive, Error).
    pub judgements: [AtomicU64; 5],
    /// Store appends and their total time in microseconds.
    pub appends: AtomicU64,
    /// Total append time, µs.
    pub append_us: AtomicU64,
    /// Requests served (gRPC and HTTP), and their total time in microseconds.
    pub requests: AtomicU64,
    /// Total request time, µs (streams count until their response head).
    pub request_us: AtomicU64,
}

/// The verdict names in counter order.
pub const VERDICTS: [&str; 5] = ["Pass", "Marginal", "Fail", "Inconclusive", "Error"];

impl Counters {
    /// Counts one judgement.
    pub fn judgement(&self, verdict: &str) {
        if let Some(i) = VERDICTS.iter().position(|v| *v == verdict) {
            self.judgements[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The routes, over `core`.
pub fn router(core: Arc<Core>) -> axum::Router {
    axum::Router::new()
        .route("/v1/analyses/{id}/verdict", get(verdict))
        .route(
            "/v1/analyses/{id}/end-of-input",
            axum::routing::post(end_of_input),
        )
        .route("/metrics", get(metrics))
        .route("/", get(super::page::index))
        .route("/analyses/{id}", get(super::page::analysis))
        .with_state(core)
}

/// Counts every request and its time (an axum middleware).
pub async fn count(
    State(core): State<Arc<Core>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t = Instant::now();
    let r = next.run(req).await;
    let c = core.counters();
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.request_us.fetch_add(
        u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    r
}

fn json(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Argo Rollouts' `web` provider treats any non-2xx as an Error, not a failure: this answers 200
/// with JSON whatever the analysis's state, `Unknown` for an id that does not exist (yet).
/// `final` says whether `verdict` can still change.
async fn verdict(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match core.with_store(move |s| s.get(&key)).await {
        Ok(Some(row)) => {
            let done = super::record::is_final_state(&row.state);
            json(serde_json::json!({
                "id": row.id,
                "verdict": row.verdict.as_deref().unwrap_or("Unknown"),
                "final": done,
                "state": row.state,
                "score": row.score,
                "intervals_judged": row.next_interval.saturating_sub(1),
            }))
        }
        Ok(None) => json(serde_json::json!({
            "id": id, "verdict": "Unknown", "final": false, "state": "unknown", "score": null,
            "intervals_judged": 0,
        })),
        Err(e) => {
            tracing::error!(error = %e, "verdict route");
            json(serde_json::json!({
                "id": id, "verdict": "Unknown", "final": false, "state": "unknown",
                "error": e.to_string(),
            }))
        }
    }
}

/// `EndInput` over HTTP (scope `write`), for a pusher without a gRPC client: 200 with the
/// analysis's id and state, 404 for an unknown id, 409 for an analysis not on event time.
async fn end_of_input(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    use super::runner::ServiceError;
    let status = match core.end_input(&id).await {
        Ok(()) => StatusCode::OK,
        Err(ServiceError::NotFound(_)) => StatusCode::NOT_FOUND,
        Err(ServiceError::Precondition(m)) => {
            return (
                StatusCode::CONFLICT,
                serde_json::json!({"error": m}).to_string(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "end-of-input route");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let body = if status == StatusCode::OK {
        serde_json::json!({"id": id, "input_ended": true})
    } else {
        serde_json::json!({"id": id, "error": status.canonical_reason()})
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    let mut out = String::new();
    let states = [
        "pending",
        "running",
        "succeeded",
        "failed",
        "inconclusive",
        "error",
        "cancelled",
    ];
    out.push_str(
        "# HELP vigil_analyses Analyses in the store, by state.\n# TYPE vigil_analyses gauge\n",
    );
    for state in states {
        let mut n = 0usize;
        let mut token = None;
        loop {
            let filter = ListFilter {
                app: None,
                states: vec![state.to_owned()],
                page_size: 1000,
                page_token: token.clone(),
            };
            match core.with_store(move |s| s.list(&filter)).await {
                Ok((rows, next)) => {
                    n += rows.len();
                    match next {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: listing failed");
                    break;
                }
            }
        }
        let _ = writeln!(out, "vigil_analyses{{state=\"{state}\"}} {n}");
    }
    let c = core.counters();
    out.push_str("# HELP vigil_judgements_total Interval judgements recorded since start, by verdict.\n# TYPE vigil_judgements_total counter\n");
    for (i, v) in VERDICTS.iter().enumerate() {
        let _ = writeln!(
            out,
            "vigil_judgements_total{{verdict=\"{v}\"}} {}",
            c.judgements[i].load(Ordering::Relaxed)
        );
    }
    core.ingest().counters().render(&mut out);
    core.notifier().counters().render(&mut out);
    let (held, join) = core.ingest().used_parts();
    let _ = writeln!(
        out,
        "# HELP vigil_otlp_memory_bytes Bytes of pushed telemetry held, for running analyses and by the caller join.\n# TYPE vigil_otlp_memory_bytes gauge\nvigil_otlp_memory_bytes{{part=\"analyses\"}} {held}\nvigil_otlp_memory_bytes{{part=\"join\"}} {join}"
    );
    let secs = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = write!(
        out,
        "# HELP vigil_store_append_seconds Time to append entries to the store.\n# TYPE vigil_store_append_seconds summary\nvigil_store_append_seconds_sum {}\nvigil_store_append_seconds_count {}\n",
        secs(&c.append_us),
        c.appends.load(Ordering::Relaxed)
    );
    let _ = write!(
        out,
        "# HELP vigil_request_seconds Time to answer a request (gRPC or HTTP; a stream until its first byte).\n# TYPE vigil_request_seconds summary\nvigil_request_seconds_sum {}\nvigil_request_seconds_count {}\n",
        secs(&c.request_us),
        c.requests.load(Ordering::Relaxed)
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// `grpc-timeout` as a duration (`<digits><unit>`, units H M S m u n; at most 8 digits).
pub fn grpc_timeout(v: &str) -> Option<std::time::Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        "H" => D::from_secs(n * 3600),
        "M" => D::from_secs(n * 60),
        "S" => D::from_secs(n),
        "m" => D::from_millis(n),
        "u" => D::from_micros(n),
        "n" => D::from_nanos(n),
        _ => return None,
    })
}

/// Honours a gRPC client's deadline (`grpc-timeout`): a call still running when it passes is
/// dropped and answered DEADLINE_EXCEEDED. The routes sit behind axum, where tonic's own server
/// (which does this) is not in the path. A stream's deadline covers its start; the client ends
/// a stream whose deadline passes.
pub async fn deadline(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(grpc_timeout);
    match limit {
        None => next.run(req).await,
        Some(d) => match tokio::time::timeout(d, next.run(req)).await {
            Ok(r) => r,
            Err(_) => tonic::Status::deadline_exceeded(format!(
                "the call's deadline ({} ms) passed",
                d.as_millis()
            ))
            .into_http::<axum::body::Body>()
            .into_response(),
        },
    }
}

/// A request body that is not the method's protobuf message is the caller's mistake: tonic
/// reports it as INTERNAL ("failed to decode Protobuf message: <Message>.<field>: …"); this
/// turns it into INVALID_ARGUMENT, keeping prost's message, which names the field.
pub async fn malformed(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let decode_error = r.headers().get("grpc-status").is_some_and(|s| s == "13")
        && r.headers().get("grpc-message").is_some_and(|m| {
            m.as_bytes().starts_with(b"failed%20to%20decode")
                || m.as_bytes().starts_with(b"failed to decode")
        });
    if decode_error {
        r.headers_mut()
            .insert("grpc-status", axum::http::HeaderValue::from_static("3"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("5"), None);
        assert_eq!(grpc_timeout("123456789m"), None);
        assert_eq!(grpc_timeout("m"), None);
        assert_eq!(grpc_timeout(""), None);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_deadline_exceeded() {
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn(deadline));
        let call = |timeout: &str| {
            axum::http::Request::post("/slow")
                .header("grpc-timeout", timeout)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app.clone().oneshot(call("50m")).await.unwrap();
        // gRPC statuses travel in headers: 4 is DEADLINE_EXCEEDED.
        assert_eq!(r.headers()["grpc-status"], "4");
        let r = app.oneshot(call("5S")).await.unwrap();
        assert!(r.headers().get("grpc-status").is_none());
        assert_eq!(r.status(), 200);
    }
}
