//! Issue 16: a rollback succeeds only when every request reaches a ready baseline — read where
//! the test gateway would send requests (weights to ready EndpointSlice endpoints), every rule.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use vigil_deployer::rollback::{rollback, RollbackOptions};
use vigil_deployer::Error;
use vigil_kube_testserver::TestServer;

fn rule(path: &str, baseline: i64, canary: i64) -> serde_json::Value {
    json!({"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [
        {"name": "shop-baseline", "port": 80, "weight": baseline},
        {"name": "shop-canary", "port": 80, "weight": canary}]})
}

fn opts(timeout: Duration) -> RollbackOptions {
    RollbackOptions {
        ready_timeout: timeout,
        ..fast()
    }
}

/// A route with rules `/` and `/static`, both 50/50: every rule moves, not only the first.
#[tokio::test]
async fn every_rule_of_the_route_moves_to_the_baseline() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "httproutes",
            NS,
            "shop",
            json!({"spec": {"rules": [rule("/", 50, 50), rule("/static", 50, 50)]}}),
        )
        .unwrap();
    let cluster = cluster(&server).await;
    rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rule_weights(&server), vec![(100, 0), (100, 0)]);
    assert!((share_on_baseline(&server).await - 1.0).abs() < 1e-9);
    assert!(assert_route_invariant(&server, 50, 5) > 0);
}

/// The required capacity follows the rule with the largest canary share.
#[tokio::test]
async fn the_rule_with_the_largest_canary_share_sets_the_capacity() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "httproutes",
            NS,
            "shop",
            json!({"spec": {"rules": [rule("/", 90, 10), rule("/static", 50, 50)]}}),
        )
        .unwrap();
    let cluster = cluster(&server).await;
    let plan = vigil_deployer::rollback::plan_rollback(&cluster, &route_request())
        .await
        .unwrap();
    // 2 + ceil(0.5 × 6), from /static; /'s 10% would need only 2 + 1.
    assert_eq!(plan.required_replicas, 5);
}

/// The first run stops (baseline not ready), an operator deletes the canary, the rerun must still
/// move traffic: the route is 50/50 to a backend with no pods.
#[tokio::test]
async fn a_canary_deleted_by_someone_else_still_has_its_traffic_moved_on_rerun() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server.never_ready(NS, "track=baseline").unwrap();
    let cluster = cluster(&server).await;
    let e = rollback(
        &cluster,
        &route_request(),
        &opts(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::BaselineNotReady { .. }), "{e}");
    assert_eq!(weights(&server), (50, 50));
    server.delete("deployments", NS, "shop-canary").unwrap();
    server.clear_never_ready();
    rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .expect("the recorded rollback is resumed");
    assert_eq!(weights(&server), (100, 0));
    assert!((share_on_baseline(&server).await - 1.0).abs() < 1e-9);
    // Now it is finished.
    assert!(rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .is_none());
}

/// A baseline in the middle of its own rollout (new pods not ready, old ones counted) is not
/// ready: its controller may remove old pods right after the check.
#[tokio::test]
async fn a_baseline_in_the_middle_of_its_own_rollout_is_not_ready() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "deployments",
            NS,
            "shop-baseline",
            json!({"spec": {"strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"rev": "2"}}}}}),
        )
        .unwrap();
    server.never_ready(NS, "rev=2").unwrap();
    let cluster = cluster(&server).await;
    let e = rollback(&cluster, &route_request(), &opts(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BaselineNotReady { .. }), "{e}");
    assert_eq!(weights(&server), (50, 50), "traffic untouched");
}

/// `minReadySeconds`: a pod counts only once it has been ready that long (`availableReplicas`).
#[tokio::test]
async fn traffic_waits_for_available_not_just_ready_replicas() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "deployments",
            NS,
            "shop-baseline",
            json!({"spec": {"minReadySeconds": 1}}),
        )
        .unwrap();
    server
        .settle(Duration::from_millis(50), Duration::from_secs(3))
        .await;
    let cluster = cluster(&server).await;
    rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .unwrap();
    let mut checked = 0;
    server.replay(|c, snap| {
        if c.actor == USER && c.key.plural == "httproutes" {
            checked += 1;
            let d = snap.get("deployments", NS, "shop-baseline").unwrap();
            let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
            assert!(
                available >= 5,
                "traffic moved with {available} available baseline replicas"
            );
        }
    });
    assert!(checked > 0);
}

