//! Deployment strategies against the test API server.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use support::*;
use vigil_deployer::config::{self, DeployerConfig};
use vigil_deployer::strategy::{deploy, promote, StepVerdict};
use vigil_deployer::Error;
use vigil_kube_testserver::TestServer;

fn cfg(traffic: &str, strategy: &str, extra: &str) -> DeployerConfig {
    config::parse(&format!(
        "namespace: shop\ncluster: shop\ntraffic: {traffic}\nstrategy: {strategy}\nrollback: {{drain_seconds: 0, ready_timeout_seconds: 5}}\n{extra}"
    ))
    .unwrap()
}

fn manifest(image: &str, replicas: i32, config: Option<&str>) -> Deployment {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop", "labels": {"app": "shop"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}},
    });
    if let Some(c) = config {
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"configMapRef": {"name": c}}]);
    }
    serde_json::from_value(d).unwrap()
}

async fn go(_: u32) -> StepVerdict {
    StepVerdict::Continue
}

fn names(server: &TestServer, plural: &str) -> Vec<String> {
    let mut v: Vec<String> = server
        .list(plural, NS)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Whenever the deployer points the Service at a group, that group has `replicas` ready pods.
fn assert_service_only_selects_ready_groups(server: &TestServer, replicas: usize) {
    server.replay(|c, snap| {
        if c.key.plural != "services" || c.key.name != "shop" || c.actor != USER {
            return;
        }
        let ready = ready_behind(snap, "shop");
        assert!(
            ready >= replicas,
            "at rv {} the Service selects {ready} ready pods",
            c.resource_version
        );
    });
}

#[tokio::test]
async fn red_black_switches_only_to_a_ready_group_and_keeps_history() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: service, service: shop}",
        "{type: red_black, max_history: 1}",
        "",
    );
    for (i, image) in ["shop:1", "shop:2", "shop:3"].iter().enumerate() {
        let r = deploy(&cluster, &c, manifest(image, 3, None), go)
            .await
            .unwrap();
        assert_eq!(r.server_group, format!("shop-v{i:03}"));
    }
    let svc = server.get("services", NS, "shop").unwrap();
    assert_eq!(
        svc["spec"]["selector"]["vigil.dev/server-group"],
        "shop-v002"
    );
    // v001 is kept, disabled but scaled, for an instant rollback; v000 is beyond the history.
    assert_eq!(names(&server, "deployments"), ["shop-v001", "shop-v002"]);
    assert_eq!(
        server.get("deployments", NS, "shop-v001").unwrap()["spec"]["replicas"],
        3
    );
    assert_service_only_selects_ready_groups(&server, 3);

    // Promote back to v001: it is still ready, so traffic moves at once.
    promote(&cluster, &c, "shop-v001").await.unwrap();
    let svc = server.get("services", NS, "shop").unwrap();
    assert_eq!(
        svc["spec"]["selector"]["vigil.dev/server-group"],
        "shop-v001"
    );
}

#[tokio::test]
async fn a_new_group_that_never_becomes_ready_gets_no_traffic() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    let cluster = cluster(&server).await;
    let mut c = cfg("{type: service, service: shop}", "{type: red_black}", "");
    deploy(&cluster, &c, manifest("shop:1", 2, None), go)
        .await
        .unwrap();
    server
        .never_ready(NS, "vigil.dev/server-group=shop-v001")
        .unwrap();
    c.rollback.ready_timeout_seconds = 1;
    let err = deploy(&cluster, &c, manifest("shop:2", 2, None), go)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotReady { ref group, .. } if group == "shop-v001"),
        "{err}"
    );
    let svc = server.get("services", NS, "shop").unwrap();
    assert_eq!(
        svc["spec"]["selector"]["vigil.dev/server-group"],
        "shop-v000"
    );
}

#[tokio::test]
async fn highlander_deletes_every_older_group_and_unreferenced_config_versions() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config", "namespace": NS}, "data": {"color": "blue"}})).unwrap();
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: service, service: shop}",
        "{type: highlander}",
        "config_history: 1",
    );

    let r = deploy(&cluster, &c, manifest("shop:1", 1, Some("shop-config")), go)
        .await
        .unwrap();
    assert_eq!(
        r.config_versions,
        BTreeMap::from([("shop-config".to_string(), "shop-config-v000".to_string())])
    );
    // Unchanged content reuses the version.
    let r = deploy(&cluster, &c, manifest("shop:2", 1, Some("shop-config")), go)
        .await
        .unwrap();
    assert_eq!(r.config_versions["shop-config"], "shop-config-v000");
    assert_eq!(r.deleted_groups, ["shop-v000"]);
    // Changed content makes a new version; the old one goes once nothing references it.
    server
        .patch(
            "configmaps",
            NS,
            "shop-config",
            json!({"data": {"color": "green"}}),
        )
        .unwrap();
    let r = deploy(&cluster, &c, manifest("shop:3", 1, Some("shop-config")), go)
        .await
        .unwrap();
    assert_eq!(r.config_versions["shop-config"], "shop-config-v001");
    assert_eq!(names(&server, "deployments"), ["shop-v002"]);
    assert_eq!(
        names(&server, "configmaps"),
        ["shop-config", "shop-config-v001"]
    );
    let d = server.get("deployments", NS, "shop-v002").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "shop-config-v001"
    );
}

