//! The OTLP receivers in front of the [`Hub`]: OTLP/gRPC (`LogsService`, `TraceService`,
//! `MetricsService`) and OTLP/HTTP (`POST /v1/logs`, `/v1/traces`, `/v1/metrics`; protobuf or
//! JSON; gzip or not), each on its own port, behind the service's bearer tokens (scope `ingest`
//! or above).
//!
//! Answers follow the OTLP specification: `Export*ServiceResponse`, with `partial_success` when
//! records were refused (or, with `rejected_* = 0`, as a warning when records matched no
//! analysis); a malformed payload is INVALID_ARGUMENT / 400, not retryable; over the memory
//! budget is RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` / 429 with `Retry-After`, both
//! retryable.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_server::{LogsService, LogsServiceServer},
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_server::{MetricsService, MetricsServiceServer},
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::{Hub, Outcome, Refusal, Signal};
use crate::service::auth::Tokens;

/// The largest OTLP request accepted, compressed or not, and the largest a gzip body may
/// inflate to (16 MiB): an exporter's batch is far smaller, and a record larger than the
/// engine keeps is capped anyway.
pub const MAX_OTLP_BYTES: usize = 16 << 20;

/// `google.rpc.Status`, the error body of OTLP/HTTP and the details of a gRPC status.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What is wrong.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details (`RetryInfo`).
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// `type.googleapis.com/<full name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long to wait.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The gRPC status of a refused request: RESOURCE_EXHAUSTED with `RetryInfo`, which the
/// OTLP specification requires for the client to retry it.
pub fn refusal_status(r: &Refusal) -> tonic::Status {
    let Refusal::OverBudget { retry_after_s, .. } = r;
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(*retry_after_s).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    };
    let status = RpcStatus {
        code: tonic::Code::ResourceExhausted as i32,
        message: r.to_string(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(
        tonic::Code::ResourceExhausted,
        r.to_string(),
        Bytes::from(status.encode_to_vec()),
    )
}

fn partial(o: &Outcome) -> Option<(i64, String)> {
    let message = o.message();
    if o.rejected == 0 && message.is_empty() {
        return None;
    }
    Some((i64::try_from(o.rejected).unwrap_or(i64::MAX), message))
}

fn logs_response(o: &Outcome) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: partial(o).map(|(n, m)| ExportLogsPartialSuccess {
            rejected_log_records: n,
            error_message: m,
        }),
    }
}

fn traces_response(o: &Outcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: partial(o).map(|(n, m)| ExportTracePartialSuccess {
            rejected_spans: n,
            error_message: m,
        }),
    }
}

fn metrics_response(o: &Outcome) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: partial(o).map(|(n, m)| ExportMetricsPartialSuccess {
            rejected_data_points: n,
            error_message: m,
        }),
    }
}

/// The three OTLP/gRPC services over one hub.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    hub: Arc<Hub>,
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        match self.hub.logs(req, size) {
            Ok(o) => Ok(tonic::Response::new(logs_response(&o))),
            Err(r) => Err(refusal_status(&r)),
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        match self.hub.traces(req, size) {
            Ok(o) => Ok(tonic::Response::new(traces_response(&o))),
            Err(r) => Err(refusal_status(&r)),
        }
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        match self.hub.metrics(req, size) {
            Ok(o) => Ok(tonic::Response::new(metrics_response(&o))),
            Err(r) => Err(refusal_status(&r)),
        }
    }
}

/// tonic answers a payload it cannot decode with INTERNAL (gRPC's own status-code guide); for
/// an OTLP exporter that means "retry", forever. A malformed export is the client's fault and
/// not retryable: INVALID_ARGUMENT.
async fn invalid_not_internal(req: Request<Body>, next: axum::middleware::Next) -> Response<Body> {
    let mut r = next.run(req).await;
    let decode_error = r.headers().get("grpc-status").is_some_and(|v| v == "13")
        && r.headers()
            .get("grpc-message")
            .is_some_and(|m| String::from_utf8_lossy(m.as_bytes()).contains("decode"));
    if decode_error {
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("3"));
    }
    r
}

/// The OTLP/gRPC router (the three services, the token check).
pub fn grpc_router(hub: Arc<Hub>, tokens: Option<Tokens>) -> axum::Router {
    let svc = OtlpGrpc { hub };
    let max = MAX_OTLP_BYTES;
    tonic::service::Routes::new(
        LogsServiceServer::new(svc.clone())
            .max_decoding_message_size(max)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
    )
    .add_service(
        TraceServiceServer::new(svc.clone())
            .max_decoding_message_size(max)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
    )
    .add_service(
        MetricsServiceServer::new(svc)
            .max_decoding_message_size(max)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
    )
    .into_axum_router()
    .layer(axum::middleware::from_fn(invalid_not_internal))
    .layer(axum::middleware::from_fn_with_state(
        tokens,
        crate::service::auth::check,
    ))
}