/// A baseline backend Service that does not exist is not "added as a copy of the canary's
/// entry": the rollback stops before traffic moves, naming it.
#[tokio::test]
async fn a_missing_baseline_backend_stops_the_rollback_before_traffic_moves() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server.delete("services", NS, "shop-baseline").unwrap();
    let cluster = cluster(&server).await;
    let e = rollback(
        &cluster,
        &route_request(),
        &opts(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("shop-baseline"), "{e}");
    assert_eq!(weights(&server), (50, 50), "traffic untouched");
}

/// The baseline backend's ready endpoints are what receives traffic: pods whose readiness probe
/// fails leave it, and the rollback waits instead of moving traffic to a backend without ready
/// endpoints.
#[tokio::test]
async fn traffic_waits_for_ready_endpoints_behind_the_baseline_backend() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    // The backend Service selects pods that never exist: the Deployment is ready, the backend
    // has no endpoint.
    server
        .patch(
            "services",
            NS,
            "shop-baseline",
            json!({"spec": {"selector": {"app": "shop", "track": "nothing"}}}),
        )
        .unwrap();
    let cluster = cluster(&server).await;
    let e = rollback(
        &cluster,
        &route_request(),
        &opts(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("endpoint"), "{e}");
    assert_eq!(weights(&server), (50, 50), "traffic untouched");
}

/// Service mode with a broad baseline selector (`matchLabels: {app: shop}`): moving the Service
/// to it would keep selecting the canary's pods. The target is the baseline's pod labels instead,
/// and the Service's ready endpoints are all baseline pods afterwards.
#[tokio::test]
async fn a_broad_baseline_selector_is_narrowed_to_exclude_the_canary() {
    let server = TestServer::start().await.unwrap();
    let mut b = deployment("shop-baseline", "baseline", 2, None);
    b["spec"]["selector"] = json!({"matchLabels": {"app": "shop"}});
    server.create(b).unwrap();
    server
        .create(deployment("shop-canary", "canary", 2, None))
        .unwrap();
    // A field newer than the client's typed model (k8s-openapi v1_33) must survive the move.
    let mut svc = service("shop", json!({"app": "shop"}));
    svc["spec"]["futureField"] = json!("kept");
    server.create(svc).unwrap();
    wait_ready(&server, "shop-baseline", 2).await;
    wait_ready(&server, "shop-canary", 2).await;
    let req = vigil_deployer::rollback::RollbackRequest {
        canary: vigil_deployer::cluster::GroupRef::deployment("shop-canary"),
        baseline: vigil_deployer::cluster::GroupRef::deployment("shop-baseline"),
        traffic: vigil_deployer::cluster::TrafficSpec::Service {
            service: "shop".into(),
        },
    };
    let cluster = cluster(&server).await;
    let mut after_move = Vec::new();
    let plan = vigil_deployer::rollback::plan_rollback(&cluster, &req)
        .await
        .unwrap();
    let mut progress = |r: &vigil_deployer::rollback::StepReport| {
        if r.step == vigil_deployer::rollback::Step::MoveTraffic {
            after_move
                .push(server.get("services", NS, "shop").unwrap()["spec"]["selector"].clone());
        }
    };
    vigil_deployer::rollback::execute_rollback(&cluster, &plan, &fast(), &mut progress)
        .await
        .unwrap();
    assert_eq!(
        after_move,
        vec![json!({"app": "shop", "track": "baseline"})],
        "right after the move, the Service selects only baseline pods"
    );
    assert_eq!(
        server.get("services", NS, "shop").unwrap()["spec"]["futureField"],
        "kept",
        "the selector is patched, not the Service replaced through a typed model"
    );
}

