//! `vigil serve --deployer-config` against the Kubernetes API test server (real HTTP API, kube's
//! client, the deployer's shipped Role bound to the service's user, so a call the Role does not
//! grant is a 403): a failing analysis rolls the canary back — the traffic invariant held over
//! the server's whole history, the outcome event once — also when the service is killed with
//! SIGKILL mid-rollback and restarted; `dry_run` changes nothing; a passing analysis is promoted
//! only with `promote: {mode: on}`.
//!
//! The analyses read a small Prometheus stand-in (as tests/service_flagger.rs: version v2 is 60 %
//! slower than v1, v3 the same) over a fixed window in the past, so each is judged at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use common::TempDir;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_analyzer::service::record::EventRecord;
use vigil_analyzer::service::store::Store;
use vigil_kube_testserver::{PolicyRule, TestServer, Verb};

const NS: &str = "shop";
/// The kubeconfig's user: the test server authorizes it by the bound Role.
const USER: &str = "vigil-serve";

/// A `vigil serve` with the Kubernetes deployer; killed (SIGKILL) on drop.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(dir: &Path, kubeconfig: &str, config: &str) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--otlp-grpc-listen", "off", "--otlp-http-listen", "off"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--deployer-config", config, "--kubeconfig", kubeconfig])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("vigil: serving on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                eprintln!("[vigil serve] {l}");
            }
        });
        Serve { child, addr }
    }

    fn create(&self, dir: &Path, id: &str, spec: &str) {
        let f = dir.join(format!("{id}.yaml"));
        std::fs::write(&f, spec).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["analysis", "create"])
            .arg(&f)
            .args(["--id", id, "--server", &format!("http://{}", self.addr)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// SIGKILL, as a crash.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn noise(t: f64, salt: u64) -> f64 {
    let mut x = (t * 1000.0) as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 10_000) as f64 / 10_000.0
}

/// Prometheus' `POST /api/v1/query_range`, from a formula: `(9 + 2·noise) × factor`, factor 1.6
/// for `version="v2"`, 1.0 otherwise.
fn fake_prometheus() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    break (Some(at + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + length {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let form = String::from_utf8_lossy(&buf[head_end..]).into_owned();
            let param = |name: &str| {
                form.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(|v| v.replace('+', " "))
                    .unwrap_or_default()
            };
            let query = param("query");
            let (start, end, step): (f64, f64, f64) = (
                param("start").parse().unwrap(),
                param("end").parse().unwrap(),
                param("step").parse().unwrap(),
            );
            let (factor, salt) = if query.contains("v2") {
                (1.6, 100)
            } else if query.contains("v3") {
                (1.0, 200)
            } else {
                (1.0, 0)
            };
            let mut values = Vec::new();
            let mut t = start;
            while t <= end {
                values.push(format!(
                    "[{t},\"{}\"]",
                    (9.0 + 2.0 * noise(t, salt)) * factor
                ));
                t += step;
            }
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
                values.join(",")
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// An analysis of the canary `version` (v2 fails, v3 passes) with `actions` appended.
fn spec(prometheus: &str, version: &str, actions: &str) -> String {
    format!(
        "app: shop\nprometheus: {{url: \"http://{prometheus}\"}}\n\
         baseline: {{labels: {{app: shop, version: v1}}}}\n\
         canary: {{labels: {{app: shop, version: {version}}}}}\n\
         metrics:\n  - {{name: latency_ms, query: \"avg(latency_ms{{${{scope}}}})\", direction: increase}}\n\
         start: \"2026-01-05T12:00:00Z\"\ninterval: 1m\nstep: 10s\nlifetime: 5m\n{actions}"
    )
}

fn role_rules() -> Vec<PolicyRule> {
    #[derive(serde::Deserialize)]
    struct Role {
        rules: Vec<PolicyRule>,
    }
    let text = std::fs::read_to_string(common::repo("deployer/rbac.yaml")).unwrap();
    serde_saphyr::from_str::<Role>(&text).unwrap().rules
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app": "shop", "vigil.dev/cluster": "shop"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop", "group": name}},
            "template": {"metadata": {"labels": {"app": "shop", "group": name}},
                "spec": {"containers": [{"name": "web", "image": format!("shop:{name}")}]}}}})
}

