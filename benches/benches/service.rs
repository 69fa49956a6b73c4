//! The service under load (issue 11): a load client of our own (tonic, HTTP/2) against `vigil
//! serve`'s gRPC API on loopback, client and server sharing the machine's cores.
//!
//! The server is a separate process: this bench re-executes itself with `VIGIL_BENCH_ROLE=server`
//! and that child runs `vigil_analyzer::service::serve` (the code behind `vigil serve`) with its
//! own tokio runtime, so the client's work and the server's are separate processes competing for
//! the same cores, and the server's memory is its own (`/proc/PID/status`). The trivial server
//! (`VIGIL_BENCH_ROLE=trivial`) is a child too: a tonic `vigil.v1.Analyses` whose `GetAnalysis`
//! returns a fixed message — the very bytes Vigil answered — over the same stack (tonic routes in
//! axum on hyper), so the ratio between the two is what Vigil's own work costs.
//!
//! Parts, each printed as a table row:
//! 1. `GetAnalysis`: N connections × M requests in flight for a fixed time, on finished analyses
//!    (10 interim judgements of 3 metrics each); the same against the trivial server.
//! 2. `CreateAnalysis` at durability Normal and Full, 64 in flight, distinct ids; at the end of
//!    the timed run the server is killed with SIGKILL while requests are in flight, restarted on
//!    the same data directory, and every acknowledged id is read back.
//! 3. 1,000 `WatchAnalysis` streams (10 live analyses × 100 watchers, 1 s intervals): each stream
//!    must receive every interim judgement that `GetAnalysis` counts, in sequence.
//! 4. Memory per idle analysis: the server's VmRSS before and after creating 10,000 analyses
//!    whose first interval is an hour away.
//!
//! Metrics come from a fake Prometheus in this process (`/api/v1/query_range`, the same series
//! for both sides, so the analyses pass).
//!
//! Run: `cargo bench -p vigil-benches --bench service` (`VIGIL_BENCH_SECS` sets the timed
//! duration of each load, default 10).

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::transport::{Channel, Endpoint};
use vigil_analyzer::service::{serve, store::Durability, ServeConfig};
use vigil_proto::v1 as pb;
use vigil_proto::v1::analyses_client::AnalysesClient;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    match std::env::var("VIGIL_BENCH_ROLE").as_deref() {
        Ok("server") => return run_server(),
        Ok("trivial") => return run_trivial(),
        _ => {}
    }
    // `cargo test --benches` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("service bench: run with `cargo bench -p vigil-benches --bench service`");
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

fn run_server() -> Result<(), BoxError> {
    let dir = PathBuf::from(std::env::var("VIGIL_BENCH_DIR")?);
    let durability = match std::env::var("VIGIL_BENCH_DURABILITY").as_deref() {
        Ok("full") => Durability::Full,
        _ => Durability::Normal,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: Some(dir),
            tokens: None,
            retention: Duration::from_secs(30 * 86_400),
            durability,
            kayenta_prometheus: None,
            tls: None,
            deployer: None,
            notify: Default::default(),
        };
        serve(config, |addr| println!("ready {addr}")).await?;
        Ok(())
    })
}

struct Trivial {
    answer: pb::Analysis,
}

type Updates =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchUpdate, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::analyses_server::Analyses for Trivial {
    async fn create_analysis(
        &self,
        _: tonic::Request<pb::CreateAnalysisRequest>,
    ) -> Result<tonic::Response<pb::CreateAnalysisResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
    async fn get_analysis(
        &self,
        _: tonic::Request<pb::GetAnalysisRequest>,
    ) -> Result<tonic::Response<pb::Analysis>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
    type WatchAnalysisStream = Updates;
    async fn watch_analysis(
        &self,
        _: tonic::Request<pb::WatchAnalysisRequest>,
    ) -> Result<tonic::Response<Updates>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
    async fn list_analyses(
        &self,
        _: tonic::Request<pb::ListAnalysesRequest>,
    ) -> Result<tonic::Response<pb::ListAnalysesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
    async fn cancel_analysis(
        &self,
        _: tonic::Request<pb::CancelAnalysisRequest>,
    ) -> Result<tonic::Response<pb::Analysis>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
    async fn record_feedback(
        &self,
        _: tonic::Request<pb::RecordFeedbackRequest>,
    ) -> Result<tonic::Response<pb::RecordFeedbackResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
    async fn end_input(
        &self,
        _: tonic::Request<pb::EndInputRequest>,
    ) -> Result<tonic::Response<pb::Analysis>, tonic::Status> {
        Err(tonic::Status::unimplemented("trivial"))
    }
}

