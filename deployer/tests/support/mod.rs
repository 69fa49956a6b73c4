//! Shared fixtures for the deployer's scenario tests: a test API server with a small shop app.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use vigil_deployer::cluster::{Cluster, GroupRef, TrafficSpec};
use vigil_deployer::rollback::{RollbackOptions, RollbackRequest};
use vigil_kube_testserver::{LabelSelector, PolicyRule, Snapshot, TestServer, Verb};

pub const NS: &str = "shop";
pub const USER: &str = "vigil-deployer";

pub async fn client(server: &TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig(NS, USER)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The rules of a Role shipped beside the crate (`rbac.yaml`, `rbac-rollback.yaml`).
pub fn role_rules(file: &str) -> Vec<PolicyRule> {
    #[derive(serde::Deserialize)]
    struct Role {
        kind: String,
        rules: Vec<PolicyRule>,
    }
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let role: Role = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(role.kind, "Role");
    role.rules
}

/// The deployer as its ServiceAccount: bound to the shipped Role (`rbac.yaml`), so a call the
/// Role does not allow fails the test with a 403, as on a cluster.
pub async fn cluster(server: &TestServer) -> Cluster {
    server.bind_role(USER, role_rules("rbac.yaml"));
    Cluster::new(client(server).await, NS)
        .with_retries(3, Duration::from_millis(5))
        .with_poll(Duration::from_millis(10))
}

pub fn fast() -> RollbackOptions {
    RollbackOptions {
        drain: Duration::ZERO,
        retention: Duration::ZERO,
        ready_timeout: Duration::from_secs(5),
        traffic_steps: Vec::new(),
    }
}

pub fn deployment(name: &str, track: &str, replicas: i64, config: Option<&str>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "shop", "track": track}},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "shop", "track": track}},
            "template": {"metadata": {"labels": {"app": "shop", "track": track}},
                "spec": {"containers": [{"name": "web", "image": format!("shop:{track}")}]}}},
    });
    if let Some(cfg) = config {
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "cfg", "configMap": {"name": cfg}}]);
    }
    d
}

pub fn service(name: &str, selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": selector, "ports": [{"port": 80}]}})
}

pub fn hpa(name: &str, target: &str, min: i64, max: i64) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min, "maxReplicas": max}})
}

pub fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
        "data": {"color": name}})
}

/// The shop: `shop-baseline` under an HPA (min 2, max 10) that has shrunk it to `baseline`
/// replicas, `shop-canary` (`canary` replicas, its own HPA), per-group Services, and an HTTPRoute
/// splitting traffic by `weights` (baseline, canary). Waits until all pods are ready.
pub async fn shop_with_route(server: &TestServer, baseline: i64, canary: i64, weights: (i64, i64)) {
    server.create(configmap("shop-config-v001")).unwrap();
    server.create(configmap("shop-config-v002")).unwrap();
    server
        .create(deployment(
            "shop-baseline",
            "baseline",
            baseline,
            Some("shop-config-v001"),
        ))
        .unwrap();
    server
        .create(deployment(
            "shop-canary",
            "canary",
            canary,
            Some("shop-config-v002"),
        ))
        .unwrap();
    server
        .create(hpa("shop-baseline", "shop-baseline", 2, 10))
        .unwrap();
    server
        .create(hpa("shop-canary", "shop-canary", 1, 10))
        .unwrap();
    server
        .create(service(
            "shop-baseline",
            json!({"app": "shop", "track": "baseline"}),
        ))
        .unwrap();
    server
        .create(service(
            "shop-canary",
            json!({"app": "shop", "track": "canary"}),
        ))
        .unwrap();
    server
        .create(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
                {"name": "shop-baseline", "port": 80, "weight": weights.0},
                {"name": "shop-canary", "port": 80, "weight": weights.1}]}]}}),
        )
        .unwrap();
    wait_ready(server, "shop-baseline", baseline).await;
    wait_ready(server, "shop-canary", canary).await;
}