#[tokio::test]
async fn config_versions_still_referenced_are_never_collected() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config", "namespace": NS}, "data": {"v": "0"}})).unwrap();
    let cluster = cluster(&server).await;
    // config_history 1 would keep one version, but every version is still referenced by a kept group.
    let c = cfg(
        "{type: service, service: shop}",
        "{type: red_black, max_history: 2}",
        "config_history: 1",
    );
    for i in 1..=3 {
        server
            .patch(
                "configmaps",
                NS,
                "shop-config",
                json!({"data": {"v": i.to_string()}}),
            )
            .unwrap();
        deploy(&cluster, &c, manifest("shop", 1, Some("shop-config")), go)
            .await
            .unwrap();
    }
    // Three groups, each on its own version: all three versions are referenced, so all stay.
    assert_eq!(
        names(&server, "deployments"),
        ["shop-v000", "shop-v001", "shop-v002"]
    );
    assert_eq!(
        names(&server, "configmaps"),
        [
            "shop-config",
            "shop-config-v000",
            "shop-config-v001",
            "shop-config-v002"
        ]
    );
}

/// Weighted steps: at every state of the route, each backend with weight w > 0 has at least
/// ceil(target × w / 100) ready pods.
fn assert_route_capacity(server: &TestServer, target: usize) {
    server.replay(|c, snap| {
        let Some(route) = snap.get("httproutes", NS, "shop") else {
            return;
        };
        for b in route["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["backendRefs"].as_array().cloned().unwrap_or_default())
        {
            let w = b["weight"].as_i64().unwrap_or(1) as usize;
            if w == 0 || !b["name"].as_str().unwrap().starts_with("shop-v") {
                continue;
            }
            let need = (target * w).div_ceil(100);
            let ready = snap.ready_endpoints(NS, b["name"].as_str().unwrap()).len();
            assert!(
                ready >= need,
                "at rv {} backend {} has weight {w} but {ready} ready pods (< {need})",
                c.resource_version,
                b["name"]
            );
        }
    });
}

fn route(server: &TestServer) {
    server
        .create(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": []}]}}),
        )
        .unwrap();
}

#[tokio::test]
async fn rolling_red_black_shifts_traffic_in_steps_bounded_by_ready_capacity() {
    let server = TestServer::start().await.unwrap();
    route(&server);
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: http_route, route: shop}",
        "{type: rolling_red_black, steps: [25, 50, 75, 100]}",
        "",
    );
    deploy(&cluster, &c, manifest("shop:1", 4, None), go)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let r = deploy(&cluster, &c, manifest("shop:2", 4, None), |p| {
        seen.push(p);
        async { StepVerdict::Continue }
    })
    .await
    .unwrap();
    assert_eq!(r.steps, [25, 50, 75, 100]);
    assert_eq!(seen, [25, 50, 75, 100]);
    let w = weights_of(&server);
    assert_eq!(
        w,
        [("shop-v001".to_string(), 100), ("shop-v000".to_string(), 0)]
    );
    assert_route_capacity(&server, 4);
}

/// The weights of the cluster's rules (those naming only `shop-vNNN` backends), which must agree.
fn weights_of(server: &TestServer) -> Vec<(String, i64)> {
    let r = server.get("httproutes", NS, "shop").unwrap();
    let rules: Vec<Vec<(String, i64)>> = r["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            rule["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap().to_string(),
                        b["weight"].as_i64().unwrap_or(1),
                    )
                })
                .collect::<Vec<_>>()
        })
        .filter(|refs| refs.iter().all(|(n, _)| n.starts_with("shop-v")))
        .collect();
    assert!(
        rules.windows(2).all(|w| w[0] == w[1]),
        "the cluster's rules disagree: {rules:?}"
    );
    rules[0].clone()
}

/// Every rule of the cluster moves with a strategy; a rule for another app is left alone.
#[tokio::test]
async fn strategies_write_every_rule_of_the_cluster() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("docs", json!({"app": "docs"})))
        .unwrap();
    server
        .create(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": []},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}], "backendRefs": []},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
                    "backendRefs": [{"name": "docs", "port": 80}]}]}}))
        .unwrap();
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: http_route, route: shop}",
        "{type: red_black, max_history: 1}",
        "",
    );
    deploy(&cluster, &c, manifest("shop:1", 2, None), go)
        .await
        .unwrap();
    deploy(&cluster, &c, manifest("shop:2", 2, None), go)
        .await
        .unwrap();
    assert_eq!(
        weights_of(&server),
        [("shop-v001".to_string(), 100), ("shop-v000".to_string(), 0)]
    );
    let r = server.get("httproutes", NS, "shop").unwrap();
    assert_eq!(
        r["spec"]["rules"][2]["backendRefs"],
        json!([{"name": "docs", "port": 80}])
    );
    let r = promote(&cluster, &c, "shop-v000").await.unwrap();
    assert_eq!(r.previous.as_deref(), Some("shop-v001"));
    assert_eq!(
        weights_of(&server),
        [("shop-v000".to_string(), 100), ("shop-v001".to_string(), 0)]
    );
    assert_route_capacity(&server, 2);
}