fn run_trivial() -> Result<(), BoxError> {
    let bytes = std::fs::read(std::env::var("VIGIL_BENCH_ANSWER")?)?;
    let answer = pb::Analysis::decode(bytes.as_slice())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = tonic::service::Routes::new(pb::analyses_server::AnalysesServer::new(Trivial {
            answer,
        }))
        .into_axum_router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("ready {}", listener.local_addr()?);
        // As `vigil serve` does: no Nagle delay on small responses.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// A child process of this bench and the address it listens on; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(role: &str, env: &[(&str, String)]) -> Result<Server, BoxError> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env("VIGIL_BENCH_ROLE", role)
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .ok_or_else(|| format!("the {role} child said {line:?}"))?
            .parse()?;
        Ok(Server { child, addr })
    }

    fn vigil(dir: &Path, durability: &str) -> Result<Server, BoxError> {
        Server::spawn(
            "server",
            &[
                ("VIGIL_BENCH_DIR", dir.display().to_string()),
                ("VIGIL_BENCH_DURABILITY", durability.to_owned()),
            ],
        )
    }

    fn rss_kib(&self) -> Result<u64, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("VmRSS without a value")?
            .parse()?)
    }

    fn kill(&mut self) {
        // SIGKILL: the process gets no chance to flush anything.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------
// A fake Prometheus
// ------------------------------------------------------------------------------------------

async fn query_range(
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let num = |k: &str| form.get(k).and_then(|v| v.parse::<f64>().ok());
    let (Some(start), Some(end), Some(step)) = (num("start"), num("end"), num("step")) else {
        return axum::Json(
            serde_json::json!({"status": "error", "errorType": "bad_data",
            "error": "start, end and step are required"}),
        );
    };
    let mut values = Vec::new();
    let mut t = start;
    while t <= end + 1e-9 && step > 0.0 {
        // The same series for both sides: 10 plus a deterministic wobble of ±0.5.
        let h = ((t as i64).wrapping_mul(2_654_435_761) & 0xffff) as f64 / 65_536.0;
        values.push(serde_json::json!([t, format!("{:.4}", 9.5 + h)]));
        t += step;
    }
    axum::Json(serde_json::json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
    }))
}

async fn fake_prometheus() -> Result<SocketAddr, BoxError> {
    let app = axum::Router::new().route(
        "/api/v1/query_range",
        axum::routing::post(query_range).get(query_range),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// A spec with three metrics read from `prom`; `timing` places its intervals.
fn spec(prom: SocketAddr, app: &str, timing: &str) -> String {
    format!(
        r#"app: {app}
prometheus: {{url: "http://{prom}", timeout: 10s}}
baseline: {{labels: {{app: {app}, track: stable}}}}
canary: {{labels: {{app: {app}, track: canary}}}}
metrics:
  - {{name: error_rate, query: "sum(rate(errors_total{{${{scope}}}}[1m]))", direction: increase}}
  - {{name: latency_p90, query: "histogram_quantile(0.9, rate(latency_bucket{{${{scope}}}}[1m]))", direction: increase}}
  - {{name: cpu, query: "sum(rate(cpu_seconds_total{{${{scope}}}}[1m]))", direction: increase, critical: false}}
{timing}
"#
    )
}

// ------------------------------------------------------------------------------------------
// The load client
// ------------------------------------------------------------------------------------------

async fn connect(addr: SocketAddr) -> Result<AnalysesClient<Channel>, BoxError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(AnalysesClient::new(channel).max_decoding_message_size(64 << 20))
}

/// Requests per second and latency percentiles of one timed load.
struct Load {
    ok: u64,
    errors: u64,
    secs: f64,
    lat_us: Vec<u32>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

/// `conns` HTTP/2 connections × `inflight` request loops each, `warmup` then `secs` timed: each
/// loop calls `call(client, n)` with a counter unique across loops.
async fn drive<F, Fut>(
    addr: SocketAddr,
    conns: usize,
    inflight: usize,
    warmup: Duration,
    timed: Duration,
    call: F,
) -> Result<Load, BoxError>
where
    F: Fn(AnalysesClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let counter = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = connect(addr).await?;
        for _ in 0..inflight {
            let (client, call, counter, measuring, stop) = (
                client.clone(),
                call.clone(),
                counter.clone(),
                measuring.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let (mut ok, mut err) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let r = call(client.clone(), n).await;
                    if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        match r {
                            Ok(()) => {
                                ok += 1;
                                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            }
                            Err(_) => err += 1,
                        }
                    }
                }
                (ok, err, lat)
            }));
        }
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(timed).await;
    stop.store(true, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let mut load = Load {
        ok: 0,
        errors: 0,
        secs,
        lat_us: Vec::new(),
    };
    for t in tasks {
        let (ok, err, lat) = t.await?;
        load.ok += ok;
        load.errors += err;
        load.lat_us.extend(lat);
    }
    load.lat_us.sort_unstable();
    Ok(load)
}