pub async fn wait_ready(server: &TestServer, name: &str, replicas: i64) {
    for _ in 0..3000 {
        if let Some(d) = server.get("deployments", NS, name) {
            if d["status"]["readyReplicas"].as_i64() == Some(replicas)
                && d["status"]["observedGeneration"] == d["metadata"]["generation"]
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never became ready with {replicas} replicas");
}

pub fn route_request() -> RollbackRequest {
    RollbackRequest {
        canary: GroupRef::deployment("shop-canary"),
        baseline: GroupRef::deployment("shop-baseline"),
        traffic: TrafficSpec::HttpRoute {
            route: "shop".into(),
            canary_backend: "shop-canary".into(),
            baseline_backend: "shop-baseline".into(),
        },
    }
}

/// (baseline, canary) weights of the route `shop`, the same in every rule (the test fails if
/// rules differ: a rule left behind still sends requests to the canary).
pub fn weights(server: &TestServer) -> (i64, i64) {
    let all = rule_weights(server);
    assert!(
        all.windows(2).all(|w| w[0] == w[1]),
        "the route's rules disagree: {all:?}"
    );
    all[0]
}

/// (baseline, canary) weights of each rule of the route `shop`; an absent weight is 1.
pub fn rule_weights(server: &TestServer) -> Vec<(i64, i64)> {
    let r = server.get("httproutes", NS, "shop").unwrap();
    r["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            let w = |n: &str| {
                rule["backendRefs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["name"] == n)
                    .map_or(0, |b| b["weight"].as_i64().unwrap_or(1))
            };
            (w("shop-baseline"), w("shop-canary"))
        })
        .collect()
}

/// Where the route's requests go now, by the test gateway (weights to ready endpoints): the
/// share of all requests, over every rule, that reaches a ready baseline endpoint.
pub async fn share_on_baseline(server: &TestServer) -> f64 {
    server
        .settle(Duration::from_millis(30), Duration::from_secs(2))
        .await;
    let t = server
        .snapshot()
        .route_traffic(NS, "shop")
        .expect("route accepted by the gateway");
    let rules = t.len() as f64;
    t.iter()
        .flatten()
        .filter(|b| b.service == "shop-baseline" && b.ready > 0)
        .map(|b| b.share / rules)
        .sum()
}

/// Ready pods behind a Service, in a snapshot.
pub fn ready_behind(snap: &Snapshot, service: &str) -> usize {
    let Some(svc) = snap.get("services", NS, service) else {
        return 0;
    };
    let sel: BTreeMap<String, String> =
        serde_json::from_value(svc["spec"]["selector"].clone()).unwrap_or_default();
    snap.ready_pods(NS, &sel)
}

pub fn ready_with(snap: &Snapshot, selector: &str) -> usize {
    let sel = LabelSelector::parse(selector).unwrap();
    snap.list("pods", NS, &sel)
        .into_iter()
        .filter(|p| vigil_kube_testserver::store::pod_is_ready(p))
        .count()
}

/// The invariant, checked over the server's history: whenever the route gives the baseline more
/// than its share before the rollback, the baseline has at least `ceil(required × share)` ready
/// pods (`required` for all traffic) — until the
/// deployer hands the baseline back to its autoscaler (restores an HPA minimum below `required`).
/// Returns how many states were checked with the baseline carrying the extra traffic.
pub fn assert_route_invariant(
    server: &TestServer,
    prior_baseline_weight: i64,
    required: usize,
) -> usize {
    let mut checked = 0;
    let mut handed_back = false;
    server.replay(|change, snap| {
        if change.actor == USER
            && change.key.plural == "horizontalpodautoscalers"
            && change.key.name == "shop-baseline"
            && change.object["spec"]["minReplicas"].as_i64().is_some_and(|m| (m as usize) < required)
        {
            handed_back = true;
        }
        if handed_back {
            return;
        }
        // Where requests go: the gateway's view (accepted route, weights, ready endpoints from
        // EndpointSlices), every rule.
        let Some(rules) = snap.route_traffic(NS, "shop") else { return };
        let prior = prior_baseline_weight as f64 / 100.0;
        for rule in rules {
            let share: f64 = rule.iter().filter(|b| b.service == "shop-baseline").map(|b| b.share).sum();
            if share > prior + 1e-9 {
                checked += 1;
                let ready = snap.ready_endpoints(NS, "shop-baseline").len();
                // The share of the capacity needed for all traffic that this share needs.
                let need = (required as f64 * share - 1e-9).ceil() as usize;
                assert!(
                    ready >= need,
                    "at resourceVersion {} ({} by {}) the route sends {:.0}% to a baseline with {ready} ready endpoints, plan required {need} of {required}",
                    change.resource_version, change.key.name, change.actor, share * 100.0
                );
            }
        }
    });
    checked
}

/// Writes (create/update/patch/delete) the deployer made, as `VERB resource/name`.
pub fn deployer_writes(server: &TestServer) -> Vec<String> {
    server.writes_by(USER)
}

pub fn deployer_verbs(server: &TestServer) -> Vec<Verb> {
    server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER)
        .map(|a| a.verb)
        .collect()
}