#[tokio::test]
async fn a_fail_verdict_between_rolling_steps_rolls_back() {
    let server = TestServer::start().await.unwrap();
    route(&server);
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: http_route, route: shop}",
        "{type: rolling_red_black, steps: [25, 50, 75, 100]}",
        "",
    );
    deploy(&cluster, &c, manifest("shop:1", 4, None), go)
        .await
        .unwrap();
    let err = deploy(&cluster, &c, manifest("shop:2", 4, None), |p| async move {
        if p >= 50 {
            StepVerdict::Stop("error rate 4x baseline".into())
        } else {
            StepVerdict::Continue
        }
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Stopped { percent: 50, .. }), "{err}");
    assert!(
        server.get("deployments", NS, "shop-v001").is_none(),
        "failed group deleted"
    );
    let w = weights_of(&server);
    assert_eq!(w.iter().find(|(n, _)| n == "shop-v000").unwrap().1, 100);
    assert!(w.iter().all(|(n, wt)| n == "shop-v000" || *wt == 0));
    assert_route_capacity(&server, 4);
}

#[tokio::test]
async fn deploys_outside_the_window_are_refused_with_the_next_opening() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    let cluster = cluster(&server).await;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday();
    let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as i8 + 1 != today.to_monday_one_offset())
        .map(|(_, d)| d)
        .collect();
    let windows = format!("windows: {{time_zone: UTC, outside: refuse, allowed: [{{days: [{}], from: \"00:00\", to: \"24:00\"}}]}}", days.join(", "));
    let c = cfg(
        "{type: service, service: shop}",
        "{type: red_black}",
        &windows,
    );
    let err = deploy(&cluster, &c, manifest("shop:1", 1, None), go)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("outside the allowed deployment windows") && msg.contains("next window opens"),
        "{msg}"
    );
    assert!(deployer_writes(&server).is_empty());
}

#[tokio::test]
async fn red_black_over_a_route_and_promote_back() {
    let server = TestServer::start().await.unwrap();
    route(&server);
    let cluster = cluster(&server).await;
    let c = cfg(
        "{type: http_route, route: shop}",
        "{type: red_black, max_history: 1}",
        "",
    );
    deploy(&cluster, &c, manifest("shop:1", 2, None), go)
        .await
        .unwrap();
    let r = deploy(&cluster, &c, manifest("shop:2", 2, None), go)
        .await
        .unwrap();
    assert_eq!(r.previous.as_deref(), Some("shop-v000"));
    assert_eq!(
        weights_of(&server),
        [("shop-v001".to_string(), 100), ("shop-v000".to_string(), 0)]
    );
    // Each group has its own Service for weighted routing.
    let svc = server.get("services", NS, "shop-v001").unwrap();
    assert_eq!(
        svc["spec"]["selector"]["vigil.dev/server-group"],
        "shop-v001"
    );
    let r = promote(&cluster, &c, "shop-v000").await.unwrap();
    assert_eq!(r.previous.as_deref(), Some("shop-v001"));
    assert_eq!(
        weights_of(&server),
        [("shop-v000".to_string(), 100), ("shop-v001".to_string(), 0)]
    );
    assert_route_capacity(&server, 2);
}

/// Highlander deletes the older group only after the drain that follows the traffic switch, so
/// requests in flight to it finish.
#[tokio::test]
async fn older_groups_are_deleted_only_after_the_drain() {
    let server = TestServer::start().await.unwrap();
    server
        .create(service("shop", json!({"app": "nothing-yet"})))
        .unwrap();
    let cluster = cluster(&server).await;
    let c = config::parse(
        "namespace: shop\ncluster: shop\ntraffic: {type: service, service: shop}\nstrategy: {type: highlander}\nrollback: {drain_seconds: 1, ready_timeout_seconds: 5}\n",
    )
    .unwrap();
    deploy(&cluster, &c, manifest("shop:1", 1, None), go)
        .await
        .unwrap();
    // Watch the switch and the deletion from outside, with their times.
    let watching = async {
        let mut switched = None;
        loop {
            let sel = server.get("services", NS, "shop").unwrap()["spec"]["selector"]
                ["vigil.dev/server-group"]
                .clone();
            if switched.is_none() && sel == "shop-v001" {
                switched = Some(std::time::Instant::now());
            }
            if server.get("deployments", NS, "shop-v000").is_none() {
                return switched.map(|t| t.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let (r, gap) = tokio::join!(
        deploy(&cluster, &c, manifest("shop:2", 1, None), go),
        watching
    );
    assert_eq!(r.unwrap().deleted_groups, ["shop-v000"]);
    let gap = gap.expect("the switch was seen before the deletion");
    assert!(
        gap >= std::time::Duration::from_millis(900),
        "shop-v000 deleted {gap:?} after the switch"
    );
}