async fn wait_finished(
    client: &mut AnalysesClient<Channel>,
    id: &str,
) -> Result<pb::Analysis, BoxError> {
    for _ in 0..1200 {
        let a = client
            .get_analysis(pb::GetAnalysisRequest { id: id.to_owned() })
            .await?
            .into_inner();
        if a.finished_ms.is_some() {
            return Ok(a);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("analysis {id} did not finish within a minute").into())
}

fn secs() -> u64 {
    std::env::var("VIGIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

// ------------------------------------------------------------------------------------------
// The parts
// ------------------------------------------------------------------------------------------

/// HTTP/2 connections and requests in flight on each for the `GetAnalysis` load
/// (`VIGIL_BENCH_CONNS`, `VIGIL_BENCH_INFLIGHT`; default 4 × 16): fewer in flight trades rate for
/// latency on two shared cores.
fn load_shape() -> (usize, usize) {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(default)
    };
    (var("VIGIL_BENCH_CONNS", 4), var("VIGIL_BENCH_INFLIGHT", 16))
}

fn row(name: &str, l: &Load) {
    println!(
        "| {name} | {:.0}/s | {:.2} ms | {:.2} ms | {:.2} ms | {} ok, {} errors in {:.1} s |",
        l.rate(),
        l.pct(0.5),
        l.pct(0.99),
        l.pct(0.999),
        l.ok,
        l.errors,
        l.secs
    );
}

async fn get_analysis(prom: SocketAddr) -> Result<(), BoxError> {
    let dir = tmp_dir("get");
    let server = Server::vigil(&dir, "normal")?;
    let mut client = connect(server.addr).await?;
    // 100 finished analyses of 10 one-minute intervals, an hour ago: each GetAnalysis reads its
    // row and its 12 entries (created, 10 judgements, finished).
    let past = "start: \"{start}\"\ninterval: 1m\nstep: 10s\nlifetime: 10m";
    let now = vigil_analyzer::service::runner::now_s();
    let start = vigil_analyzer::service::spec::rfc3339((now / 60.0).floor() * 60.0 - 3600.0);
    let timing = past.replace("{start}", &start);
    let mut ids = Vec::new();
    for i in 0..100 {
        let id = format!("get-{i}");
        client
            .create_analysis(pb::CreateAnalysisRequest {
                id: id.clone(),
                spec: spec(prom, "checkout", &timing),
            })
            .await?;
        ids.push(id);
    }
    let mut answer = pb::Analysis::default();
    for id in &ids {
        answer = wait_finished(&mut client, id).await?;
    }
    println!(
        "GetAnalysis answer: {} bytes, {} intervals judged, verdict {}, state {}",
        answer.encoded_len(),
        answer.intervals_judged,
        answer.verdict,
        answer.state
    );
    let ids = Arc::new(ids);
    let warm = Duration::from_secs(2);
    let timed = Duration::from_secs(secs());
    let (conns, inflight) = load_shape();
    // The same requests, round-robin over the ids, at either server.
    let load = |addr: SocketAddr| {
        let ids = ids.clone();
        drive(addr, conns, inflight, warm, timed, move |mut c, n| {
            let id = ids[n as usize % ids.len()].clone();
            async move {
                c.get_analysis(pb::GetAnalysisRequest { id })
                    .await
                    .map(drop)
            }
        })
    };
    let vigil = load(server.addr).await?;
    drop(server);
    let answer_file = dir.join("answer.bin");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&answer_file, answer.encode_to_vec())?;
    let trivial = Server::spawn(
        "trivial",
        &[("VIGIL_BENCH_ANSWER", answer_file.display().to_string())],
    )?;
    let ceiling = load(trivial.addr).await?;
    drop(trivial);
    println!(
        "\n{conns} connections x {inflight} in flight, {} s timed after 2 s warm-up\n",
        secs()
    );
    println!("| load | rate | p50 | p99 | p99.9 | count |\n|---|---|---|---|---|---|");
    row("GetAnalysis, vigil serve", &vigil);
    row("GetAnalysis, trivial tonic server", &ceiling);
    println!(
        "\nVigil / trivial: {:.2} (rate); 50,000/s: {}; p99 < 5 ms: {}",
        vigil.rate() / ceiling.rate(),
        if vigil.rate() >= 50_000.0 {
            "met"
        } else {
            "NOT met"
        },
        if vigil.pct(0.99) < 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn create_analysis(prom: SocketAddr, durability: &str) -> Result<(), BoxError> {
    let dir = tmp_dir(&format!("create-{durability}"));
    let mut server = Server::vigil(&dir, durability)?;
    // Idle analyses: the first interval closes in an hour.
    let text = Arc::new(spec(
        prom,
        "checkout",
        "interval: 30s\nbegin_after: 1h\nlifetime: 10m",
    ));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load = {
        let (text, acked) = (text.clone(), acked.clone());
        // The kill comes while requests are in flight: a timed-out loop would stall, so run the
        // load and kill the server from a second task at the end of the timed window.
        let addr = server.addr;
        let driver = tokio::spawn(async move {
            drive(
                addr,
                4,
                16,
                Duration::from_secs(1),
                Duration::from_secs(secs()),
                move |mut c, n| {
                    let (text, acked) = (text.clone(), acked.clone());
                    async move {
                        let id = format!("c{n}");
                        let r = c
                            .create_analysis(pb::CreateAnalysisRequest {
                                id: id.clone(),
                                spec: (*text).clone(),
                            })
                            .await?
                            .into_inner();
                        if !r.created {
                            return Err(tonic::Status::internal(format!("{id} not created")));
                        }
                        acked.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                        Ok(())
                    }
                },
            )
            .await
            .map_err(|e| e.to_string())
        });
        // Kill at the end of warm-up + timed window, while the loops are still sending.
        tokio::time::sleep(Duration::from_secs(1 + secs()) + Duration::from_millis(20)).await;
        server.kill();
        driver.await??
    };
    let acked: Vec<String> = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    // Restart on the same directory and read back every acknowledged create.
    let server = Server::vigil(&dir, durability)?;
    let ids = Arc::new(acked);
    let missing = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for part in 0..16 {
        let (ids, missing) = (ids.clone(), missing.clone());
        let mut c = connect(server.addr).await?;
        tasks.push(tokio::spawn(async move {
            for id in ids.iter().skip(part).step_by(16) {
                let ok = c
                    .get_analysis(pb::GetAnalysisRequest { id: id.clone() })
                    .await
                    .is_ok_and(|a| a.get_ref().id == *id);
                if !ok {
                    missing.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    row(&format!("CreateAnalysis, durability {durability}"), &load);
    println!(
        "  after SIGKILL mid-load and a restart: {} acknowledged creates, {} missing; 1,000/s: {}",
        ids.len(),
        missing.load(Ordering::Relaxed),
        if load.rate() >= 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn watchers(prom: SocketAddr) -> Result<(), BoxError> {
    const ANALYSES: usize = 10;
    const PER: usize = 100;
    let dir = tmp_dir("watch");
    let server = Server::vigil(&dir, "normal")?;
    let mut client = connect(server.addr).await?;
    // Live analyses: 20 one-second intervals starting 3 s after creation, so every watcher is
    // connected before the first judgement and receives each as it is appended.
    let timing = "interval: 1s\nstep: 1s\nbegin_after: 3s\nlifetime: 20s";
    let mut ids = Vec::new();
    for i in 0..ANALYSES {
        let id = format!("watch-{i}");
        client
            .create_analysis(pb::CreateAnalysisRequest {
                id: id.clone(),
                spec: spec(prom, &format!("app{i}"), timing),
            })
            .await?;
        ids.push(id);
    }
    let t0 = Instant::now();
    let channels: Vec<AnalysesClient<Channel>> = {
        let mut v = Vec::new();
        for _ in 0..50 {
            v.push(connect(server.addr).await?);
        }
        v
    };
    let mut tasks = Vec::new();
    for w in 0..ANALYSES * PER {
        let id = ids[w % ANALYSES].clone();
        let mut c = channels[w % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = c
                .watch_analysis(pb::WatchAnalysisRequest {
                    id: id.clone(),
                    after_seq: 0,
                })
                .await?
                .into_inner();
            let (mut judgements, mut last_seq, mut gaps) = (0u32, 0u64, 0u32);
            let mut delays_ms = Vec::new();
            while let Some(u) = stream.message().await? {
                match u.update {
                    Some(pb::watch_update::Update::Judgement(_)) => {
                        judgements += 1;
                        let now = vigil_analyzer::service::runner::now_ms();
                        delays_ms.push((now - u.at_ms).max(0) as u32);
                    }
                    Some(pb::watch_update::Update::Analysis(_)) => continue,
                    _ => {}
                }
                if u.seq != last_seq + 1 {
                    gaps += 1;
                }
                last_seq = u.seq;
            }
            Ok::<_, tonic::Status>((id, judgements, gaps, delays_ms))
        }));
    }
    let opened = t0.elapsed();
    let mut got: Vec<(String, u32, u32, Vec<u32>)> = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(r) => got.push(r),
            Err(e) => {
                failed += 1;
                eprintln!("watch failed: {e}");
            }
        }
    }
    let done = t0.elapsed();
    let mut expected = HashMap::new();
    for id in &ids {
        let a = wait_finished(&mut client, id).await?;
        expected.insert(id.clone(), a.intervals_judged);
    }
    let complete = got
        .iter()
        .filter(|(id, n, gaps, _)| expected.get(id) == Some(n) && *gaps == 0)
        .count();
    let mut delays: Vec<u32> = got.iter().flat_map(|g| g.3.iter().copied()).collect();
    delays.sort_unstable();
    let pct = |p: f64| {
        delays
            .get(((delays.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let total: u32 = expected.values().sum();
    println!(
        "\nWatchAnalysis: {} streams ({ANALYSES} live analyses x {PER}, over {} connections), opened in {:.2} s, all ended after {:.1} s",
        ANALYSES * PER,
        channels.len(),
        opened.as_secs_f64(),
        done.as_secs_f64()
    );
    println!(
        "  {complete} of {} streams received every interim judgement in sequence ({} per analysis by GetAnalysis, {} deliveries), {failed} failed; 1,000 watchers: {}",
        ANALYSES * PER,
        total / ANALYSES as u32,
        delays.len(),
        if complete == ANALYSES * PER { "met" } else { "NOT met" }
    );
    println!(
        "  delivery delay, judgement appended -> received: p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        delays.last().copied().unwrap_or(0)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn memory(prom: SocketAddr) -> Result<(), BoxError> {
    const N: usize = 10_000;
    let dir = tmp_dir("memory");
    let server = Server::vigil(&dir, "normal")?;
    let text = spec(
        prom,
        "checkout",
        "interval: 30s\nbegin_after: 1h\nlifetime: 10m",
    );
    let create = |client: AnalysesClient<Channel>, prefix: &'static str, n: usize| {
        let text = text.clone();
        async move {
            let mut tasks = Vec::new();
            for part in 0..16 {
                let (mut c, text) = (client.clone(), text.clone());
                tasks.push(tokio::spawn(async move {
                    for i in (part..n).step_by(16) {
                        c.create_analysis(pb::CreateAnalysisRequest {
                            id: format!("{prefix}{i}"),
                            spec: text.clone(),
                        })
                        .await?;
                    }
                    Ok::<_, tonic::Status>(())
                }));
            }
            for t in tasks {
                t.await.map_err(|e| e.to_string())??;
            }
            Ok::<_, BoxError>(())
        }
    };
    let client = connect(server.addr).await?;
    // Warm up allocator, SQLite page cache and connections before the baseline.
    create(client.clone(), "warm", 500).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss_kib()?;
    create(client.clone(), "idle", N).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib()?;
    println!(
        "\nMemory: server VmRSS {} KiB with 500 idle analyses, {} KiB after {N} more: {:.2} KiB per idle analysis",
        before,
        after,
        (after as f64 - before as f64) / N as f64
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn bench() -> Result<(), BoxError> {
    let prom = fake_prometheus().await?;
    let only = std::env::var("VIGIL_BENCH_ONLY").unwrap_or_default();
    let want = |p: &str| only.is_empty() || only.split(',').any(|o| o == p);
    if want("get") {
        get_analysis(prom).await?;
    }
    if want("create") {
        println!("\n| load | rate | p50 | p99 | p99.9 | count |\n|---|---|---|---|---|---|");
        create_analysis(prom, "normal").await?;
        create_analysis(prom, "full").await?;
    }
    if want("watch") {
        watchers(prom).await?;
    }
    if want("memory") {
        memory(prom).await?;
    }
    Ok(())
}
