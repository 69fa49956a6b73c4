//! OTLP ingestion under load (issue 12, "Throughput"): a load client of our own sending
//! pre-encoded OTLP/gRPC export requests to Vigil's receiver, on loopback, client and server
//! sharing the machine's cores.
//!
//! As in `service.rs`, each server is a child process: the bench re-executes itself with
//! `VIGIL_BENCH_ROLE=vigil` (`vigil_analyzer::service::serve_with_otlp`, the code behind `vigil
//! serve --otlp-grpc-listen … --memory-budget …`, its own tokio runtime) or
//! `VIGIL_BENCH_ROLE=decode` (a tonic `LogsService`/`TraceService` that decodes the request and
//! answers success — the ceiling, over the same stack: tonic routes in axum on hyper,
//! TCP_NODELAY, 16 MiB decode limit). Server CPU comes from `/proc/PID/stat`, memory from
//! `/proc/PID/status`.
//!
//! Requests are encoded once: 32 logs batches (512 records each, half from the baseline's pods
//! and half from the canary's) and 32 trace batches (512 spans: 64 traces, each a frontend client
//! span calling into a selected service's server span and its 6 children). Only their timestamps
//! and trace ids change per send — patched in place in a copy of the bytes (they are `fixed64`
//! fields and fixed-length `bytes`), so the analysis sees current, distinct data at the cost of a
//! memcpy, and the client writes the bytes as they are (a raw tonic codec, no re-encoding).
//!
//! Parts, each printed:
//! 1. Throughput, closed loop (`VIGIL_BENCH_CONNS` HTTP/2 connections × `VIGIL_BENCH_INFLIGHT`
//!    requests in flight), for logs then spans: the decode-only receiver, then Vigil with one
//!    running analysis whose baseline and canary select the batches' resources.
//! 2. p99 export latency at half the sustainable rate (paced, open loop: latency counted from
//!    each request's scheduled send time).
//! 3. Overload: at twice the sustainable logs rate with `--memory-budget` 512 MiB
//!    (`VIGIL_BENCH_BUDGET_MIB`) for `VIGIL_BENCH_OVERLOAD_SECS` (10), then at half of it for
//!    `VIGIL_BENCH_CALM_SECS` (15) into the same analysis: the RESOURCE_EXHAUSTED answers and
//!    accepted records per second, the server's idle and peak resident memory against the
//!    budget plus 20 %, and from which second of the half-rate phase on nothing was refused.
//!
//! Run: `cargo bench -p vigil-benches --bench otlp` (`VIGIL_BENCH_SECS`, default 5, sets each
//! timed window; `VIGIL_BENCH_ONLY=throughput,latency,overload` picks parts).

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_server::{LogsService, LogsServiceServer},
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use vigil_analyzer::service::ServeConfig;
use vigil_analyzer::service::{serve_with_otlp, store::Durability, OtlpConfig, OtlpListen};
use vigil_proto::v1 as pb;
use vigil_proto::v1::analyses_client::AnalysesClient;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BATCH: usize = 512;
const TEMPLATES: usize = 32;
const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() -> Result<(), BoxError> {
    match std::env::var("VIGIL_BENCH_ROLE").as_deref() {
        Ok("vigil") => return run_vigil(),
        Ok("decode") => return run_decode(),
        _ => {}
    }
    // `cargo test --benches` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("otlp bench: run with `cargo bench -p vigil-benches --bench otlp`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

// ------------------------------------------------------------------------------------------
// The children
// ------------------------------------------------------------------------------------------

fn run_vigil() -> Result<(), BoxError> {
    let budget: usize = env_or("VIGIL_BENCH_BUDGET", 512usize << 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: None,
            tokens: None,
            retention: Duration::from_secs(86_400),
            durability: Durability::Normal,
            kayenta_prometheus: None,
            tls: None,
            notify: Default::default(),
            deployer: None,
        };
        let otlp = OtlpConfig {
            grpc: Some(OtlpListen {
                addr: "127.0.0.1:0".parse()?,
                explicit: true,
            }),
            http: None,
            memory_budget: budget,
        };
        serve_with_otlp(config, otlp, |b| {
            let grpc = b.otlp_grpc.map(|a| a.to_string()).unwrap_or_default();
            println!("ready {} {grpc}", b.api);
        })
        .await?;
        Ok(())
    })
}

/// The ceiling: decodes the request (tonic's prost codec, as Vigil's receiver) and answers
/// success.
#[derive(Clone, Copy)]
struct DecodeOnly;

