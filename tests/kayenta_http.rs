//! Vigil's Kayenta faces served on 127.0.0.1, driven with the exact HTTP requests their clients
//! send, byte for byte:
//!
//! - Argo Rollouts' `kayenta` metric provider (`metricproviders/kayenta/kayenta.go`): `GET
//!   /canaryConfig?application=…&configurationAccountName=<storage account>` (sic), `POST
//!   /canary/{configId}?application=…&metricsAccountName=…&configurationAccountName=…&storageAccountName=…`
//!   with its `AnalysisRequest` JSON (scopes with `scope`, `region`, `step`, `start`, `end`), then
//!   `GET /canary/{id}` until `complete`, reading `result.judgeResult.score.score` — against a real
//!   Prometheus backfilled from two bundled scenarios. The judgement must equal `vigil judge`'s on
//!   the same readings taken from the scenarios' files.
//! - Kayenta's RemoteJudge `POST /judge`: the same answer as `vigil judge` (and `--mode vigil`).
//! - Malformed requests: 400 naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil::replay::scenario::Scenario;
use vigil_analyzer::http::kayenta::{router, KayentaState};
use vigil_analyzer::source::Prometheus;
use vigil_analyzer::telemetry::{format_time, Window};

use common::{HttpResponse, PromServer, FAMILY};

const FAIL: &str = "synthetic/syn-constant-metrics-jump";
const PASS: &str = "synthetic/syn-healthy-noisy";
const APP: &str = "checkout";

fn prometheus() -> &'static PromServer {
    static P: OnceLock<PromServer> = OnceLock::new();
    P.get_or_init(|| {
        let mut om = String::new();
        for rel in [FAIL, PASS] {
            common::scenario_samples(&common::load(rel), &mut om);
        }
        common::start_prometheus("kayenta", &om, "29s")
    })
}

/// Serves the Kayenta router on a free port in a runtime of its own; returns `host:port`.
fn serve(state: KayentaState) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router(state)).await.unwrap();
        });
    });
    addr
}

/// The server with the real Prometheus behind it, shared by the tests of this file.
fn vigil_kayenta() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let prom = Prometheus::new(&prometheus().url, Duration::from_secs(10)).unwrap();
        serve(KayentaState::new(Some(prom)))
    })
}

/// As Go's `http.Client.Get` writes a request.
fn go_get(addr: &str, path: &str) -> HttpResponse {
    common::http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
        ),
    )
    .unwrap()
}

/// As Go's `http.Client.Post(url, "application/json", body)` writes a request.
fn go_post(addr: &str, path: &str, body: &str) -> HttpResponse {
    common::http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap()
}

/// As Kayenta's RemoteJudgeService (Retrofit + OkHttp) posts to a remote judge.
fn kayenta_post(addr: &str, path: &str, body: &str) -> HttpResponse {
    common::http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nHost: {addr}\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip\r\nUser-Agent: okhttp/3.14.9\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap()
}

/// A Kayenta canary config over the backfilled scenarios: the control and experiment scopes
/// are the `side` label, the scenario id travels as the scope's region (Argo's `region`,
/// Kayenta's `location`). Both of Kayenta's Prometheus query forms are used.
fn canary_config() -> Value {
    let canary =
        |direction: &str| json!({"canary": {"direction": direction, "nanStrategy": "remove"}});
    json!({
        "name": "checkout-canary",
        "description": "Vigil test config over bundled scenarios",
        "configVersion": "1",
        "applications": [APP],
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [
            {"name": "cpu", "groups": ["cpu"], "scopeName": "default",
             "query": {"type": "prometheus",
                       "customInlineTemplate": format!("PromQL:avg({FAMILY}{{scenario=\"${{location}}\",side=\"${{scope}}\",column=\"CpuUsageRate(%)\"}})")},
             "analysisConfigurations": canary("increase")},
            {"name": "latency", "groups": ["latency"], "scopeName": "default",
             "query": {"type": "prometheus", "metricName": FAMILY,
                       "customInlineTemplate": "scenario=\"${location}\",side=\"${scope}\",column=\"PodServerLatencyP90(s)\""},
             "analysisConfigurations": canary("increase")},
            {"name": "memory", "groups": ["memory"], "scopeName": "default",
             "query": {"type": "prometheus",
                       "customInlineTemplate": format!("PromQL:avg({FAMILY}{{scenario=\"${{location}}\",side=\"${{scope}}\",column=\"MemoryUsage(Mi)\"}})")},
             "analysisConfigurations": canary("increase")}
        ],
        "templates": {},
        "classifier": {"groupWeights": {"cpu": 50, "latency": 25, "memory": 25}}
    })
}