/// A 409 AlreadyExists is an answer, not a transient error: the create is not retried.
#[tokio::test]
async fn already_exists_on_create_is_not_retried() {
    let server = TestServer::start().await.unwrap();
    // `shop-v000` exists but is not one of the cluster's groups (no cluster label): the deploy
    // picks that name and its create collides.
    let mut d = deployment("shop-v000", "other", 1, None);
    d["metadata"]["labels"] = json!({"app": "other"});
    server.create(d).unwrap();
    server
        .create(service("shop", json!({"app": "none"})))
        .unwrap();
    let cluster = cluster(&server).await;
    let cfg = vigil_deployer::config::parse(
        "namespace: shop\ncluster: shop\ntraffic: {type: service, service: shop}\nstrategy: {type: red_black}\nrollback: {drain_seconds: 0, ready_timeout_seconds: 5}\n",
    )
    .unwrap();
    let manifest: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "web", "image": "shop:1"}]}}}}))
    .unwrap();
    let e = vigil_deployer::strategy::deploy(&cluster, &cfg, manifest, |_| async {
        vigil_deployer::strategy::StepVerdict::Continue
    })
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("create deployments/shop-v000"),
        "{e}"
    );
    let creates = server
        .audit()
        .iter()
        .filter(|a| {
            a.user == USER
                && a.verb == vigil_kube_testserver::Verb::Create
                && a.resource == "deployments"
        })
        .count();
    assert_eq!(creates, 1, "one attempt, no retries");
}

/// Another Service (here a headless one) selecting the canary's pods keeps sending them
/// requests until the canary is deleted: the plan names it, and the move step reports it.
#[tokio::test]
async fn other_services_selecting_canary_pods_are_reported() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let mut headless = service("shop-headless", json!({"app": "shop"}));
    headless["spec"]["clusterIP"] = json!("None");
    server.create(headless).unwrap();
    let cluster = cluster(&server).await;
    let plan = vigil_deployer::rollback::plan_rollback(&cluster, &route_request())
        .await
        .unwrap();
    assert_eq!(plan.other_services, vec!["shop-headless".to_string()]);
    assert!(plan.to_string().contains("shop-headless"));
    let report = vigil_deployer::rollback::execute_rollback(&cluster, &plan, &fast(), &mut |_| {})
        .await
        .unwrap();
    let moved = report
        .steps
        .iter()
        .find(|s| s.step == vigil_deployer::rollback::Step::MoveTraffic)
        .unwrap();
    assert!(moved.changed.contains("shop-headless"), "{}", moved.changed);
}

/// An HPA bound edited by someone during the rollback is theirs: the restore gives back only the
/// bounds that still hold what the rollback pinned.
#[tokio::test]
async fn restoring_the_hpa_keeps_edits_made_during_the_rollback() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster = cluster(&server).await;
    let plan = vigil_deployer::rollback::plan_rollback(&cluster, &route_request())
        .await
        .unwrap();
    let mut edit = |r: &vigil_deployer::rollback::StepReport| {
        if r.step == vigil_deployer::rollback::Step::PinHpa {
            server
                .patch(
                    "horizontalpodautoscalers",
                    NS,
                    "shop-baseline",
                    json!({"spec": {"maxReplicas": 20}}),
                )
                .unwrap();
        }
    };
    vigil_deployer::rollback::execute_rollback(&cluster, &plan, &fast(), &mut edit)
        .await
        .unwrap();
    let hpa = server
        .get("horizontalpodautoscalers", NS, "shop-baseline")
        .unwrap();
    assert_eq!(
        hpa["spec"]["minReplicas"], 2,
        "the pinned minimum is restored"
    );
    assert_eq!(
        hpa["spec"]["maxReplicas"], 20,
        "the operator's maximum is kept"
    );
}

