//! The cluster side of the end-to-end tests, shared by tests/service_rollback.rs and
//! tests/service_loop.rs: the Kubernetes API test server with the shop (baseline and canary
//! Deployments, HPA, Services, an HTTPRoute splitting traffic), the deployer's shipped Role bound
//! to the service's user, the deployer config, the traffic invariant read from the server's whole
//! history, and the analysis' events read from the service's store. Its analyses read the
//! Prometheus stand-in of common/prometheus.rs.
//! Included with `#[path = "common/cluster.rs"] mod cluster;` next to `mod common;`,
//! `#[path = "common/prometheus.rs"] mod prometheus;` and
//! `#[path = "common/serve.rs"] mod serve;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::TempDir;
use crate::prometheus::fake_prometheus;
use crate::serve::Serve;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_analyzer::service::record::EventRecord;
use vigil_analyzer::service::store::Store;
use vigil_kube_testserver::{PolicyRule, TestServer};

/// The shop's namespace.
pub const NS: &str = "shop";
/// The kubeconfig's user: the test server authorizes it by the bound Role.
pub const USER: &str = "vigil-serve";

pub fn role_rules() -> Vec<PolicyRule> {
    #[derive(serde::Deserialize)]
    struct Role {
        rules: Vec<PolicyRule>,
    }
    let text = std::fs::read_to_string(crate::common::repo("deployer/rbac.yaml")).unwrap();
    serde_saphyr::from_str::<Role>(&text).unwrap().rules
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app": "shop", "vigil.dev/cluster": "shop"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop", "group": name}},
            "template": {"metadata": {"labels": {"app": "shop", "group": name}},
                "spec": {"containers": [{"name": "web", "image": format!("shop:{name}")}]}}}})
}

pub async fn wait_ready(server: &TestServer, name: &str, n: i64) {
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
pub async fn shop(server: &TestServer, weights: (u32, u32)) {
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

pub fn deployer_config(dir: &TempDir, drain_seconds: u32) -> String {
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
pub fn events(data: &Path, id: &str) -> Vec<(String, String)> {
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
pub async fn wait_events(
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

pub fn count(evs: &[(String, String)], kind: &str) -> usize {
    evs.iter().filter(|(k, _)| k == kind).count()
}

/// Where the route's requests go by the test gateway (weights to ready endpoints): the share
/// that reaches `service`.
pub async fn share_on(server: &TestServer, service: &str) -> f64 {
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
pub fn assert_invariant(server: &TestServer) -> usize {
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
pub fn writes(server: &TestServer) -> Vec<String> {
    server.writes_by(USER)
}

pub fn forbidden(server: &TestServer) -> Vec<String> {
    server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER && a.status == 403)
        .map(|a| format!("{} {}", a.method, a.path))
        .collect()
}

pub struct Setup {
    pub server: TestServer,
    pub dir: TempDir,
    pub kubeconfig: String,
    pub prom: String,
}

pub async fn setup(tag: &str, weights: (u32, u32)) -> Setup {
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

/// An analysis of the canary `version` (v2 fails, v3 passes) with `actions` appended.
pub fn shop_spec(prometheus: &str, version: &str, actions: &str) -> String {
    format!(
        "app: shop\nprometheus: {{url: \"http://{prometheus}\"}}\n\
         baseline: {{labels: {{app: shop, version: v1}}}}\n\
         canary: {{labels: {{app: shop, version: {version}}}}}\n\
         metrics:\n  - {{name: latency_ms, query: \"avg(latency_ms{{${{scope}}}})\", direction: increase}}\n\
         start: \"2026-01-05T12:00:00Z\"\ninterval: 1m\nstep: 10s\nlifetime: 5m\n{actions}"
    )
}

/// Rollback on, the target resolved from the app label (the newest group is the canary).
pub const ROLLBACK_ON: &str = "rollback: {mode: on, target: {namespace: shop, app: shop}}\n";

impl Setup {
    /// The service's data directory (its log is `data.log` beside it).
    pub fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// `vigil serve` over this setup's data directory with the deployer config at `config` and
    /// the kubeconfig, `args` appended and `env` set.
    pub fn serve(&self, config: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut all = vec![
            "--deployer-config",
            config,
            "--kubeconfig",
            &self.kubeconfig,
        ];
        all.extend_from_slice(args);
        Serve::start(&self.data(), &all, env)
    }
}