#[tonic::async_trait]
impl LogsService for DecodeOnly {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        std::hint::black_box(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for DecodeOnly {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        std::hint::black_box(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn run_decode() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let max = vigil_analyzer::ingest::receiver::MAX_OTLP_BYTES;
        let app = tonic::service::Routes::new(
            LogsServiceServer::new(DecodeOnly).max_decoding_message_size(max),
        )
        .add_service(TraceServiceServer::new(DecodeOnly).max_decoding_message_size(max))
        .into_axum_router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        println!("ready {addr} {addr}");
        // As Vigil's receiver does (`ingest::receiver::serve`).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// A child process of this bench; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    api: SocketAddr,
    otlp: SocketAddr,
}

impl Server {
    fn spawn(role: &str, env: &[(&str, String)]) -> Result<Server, BoxError> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env("VIGIL_BENCH_ROLE", role)
            .env("RUST_LOG", "off")
            // glibc's malloc gives each thread that contends an arena of its own (up to 8 a
            // core); memory freed in one is not reused by another, so the resident memory of
            // a server whose records are allocated on the async workers and freed on blocking
            // threads grows past what it holds. Two arenas, as a deployment would set it
            // (`VIGIL_BENCH_ARENAS=0` leaves glibc's default).
            .env(
                "MALLOC_ARENA_MAX",
                env_or("VIGIL_BENCH_ARENAS", 2u32).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let mut words = line
            .trim()
            .strip_prefix("ready ")
            .ok_or_else(|| format!("the {role} child said {line:?}"))?
            .split(' ');
        let api = words.next().ok_or("no address")?.parse()?;
        let otlp = words.next().ok_or("no OTLP address")?.parse()?;
        Ok(Server { child, api, otlp })
    }

    fn vigil(budget: usize) -> Result<Server, BoxError> {
        Server::spawn("vigil", &[("VIGIL_BENCH_BUDGET", budget.to_string())])
    }

    fn decode() -> Result<Server, BoxError> {
        Server::spawn("decode", &[])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system, all threads) of a process so far.
fn cpu_s(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // of 1/100 s (USER_HZ on Linux).
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// Pre-encoded batches
// ------------------------------------------------------------------------------------------

/// Marks (top 16 bits) of the placeholder values patched per send: a time (`fixed64`, the low
/// 48 bits an offset in ns) and the first 8 bytes of a trace id (the low bits a trace number).
/// Neither pattern can occur in the rest of the bytes: bodies are ASCII and ids are built of
/// lowercase letters, and the marks' bytes are not ASCII.
const TIME_MARK: u64 = 0xED5E;
const TRACE_MARK: u64 = 0xD1A7;

#[derive(Debug, Clone, Copy)]
enum Patch {
    /// Write send-time base + this many ns.
    Time(usize, u64),
    /// Write a per-send trace prefix + this trace number.
    Trace(usize, u64),
}

/// One encoded request and where its placeholders are.
struct Template {
    bytes: Vec<u8>,
    patches: Vec<Patch>,
    records: usize,
}

impl Template {
    fn new(bytes: Vec<u8>, records: usize, expect_patches: usize) -> Template {
        let mut patches = Vec::new();
        let mut i = 0;
        while i + 8 <= bytes.len() {
            let v = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            // Only where the field's tag precedes: `fixed64` times (log record fields 1 and 11,
            // span fields 7 and 8), a trace id (field 1, 16 bytes).
            let time_tag = i >= 1 && [0x09, 0x59, 0x39, 0x41].contains(&bytes[i - 1]);
            let trace_tag = i >= 2 && bytes[i - 2..i] == [0x0A, 0x10];
            match v >> 48 {
                TIME_MARK if time_tag => {
                    patches.push(Patch::Time(i, v & 0xFFFF_FFFF_FFFF));
                    i += 8;
                }
                TRACE_MARK if trace_tag => {
                    patches.push(Patch::Trace(i, v & 0xFFFF_FFFF_FFFF));
                    i += 8;
                }
                _ => i += 1,
            }
        }
        assert_eq!(patches.len(), expect_patches, "placeholders found");
        Template {
            bytes,
            patches,
            records,
        }
    }

    /// A copy with current times (`base_ns` plus each offset) and trace ids unique to `seq`.
    fn render(&self, base_ns: u64, seq: u64) -> Bytes {
        let mut b = self.bytes.clone();
        for p in &self.patches {
            let (at, v) = match *p {
                Patch::Time(at, off) => (at, base_ns + off),
                // Nonzero, and distinct per send and trace.
                Patch::Trace(at, n) => (at, (seq << 16) | n | (1 << 63)),
            };
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        Bytes::from(b)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

/// A small deterministic generator (splitmix64), so every run sends the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `n` lowercase letters.
    fn letters(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| b'a' + self.below(26) as u8).collect()
    }
}

/// Baseline (v1) or canary (v2) pod `pod` of the shop service.
fn shop_resource(canary: bool, pod: u64) -> Resource {
    let v = if canary { "v2" } else { "v1" };
    Resource {
        attributes: vec![
            kv("service.name", "shop"),
            kv("service.version", v),
            kv(
                "k8s.pod.name",
                &format!("shop-{v}-7d9f8c{pod}-x{}q", pod * 7 % 10),
            ),
            kv("k8s.namespace.name", "prod"),
        ],
        ..Default::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        version: "1.4.2".to_owned(),
        ..Default::default()
    }
}

/// One log line from a few templates with variable parts (100–200 bytes), its severity number
/// and text.
fn log_line(r: &mut Rng, canary: bool) -> (String, i32, &'static str) {
    let id = r.below(1_000_000);
    let ms = r.below(900) + 3;
    let pick = r.below(100);
    // Both sides alike: the analysis passes and keeps running (a failing canary ends it early,
    // and the records after that would match no analysis).
    let _ = canary;
    let err_pct = 2;
    if pick < err_pct {
        return (
            format!(
                "Failed to publish event OrderCreated id={id} to topic orders.v1: broker timeout after {ms} ms, retrying (attempt {}/5)",
                r.below(5) + 1
            ),
            17,
            "ERROR",
        );
    }
    match pick % 6 {
        0 => (
            format!(
                "GET /api/v1/orders/{id} completed status=200 duration_ms={ms} user_id=u{} request_id={} upstream=inventory region=eu-west-1",
                r.below(50_000),
                String::from_utf8(r.letters(16)).unwrap()
            ),
            9,
            "INFO",
        ),
        1 => (
            format!(
                "Payment authorization succeeded for order {id} amount={}.{:02} currency=EUR provider=stripe attempt={} latency_ms={ms}",
                r.below(500),
                r.below(100),
                r.below(3) + 1
            ),
            9,
            "INFO",
        ),
        2 => (
            format!(
                "Cache miss for key product:{id}:details, fetching from database shard={} query_time_ms={ms}",
                r.below(16)
            ),
            5,
            "DEBUG",
        ),
        3 => (
            format!(
                "Slow query detected: SELECT * FROM orders WHERE customer_id = {id} took {} ms (threshold 250 ms) on replica db-{}",
                ms + 250,
                r.below(4)
            ),
            13,
            "WARN",
        ),
        4 => (
            format!(
                "Connection pool stats: active={} idle={} waiting={} max=64 pool=orders-db host=10.0.{}.{}:5432",
                r.below(64),
                r.below(16),
                r.below(8),
                r.below(256),
                r.below(256)
            ),
            9,
            "INFO",
        ),
        _ => (
            format!(
                "User session refreshed for user_id=u{} client=web-{} token_age_s={} ip=192.168.{}.{}",
                r.below(50_000),
                r.below(9),
                r.below(3600),
                r.below(256),
                r.below(256)
            ),
            9,
            "INFO",
        ),
    }
}

fn logs_templates() -> Vec<Template> {
    let mut r = Rng(12);
    (0..TEMPLATES)
        .map(|t| {
            let canary = t % 2 == 1;
            let records: Vec<LogRecord> = (0..BATCH)
                .map(|i| {
                    let (body, sev, text) = log_line(&mut r, canary);
                    // Spread over one second of the batch's time base, in order.
                    let off = (i as u64) * 1_950_000;
                    LogRecord {
                        time_unix_nano: (TIME_MARK << 48) | off,
                        observed_time_unix_nano: (TIME_MARK << 48) | (off + 40_000),
                        severity_number: sev,
                        severity_text: text.to_owned(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body)),
                        }),
                        attributes: vec![kv("thread.name", &format!("worker-{}", r.below(16)))],
                        ..Default::default()
                    }
                })
                .collect();
            let req = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(shop_resource(canary, (t / 2 % 4) as u64)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope("com.shop.orders")),
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            Template::new(req.encode_to_vec(), BATCH, 2 * BATCH)
        })
        .collect()
}

/// 64 traces: in each, the frontend's client span (not selected by any analysis, another
/// service) calls the shop's server span, which has 6 children.
fn traces_templates() -> Vec<Template> {
    const TRACES: usize = BATCH / 8;
    let mut r = Rng(34);
    (0..TEMPLATES)
        .map(|t| {
            let canary = t % 2 == 1;
            let mut front = Vec::new();
            let mut shop = Vec::new();
            for n in 0..TRACES {
                let mut trace_id = ((TRACE_MARK << 48) | n as u64).to_le_bytes().to_vec();
                trace_id.extend(r.letters(8));
                let client_id = r.letters(8);
                let server_id = r.letters(8);
                let start = (n as u64) * 15_000_000;
                let server_ms = r.below(40) + 8;
                let time = |off_ms: u64| (TIME_MARK << 48) | (start + off_ms * 1_000_000);
                // The same failures and routes on both sides: the templates are replayed
                // thousands of times, so any chance difference between the sides' templates
                // becomes significant and fails the analysis (it did: 2.2 % against 4.4 %).
                let failed = n % 32 == 5;
                let route = format!("GET /api/v1/orders/{{id}}#{}", n % 4);
                front.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: client_id.clone(),
                    parent_span_id: r.letters(8),
                    name: format!("HTTP {route}"),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: time(0),
                    end_time_unix_nano: time(server_ms + 2),
                    attributes: vec![kv("http.method", "GET"), kv("peer.service", "shop")],
                    ..Default::default()
                });
                shop.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: server_id.clone(),
                    parent_span_id: client_id,
                    name: route,
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: time(1),
                    end_time_unix_nano: time(1 + server_ms),
                    attributes: vec![
                        kv("http.method", "GET"),
                        kv("http.status_code", if failed { "500" } else { "200" }),
                    ],
                    status: Some(Status {
                        code: if failed {
                            status::StatusCode::Error as i32
                        } else {
                            status::StatusCode::Ok as i32
                        },
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                for (c, (name, kind)) in [
                    ("auth.verify", span::SpanKind::Internal),
                    ("cache.get product", span::SpanKind::Client),
                    ("SELECT orders", span::SpanKind::Client),
                    ("inventory.check", span::SpanKind::Client),
                    ("serialize.response", span::SpanKind::Internal),
                    ("publish OrderViewed", span::SpanKind::Producer),
                ]
                .into_iter()
                .enumerate()
                {
                    let s = 1 + c as u64 * server_ms / 7;
                    let d = (server_ms / 8).max(1);
                    shop.push(Span {
                        trace_id: trace_id.clone(),
                        span_id: r.letters(8),
                        parent_span_id: server_id.clone(),
                        name: name.to_owned(),
                        kind: kind as i32,
                        start_time_unix_nano: time(s),
                        end_time_unix_nano: time(s + d),
                        ..Default::default()
                    });
                }
            }
            let req = ExportTraceServiceRequest {
                resource_spans: vec![
                    ResourceSpans {
                        resource: Some(Resource {
                            attributes: vec![
                                kv("service.name", "frontend"),
                                kv("k8s.pod.name", &format!("frontend-5c7d-{t}")),
                            ],
                            ..Default::default()
                        }),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(scope("frontend.http")),
                            spans: front,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                    ResourceSpans {
                        resource: Some(shop_resource(canary, (t / 2 % 4) as u64)),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(scope("com.shop.orders")),
                            spans: shop,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
            };
            // Per span: two times and one trace id.
            Template::new(req.encode_to_vec(), BATCH, 3 * BATCH)
        })
        .collect()
}

/// The batches of one signal and the gRPC method they go to.
struct Workload {
    name: &'static str,
    path: &'static str,
    templates: Vec<Template>,
    seq: AtomicU64,
}

impl Workload {
    /// The next request to send: template round-robin, times 2 s before now (all the batch's
    /// records are in the past when sent), fresh trace ids.
    fn next(&self) -> (Bytes, usize) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = &self.templates[n as usize % self.templates.len()];
        (t.render(now_ns() - 2_000_000_000, n), t.records)
    }
}

// ------------------------------------------------------------------------------------------
// The client: a raw codec (the bytes go out as they are)
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn channel(addr: SocketAddr) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// How the server answered one export.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// Success; records routed to an analysis (the batch minus rejected and unmatched ones).
    Accepted(u64),
    /// Success, but the records matched no running analysis (dropped).
    Unmatched,
    /// RESOURCE_EXHAUSTED (over the memory budget).
    Refused,
    /// Anything else.
    Error,
}

async fn export(ch: Channel, path: &'static str, body: Bytes, records: usize) -> Answer {
    let mut grpc = tonic::client::Grpc::new(ch).max_decoding_message_size(1 << 20);
    if grpc.ready().await.is_err() {
        return Answer::Error;
    }
    match grpc
        .unary(
            tonic::Request::new(body),
            PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
    {
        Ok(r) => {
            // Logs and traces responses have the same layout (partial_success = 1 holding
            // rejected count = 1 and error_message = 2).
            let Ok(resp) = ExportLogsServiceResponse::decode(r.into_inner()) else {
                return Answer::Error;
            };
            match resp.partial_success {
                None => Answer::Accepted(records as u64),
                Some(p) if p.error_message.contains("matched no running analysis") => {
                    Answer::Unmatched
                }
                Some(p) => {
                    Answer::Accepted((records as u64).saturating_sub(p.rejected_log_records as u64))
                }
            }
        }
        Err(s) if s.code() == tonic::Code::ResourceExhausted => Answer::Refused,
        Err(s) => {
            static ONCE: AtomicBool = AtomicBool::new(false);
            if !ONCE.swap(true, Ordering::Relaxed) {
                eprintln!("first error: {s}");
            }
            Answer::Error
        }
    }
}

/// Counts of one timed load.
#[derive(Debug, Default, Clone)]
struct Tally {
    requests: u64,
    records: u64,
    accepted: u64,
    unmatched: u64,
    refused: u64,
    errors: u64,
    /// Per-request latency, µs (successful requests).
    lat_us: Vec<u32>,
}

impl Tally {
    fn add(&mut self, a: Answer, records: usize, lat: Duration) {
        self.requests += 1;
        match a {
            Answer::Accepted(n) => {
                self.records += records as u64;
                self.accepted += n;
                self.lat_us
                    .push(lat.as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Answer::Unmatched => {
                self.records += records as u64;
                self.unmatched += records as u64;
                self.lat_us
                    .push(lat.as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Answer::Refused => self.refused += 1,
            Answer::Error => self.errors += 1,
        }
    }
    fn merge(&mut self, o: Tally) {
        self.requests += o.requests;
        self.records += o.records;
        self.accepted += o.accepted;
        self.unmatched += o.unmatched;
        self.refused += o.refused;
        self.errors += o.errors;
        self.lat_us.extend(o.lat_us);
    }
    fn pct_ms(&mut self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.lat_us[i]) / 1000.0
    }
}

/// One timed load's result and the CPU both processes used during it.
struct Measured {
    tally: Tally,
    secs: f64,
    server_cpu: f64,
    client_cpu: f64,
    load: String,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.tally.records as f64 / self.secs
    }
}

/// `perf record` of process `pid` for `secs` into `$VIGIL_BENCH_PERF/perf-NAME.data`, if that
/// variable names a directory.
fn perf_start(pid: &str, name: &str, secs: Duration) -> Option<Child> {
    let dir = std::env::var("VIGIL_BENCH_PERF").ok()?;
    Command::new("perf")
        .args(["record", "-F", "499"])
        // `VIGIL_BENCH_PERF_DWARF=1`: DWARF call graphs (the bench profile keeps no frame
        // pointers, so `-g` alone loses most callers; heavier, so the numbers suffer more).
        .args(if std::env::var_os("VIGIL_BENCH_PERF_DWARF").is_some() {
            &["--call-graph", "dwarf,16384"][..]
        } else {
            &["-g"][..]
        })
        .arg("-o")
        .arg(format!("{dir}/perf-{name}.data"))
        .args(["-p", pid, "--", "sleep"])
        .arg(format!("{}", secs.as_secs_f64()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Closed loop: `conns` connections × `inflight` request loops, `warmup` then `timed`.
async fn closed_loop(
    server: &Server,
    work: Arc<Workload>,
    conns: usize,
    inflight: usize,
    warmup: Duration,
    timed: Duration,
    profile: Option<&str>,
) -> Result<Measured, BoxError> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let ch = channel(server.otlp).await?;
        for _ in 0..inflight {
            let (ch, work, measuring, stop) =
                (ch.clone(), work.clone(), measuring.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let (body, n) = work.next();
                    let t = Instant::now();
                    let a = export(ch.clone(), work.path, body, n).await;
                    if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        tally.add(a, n, t.elapsed());
                    }
                }
                tally
            }));
        }
    }
    tokio::time::sleep(warmup).await;
    let pid = server.pid().to_string();
    // A profile of the server over the timed window (`VIGIL_BENCH_PERF=DIR`; perturbs the
    // numbers of that run).
    let perf = profile.and_then(|name| perf_start(&pid, name, timed));
    let (s0, c0) = (cpu_s(&pid), cpu_s("self"));
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(timed).await;
    stop.store(true, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (s1, c1) = (cpu_s(&pid), cpu_s("self"));
    let load = loadavg();
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await?);
    }
    if let Some(mut p) = perf {
        let _ = p.wait();
    }
    Ok(Measured {
        tally,
        secs,
        server_cpu: s1 - s0,
        client_cpu: c1 - c0,
        load,
    })
}

/// Open loop: requests scheduled at `rate` records/s (whole batches) for `dur`, spread over
/// `conns` connections, at most `max_out` outstanding (a send waiting for a slot is late, and
/// its latency — counted from the scheduled time — says so). Returns the tally and, per second
/// of the schedule, (records accepted, requests refused).
async fn paced(
    chans: &[Channel],
    work: Arc<Workload>,
    rate: f64,
    dur: Duration,
    max_out: usize,
) -> (Tally, Vec<(u64, u64)>) {
    let per_s = rate / BATCH as f64;
    let total = (per_s * dur.as_secs_f64()).round() as u64;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_out));
    let secs = dur.as_secs() as usize + 1;
    let buckets = Arc::new(Mutex::new(vec![(0u64, 0u64); secs]));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let at = t0 + Duration::from_secs_f64(i as f64 / per_s);
        tokio::time::sleep_until(at).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (ch, work, buckets, tally) = (
            chans[i as usize % chans.len()].clone(),
            work.clone(),
            buckets.clone(),
            tally.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (body, n) = work.next();
            let a = export(ch, work.path, body, n).await;
            let lat = at.elapsed();
            drop(permit);
            let s = (at - t0).as_secs() as usize;
            {
                let mut b = buckets.lock().unwrap();
                if let Some(b) = b.get_mut(s) {
                    match a {
                        Answer::Accepted(k) => b.0 += k,
                        Answer::Refused => b.1 += 1,
                        _ => {}
                    }
                }
            }
            tally.lock().unwrap().add(a, n, lat);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let buckets = buckets.lock().unwrap().clone();
    (tally, buckets)
}

// ------------------------------------------------------------------------------------------
// The analysis on the Vigil side
// ------------------------------------------------------------------------------------------

/// A running analysis selecting the batches' baseline (v1) and canary (v2) pods, declaring
/// what they record (`records`: so the runner never rebuilds its session and keeps no copy of
/// what it drained). Wall-clock intervals of 2 s: the bench's records are stamped with the
/// current time, so each interval closes 1 s (the step, the runner's allowance for lateness)
/// after its end, and the runner drains the hub, mines what it took and hands its bytes back
/// to the budget while the load runs. (Event time would close them as soon as a record past
/// the end arrived, but also needs an explicit end of input; the wall clock is what a
/// production analysis of live telemetry uses.)
async fn start_analysis(server: &Server, id: &str, work: &Workload) -> Result<(), BoxError> {
    let ch = channel(server.api).await?;
    let mut client = AnalysesClient::new(ch);
    let records = if work.path == LOGS_PATH {
        "[logs]"
    } else {
        "[spans, callers]"
    };
    let spec = format!(
        "app: shop\n\
        baseline: {{attributes: {{service.name: shop, service.version: v1}}, records: {records}}}\n\
        canary: {{attributes: {{service.name: shop, service.version: v2}}, records: {records}}}\n\
        interval: 2s\nlifetime: 600s\nstep: 1s\n"
    );
    let r = client
        .create_analysis(pb::CreateAnalysisRequest {
            id: id.to_owned(),
            spec,
        })
        .await?
        .into_inner();
    if !r.created {
        return Err(format!("analysis {id} not created").into());
    }
    Ok(())
}

/// Waits until the receiver routes `work`'s records to a running analysis (its runner has
/// registered with the hub): the time it took.
async fn wait_routed(server: &Server, work: &Workload) -> Result<Duration, BoxError> {
    let ch = channel(server.otlp).await?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        let (body, n) = work.next();
        if let Answer::Accepted(_) = export(ch.clone(), work.path, body, n).await {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("records were not routed to the analysis within 20 s".into())
}

async fn get_analysis(server: &Server, id: &str) -> Result<pb::Analysis, BoxError> {
    let ch = channel(server.api).await?;
    Ok(AnalysesClient::new(ch)
        .max_decoding_message_size(64 << 20)
        .get_analysis(pb::GetAnalysisRequest { id: id.to_owned() })
        .await?
        .into_inner())
}

/// `vigil_otlp_*` lines of the service's `/metrics`.
async fn receiver_counters(server: &Server) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(server.api).await else {
        return String::new();
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out.lines()
        .filter(|l| l.starts_with("vigil_otlp_") && !l.ends_with(" 0"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------------
// The parts
// ------------------------------------------------------------------------------------------

fn row(label: &str, m: &Measured) {
    let t = &m.tally;
    println!(
        "| {label} | {:.0}/s | {:.2} | {:.2} | {:.1} | {:.1} | {} | {} | {} |",
        m.rate(),
        m.server_cpu / m.secs,
        m.client_cpu / m.secs,
        m.server_cpu * 1e6 / t.records.max(1) as f64,
        t.clone().pct_ms(0.99),
        t.refused,
        t.errors,
        m.load,
    );
}

async fn bench() -> Result<(), BoxError> {
    let secs: f64 = env_or("VIGIL_BENCH_SECS", 5.0);
    let timed = Duration::from_secs_f64(secs);
    let warmup = Duration::from_secs_f64(env_or("VIGIL_BENCH_WARMUP", 1.0));
    let conns: usize = env_or("VIGIL_BENCH_CONNS", 4);
    let inflight: usize = env_or("VIGIL_BENCH_INFLIGHT", 2);
    let only = std::env::var("VIGIL_BENCH_ONLY").unwrap_or_default();
    let want = |p: &str| only.is_empty() || only.split(',').any(|o| o == p);
    // The throughput and latency servers must not refuse: room for every record of the run.
    let big_budget: usize = env_or::<usize>("VIGIL_BENCH_BIG_BUDGET_MIB", 8192) << 20;
    let small_budget: usize = env_or::<usize>("VIGIL_BENCH_BUDGET_MIB", 512) << 20;

    let t = Instant::now();
    let logs = Arc::new(Workload {
        name: "logs",
        path: LOGS_PATH,
        templates: logs_templates(),
        seq: AtomicU64::new(0),
    });
    let spans = Arc::new(Workload {
        name: "spans",
        path: TRACES_PATH,
        templates: traces_templates(),
        seq: AtomicU64::new(0),
    });
    let size =
        |w: &Workload| w.templates.iter().map(|t| t.bytes.len()).sum::<usize>() / w.templates.len();
    println!(
        "batches: {} × {BATCH} log records ({} bytes a request), {} × {BATCH} spans ({} bytes); encoded in {:.2} s",
        logs.templates.len(),
        size(&logs),
        spans.templates.len(),
        size(&spans),
        t.elapsed().as_secs_f64()
    );
    println!(
        "load: {conns} connections × {inflight} in flight, {:.0} s warm-up, {secs:.0} s timed; load average at start {}",
        warmup.as_secs_f64(),
        loadavg()
    );

    // Sustainable rates (records/s) for the latency and overload parts: measured here, or given.
    let mut sustainable = [
        env_or("VIGIL_BENCH_LOGS_RATE", 0.0f64),
        env_or("VIGIL_BENCH_SPANS_RATE", 0.0f64),
    ];

    if want("throughput") {
        println!("\n## Throughput (closed loop)\n");
        println!("| receiver | records/s | server CPU (cores) | client CPU (cores) | server CPU µs/record | p99 ms | refused | errors | load avg |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (i, work) in [logs.clone(), spans.clone()].into_iter().enumerate() {
            let decode = {
                let server = Server::decode()?;
                closed_loop(&server, work.clone(), conns, inflight, warmup, timed, None).await?
            };
            row(&format!("{}: decode only", work.name), &decode);
            let server = Server::vigil(big_budget)?;
            let id = format!("bench-{}", work.name);
            let created = Instant::now();
            start_analysis(&server, &id, &work).await?;
            wait_routed(&server, &work).await?;
            let vigil = closed_loop(
                &server,
                work.clone(),
                conns,
                inflight,
                warmup,
                timed,
                Some(work.name),
            )
            .await?;
            row(&format!("{}: Vigil, 1 analysis", work.name), &vigil);
            println!(
                "| {} ratio Vigil / decode only | **{:.2}** | accepted {} of {} records, unmatched {}; server VmHWM {} MiB |",
                work.name,
                vigil.rate() / decode.rate(),
                vigil.tally.accepted,
                vigil.tally.records,
                vigil.tally.unmatched,
                status_kib(server.pid(), "VmHWM:") / 1024
            );
            // What the analysis made of it: intervals judged while the load ran, then after it
            // (the runner drains the hub and mines at each interval's end).
            let judged = get_analysis(&server, &id).await?.intervals_judged;
            let pid = server.pid().to_string();
            let (c0, t0) = (cpu_s(&pid), Instant::now());
            let after: f64 = env_or("VIGIL_BENCH_AFTER", 30.0);
            let perf = perf_start(
                &pid,
                &format!("{}-after", work.name),
                Duration::from_secs_f64(after.min(5.0)),
            );
            let mut later = judged;
            // Intervals due: ended (2 s each) and past the runner's 1 s allowance for lateness.
            let due = || ((created.elapsed().as_secs_f64() - 1.0) / 2.0).floor() as u32;
            let mut caught_up = None;
            while t0.elapsed().as_secs_f64() < after {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let a = get_analysis(&server, &id).await?;
                later = a.intervals_judged;
                if a.state != pb::State::Running as i32 && a.state != pb::State::Pending as i32 {
                    let why = a
                        .last_judgement
                        .as_ref()
                        .map(|j| format!("{j:?}"))
                        .unwrap_or_default();
                    let why: String = why.chars().take(1500).collect();
                    println!(
                        "|   analysis {id} is no longer running (state {}, score {:?}, note {:?}): {why} |",
                        a.state, a.score, a.note
                    );
                    break;
                }
                if later + 1 >= due() {
                    caught_up = Some(t0.elapsed().as_secs_f64());
                    break;
                }
            }
            println!(
                "|   runner: {} |",
                match caught_up {
                    Some(t) => format!("judged {later} of {} intervals due, caught up {t:.1} s after the load stopped", due()),
                    None => format!("judged {later} of {} intervals due, not caught up {after:.0} s after the load stopped", due()),
                }
            );
            if let Some(mut p) = perf {
                let _ = p.wait();
            }
            println!(
                "|   analysis {id}: {judged} intervals judged when the load stopped, {later} {:.1} s later (server CPU {:.2} cores then) |",
                t0.elapsed().as_secs_f64(),
                (cpu_s(&pid) - c0) / t0.elapsed().as_secs_f64()
            );
            let c = receiver_counters(&server).await;
            for l in c.lines() {
                println!("|   {l} |");
            }
            if sustainable[i] == 0.0 {
                sustainable[i] = vigil.rate();
            }
        }
    }

    if want("latency") {
        println!("\n## Latency at half the sustainable rate (open loop)\n");
        println!("| signal | offered records/s | achieved records/s | p50 ms | p99 ms | p99.9 ms | max ms | refused | errors | load avg |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (i, work) in [logs.clone(), spans.clone()].into_iter().enumerate() {
            let rate = if sustainable[i] > 0.0 {
                sustainable[i] / 2.0
            } else {
                100_000.0
            };
            let server = Server::vigil(big_budget)?;
            let id = format!("bench-lat-{}", work.name);
            start_analysis(&server, &id, &work).await?;
            wait_routed(&server, &work).await?;
            let mut chans = Vec::new();
            for _ in 0..conns {
                chans.push(channel(server.otlp).await?);
            }
            // Warm-up, not counted.
            let _ = paced(&chans, work.clone(), rate, warmup, 256).await;
            let t0 = Instant::now();
            let (mut tally, _) = paced(&chans, work.clone(), rate, timed, 256).await;
            let achieved = tally.records as f64 / t0.elapsed().as_secs_f64();
            println!(
                "| {} | {rate:.0} | {achieved:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                work.name,
                tally.pct_ms(0.5),
                tally.pct_ms(0.99),
                tally.pct_ms(0.999),
                tally.pct_ms(1.0),
                tally.refused,
                tally.errors,
                loadavg()
            );
        }
    }

    if want("overload") {
        let rate = if sustainable[0] > 0.0 {
            sustainable[0]
        } else {
            200_000.0
        };
        let over = Duration::from_secs_f64(env_or("VIGIL_BENCH_OVERLOAD_SECS", 10.0));
        let calm = Duration::from_secs_f64(env_or("VIGIL_BENCH_CALM_SECS", 15.0));
        println!(
            "\n## Overload: logs at 2 × {rate:.0}/s, --memory-budget {} MiB\n",
            small_budget >> 20
        );
        let server = Server::vigil(small_budget)?;
        let pid = server.pid();
        let idle = status_kib(pid, "VmRSS:");
        start_analysis(&server, "bench-over", &logs).await?;
        wait_routed(&server, &logs).await?;
        let mut chans = Vec::new();
        for _ in 0..conns {
            chans.push(channel(server.otlp).await?);
        }
        let rss0 = status_kib(pid, "VmRSS:");
        // Resident memory sampled every 50 ms through every phase.
        let sampling = Arc::new(AtomicBool::new(true));
        let max_rss = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (sampling, max_rss) = (sampling.clone(), max_rss.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    max_rss.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let print_phase = |name: &str, offered: f64, t: &Tally, b: &[(u64, u64)]| {
            let per_s: Vec<String> = b.iter().map(|(a, r)| format!("{a}/{r}")).collect();
            println!(
                "{name}: offered {offered:.0} records/s; {} requests: accepted {} records, {} refused (RESOURCE_EXHAUSTED), {} errors; per second accepted records/refused requests: {}; VmRSS now {} MiB, load {}",
                t.requests,
                t.accepted,
                t.refused,
                t.errors,
                per_s.join(" "),
                status_kib(pid, "VmRSS:") / 1024,
                loadavg()
            );
        };
        let (t1, b1) = paced(&chans, logs.clone(), 2.0 * rate, over, 512).await;
        print_phase("1. overload (2×)", 2.0 * rate, &t1, &b1);
        let (t2, b2) = paced(&chans, logs.clone(), rate / 2.0, calm, 512).await;
        print_phase("2. load dropped to ½, same analysis", rate / 2.0, &t2, &b2);
        // Recovered: the first second from which on nothing was refused and what was offered
        // was accepted (the last, partial second of the schedule left out).
        let full = &b2[..b2.len().saturating_sub(1)];
        let offered_s = rate / 2.0;
        let from = (0..full.len()).find(|&i| {
            full[i..]
                .iter()
                .all(|&(a, r)| r == 0 && a as f64 >= 0.9 * offered_s)
        });
        match from {
            Some(i) => {
                let tail = &full[i..];
                let acc: u64 = tail.iter().map(|b| b.0).sum();
                println!(
                    "recovery: from second {i} of the ½ phase on, no refusals and {:.0} records/s accepted of {offered_s:.0} offered ({} s)",
                    acc as f64 / tail.len().max(1) as f64,
                    tail.len()
                );
            }
            None => println!("recovery: NOT RECOVERED within the ½ phase"),
        }
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        let hwm = status_kib(pid, "VmHWM:");
        let max = max_rss.load(Ordering::Relaxed);
        let limit_kib = (small_budget as f64 * 1.2 / 1024.0) as u64;
        println!(
            "memory: idle VmRSS {} MiB (serving, no analysis), {} MiB with the analysis before the load; max sampled VmRSS {} MiB; VmHWM (peak) {} MiB; budget {} MiB + 20 % = {} MiB: {}",
            idle / 1024,
            rss0 / 1024,
            max / 1024,
            hwm / 1024,
            small_budget >> 20,
            limit_kib / 1024,
            if hwm <= limit_kib { "within" } else { "EXCEEDED" }
        );
        let a = get_analysis(&server, "bench-over").await?;
        println!(
            "analysis bench-over: state {}, {} intervals judged",
            a.state, a.intervals_judged
        );
        let c = receiver_counters(&server).await;
        println!("{c}");
    }
    println!("\nload average at the end: {}", loadavg());
    Ok(())
}