fn column_for(metric: &str) -> &'static str {
    match metric {
        "cpu" => "CpuUsageRate(%)",
        "latency" => "PodServerLatencyP90(s)",
        "memory" => "MemoryUsage(Mi)",
        other => panic!("no column for {other}"),
    }
}

fn windows(s: &Scenario) -> (Window, Window) {
    (
        s.baseline.metric_window.unwrap(),
        s.canary.metric_window.unwrap(),
    )
}

/// Argo's `AnalysisRequest` as `json.Marshal` writes it (field order, no spaces).
fn argo_body(s: &Scenario, pass: i64, marginal: i64) -> String {
    let (b, c) = windows(s);
    let scope = |side: &str, w: Window| {
        format!(
            "{{\"scope\":\"{side}\",\"region\":\"{}\",\"step\":30,\"start\":\"{}\",\"end\":\"{}\"}}",
            s.id,
            format_time(w.start),
            format_time(w.end)
        )
    };
    format!(
        "{{\"scopes\":{{\"default\":{{\"controlScope\":{},\"experimentScope\":{}}}}},\"thresholds\":{{\"pass\":{pass},\"marginal\":{marginal}}}}}",
        scope("baseline", b),
        scope("canary", c)
    )
}

/// Argo's `evaluateResult` on `int(score)`.
fn argo_phase(score: f64, pass: i64, marginal: i64) -> &'static str {
    let score = score as i64;
    if score >= pass {
        "Successful"
    } else if score >= marginal {
        "Inconclusive"
    } else {
        "Failed"
    }
}

/// `vigil judge` (the binary) on the RemoteJudge request built from the scenario's files: the
/// readings of each metric's column inside the scopes' windows (ends included, as a Prometheus
/// range is).
fn reference_judgement(s: &Scenario, config: &Value, pass: i64, marginal: i64) -> Value {
    let (b, c) = windows(s);
    let readings = |table: &vigil::replay::scenario::MetricTable, column: &str, w: Window| {
        let values = &table.columns.iter().find(|(n, _)| n == column).unwrap().1;
        table
            .times
            .iter()
            .zip(values)
            .filter(|(t, v)| **t >= w.start && **t <= w.end && v.is_finite())
            .map(|(_, v)| json!(v))
            .collect::<Vec<_>>()
    };
    let pairs: Vec<Value> = config["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = m["name"].as_str().unwrap();
            let col = column_for(name);
            json!({
                "name": name, "id": format!("{name}-{i}"), "tags": {},
                "values": {
                    "control": readings(s.baseline.metrics.as_ref().unwrap(), col, b),
                    "experiment": readings(s.canary.metrics.as_ref().unwrap(), col, c),
                }
            })
        })
        .collect();
    let request = json!({
        "canaryConfig": config,
        "scoreThresholds": {"pass": pass, "marginal": marginal},
        "metricSetPairList": pairs,
    });
    vigil_judge(&["judge", "--quiet"], &request.to_string())
}

fn vigil_judge(args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "vigil judge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates the config as a Spinnaker user would (Argo only reads configs), once.
fn config_id(addr: &str) -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let r = go_post(addr, "/canaryConfig", &canary_config().to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["canaryConfigId"].as_str().unwrap().to_string()
    })
    .clone()
}