/// A rolling deploy in progress holds the route's lock: a rollback by another process is refused
/// (and changes nothing) instead of racing it, which could put traffic back on a canary.
#[tokio::test]
async fn a_deploy_and_a_rollback_of_the_same_route_exclude_each_other() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let deployer = cluster(&server).await.with_identity("deploy-process");
    let other = cluster(&server).await.with_identity("rollback-process");
    // The route also carries a second app, `api`, deployed with a rolling strategy.
    let mut route = server.get("httproutes", NS, "shop").unwrap();
    route["spec"]["rules"].as_array_mut().unwrap().push(
        json!({"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": []}),
    );
    server
        .patch(
            "httproutes",
            NS,
            "shop",
            json!({"spec": route["spec"].clone()}),
        )
        .unwrap();
    let cfg = vigil_deployer::config::parse(
        "namespace: shop\ncluster: api\ntraffic: {type: http_route, route: shop}\nstrategy: {type: rolling_red_black, steps: [50, 100]}\nrollback: {drain_seconds: 0, ready_timeout_seconds: 5}\n",
    )
    .unwrap();
    let manifest: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "web", "image": "api:1"}]}}}}))
    .unwrap();
    let in_hook = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (h, r) = (in_hook.clone(), release.clone());
    let hook = move |_| {
        let (h, r) = (h.clone(), r.clone());
        async move {
            h.store(true, Ordering::SeqCst);
            while !r.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            vigil_deployer::strategy::StepVerdict::Continue
        }
    };
    // The first deploy of `api` has no previous group: no rolling steps, no hook.
    vigil_deployer::strategy::deploy(&deployer, &cfg, manifest.clone(), |_| async {
        vigil_deployer::strategy::StepVerdict::Continue
    })
    .await
    .unwrap();
    let deploying = vigil_deployer::strategy::deploy(&deployer, &cfg, manifest, hook);
    let racing = async {
        for _ in 0..2000 {
            if in_hook.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            in_hook.load(Ordering::SeqCst),
            "the deploy reached its first step"
        );
        let before = server.get("httproutes", NS, "shop").unwrap()["spec"].clone();
        let e = rollback(&other, &route_request(), &fast()).await;
        let after = server.get("httproutes", NS, "shop").unwrap()["spec"].clone();
        release.store(true, Ordering::SeqCst);
        (e, before, after)
    };
    let (_, (e, before, after)) = tokio::join!(deploying, racing);
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::Locked { holder, .. } if holder == "deploy-process"),
        "{e}"
    );
    assert_eq!(before, after, "the refused rollback changed nothing");
    assert!(
        server.get("leases", NS, "vigil-traffic-shop").is_none(),
        "released at the end"
    );
}

/// A controller that reconciles the baseline's HPA back (KEDA) between the pin and the move: the
/// pin is checked again and restored before traffic moves.
#[tokio::test]
async fn an_hpa_pin_undone_before_the_move_is_restored_first() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster = cluster(&server).await;
    let plan = vigil_deployer::rollback::plan_rollback(&cluster, &route_request())
        .await
        .unwrap();
    let mut reconcile = |r: &vigil_deployer::rollback::StepReport| {
        if r.step == vigil_deployer::rollback::Step::WaitReady {
            server
                .patch(
                    "horizontalpodautoscalers",
                    NS,
                    "shop-baseline",
                    json!({"spec": {"minReplicas": 2}}),
                )
                .unwrap();
        }
    };
    vigil_deployer::rollback::execute_rollback(&cluster, &plan, &fast(), &mut reconcile)
        .await
        .unwrap();
    let mut moves = 0;
    server.replay(|c, snap| {
        if c.actor == USER && c.key.plural == "httproutes" {
            moves += 1;
            let hpa = snap
                .get("horizontalpodautoscalers", NS, "shop-baseline")
                .unwrap();
            assert_eq!(
                hpa["spec"]["minReplicas"], 5,
                "traffic moved while the HPA minimum was {}",
                hpa["spec"]["minReplicas"]
            );
        }
    });
    assert!(moves > 0);
}
