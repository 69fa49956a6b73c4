//! The shipped Role (`deployer/rbac.yaml`) allows every call the deployer makes, and grants
//! nothing it does not use.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use serde::Deserialize;
use serde_json::json;
use support::*;
use vigil_deployer::config;
use vigil_deployer::rollback::rollback;
use vigil_deployer::strategy::{deploy, promote, StepVerdict};
use vigil_kube_testserver::{AuditEntry, TestServer};

#[derive(Deserialize)]
struct Role {
    kind: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn role() -> Role {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml")).unwrap();
    let role: Role = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(role.kind, "Role");
    role
}

fn allows(rule: &Rule, a: &AuditEntry) -> bool {
    rule.api_groups.iter().any(|g| g == &a.group)
        && rule.resources.iter().any(|r| r == &a.resource)
        && rule.verbs.iter().any(|v| v == a.verb.as_str())
}

fn manifest(image: &str, config: &str, secret: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "envFrom": [{"configMapRef": {"name": config}}, {"secretRef": {"name": secret}}]}]}}}
    }))
    .unwrap()
}

/// Every code path that talks to the API: rollback over a route, red/black and highlander over a
/// Service with versioned config, promote, and a rolling deploy stopped by a verdict.
async fn exercise(server: &TestServer) {
    let cluster = cluster(server).await;
    shop_with_route(server, 2, 4, (50, 50)).await;
    rollback(&cluster, &route_request(), &fast()).await.unwrap();

    server
        .create(service("web", json!({"app": "none"})))
        .unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": NS}, "data": {"a": "1"}})).unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret", "namespace": NS}, "data": {"k": "dg=="}})).unwrap();
    let base = "namespace: shop\ncluster: web\ntraffic: {type: service, service: web}\nrollback: {drain_seconds: 0, ready_timeout_seconds: 5}\nconfig_history: 1\n";
    let red_black = config::parse(&format!(
        "{base}strategy: {{type: red_black, max_history: 1}}\n"
    ))
    .unwrap();
    let go = |_| async { StepVerdict::Continue };
    deploy(
        &cluster,
        &red_black,
        manifest("web:1", "web-config", "web-secret"),
        go,
    )
    .await
    .unwrap();
    server
        .patch("configmaps", NS, "web-config", json!({"data": {"a": "2"}}))
        .unwrap();
    deploy(
        &cluster,
        &red_black,
        manifest("web:2", "web-config", "web-secret"),
        go,
    )
    .await
    .unwrap();
    promote(&cluster, &red_black, "web-v000").await.unwrap();
    server
        .patch("secrets", NS, "web-secret", json!({"data": {"k": "dzI="}}))
        .unwrap();
    let highlander = config::parse(&format!("{base}strategy: {{type: highlander}}\n")).unwrap();
    deploy(
        &cluster,
        &highlander,
        manifest("web:3", "web-config", "web-secret"),
        go,
    )
    .await
    .unwrap();

    server
        .create(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "api", "namespace": NS}, "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": []}]}}))
        .unwrap();
    let rolling = config::parse(
        "namespace: shop\ncluster: api\ntraffic: {type: http_route, route: api}\nstrategy: {type: rolling_red_black, steps: [50, 100]}\nrollback: {drain_seconds: 0, ready_timeout_seconds: 5}\n",
    )
    .unwrap();
    deploy(
        &cluster,
        &rolling,
        manifest("api:1", "web-config", "web-secret"),
        go,
    )
    .await
    .unwrap();
    let stop = |_| async { StepVerdict::Stop("fail".into()) };
    assert!(deploy(
        &cluster,
        &rolling,
        manifest("api:2", "web-config", "web-secret"),
        stop
    )
    .await
    .is_err());
    // Highlander over a route deletes the older group's per-group Service too.
    let route_highlander = config::parse(
        "namespace: shop\ncluster: api\ntraffic: {type: http_route, route: api}\nstrategy: {type: highlander}\nrollback: {drain_seconds: 0, ready_timeout_seconds: 5}\n",
    )
    .unwrap();
    deploy(
        &cluster,
        &route_highlander,
        manifest("api:3", "web-config", "web-secret"),
        go,
    )
    .await
    .unwrap();
    assert!(server.get("services", NS, "api-v000").is_none());

    // ReplicaSet server groups (read, watched, annotated, scaled, deleted).
    for (name, track, replicas) in [("rs-baseline", "baseline", 1), ("rs-canary", "canary", 2)] {
        server
            .create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "rs", "track": track}},
                    "template": {"metadata": {"labels": {"app": "rs", "track": track}},
                        "spec": {"containers": [{"name": "web", "image": "rs"}]}}}}))
            .unwrap();
    }
    server.create(service("rs", json!({"app": "rs"}))).unwrap();
    server
        .settle(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(3),
        )
        .await;
    let req = vigil_deployer::rollback::RollbackRequest {
        canary: vigil_deployer::cluster::GroupRef::replica_set("rs-canary"),
        baseline: vigil_deployer::cluster::GroupRef::replica_set("rs-baseline"),
        traffic: vigil_deployer::cluster::TrafficSpec::Service {
            service: "rs".into(),
        },
    };
    rollback(&cluster, &req, &fast()).await.unwrap().unwrap();
    assert!(server.get("replicasets", NS, "rs-canary").is_none());
}