async fn wait_ready(server: &TestServer, name: &str, n: i64) {
    for _ in 0..3000 {
        if let Some(d) = server.get("deployments", NS, name) {
            if d["status"]["readyReplicas"] == n
                && d["status"]["observedGeneration"] == d["metadata"]["generation"]
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} not ready");
}

/// The shop: baseline `shop-v001` (2 replicas, its HPA min 2), canary `shop-v002` (4 replicas),
/// a Service per group, the route `shop` splitting by `weights` (baseline, canary). The Role bound; the audit cleared.
async fn shop(server: &TestServer, weights: (u32, u32)) {
    server.bind_role(USER, role_rules());
    server.create(deployment("shop-v001", 2)).unwrap();
    server.create(deployment("shop-v002", 4)).unwrap();
    server
        .create(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "shop-v001", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-v001"},
                "minReplicas": 2, "maxReplicas": 10}}))
        .unwrap();
    for g in ["shop-v001", "shop-v002"] {
        server
            .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": g, "namespace": NS},
                "spec": {"selector": {"app": "shop", "group": g}, "ports": [{"port": 80}]}}))
            .unwrap();
    }
    server
        .create(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
                {"name": "shop-v001", "port": 80, "weight": weights.0},
                {"name": "shop-v002", "port": 80, "weight": weights.1}]}]}}),
        )
        .unwrap();
    wait_ready(server, "shop-v001", 2).await;
    wait_ready(server, "shop-v002", 4).await;
    server
        .settle(Duration::from_millis(50), Duration::from_secs(5))
        .await;
    server.clear_audit();
}

fn deployer_config(dir: &TempDir, drain_seconds: u32) -> String {
    dir.write(
        "deployer.yaml",
        &format!(
            "namespace: shop\ncluster: shop\ntraffic: {{type: http_route, route: shop, port: 80}}\n\
             strategy: {{type: red_black, max_history: 1}}\n\
             rollback: {{drain_seconds: {drain_seconds}, ready_timeout_seconds: 30}}\n"
        ),
    )
}

/// The events of `id` after `created` (kind, message), from the service's store.
fn events(data: &Path, id: &str) -> Vec<(String, String)> {
    let store = Store::open(data).unwrap();
    store
        .entries_since(id, 0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "event")
        .map(|e| serde_json::from_str::<EventRecord>(&e.payload_json).unwrap())
        .filter(|e| e.kind != "created")
        .map(|e| (e.kind, e.message))
        .collect()
}

/// Polls the events until `done` says so; panics after `limit`.
async fn wait_events(
    data: &Path,
    id: &str,
    limit: Duration,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let t = Instant::now();
    loop {
        let evs = if data.join("vigil.db").exists() {
            let (d, i) = (data.to_owned(), id.to_owned());
            tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(|| events(&d, &i)).unwrap_or_default()
            })
            .await
            .unwrap()
        } else {
            Vec::new()
        };
        if done(&evs) {
            return evs;
        }
        assert!(
            t.elapsed() < limit,
            "{id}: not there after {limit:?}: {evs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(evs: &[(String, String)], kind: &str) -> usize {
    evs.iter().filter(|(k, _)| k == kind).count()
}

/// Where the route's requests go by the test gateway (weights to ready endpoints): the share
/// that reaches `service`.
async fn share_on(server: &TestServer, service: &str) -> f64 {
    server
        .settle(Duration::from_millis(30), Duration::from_secs(5))
        .await;
    let t = server.snapshot().route_traffic(NS, "shop").unwrap();
    let rules = t.len() as f64;
    t.iter()
        .flatten()
        .filter(|b| b.service == service && b.ready > 0)
        .map(|b| b.share / rules)
        .sum()
}

/// Over the server's whole history: whenever the route gives the baseline more than its 50 %,
/// the baseline has `ceil(required × share)` ready endpoints, `required` = 2 + ceil(0.5 × 6) = 5
/// (the deployer README's formula: baseline replicas + the canary's share of all replicas),
/// until the baseline's HPA minimum is handed back. Returns the states checked.
fn assert_invariant(server: &TestServer) -> usize {
    let required = 5.0_f64;
    let mut checked = 0;
    let mut handed_back = false;
    server.replay(|change, snap| {
        if change.actor == USER
            && change.key.plural == "horizontalpodautoscalers"
            && change.object["spec"]["minReplicas"].as_i64().is_some_and(|m| (m as f64) < required)
        {
            handed_back = true;
        }
        if handed_back {
            return;
        }
        let Some(rules) = snap.route_traffic(NS, "shop") else { return };
        for rule in rules {
            let share: f64 = rule.iter().filter(|b| b.service == "shop-v001").map(|b| b.share).sum();
            if share > 0.5 + 1e-9 {
                checked += 1;
                let ready = snap.ready_endpoints(NS, "shop-v001").len();
                let need = (required * share - 1e-9).ceil() as usize;
                assert!(
                    ready >= need,
                    "at resourceVersion {} ({} by {}) the route sends {:.0}% to a baseline with {ready} ready endpoints, {need} needed",
                    change.resource_version, change.key.name, change.actor, share * 100.0
                );
            }
        }
    });
    checked
}

