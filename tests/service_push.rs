//! Live equals replay: `vigil push` sends a bundled scenario to a real `vigil serve` process as
//! OTLP/gRPC (logs, spans, callers' spans from the callers' own pod, metrics; original
//! timestamps) into an event-time analysis, and the record it prints has the `verdict`, `score`
//! and `time_to_detect_s` that `vigil replay --json` computes from the same folder (the reference
//! is replay's output, read from the files by another path). A subset here (every synthetic edge
//! case and Nezha scenarios with callers, masking, a canary whose metrics start before its window
//! and a short last interval); `datasets/push_vs_replay.sh` runs the whole set.
//!
//! Event time itself: an event-time analysis of a past window is not judged by the wall clock
//! (it waits for data or the end of input), `EndInput` closes it, and a wall-clock analysis
//! refuses `EndInput`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TempDir;
use serde_json::Value;
use vigil_proto::v1 as pb;
use vigil_proto::v1::analyses_client::AnalysesClient;

const TOKENS: &str = "write writer-token-1\ningest ingest-token-1\n";

/// A `vigil serve` on free loopback ports with its OTLP/gRPC receiver; killed on drop.
struct Server {
    child: Child,
    api: String,
    grpc: String,
    _dir: TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_in(TempDir::new("push"))
    }

    /// A server on `dir`'s store (a restart: the same directory again).
    fn start_in(dir: TempDir) -> Server {
        Server::start_with(dir, &[])
    }

    /// [`Server::start_in`] with more `vigil serve` arguments (`--tls-cert …`: then every
    /// address below is served over TLS).
    fn start_with(dir: TempDir, extra: &[&str]) -> Server {
        let tokens = dir.0.join("tokens");
        std::fs::write(&tokens, TOKENS).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--otlp-grpc-listen", "127.0.0.1:0"])
            .args(["--otlp-http-listen", "127.0.0.1:0"])
            .arg("--tokens")
            .arg(&tokens)
            .arg("--data-dir")
            .arg(dir.0.join("data"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut next = |prefix: &str| {
            let l = lines.next().unwrap().unwrap();
            let rest = l
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected `{prefix}…`, got {l}"));
            rest.strip_prefix("http://")
                .or_else(|| rest.strip_prefix("https://"))
                .unwrap_or_else(|| panic!("no scheme in {l}"))
                .to_owned()
        };
        let api = next("vigil: serving on ");
        let grpc = next("vigil: OTLP/gRPC on ");
        let _http = next("vigil: OTLP/HTTP on ");
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            api,
            grpc,
            _dir: dir,
        }
    }
}

impl Server {
    /// `vigil push FOLDER` at this server over `scheme` (`http` or `https`), with `extra`
    /// arguments and the write token from `VIGIL_TOKEN` (a `--token` in `extra` wins).
    fn push(&self, scheme: &str, folder: &std::path::Path, extra: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("push")
            .arg(folder)
            .args(["--server", &format!("{scheme}://{}", self.api)])
            .args(["--otlp", &format!("{scheme}://{}", self.grpc)])
            .args(extra)
            .env("VIGIL_TOKEN", "writer-token-1")
            .output()
            .unwrap()
    }