/// Argo's provider, request for request: look the config id up by name, start the execution,
/// poll until complete. Returns the final status document.
fn argo_run(addr: &str, body: &str) -> Value {
    // 1. Run(): getCanaryConfigId — note the storage account in configurationAccountName.
    let r = go_get(
        addr,
        &format!("/canaryConfig?application={APP}&configurationAccountName=my-storage-account"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "checkout-canary")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .expect("the config is listed by name");
    // 2. Run(): start the job.
    let r = go_post(
        addr,
        &format!(
            "/canary/{id}?application={APP}&metricsAccountName=my-prometheus-account&configurationAccountName=my-config-account&storageAccountName=my-storage-account"
        ),
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let execution = r.json()["canaryExecutionId"].as_str().unwrap().to_string();
    assert!(!execution.is_empty());
    // 3. Resume(): every 15 s in Argo (faster here) until `complete`.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = go_get(addr, &format!("/canary/{execution}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let status = r.json();
        let complete = status["complete"]
            .as_bool()
            .expect("`complete` must be a boolean (Argo: Missing Complete Status)");
        if complete {
            assert_eq!(status["pipelineId"], execution.as_str());
            assert_eq!(status["canaryConfigId"], id.as_str());
            return status;
        }
        assert_eq!(status["status"], "running");
        assert!(Instant::now() < deadline, "execution never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn argos_kayenta_provider_sequence_judges_live_prometheus_data_as_vigil_judge_does_the_files() {
    let addr = vigil_kayenta();
    config_id(addr);
    let (pass, marginal) = (95, 75);
    let mut phases = Vec::new();
    for rel in [FAIL, PASS] {
        let s = common::load(rel);
        let status = argo_run(addr, &argo_body(&s, pass, marginal));
        assert_eq!(status["status"], "succeeded", "{status:#}");
        assert_eq!(status["application"], APP);
        assert_eq!(status["metricsAccountName"], "my-prometheus-account");
        assert!(status["result"]["canaryDuration"].is_string());
        // What Argo reads.
        let score = status["result"]["judgeResult"]["score"]["score"]
            .as_f64()
            .expect("result.judgeResult.score.score is a number");
        let reference = reference_judgement(&s, &canary_config(), pass, marginal);
        assert_eq!(
            status["result"]["judgeResult"], reference,
            "{}: the live judgement differs from `vigil judge` on the files",
            s.id
        );
        // Every metric had readings on both sides (no Nodata hiding a plumbing fault).
        for r in reference["results"].as_array().unwrap() {
            assert!(
                r["controlMetadata"]["stats"]["count"].as_u64().unwrap() >= 50,
                "{r}"
            );
            assert!(
                r["experimentMetadata"]["stats"]["count"].as_u64().unwrap() >= 10,
                "{r}"
            );
        }
        phases.push((s.id.clone(), argo_phase(score, pass, marginal), score));
    }
    assert_eq!(phases[0].1, "Failed", "{phases:?}");
    assert_eq!(phases[1].1, "Successful", "{phases:?}");
}

/// A PromQL query that keeps the scope label gives control and experiment series different tag
/// sets; Kayenta's mixer then pairs each with nothing and the metric is Nodata (kayenta#738).
/// Vigil answers as Kayenta does, and says why in `warnings`.
#[test]
fn unaggregated_queries_are_nodata_as_in_kayenta_and_a_warning_says_why() {
    let addr = serve(KayentaState::new(Some(
        Prometheus::new(&prometheus().url, Duration::from_secs(10)).unwrap(),
    )));
    let mut config = canary_config();
    config["metrics"] = json!([{"name": "cpu", "groups": ["cpu"], "scopeName": "default",
        "query": {"type": "prometheus",
                  "customInlineTemplate": format!("PromQL:{FAMILY}{{scenario=\"${{location}}\",side=\"${{scope}}\",column=\"CpuUsageRate(%)\"}}")},
        "analysisConfigurations": {"canary": {"direction": "increase"}}}]);
    config["classifier"] = json!({"groupWeights": {"cpu": 100}});
    let r = go_post(&addr, "/canaryConfig", &config.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let status = argo_run(&addr, &argo_body(&common::load(FAIL), 95, 75));
    let judge = &status["result"]["judgeResult"];
    let results = judge["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one pair per tag set: {judge:#}");
    assert!(
        results.iter().all(|r| r["classification"] == "Nodata"),
        "{judge:#}"
    );
    assert_eq!(judge["score"]["score"], 0.0);
    let warnings = judge["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("kayenta#738")),
        "{warnings:?}"
    );
}

#[test]
fn remote_judge_answers_exactly_as_vigil_judge() {
    let addr = vigil_kayenta();
    let request = std::fs::read_to_string(common::repo("examples/kayenta-request.json")).unwrap();
    let r = kayenta_post(addr, "/judge", &request);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), vigil_judge(&["judge", "--quiet"], &request));
    let r = kayenta_post(addr, "/judge?mode=vigil", &request);
    assert_eq!(r.status, 200, "{}", r.body);
    let vigil_mode = vigil_judge(&["judge", "--quiet", "--mode", "vigil"], &request);
    assert_eq!(r.json(), vigil_mode);
    assert_eq!(vigil_mode["judgeName"], "Vigil-v1");
}

fn assert_400(r: &HttpResponse, needles: &[&str]) {
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["message"].as_str().unwrap().to_string();
    for n in needles {
        assert!(message.contains(n), "{message:?} lacks {n:?}");
    }
}

#[test]
fn malformed_requests_are_400_naming_the_field() {
    let addr = vigil_kayenta();
    // RemoteJudge.
    assert_400(
        &kayenta_post(addr, "/judge", "{not json"),
        &["not valid JSON"],
    );
    let no_thresholds = json!({"canaryConfig": {"metrics": [{"name": "m"}]},
        "metricSetPairList": [{"name": "m", "values": {"control": [1], "experiment": [2]}}]});
    assert_400(
        &kayenta_post(addr, "/judge", &no_thresholds.to_string()),
        &["scoreThresholds"],
    );
    let bad_sample = json!({"canaryConfig": {"metrics": [{"name": "m"}]},
        "scoreThresholds": {"pass": 75, "marginal": 50},
        "metricSetPairList": [{"name": "m", "values": {"control": [1, "x"], "experiment": [2]}}]});
    assert_400(
        &kayenta_post(addr, "/judge", &bad_sample.to_string()),
        &["metricSetPairList[0].values.control[1]"],
    );
    let request = std::fs::read_to_string(common::repo("examples/kayenta-request.json")).unwrap();
    assert_400(
        &kayenta_post(addr, "/judge?mode=dredd", &request),
        &["mode"],
    );
    // Canary configs.
    let mut no_apps = canary_config();
    no_apps.as_object_mut().unwrap().remove("applications");
    assert_400(
        &go_post(addr, "/canaryConfig", &no_apps.to_string()),
        &["applications"],
    );
    let mut atlas = canary_config();
    atlas["metrics"][1]["query"]["type"] = json!("atlas");
    assert_400(
        &go_post(addr, "/canaryConfig", &atlas.to_string()),
        &["metrics[1].query.type", "atlas"],
    );
    let mut critical = canary_config();
    critical["metrics"][0]["analysisConfigurations"]["canary"]["critical"] = json!("true");
    assert_400(
        &go_post(addr, "/canaryConfig", &critical.to_string()),
        &["metrics[0].analysisConfigurations.canary.critical"],
    );
    // Execution requests.
    let id = config_id(addr);
    let s = common::load(PASS);
    let path = format!("/canary/{id}?application={APP}");
    let mut body: Value = serde_json::from_str(&argo_body(&s, 95, 75)).unwrap();
    body.as_object_mut().unwrap().remove("thresholds");
    assert_400(&go_post(addr, &path, &body.to_string()), &["thresholds"]);
    let mut body: Value = serde_json::from_str(&argo_body(&s, 95, 75)).unwrap();
    body["scopes"]["default"]["experimentScope"]["step"] = json!(0);
    assert_400(
        &go_post(addr, &path, &body.to_string()),
        &["scopes.default.experimentScope.step"],
    );
    // Years at a 1-s step would be gigabytes of padding: refused, naming the step.
    let mut body: Value = serde_json::from_str(&argo_body(&s, 95, 75)).unwrap();
    body["scopes"]["default"]["experimentScope"]["step"] = json!(1);
    body["scopes"]["default"]["experimentScope"]["start"] = json!("2000-01-01T00:00:00Z");
    assert_400(
        &go_post(addr, &path, &body.to_string()),
        &["scopes.default.experimentScope.step", "at most 604800"],
    );
    let mut body: Value = serde_json::from_str(&argo_body(&s, 95, 75)).unwrap();
    body["scopes"]["default"]["controlScope"]["start"] = json!("yesterday");
    assert_400(
        &go_post(addr, &path, &body.to_string()),
        &["scopes.default.controlScope.start", "yesterday"],
    );
    let mut body: Value = serde_json::from_str(&argo_body(&s, 95, 75)).unwrap();
    body["scopes"]["default"]["controlScope"]["scope"] = json!(7);
    assert_400(
        &go_post(addr, &path, &body.to_string()),
        &["scopes.default.controlScope.scope"],
    );
    let renamed = argo_body(&s, 95, 75).replace("\"default\"", "\"other\"");
    assert_400(&go_post(addr, &path, &renamed), &["\"default\""]);
    // Unknown ids.
    let r = go_post(addr, "/canary/no-such-config", &argo_body(&s, 95, 75));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(go_get(addr, "/canary/no-such-execution").status, 404);
    assert_eq!(go_get(addr, "/canaryConfig/no-such-config").status, 404);
    // The stored config reads back with its id and timestamps.
    let r = go_get(addr, &format!("/canaryConfig/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id.as_str());
    assert!(r.json()["updatedTimestampIso"].is_string());
}

#[test]
fn an_unreachable_prometheus_ends_the_execution_as_terminal_without_a_score() {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let addr = serve(KayentaState::new(Some(
        Prometheus::new(&dead, Duration::from_secs(5)).unwrap(),
    )));
    let r = go_post(&addr, "/canaryConfig", &canary_config().to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let s = common::load(FAIL);
    let status = argo_run(&addr, &argo_body(&s, 95, 75));
    assert_eq!(status["status"], "terminal", "{status:#}");
    // No score: Argo's Resume() finds no result.judgeResult.score.score and records an Error
    // measurement — never a pass.
    assert!(status["result"].is_null(), "{status:#}");
    let error = status["exception"]["details"]["error"].as_str().unwrap();
    assert!(
        error.contains("metric \"cpu\"") && error.contains("unreachable"),
        "{error}"
    );
}

/// A Prometheus that answers slowly and with no series: Argo's poll sees a running execution
/// (`complete: false`, no result: it resumes later), then a complete one whose metrics are all
/// Nodata — scored 0, Failed for Argo: no data never passes.
#[test]
fn a_running_execution_is_incomplete_and_no_data_scores_zero() {
    use std::io::{Read, Write as _};
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stub_addr = stub.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in stub.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = c.read(&mut buf);
                std::thread::sleep(Duration::from_millis(300));
                let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let addr = serve(KayentaState::new(Some(
        Prometheus::new(&format!("http://{stub_addr}"), Duration::from_secs(10)).unwrap(),
    )));
    let id = go_post(&addr, "/canaryConfig", &canary_config().to_string()).json()["canaryConfigId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = go_post(
        &addr,
        &format!("/canary/{id}?application={APP}"),
        &argo_body(&common::load(PASS), 95, 75),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let execution = r.json()["canaryExecutionId"].as_str().unwrap().to_string();
    let first = go_get(&addr, &format!("/canary/{execution}")).json();
    assert_eq!(first["complete"], false, "{first:#}");
    assert_eq!(first["status"], "running");
    assert!(first["result"].is_null());
    let status = argo_run(&addr, &argo_body(&common::load(PASS), 95, 75));
    assert_eq!(status["status"], "succeeded", "{status:#}");
    let judge = &status["result"]["judgeResult"];
    assert!(
        judge["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["classification"] == "Nodata"),
        "{judge:#}"
    );
    let score = judge["score"]["score"].as_f64().unwrap();
    assert_eq!(score, 0.0);
    assert_eq!(argo_phase(score, 95, 75), "Failed");
}