/// Every (group, resource, verb) a rule grants that no call used.
fn unused_grants(role: &Role, calls: &[AuditEntry]) -> Vec<String> {
    let used: BTreeSet<(String, String, String)> = calls
        .iter()
        .map(|a| {
            (
                a.group.clone(),
                a.resource.clone(),
                a.verb.as_str().to_string(),
            )
        })
        .collect();
    let mut unused = Vec::new();
    for r in &role.rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    if !used.contains(&(g.clone(), res.clone(), v.clone())) {
                        unused.push(format!("{v} {res} in {g:?}"));
                    }
                }
            }
        }
    }
    unused
}

/// The rollback-only Role (`rbac-rollback.yaml`): rollbacks over a route (Deployments, HPAs,
/// versioned ConfigMap and Secret) and over a Service selector (ReplicaSets) run bound to it —
/// a call it does not allow is a 403 and fails the rollback — and every rule is used.
#[tokio::test]
async fn the_rollback_only_role_allows_every_rollback_call_and_every_rule_is_used() {
    let server = TestServer::start().await.unwrap();
    let cluster = cluster(&server).await;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac-rollback.yaml"))
        .unwrap();
    let role: Role = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(role.kind, "Role");
    server.bind_role(USER, role_rules("rbac-rollback.yaml"));
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-secret-v002", "namespace": NS}, "data": {"k": "dg=="}}))
        .unwrap();
    server
        .patch(
            "deployments",
            NS,
            "shop-canary",
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "cfg", "configMap": {"name": "shop-config-v002"}},
                {"name": "sec", "secret": {"secretName": "shop-secret-v002"}}]}}}}),
        )
        .unwrap();
    wait_ready(&server, "shop-canary", 4).await;
    server
        .settle(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(3),
        )
        .await;
    rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .unwrap();
    assert!(server.get("secrets", NS, "shop-secret-v002").is_none());

    for (name, track, replicas) in [("rs-baseline", "baseline", 1), ("rs-canary", "canary", 2)] {
        server
            .create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "rs", "track": track}},
                    "template": {"metadata": {"labels": {"app": "rs", "track": track}},
                        "spec": {"containers": [{"name": "web", "image": "rs"}]}}}}))
            .unwrap();
    }
    server.create(service("rs", json!({"app": "rs"}))).unwrap();
    // The lock left by a crashed process has expired: the rollback takes it over (update).
    server
        .create(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "vigil-traffic-rs", "namespace": NS},
            "spec": {"holderIdentity": "crashed", "leaseDurationSeconds": 1,
                "renewTime": "2026-01-01T00:00:00.000000Z"}}),
        )
        .unwrap();
    server
        .settle(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(3),
        )
        .await;
    let req = vigil_deployer::rollback::RollbackRequest {
        canary: vigil_deployer::cluster::GroupRef::replica_set("rs-canary"),
        baseline: vigil_deployer::cluster::GroupRef::replica_set("rs-baseline"),
        traffic: vigil_deployer::cluster::TrafficSpec::Service {
            service: "rs".into(),
        },
    };
    rollback(&cluster, &req, &fast()).await.unwrap().unwrap();
    assert!(server.get("leases", NS, "vigil-traffic-rs").is_none());

    let calls: Vec<AuditEntry> = server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER)
        .collect();
    let denied: Vec<&AuditEntry> = calls.iter().filter(|a| a.status == 403).collect();
    assert!(denied.is_empty(), "denied: {denied:#?}");
    let unused = unused_grants(&role, &calls);
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
    // Nothing it could deploy with or read Secrets by: it creates only its lock.
    for r in &role.rules {
        assert!(
            !r.verbs.iter().any(|v| v == "create") || r.resources == ["leases"],
            "{:?}",
            r.resources
        );
        if r.resources.iter().any(|x| x == "secrets") {
            assert_eq!(r.verbs, ["delete"]);
        }
    }
}