    /// Kills the process (SIGKILL: no clean shutdown) and hands back its directory.
    fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = TempDir(self._dir.0.clone());
        // The directory now belongs to the caller: this server's copy must not remove it.
        self._dir.0 = PathBuf::new();
        dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every synthetic scenario, and Nezha scenarios that exercise callers' spans, masking of known
/// incidents, canary metrics that start before the canary window, and a last interval shorter
/// than 30 s.
const SCENARIOS: &[&str] = &[
    "synthetic/syn-concurrent-baseline-fail",
    "synthetic/syn-concurrent-baseline-pass",
    "synthetic/syn-constant-metrics-jump",
    "synthetic/syn-constant-metrics-pass",
    "synthetic/syn-error-logs-and-slow-spans",
    "synthetic/syn-healthy-noisy",
    "synthetic/syn-low-traffic",
    "synthetic/syn-no-baseline-data",
    "synthetic/syn-no-canary-data",
    "synthetic/syn-slow-memory-leak",
    "synthetic/syn-trend-continues-pass",
    "synthetic/syn-variance-blowup",
    "synthetic/syn-zero-baseline-errors-fail",
    "synthetic/syn-zero-baseline-errors-pass",
    "nezha/ob-20220823-f31-adservice-cpu_consumed",
    "nezha/ob-20220822-f22-adservice-return",
    "nezha/tt-20230129-n104400-ts-route-service",
    "nezha/tt-20230129-n100310-ts-preserve-other-service",
    "nezha/tt-20230129-f25-ts-verification-code-service-cpu_contention",
];

fn replay_record(folder: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("replay")
        .arg(folder)
        .args(["--json", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["scenarios"][0].clone()
}

/// A successful `vigil push` whose verdict, score and time to detect are replay's.
fn assert_pushed_equals_replay(out: &std::process::Output, folder: &std::path::Path) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = replay_record(folder);
    for key in ["verdict", "score", "time_to_detect_s"] {
        assert_eq!(pushed[key], want[key], "{key}");
    }
}

#[test]
fn push_equals_replay_on_bundled_scenarios() {
    let server = Server::start();
    let mut differ = Vec::new();
    for rel in SCENARIOS {
        let folder = common::datasets().join(rel);
        // The token as `vigil analysis` takes it: from the environment.
        let out = server.push("http", &folder, &[]);
        assert!(
            out.status.success(),
            "push {rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pushed: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("push {rel} printed no JSON record ({e})"));
        let want = replay_record(&folder);
        for key in ["id", "expected"] {
            assert_eq!(pushed[key], want[key], "{rel}: {key}");
        }
        let keys = ["verdict", "score", "time_to_detect_s"];
        if keys.iter().any(|k| pushed[k] != want[k]) {
            differ.push(format!(
                "{rel}: push {} {} {} | replay {} {} {}",
                pushed["verdict"],
                pushed["score"],
                pushed["time_to_detect_s"],
                want["verdict"],
                want["score"],
                want["time_to_detect_s"]
            ));
        }
        // The same intervals were judged, with the same verdicts.
        let steps = |v: &Value| -> Vec<(f64, String)> {
            v["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["elapsed_s"].as_f64().unwrap(),
                        s["verdict"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(steps(&pushed), steps(&want), "{rel}: timeline");
    }
    assert!(
        differ.is_empty(),
        "push differs from replay:\n{}",
        differ.join("\n")
    );
}

/// Against a service with TLS (its receivers share it), `vigil push` verifies the service with
/// `--ca-file` and still reaches replay's verdict; without the CA it refuses to connect.
#[test]
fn push_over_tls_equals_replay() {
    let dir = TempDir::new("push-tls");
    let pki::ServerPki { ca, cert, key } = pki::server_pki(&dir.0, "vigil push test CA");
    let server = Server::start_with(dir, &["--tls-cert", &cert, "--tls-key", &key]);
    let folder = common::datasets().join("synthetic/syn-constant-metrics-jump");
    let out = server.push("https", &folder, &["--ca-file", &ca]);
    assert_pushed_equals_replay(&out, &folder);
    let out = server.push("https", &folder, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca-file"), "{err}");
}

/// A service whose memory budget holds the baseline and a few intervals but not the whole
/// scenario: exports are refused with RESOURCE_EXHAUSTED, `vigil push` waits as RetryInfo says,
/// the refused records are accepted once judged intervals are released, and the verdict is
/// replay's. (768 KiB is too little for this scenario — what open intervals hold cannot be
/// released before the watermark passes them — and the push then fails saying the budget may
/// be too small; 1.5 MiB needs no retry.)
#[test]
fn push_retries_through_a_full_memory_budget_and_still_equals_replay() {
    let server = Server::start_with(TempDir::new("push-budget"), &["--memory-budget", "1MiB"]);
    let folder = common::datasets().join("nezha/ob-20220823-f27-adservice-network_delay");
    let out = server.push("http", &folder, &[]);
    assert_pushed_equals_replay(&out, &folder);
    let metrics = common::http(
        &server.api,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap()
    .body;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_otlp_refused_total{signal=\"traces\"} "))
        .unwrap_or_else(|| panic!("no refused counter:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        refused > 0.0,
        "the budget never refused anything:\n{metrics}"
    );
}

async fn client(api: &str) -> AnalysesClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{api}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AnalysesClient::new(channel)
}

fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", "Bearer writer-token-1".parse().unwrap());
    r
}

/// A before/after analysis of one pod over a window long past, on event time.
const EVENT_SPEC: &str = r#"{
  "app": "pod",
  "clock": "event",
  "interval": "30s",
  "baseline": {"attributes": {"k8s.pod.name": "p-1"},
               "window": {"start": "2026-01-05T11:50:00Z", "end": "2026-01-05T12:00:00Z"}},
  "canary": {"attributes": {"k8s.pod.name": "p-1"},
             "window": {"start": "2026-01-05T12:00:00Z", "end": "2026-01-05T12:02:00Z"}}
}"#;

#[test]
fn event_time_waits_for_data_or_the_end_of_input_not_the_clock() {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(&server.api).await;
        c.create_analysis(req(pb::CreateAnalysisRequest {
            id: "ev-1".into(),
            spec: EVENT_SPEC.into(),
        }))
        .await
        .unwrap();
        // The window ended long ago: on the wall clock all four intervals would close at once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let a = c
            .get_analysis(req(pb::GetAnalysisRequest { id: "ev-1".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.intervals_judged, 0, "judged without data: {a:?}");
        assert_eq!(a.intervals_total, 4);
        // The end of input closes the remaining intervals on what came (nothing): Inconclusive,
        // never Pass.
        let a = c
            .end_input(req(pb::EndInputRequest { id: "ev-1".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.id, "ev-1");
        let mut stream = c
            .watch_analysis(req(pb::WatchAnalysisRequest {
                id: "ev-1".into(),
                after_seq: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let mut judged = 0;
        let mut ended = false;
        while let Some(u) = stream.message().await.unwrap() {
            match u.update {
                Some(pb::watch_update::Update::Judgement(_)) => judged += 1,
                Some(pb::watch_update::Update::Event(e)) if e.kind == "input_ended" => {
                    ended = true;
                }
                _ => {}
            }
        }
        assert!(ended, "no input_ended event stored");
        assert_eq!(judged, 4);
        let a = c
            .get_analysis(req(pb::GetAnalysisRequest { id: "ev-1".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.state, pb::State::Inconclusive as i32);
        // Again, on a finished analysis: nothing changes.
        c.end_input(req(pb::EndInputRequest { id: "ev-1".into() }))
            .await
            .unwrap();

        // A wall-clock analysis has no input to end.
        let wall = EVENT_SPEC.replace("\"clock\": \"event\",", "");
        c.create_analysis(req(pb::CreateAnalysisRequest {
            id: "wall-1".into(),
            spec: wall,
        }))
        .await
        .unwrap();
        let e = c
            .end_input(req(pb::EndInputRequest {
                id: "wall-1".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("clock: event"), "{}", e.message());
        let e = c
            .end_input(req(pb::EndInputRequest { id: "nope".into() }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        // The same over HTTP: `POST /v1/analyses/{id}/end-of-input`, scope `write`.
        let post = |id: &str, token: &str| {
            let auth = if token.is_empty() {
                String::new()
            } else {
                format!("Authorization: Bearer {token}\r\n")
            };
            common::http(
                &server.api,
                &format!(
                    "POST /v1/analyses/{id}/end-of-input HTTP/1.1\r\nHost: vigil\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            )
            .unwrap()
        };
        c.create_analysis(req(pb::CreateAnalysisRequest {
            id: "ev-2".into(),
            spec: EVENT_SPEC.into(),
        }))
        .await
        .unwrap();
        assert_eq!(post("ev-2", "").status, 401);
        assert_eq!(post("ev-2", "ingest-token-1").status, 403);
        let r = post("ev-2", "writer-token-1");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["input_ended"], true);
        assert_eq!(post("wall-1", "writer-token-1").status, 409);
        assert_eq!(post("nope", "writer-token-1").status, 404);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let a = get(&mut c, "ev-2").await;
            if a.state == pb::State::Inconclusive as i32 {
                assert_eq!(a.intervals_judged, 4);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "ev-2 not finished: {a:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `clock: event` needs pushed telemetry on both sides.
        let e = c
            .create_analysis(req(pb::CreateAnalysisRequest {
                id: "bad".into(),
                spec: EVENT_SPEC.replace(
                    "\"attributes\": {\"k8s.pod.name\": \"p-1\"},\n               \"window\"",
                    "\"labels\": {\"pod\": \"p-1\"},\n               \"window\"",
                ),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("clock"), "{}", e.message());
    });
}

async fn get(c: &mut AnalysesClient<tonic::transport::Channel>, id: &str) -> pb::Analysis {
    c.get_analysis(req(pb::GetAnalysisRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

/// Log records of pod `p-1` at these seconds after 2026-01-05T12:00:00Z, over OTLP/gRPC.
async fn push_logs(grpc: &str, offsets: &[i64]) {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    // 2026-01-05T12:00:00Z = 1767614400 (date -u -d … +%s)
    let t0: i64 = 1_767_614_400;
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = LogsServiceClient::new(channel);
    let records = offsets
        .iter()
        .map(|o| LogRecord {
            time_unix_nano: u64::try_from(t0 + o).unwrap() * 1_000_000_000,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("served order".into())),
            }),
            ..LogRecord::default()
        })
        .collect();
    let export = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "k8s.pod.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("p-1".into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    c.export(req(export)).await.unwrap();
}

/// The hub holds pushed records in memory: after a restart an analysis fed by them has lost what
/// it received, so it ends as Error saying so — never a verdict on the records pushed after the
/// restart alone (design/service.md, Durability) — and the intervals judged before stay.
#[test]
fn an_analysis_fed_by_pushed_telemetry_ends_as_error_after_a_restart_not_on_partial_data() {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = rt.block_on(async {
        let mut c = client(&server.api).await;
        c.create_analysis(req(pb::CreateAnalysisRequest {
            id: "rs-1".into(),
            spec: EVENT_SPEC.into(),
        }))
        .await
        .unwrap();
        // Baseline records, then canary records up to 12:01:05: the watermark passed the ends
        // of intervals 1 (12:00:30) and 2 (12:01:00), not of 3.
        push_logs(&server.grpc, &[-300, -200, -100, 10, 40, 65]).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while get(&mut c, "rs-1").await.intervals_judged < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "intervals 1-2 not judged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(get(&mut c, "rs-1").await.intervals_judged, 2);
        server.kill()
    });
    let server = Server::start_in(dir);
    rt.block_on(async {
        let mut c = client(&server.api).await;
        let mut stream = c
            .watch_analysis(req(pb::WatchAnalysisRequest {
                id: "rs-1".into(),
                after_seq: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        let mut intervals = Vec::new();
        while let Some(u) = stream.message().await.unwrap() {
            match u.update {
                Some(pb::watch_update::Update::Judgement(j)) => intervals.push(j.interval),
                Some(pb::watch_update::Update::Event(e)) => events.push((e.kind, e.message)),
                _ => {}
            }
        }
        assert_eq!(intervals, [1, 2]);
        let (kind, message) = events.last().unwrap();
        assert_eq!(kind, "finished", "{events:?}");
        assert!(
            message.contains("restarted before interval 3")
                && message.contains("pushed telemetry")
                && message.contains("lost"),
            "{message}"
        );
        let a = get(&mut c, "rs-1").await;
        assert_eq!(a.verdict, pb::Verdict::Error as i32, "{a:?}");
        assert_eq!(a.state, pb::State::Error as i32, "{a:?}");
        // Records pushed now go nowhere: the analysis is over.
        push_logs(&server.grpc, &[70, 100]).await;
        assert_eq!(get(&mut c, "rs-1").await.intervals_judged, 2);
    });
}

#[test]
fn speed_paces_the_push_at_n_times_recorded_time_and_keeps_the_verdict() {
    let server = Server::start();
    let rel = "nezha/tt-20230129-n100310-ts-preserve-other-service";
    let folder = common::datasets().join(rel);
    let started = std::time::Instant::now();
    let out = server.push(
        "http",
        &folder,
        &[
            "--token",
            "writer-token-1",
            "--speed",
            "1000",
            "--id",
            "paced",
        ],
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The recording spans 31 min (baseline metrics from 09:33:04, canary to 10:04:34 in
    // scenario.json's metric windows): at 1000× the last slice is due after at least 1.8 s.
    assert!(took >= Duration::from_millis(1800), "took {took:?}");
    assert_pushed_equals_replay(&out, &folder);
    // The same id again would push every record a second time: refused.
    let out = server.push(
        "http",
        &folder,
        &["--token", "writer-token-1", "--id", "paced"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("analysis `paced` exists already"), "{err}");
}

#[test]
fn a_base_spec_sets_what_the_scenario_does_not_and_replay_agrees_with_the_same_settings() {
    let server = Server::start();
    let dir = TempDir::new("push-spec");
    let base = dir.write(
        "base.yaml",
        "interval: 60s\nthresholds: {pass: 80, marginal: 50}\n",
    );
    let folder = common::datasets().join("nezha/ob-20220823-f31-adservice-cpu_consumed");
    let out = server.push(
        "http",
        &folder,
        &["--token", "writer-token-1", "--spec", &base],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let replay = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("replay")
        .arg(&folder)
        .args(["--json", "--quiet", "--interval", "60"])
        .args(["--set", "fusion.pass_threshold=80"])
        .output()
        .unwrap();
    let want: Value = serde_json::from_slice(&replay.stdout).unwrap();
    let want = &want["scenarios"][0];
    for k in ["verdict", "score", "time_to_detect_s", "timeline"] {
        assert_eq!(pushed[k], want[k], "{k}");
    }
    // 60-s intervals: the first judged 60 s of canary.
    assert_eq!(pushed["timeline"][0]["elapsed_s"], 60.0);
    // A base spec the service would refuse is refused before anything is sent.
    let bad = dir.write("bad.yaml", "interval: 0.5\n");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("push")
        .arg(&folder)
        .args([
            "--server",
            "http://127.0.0.1:9",
            "--otlp",
            "http://127.0.0.1:9",
        ])
        .args(["--spec", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interval: must be at least 1s"), "{err}");
}