/// The body format of an OTLP/HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// An OTLP/HTTP error: `google.rpc.Status` in the request's format.
fn http_error(
    format: Format,
    code: StatusCode,
    grpc: tonic::Code,
    message: String,
) -> Response<Body> {
    let body = match format {
        Format::Json => serde_json::json!({ "code": grpc as i32, "message": message })
            .to_string()
            .into_bytes(),
        Format::Protobuf => RpcStatus {
            code: grpc as i32,
            message,
            details: vec![],
        }
        .encode_to_vec(),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

/// The body, inflated when it is gzip, within [`MAX_OTLP_BYTES`].
pub fn inflate(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .trim()
            .to_ascii_lowercase()
    });
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(MAX_OTLP_BYTES).unwrap_or(u64::MAX) + 1;
            flate2::read::GzDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| format!("body: not valid gzip ({e})"))?;
            if out.len() > MAX_OTLP_BYTES {
                return Err(format!(
                    "body: inflates to more than {MAX_OTLP_BYTES} bytes"
                ));
            }
            Ok(out)
        }
        Some(other) => Err(format!(
            "content-encoding `{other}` is not supported (gzip or none)"
        )),
    }
}

/// Decodes an OTLP/HTTP body as protobuf or OTLP/JSON; the error names the format and what
/// the decoder found wrong.
pub fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    json: bool,
    body: &[u8],
) -> Result<T, String> {
    if json {
        serde_json::from_slice(body).map_err(|e| format!("body: invalid OTLP/JSON: {e}"))
    } else {
        T::decode(body).map_err(|e| format!("body: invalid OTLP protobuf: {e}"))
    }
}

fn encode_response<T: Message + serde::Serialize>(format: Format, resp: &T) -> Response<Body> {
    let body = match format {
        Format::Protobuf => resp.encode_to_vec(),
        Format::Json => serde_json::to_vec(resp).unwrap_or_else(|_| b"{}".to_vec()),
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

async fn http_export(
    hub: Arc<Hub>,
    signal: Signal,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    let format = if ctype.starts_with("application/json") {
        Format::Json
    } else if ctype.starts_with("application/x-protobuf")
        || ctype.starts_with("application/protobuf")
    {
        Format::Protobuf
    } else {
        let mut r = http_error(
            Format::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!("content-type `{ctype}`: send application/x-protobuf or application/json"),
        );
        r.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-protobuf, application/json"),
        );
        return r;
    };
    let json = format == Format::Json;
    let bad = |m: String| {
        http_error(
            format,
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            m,
        )
    };
    let raw = match inflate(&headers, &body) {
        Ok(b) => b,
        Err(m) => return bad(m),
    };
    let size = raw.len();
    let result = match signal {
        Signal::Logs => match decode::<ExportLogsServiceRequest>(json, &raw) {
            Err(m) => return bad(m),
            Ok(req) => hub
                .logs(req, size)
                .map(|o| encode_response(format, &logs_response(&o))),
        },
        Signal::Traces => match decode::<ExportTraceServiceRequest>(json, &raw) {
            Err(m) => return bad(m),
            Ok(req) => hub
                .traces(req, size)
                .map(|o| encode_response(format, &traces_response(&o))),
        },
        Signal::Metrics => match decode::<ExportMetricsServiceRequest>(json, &raw) {
            Err(m) => return bad(m),
            Ok(req) => hub
                .metrics(req, size)
                .map(|o| encode_response(format, &metrics_response(&o))),
        },
    };
    match result {
        Ok(r) => r,
        Err(refusal) => {
            let Refusal::OverBudget { retry_after_s, .. } = &refusal;
            let mut r = http_error(
                format,
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
                refusal.to_string(),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

/// The OTLP/HTTP router (`POST /v1/logs`, `/v1/traces`, `/v1/metrics`, the token check).
pub fn http_router(hub: Arc<Hub>, tokens: Option<Tokens>) -> axum::Router {
    use axum::routing::post;
    let route = |signal: Signal| {
        let hub = hub.clone();
        post(move |headers: HeaderMap, body: Bytes| http_export(hub, signal, headers, body))
    };
    axum::Router::new()
        .route("/v1/logs", route(Signal::Logs))
        .route("/v1/traces", route(Signal::Traces))
        .route("/v1/metrics", route(Signal::Metrics))
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            crate::service::auth::check,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_OTLP_BYTES))
}

/// Serves `app` on `listener` until the process stops (plain HTTP; h2c for gRPC).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).await
}