#[tokio::test]
async fn every_call_is_allowed_by_the_role_and_every_rule_is_used() {
    let server = TestServer::start().await.unwrap();
    exercise(&server).await;
    let role = role();
    let calls: Vec<AuditEntry> = server
        .audit()
        .into_iter()
        .filter(|a| a.user == USER)
        .collect();
    assert!(calls.len() > 50);
    let denied: BTreeSet<String> = calls
        .iter()
        .filter(|a| !role.rules.iter().any(|r| allows(r, a)))
        .map(|a| format!("{} {} {:?}", a.verb.as_str(), a.resource, a.group))
        .collect();
    assert!(
        denied.is_empty(),
        "calls outside deployer/rbac.yaml: {denied:#?}"
    );

    let used: BTreeSet<(String, String, String)> = calls
        .iter()
        .map(|a| {
            (
                a.group.clone(),
                a.resource.clone(),
                a.verb.as_str().to_string(),
            )
        })
        .collect();
    let mut unused = Vec::new();
    for r in &role.rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    if !used.contains(&(g.clone(), res.clone(), v.clone())) {
                        unused.push(format!("{v} {res} in {g:?}"));
                    }
                }
            }
        }
    }
    assert!(unused.is_empty(), "granted but never used: {unused:?}");

    // Secrets are never listed or watched (that would read every Secret value in the namespace):
    // the Role does not grant it, and versioned Secret copies are enumerated from their marker
    // ConfigMaps, one per copy, each naming an existing copy.
    for r in role
        .rules
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == "secrets"))
    {
        assert!(
            !r.verbs
                .iter()
                .any(|v| v == "list" || v == "watch" || v == "*"),
            "the Role grants list/watch on secrets"
        );
    }
    assert!(!calls
        .iter()
        .any(|a| a.resource == "secrets" && matches!(a.verb.as_str(), "list" | "watch")));
    let copies: BTreeSet<String> = server
        .list("secrets", NS)
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("web-secret-v"))
        .collect();
    let marked: BTreeSet<String> = server
        .list("configmaps", NS)
        .iter()
        .filter(|c| c["metadata"]["labels"]["vigil.dev/secret-copy"] == "true")
        .filter_map(|c| c["data"]["copy"].as_str().map(String::from))
        .collect();
    assert!(!copies.is_empty());
    assert_eq!(copies, marked, "every Secret copy has exactly one marker");
    assert!(
        calls
            .iter()
            .any(|a| a.resource == "secrets" && a.verb.as_str() == "delete"),
        "an old Secret copy was collected"
    );
}

/// A crash between recording a Secret copy's marker and creating the copy leaves a marker with
/// no Secret: the next publish reuses that version instead of leaking or skipping it, and the
/// copy it creates is the one the marker names.
#[tokio::test]
async fn a_secret_copy_marker_left_by_a_crash_is_reused() {
    use vigil_deployer::versioned::{publish, ConfigKind, ConfigRef};
    use vigil_kube_testserver::{Fault, Verb};
    let server = TestServer::start().await.unwrap();
    let cluster = cluster(&server).await;
    server.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS}, "data": {"k": "dg=="}})).unwrap();
    let r = ConfigRef {
        kind: ConfigKind::Secret,
        name: "creds".into(),
    };
    // The copy's create is refused (as if the process died right before it).
    server.inject(
        Fault::status(403)
            .verb(Verb::Create)
            .resource("secrets")
            .times(1),
    );
    assert!(publish(&cluster, &r).await.is_err());
    assert!(server
        .get("configmaps", NS, "creds-v000.secret-copy")
        .is_some());
    assert!(server.get("secrets", NS, "creds-v000").is_none());
    assert_eq!(publish(&cluster, &r).await.unwrap(), "creds-v000");
    assert_eq!(
        server.get("secrets", NS, "creds-v000").unwrap()["data"]["k"],
        "dg=="
    );
    // Unchanged content: the same copy again; changed: the next version, with its marker.
    assert_eq!(publish(&cluster, &r).await.unwrap(), "creds-v000");
    server
        .patch("secrets", NS, "creds", json!({"data": {"k": "dzI="}}))
        .unwrap();
    assert_eq!(publish(&cluster, &r).await.unwrap(), "creds-v001");
    assert!(server
        .get("configmaps", NS, "creds-v001.secret-copy")
        .is_some());
}