/// The service's writes to the cluster, as `VERB resource/name`.
fn writes(server: &TestServer) -> Vec<String> {
    server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER && a.verb.is_write())
        .map(|a| {
            format!(
                "{} {}/{}",
                a.verb.as_str(),
                a.resource,
                a.name.unwrap_or_default()
            )
        })
        .collect()
}

fn forbidden(server: &TestServer) -> Vec<String> {
    server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER && a.status == 403)
        .map(|a| format!("{} {}", a.method, a.path))
        .collect()
}

struct Setup {
    server: TestServer,
    dir: TempDir,
    kubeconfig: String,
    prom: String,
}

async fn setup(tag: &str, weights: (u32, u32)) -> Setup {
    let server = TestServer::start().await.unwrap();
    shop(&server, weights).await;
    let dir = TempDir::new(tag);
    let kubeconfig = dir.write("kubeconfig", &server.kubeconfig(NS, USER));
    Setup {
        server,
        dir,
        kubeconfig,
        prom: fake_prometheus(),
    }
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }
}

const ROLLBACK_ON: &str = "rollback: {mode: on, target: {namespace: shop, app: shop}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_rolls_the_canary_back_once_with_the_traffic_invariant_held() {
    let s = setup("rb-fail", (50, 50)).await;
    let config = deployer_config(&s.dir, 0);
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    serve.create(&s.dir.0, "fail-1", &spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "fail-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    // The verdict first, then the steps, then one outcome.
    assert_eq!(evs[0].0, "finished", "{evs:#?}");
    assert!(evs[0].1.starts_with("finished Fail"), "{evs:#?}");
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    let outcome = &evs.last().unwrap().1;
    assert_eq!(
        outcome, "rolled back: all traffic on deployment/shop-v001; deployment/shop-v002 removed",
        "{evs:#?}"
    );
    assert!(
        evs[1].1.starts_with("rollback started: verdict Fail"),
        "{evs:#?}"
    );
    for step in ["[pin baseline HPA]", "[move traffic]", "[remove canary]"] {
        assert!(
            evs.iter()
                .any(|(k, m)| k == "rollback_step" && m.starts_with(step)),
            "{step}: {evs:#?}"
        );
    }
    // How long from the verdict to the outcome (drain 0; the test server's pods turn ready at once).
    let at = |kind: &str| {
        let store = Store::open(&s.data()).unwrap();
        store
            .entries_since("fail-1", 0, 10_000)
            .unwrap()
            .into_iter()
            .find(|e| {
                serde_json::from_str::<EventRecord>(&e.payload_json).is_ok_and(|ev| ev.kind == kind)
            })
            .unwrap()
            .at_ms
    };
    eprintln!(
        "verdict to rolled back: {} ms",
        at("rollback") - at("finished")
    );
    // The cluster: all requests on the baseline, the canary gone, the invariant held on the way.
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_none());
    assert!(s.server.get("deployments", NS, "shop-v001").is_some());
    assert!(assert_invariant(&s.server) > 0, "traffic never moved");
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    // The page shows the action.
    let page = common::http(
        &serve.addr,
        "GET /analyses/fail-1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        page.body
            .contains("rolled back: all traffic on deployment/shop-v001"),
        "{}",
        page.body
    );
    // A restart does not roll back again.
    serve.kill();
    s.server.clear_audit();
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&events(&s.data(), "fail-1"), "rollback"), 1);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_rollback_the_service_resumes_it_and_never_runs_it_twice() {
    let s = setup("rb-kill", (50, 50)).await;
    // A 3 s drain after traffic moved: the kill lands in it.
    let config = deployer_config(&s.dir, 3);
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    serve.create(&s.dir.0, "kill-1", &spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "kill-1", Duration::from_secs(60), |e| {
        e.iter()
            .any(|(k, m)| k == "rollback_step" && m.starts_with("[move traffic]"))
    })
    .await;
    assert_eq!(count(&evs, "rollback"), 0, "{evs:#?}");
    serve.kill();
    // Killed while draining: traffic moved, the canary still there.
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    let restarted = Instant::now();
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    let evs = wait_events(&s.data(), "kill-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    eprintln!(
        "restart to resumed rollback done (3 s drain included): {} ms",
        restarted.elapsed().as_millis()
    );
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    assert_eq!(count(&evs, "finished"), 1, "{evs:#?}");
    assert!(
        evs.iter().any(|(k, m)| k == "rollback_step" && m.starts_with("rollback resumed after a restart")),
        "{evs:#?}"
    );
    assert!(
        evs.iter()
            .any(|(_, m)| m.contains("resumed from the cluster's record")),
        "{evs:#?}"
    );
    assert!(
        evs.last()
            .unwrap()
            .1
            .starts_with("rolled back: all traffic on deployment/shop-v001"),
        "{evs:#?}"
    );
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_none());
    assert!(assert_invariant(&s.server) > 0);
    // The canary was deleted once, and the baseline never (the resumed run did not re-resolve
    // `app: shop` to the baseline as the newest group).
    let deletes: Vec<String> = writes(&s.server)
        .into_iter()
        .filter(|w| w.starts_with("delete deployments/"))
        .collect();
    assert_eq!(deletes, ["delete deployments/shop-v002"]);
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    // A second restart: nothing more.
    serve.kill();
    let before = s.server.audit().len();
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&events(&s.data(), "kill-1"), "rollback"), 1);
    assert!(s.server.audit()[before..]
        .iter()
        .all(|a| a.user != USER || !a.verb.is_write()));
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_plan_and_changes_nothing() {
    let s = setup("rb-dry", (50, 50)).await;
    let config = deployer_config(&s.dir, 0);
    let before = s.server.snapshot().objects;
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    serve.create(
        &s.dir.0,
        "dry-1",
        &spec(&s.prom, "v2", "rollback: {mode: dry_run, target: {namespace: shop, canary: shop-v002, baseline: shop-v001}}\n"),
    );
    let evs = wait_events(&s.data(), "dry-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    assert_eq!(
        evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["finished", "rollback"]
    );
    let plan = &evs[1].1;
    assert!(plan.starts_with("dry run (nothing changed): would roll deployment/shop-v002 back to deployment/shop-v001"), "{plan}");
    assert!(plan.contains("API calls it would make:"), "{plan}");
    assert!(plan.contains("httproutes/shop"), "{plan}");
    // Reads only; the objects are as they were.
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert!(s
        .server
        .audit()
        .iter()
        .any(|a| a.user == USER && a.verb == Verb::Get));
    assert_eq!(s.server.snapshot().objects, before);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_promotes_with_promote_on_and_changes_nothing_without() {
    let s = setup("rb-pass", (80, 20)).await;
    let config = deployer_config(&s.dir, 0);
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    // Promote off: a Pass leaves the cluster alone (rollback on does not matter for a Pass).
    serve.create(&s.dir.0, "pass-off", &spec(&s.prom, "v3", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "pass-off", Duration::from_secs(60), |e| {
        count(e, "finished") > 0
    })
    .await;
    assert!(evs[0].1.starts_with("finished Pass"), "{evs:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&s.data(), "pass-off").len(), 1);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert_eq!(share_on(&s.server, "shop-v002").await, 0.2);

    serve.create(
        &s.dir.0,
        "pass-on",
        &spec(
            &s.prom,
            "v3",
            &format!("{ROLLBACK_ON}promote: {{mode: on}}\n"),
        ),
    );
    let evs = wait_events(&s.data(), "pass-on", Duration::from_secs(60), |e| {
        count(e, "promote") > 0
    })
    .await;
    assert_eq!(count(&evs, "promote"), 1, "{evs:#?}");
    assert!(evs.iter().any(|(k, _)| k == "promote_step"), "{evs:#?}");
    assert_eq!(
        evs.last().unwrap().1,
        "promoted shop-v002: all traffic on it (previous: shop-v001; deleted: none)",
        "{evs:#?}"
    );
    assert_eq!(share_on(&s.server, "shop-v002").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_groups_of_an_argo_rollout_or_a_flagger_canary_are_refused() {
    let s = setup("rb-argo", (50, 50)).await;
    // The canary's Deployment is owned by an Argo Rollout. The test server has no Rollout
    // resource, and its garbage collector deletes an object whose owners' uids are all gone: the
    // reference borrows the uid of an object that stays (the route's).
    let uid = s.server.get("httproutes", NS, "shop").unwrap()["metadata"]["uid"].clone();
    s.server
        .patch(
            "deployments",
            NS,
            "shop-v002",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout", "name": "shop", "uid": uid}]}}),
        )
        .unwrap();
    s.server.clear_audit();
    let config = deployer_config(&s.dir, 0);
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    serve.create(&s.dir.0, "argo-1", &spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "argo-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    let m = &evs.last().unwrap().1;
    assert!(
        m.starts_with("rollback refused: deployment/shop-v002 belongs to the Argo Rollout `shop`"),
        "{m}"
    );
    assert_eq!(writes(&s.server), Vec::<String>::new());
    // Flagger's target: Flagger owns only `<target>-primary`, which it creates beside it.
    let mut primary = deployment("podinfo-primary", 1);
    primary["metadata"]["ownerReferences"] = json!([{"apiVersion": "flagger.app/v1beta1",
        "kind": "Canary", "name": "podinfo", "uid": uid}]);
    s.server.create(primary).unwrap();
    s.server.clear_audit();
    serve.create(
        &s.dir.0,
        "flagger-target-1",
        &spec(
            &s.prom,
            "v2",
            "rollback: {mode: on, target: {namespace: shop, canary: podinfo, baseline: shop-v001}}\n",
        ),
    );
    let evs = wait_events(
        &s.data(),
        "flagger-target-1",
        Duration::from_secs(60),
        |e| count(e, "rollback") > 0,
    )
    .await;
    let m = &evs.last().unwrap().1;
    assert!(
        m.starts_with(
            "rollback refused: deployment/podinfo is the target of the Flagger Canary `podinfo`"
        ),
        "{m}"
    );
    assert_eq!(writes(&s.server), Vec::<String>::new());
    drop(serve);
}

#[test]
fn a_bad_deployer_config_stops_the_start_with_the_field() {
    let dir = TempDir::new("rb-badcfg");
    let bad = dir.write(
        "deployer.yaml",
        "namespace: shop\ncluster: shop\ntraffic: {type: carrier_pigeon}\n",
    );
    let kubeconfig = dir.write("kubeconfig", "apiVersion: v1\nkind: Config\n");
    for (config, expected) in [
        (bad.as_str(), "--deployer-config: in "),
        (
            "/nonexistent/deployer.yaml",
            "--deployer-config: reading /nonexistent/deployer.yaml",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--otlp-grpc-listen",
                "off",
            ])
            .args(["--otlp-http-listen", "off", "--deployer-config", config])
            .args(["--kubeconfig", &kubeconfig])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    // The kubeconfig flag alone (no deployer config) is refused by the parser.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--kubeconfig", &kubeconfig])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--deployer-config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failing_analyses_of_one_app_roll_it_back_once() {
    let s = setup("rb-two", (50, 50)).await;
    let config = deployer_config(&s.dir, 1);
    let serve = Serve::start(&s.dir.0, &s.kubeconfig, &config);
    serve.create(&s.dir.0, "two-a", &spec(&s.prom, "v2", ROLLBACK_ON));
    serve.create(&s.dir.0, "two-b", &spec(&s.prom, "v2", ROLLBACK_ON));
    let mut outcomes = Vec::new();
    for id in ["two-a", "two-b"] {
        let evs = wait_events(&s.data(), id, Duration::from_secs(60), |e| {
            count(e, "rollback") > 0
        })
        .await;
        assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
        outcomes.push(evs.last().unwrap().1.clone());
    }
    // Each analysis reports its outcome; the cluster saw one rollback: the second found the
    // canary gone and nothing recorded.
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "rolled back: all traffic on deployment/shop-v001; deployment/shop-v002 removed",
            "rolled back: deployment/shop-v002 is gone and no unfinished rollback is recorded on deployment/shop-v001",
        ]
    );
    let deletes: Vec<String> = writes(&s.server)
        .into_iter()
        .filter(|w| w.starts_with("delete deployments/"))
        .collect();
    assert_eq!(deletes, ["delete deployments/shop-v002"]);
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(assert_invariant(&s.server) > 0);
    drop(serve);
}
