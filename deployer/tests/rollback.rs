//! Rollback scenarios against the test API server, through kube's real client.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use vigil_deployer::cluster::{GroupRef, TrafficSpec};
use vigil_deployer::rollback::{
    execute_rollback, plan_rollback, rollback, RollbackOptions, RollbackRequest, Step,
};
use vigil_deployer::{Error, ROLLBACK_ANNOTATION};
use vigil_kube_testserver::{Fault, TestServer, Verb};

#[derive(Debug, PartialEq)]
struct EndState {
    weights: (i64, i64),
    canary_exists: bool,
    canary_hpa_exists: bool,
    baseline_hpa: (i64, i64),
    baseline_replicas: i64,
    baseline_record: bool,
    configmaps: Vec<String>,
}

fn end_state(server: &TestServer) -> EndState {
    let hpa = server
        .get("horizontalpodautoscalers", NS, "shop-baseline")
        .unwrap();
    let baseline = server.get("deployments", NS, "shop-baseline").unwrap();
    let mut configmaps: Vec<String> = server
        .list("configmaps", NS)
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    configmaps.sort();
    EndState {
        weights: weights(server),
        canary_exists: server.get("deployments", NS, "shop-canary").is_some(),
        canary_hpa_exists: server
            .get("horizontalpodautoscalers", NS, "shop-canary")
            .is_some(),
        baseline_hpa: (
            hpa["spec"]["minReplicas"].as_i64().unwrap(),
            hpa["spec"]["maxReplicas"].as_i64().unwrap(),
        ),
        baseline_replicas: baseline["spec"]["replicas"].as_i64().unwrap(),
        baseline_record: baseline["metadata"]["annotations"][ROLLBACK_ANNOTATION].is_string(),
        configmaps,
    }
}

/// The end state every complete rollback of the standard shop (baseline 2 under HPA min 2,
/// canary 4, 50/50) must reach: all traffic on a baseline of 2 + ceil(0.5 × 6) = 5 replicas, the
/// canary, its HPA and its config version gone, the baseline HPA's bounds and record restored.
fn expected_end_state() -> EndState {
    EndState {
        weights: (100, 0),
        canary_exists: false,
        canary_hpa_exists: false,
        baseline_hpa: (2, 10),
        baseline_replicas: 5,
        baseline_record: false,
        configmaps: vec!["shop-config-v001".into()],
    }
}

#[tokio::test]
async fn failed_canary_under_an_hpa_that_shrank_the_baseline() {
    let server = TestServer::start().await.unwrap();
    // The canary took half the traffic, so the autoscaler shrank the baseline to its minimum of 2.
    shop_with_route(&server, 2, 4, (50, 50)).await;
    // Its metrics still say 2: without a pinned minimum it would undo any resize at once.
    server.set_hpa_desired(NS, "shop-baseline", 2);
    let cluster = cluster(&server).await;

    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    assert_eq!(plan.required_replicas, 5);
    assert!(!plan.resumed);
    // Once traffic moves, the baseline's metrics ask for the capacity it now needs.
    let mut metrics_follow_traffic = |r: &vigil_deployer::rollback::StepReport| {
        if r.step == Step::MoveTraffic {
            server.set_hpa_desired(NS, "shop-baseline", 5);
        }
    };
    let report = execute_rollback(&cluster, &plan, &fast(), &mut metrics_follow_traffic)
        .await
        .unwrap();
    let steps: Vec<Step> = report.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, Step::ALL);

    assert_eq!(weights(&server), (100, 0));
    assert!(server.get("deployments", NS, "shop-canary").is_none());
    assert!(server
        .get("horizontalpodautoscalers", NS, "shop-canary")
        .is_none());
    assert!(
        server.get("configmaps", NS, "shop-config-v002").is_none(),
        "the canary's config version is collected"
    );
    assert!(
        server.get("configmaps", NS, "shop-config-v001").is_some(),
        "the baseline's config is kept"
    );
    let hpa = server
        .get("horizontalpodautoscalers", NS, "shop-baseline")
        .unwrap();
    assert_eq!(hpa["spec"]["minReplicas"], 2, "HPA minimum restored");
    let checked = assert_route_invariant(&server, 50, 5);
    assert!(checked > 0, "the invariant was exercised");
    server
        .settle(Duration::from_millis(50), Duration::from_secs(2))
        .await;
    assert_eq!(
        server.get("deployments", NS, "shop-baseline").unwrap()["spec"]["replicas"],
        5
    );

    // While traffic moved, the HPA minimum was pinned at the required capacity.
    let mut min_when_moved = None;
    server.replay(|c, snap| {
        if c.key.plural == "httproutes" && c.actor == USER && min_when_moved.is_none() {
            let h = snap
                .get("horizontalpodautoscalers", NS, "shop-baseline")
                .unwrap();
            min_when_moved = h["spec"]["minReplicas"].as_i64();
        }
    });
    assert_eq!(min_when_moved, Some(5));

    // The canary is deleted only after traffic left it.
    let writes = deployer_writes(&server);
    let moved = writes
        .iter()
        .position(|w| w.starts_with("update httproutes/shop"))
        .unwrap();
    let deleted = writes
        .iter()
        .position(|w| w == "delete deployments/shop-canary")
        .unwrap();
    assert!(moved < deleted, "{writes:?}");
}

#[tokio::test]
async fn a_baseline_that_never_becomes_ready_stops_the_rollback_with_traffic_untouched() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    // New baseline pods never pass readiness (say, the node pool is out of capacity).
    server.never_ready(NS, "track=baseline").unwrap();
    let cluster = cluster(&server).await;
    let mut opts = fast();
    opts.ready_timeout = Duration::from_millis(400);

    let err = rollback(&cluster, &route_request(), &opts)
        .await
        .unwrap_err();
    match err {
        Error::BaselineNotReady {
            ready, required, ..
        } => assert_eq!((ready, required), (2, 5)),
        other => panic!("expected BaselineNotReady, got {other}"),
    }
    assert_eq!(weights(&server), (50, 50), "traffic untouched");
    assert!(
        server.get("deployments", NS, "shop-canary").is_some(),
        "canary kept"
    );
    assert!(
        !deployer_writes(&server)
            .iter()
            .any(|w| w.contains("httproutes")),
        "no write to the route"
    );
    // The record stays, so a later run resumes once the baseline is fixed.
    let canary = server.get("deployments", NS, "shop-canary").unwrap();
    assert!(canary["metadata"]["annotations"][ROLLBACK_ANNOTATION].is_string());
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    assert!(plan.resumed);
}

/// Runs the rollback with the process "dying" after its k-th write (every later write fails, as
/// if nothing more was sent), reruns it cleanly, and checks the end state and the invariant.
async fn interrupt_after_every_write(traffic_steps: &[u32]) {
    let opts = RollbackOptions {
        traffic_steps: traffic_steps.to_vec(),
        ..fast()
    };
    // A clean run counts the writes.
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster_clean = cluster(&server).await;
    rollback(&cluster_clean, &route_request(), &opts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end_state(&server), expected_end_state());
    let total = deployer_writes(&server).len();
    assert!(total >= 9, "{:?}", deployer_writes(&server));

    for k in 0..total {
        let server = TestServer::start().await.unwrap();
        shop_with_route(&server, 2, 4, (50, 50)).await;
        let cluster = cluster(&server).await;
        server.inject(Fault::every_write_after(k));
        let first = rollback(&cluster, &route_request(), &opts).await;
        // The HPA controller races the deployer (it may resize the baseline first, making the
        // resize a no-op), so a run can need fewer writes than the clean one; then the fault never
        // fired and the first run simply succeeds.
        // The last write releases the traffic lock; its failure is only logged (the Lease
        // expires by itself), so it does not fail the run.
        let failed_writes = server
            .audit()
            .iter()
            .filter(|a| {
                a.verb.is_write()
                    && a.status == 500
                    && !(a.resource == "leases" && a.verb == Verb::Delete)
            })
            .count();
        assert_eq!(first.is_err(), failed_writes > 0, "write {k}: {first:?}");
        server.clear_faults();
        let second = rollback(&cluster, &route_request(), &opts).await;
        assert!(second.is_ok(), "rerun after write {k}: {second:?}");
        assert_eq!(
            end_state(&server),
            expected_end_state(),
            "after interruption at write {k}"
        );
        assert_route_invariant(&server, 50, 5);
        // A third run finds nothing to do.
        assert!(rollback(&cluster, &route_request(), &opts)
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn rollback_interrupted_after_every_write_finishes_on_rerun() {
    interrupt_after_every_write(&[]).await;
}

#[tokio::test]
async fn stepped_rollback_interrupted_after_every_write_finishes_on_rerun() {
    interrupt_after_every_write(&[50, 100]).await;
}

/// Traffic leaves the failing canary in steps as baseline pods become ready one by one, each step
/// only once the baseline has the ready replicas for its new share.
#[tokio::test]
async fn stepped_rollback_moves_traffic_as_capacity_becomes_ready() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server.set_ready_stagger(Duration::from_millis(300));
    let cluster = cluster(&server).await;
    let opts = RollbackOptions {
        traffic_steps: vec![20, 60, 100],
        ..fast()
    };
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    let calls = plan.api_calls(&opts).unwrap().join("\n");
    assert!(
        calls.contains("weights canary=50 baseline=50 -> weights canary=40 baseline=60"),
        "{calls}"
    );
    execute_rollback(&cluster, &plan, &opts, &mut |_| {})
        .await
        .unwrap();
    let updates: Vec<(i64, i64)> = server
        .history()
        .iter()
        .filter(|c| c.actor == USER && c.key.plural == "httproutes")
        .map(|c| {
            let w = |i: usize| {
                c.object["spec"]["rules"][0]["backendRefs"][i]["weight"]
                    .as_i64()
                    .unwrap()
            };
            (w(0), w(1))
        })
        .collect();
    // (baseline, canary): 50 + 20% of 50, 50 + 60% of 50, all.
    assert_eq!(updates, [(60, 40), (80, 20), (100, 0)]);
    assert_route_invariant(&server, 50, 5);
    // The first step went out before the baseline had all 5 replicas ready: earlier relief.
    let mut early = false;
    server.replay(|c, snap| {
        if c.actor == USER
            && c.key.plural == "httproutes"
            && ready_behind(snap, "shop-baseline") < 5
        {
            early = true;
        }
    });
    assert!(early, "the first step should not wait for full capacity");
    assert_eq!(end_state(&server), expected_end_state());
}

/// Cancels the rollback future right after each step completes (a process killed between steps)
/// and reruns it.
#[tokio::test]
async fn rollback_cancelled_after_every_step_finishes_on_rerun() {
    for stop_after in Step::ALL {
        let server = TestServer::start().await.unwrap();
        shop_with_route(&server, 2, 4, (50, 50)).await;
        let cluster = cluster(&server).await;
        let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let mut on_step = move |r: &vigil_deployer::rollback::StepReport| {
            if r.step == stop_after {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        };
        let opts = fast();
        tokio::select! {
            _ = execute_rollback(&cluster, &plan, &opts, &mut on_step) => {
                assert_eq!(stop_after, Step::RestoreHpa, "only the last step can finish before the cancel");
            }
            _ = rx => {}
        }
        let rerun = rollback(&cluster, &route_request(), &fast()).await;
        match rerun {
            Ok(Some(report)) => {
                if stop_after >= Step::RemoveCanary {
                    assert!(report.plan.resumed);
                }
            }
            Ok(None) => assert!(
                stop_after >= Step::RemoveCanary,
                "stopped after {stop_after}"
            ),
            Err(e) => panic!("rerun after {stop_after}: {e}"),
        }
        assert_eq!(
            end_state(&server),
            expected_end_state(),
            "after cancel at {stop_after}"
        );
        assert_route_invariant(&server, 50, 5);
    }
}

#[tokio::test]
async fn transient_errors_and_a_dropping_watch_are_absorbed() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server.inject(
        Fault::status(409)
            .verb(Verb::Update)
            .resource("httproutes")
            .times(1),
    );
    // The canary's scale-down always happens (the baseline's resize may be done by its HPA first).
    server.inject(
        Fault::status(500)
            .verb(Verb::Patch)
            .resource("deployments/scale")
            .name("shop-canary")
            .times(2),
    );
    server.inject(Fault::drop_watch_after(1).resource("deployments").times(3));
    server.inject(
        Fault::delay(Duration::from_millis(50))
            .verb(Verb::Get)
            .resource("horizontalpodautoscalers")
            .times(2),
    );
    let cluster = cluster(&server).await;
    rollback(&cluster, &route_request(), &fast()).await.unwrap();
    assert_eq!(end_state(&server), expected_end_state());
    let failed: Vec<u16> = server
        .audit()
        .iter()
        // A 404 is an answer (the traffic lock's Lease does not exist yet), not a failure.
        .filter(|a| a.status >= 400 && a.status != 404)
        .map(|a| a.status)
        .collect();
    assert_eq!(failed, [409, 500, 500]);
}

#[tokio::test]
async fn dry_run_plans_without_writing() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster = cluster(&server).await;
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    assert!(deployer_verbs(&server).iter().all(|v| !v.is_write()));
    let calls = plan.api_calls(&fast()).unwrap();
    let text = calls.join("\n");
    assert!(
        text.contains("horizontalpodautoscalers/shop-baseline  (merge: minReplicas 2 -> 5"),
        "{text}"
    );
    assert!(
        text.contains("deployments/shop-baseline/scale  (merge: replicas 2 -> 5)"),
        "{text}"
    );
    assert!(
        text.contains("weights canary=50 baseline=50 -> weights canary=0 baseline=100"),
        "{text}"
    );
    assert!(
        text.contains("DELETE /api/v1/namespaces/shop/configmaps/shop-config-v002"),
        "{text}"
    );
    let order = |needle: &str| calls.iter().position(|c| c.contains(needle)).unwrap();
    assert!(order("WATCH") < order("PUT"));
    assert!(order("PUT") < order("DELETE /apis/apps/v1"));
    let shown = plan.to_string();
    assert!(
        shown.contains("required ready baseline replicas before traffic moves: 5"),
        "{shown}"
    );
}

#[tokio::test]
async fn service_selector_rollback_moves_the_selector_after_the_baseline_is_ready() {
    let server = TestServer::start().await.unwrap();
    server
        .create(deployment("shop-v001", "v001", 3, None))
        .unwrap();
    server
        .create(deployment("shop-v002", "v002", 3, None))
        .unwrap();
    // One Service over both groups: the canary gets half of the traffic.
    server
        .create(service("shop", json!({"app": "shop"})))
        .unwrap();
    wait_ready(&server, "shop-v001", 3).await;
    wait_ready(&server, "shop-v002", 3).await;
    let cluster = cluster(&server).await;
    let req = RollbackRequest {
        canary: GroupRef::deployment("shop-v002"),
        baseline: GroupRef::deployment("shop-v001"),
        traffic: TrafficSpec::Service {
            service: "shop".into(),
        },
    };
    let plan = plan_rollback(&cluster, &req).await.unwrap();
    assert_eq!(plan.required_replicas, 3 + 3, "3 + ceil(0.5 × 6)");
    let stepped = RollbackOptions {
        traffic_steps: vec![50, 100],
        ..fast()
    };
    let err = plan.api_calls(&stepped).unwrap_err().to_string();
    assert!(err.contains("traffic_steps"), "{err}");
    execute_rollback(&cluster, &plan, &fast(), &mut |_| {})
        .await
        .unwrap();
    let svc = server.get("services", NS, "shop").unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "shop", "track": "v001"})
    );
    assert!(server.get("deployments", NS, "shop-v002").is_none());
    // Invariant: once the Service stops selecting the canary, the baseline has 6 ready pods.
    let mut checked = 0;
    server.replay(|c, snap| {
        let Some(svc) = snap.get("services", NS, "shop") else {
            return;
        };
        if svc["spec"]["selector"]["track"] == "v001" {
            checked += 1;
            let ready = ready_with(snap, "app=shop,track=v001");
            assert!(
                ready >= 6,
                "at rv {} the Service routes to {ready} ready pods",
                c.resource_version
            );
        }
    });
    assert!(checked > 0);
}

/// The invariant check itself must be able to fail: a naive rollback that flips the route first
/// (what flagger users reported) is caught.
#[tokio::test]
async fn invariant_check_catches_traffic_moved_to_a_shrunk_baseline() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "httproutes",
            NS,
            "shop",
            json!({"spec": {"rules": [{"backendRefs": [
            {"name": "shop-baseline", "port": 80, "weight": 100},
            {"name": "shop-canary", "port": 80, "weight": 0}]}]}}),
        )
        .unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_route_invariant(&server, 50, 5)
    }));
    assert!(caught.is_err());
}

/// Plain-named ReplicaSet server groups (no Deployment above them), under one Service.
#[tokio::test]
async fn replicaset_server_groups_roll_back_through_their_scale_subresource() {
    let server = TestServer::start().await.unwrap();
    replicaset_app(&server).await;
    let cluster = cluster(&server).await;
    let req = RollbackRequest {
        canary: GroupRef::replica_set("app-canary"),
        baseline: GroupRef::replica_set("app-baseline"),
        traffic: TrafficSpec::Service {
            service: "app".into(),
        },
    };
    let plan = plan_rollback(&cluster, &req).await.unwrap();
    // The canary serves 3 of 4 ready pods: 1 + ceil(0.75 × 4) = 4.
    assert_eq!(plan.required_replicas, 4);
    execute_rollback(&cluster, &plan, &fast(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        server.get("replicasets", NS, "app-baseline").unwrap()["spec"]["replicas"],
        4
    );
    assert!(server.get("replicasets", NS, "app-canary").is_none());
    assert!(server
        .get("horizontalpodautoscalers", NS, "app-canary")
        .is_none());
    let svc = server.get("services", NS, "app").unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "app", "track": "baseline"})
    );
    let audit = server.audit();
    assert!(audit.iter().any(|a| a.user == USER
        && a.resource == "replicasets/scale"
        && a.name.as_deref() == Some("app-baseline")));
    // The canary's pods went with it (background propagation).
    assert_eq!(ready_with(&server.snapshot(), "track=canary"), 0);
}

/// A request the server holds longer than the client's read timeout fails on the client side and
/// is retried; the rollback still completes.
#[tokio::test]
async fn a_request_that_times_out_is_retried() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig(NS, USER)).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.read_timeout = Some(Duration::from_millis(500));
    let client = kube::Client::try_from(config).unwrap();
    let cluster = vigil_deployer::cluster::Cluster::new(client, NS)
        .with_retries(3, Duration::from_millis(5))
        .with_poll(Duration::from_millis(10));
    server.inject(
        Fault::delay(Duration::from_secs(10))
            .verb(Verb::Get)
            .resource("httproutes")
            .times(1),
    );
    let start = std::time::Instant::now();
    rollback(&cluster, &route_request(), &fast()).await.unwrap();
    // The held request cost one client timeout, not the server's 10 s.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(end_state(&server), expected_end_state());
}

/// When the capacity needed exceeds the baseline HPA's maximum, the maximum is raised for the
/// rollback too (a minimum above the maximum is invalid), and both are restored afterwards.
#[tokio::test]
async fn an_hpa_maximum_below_the_required_capacity_is_raised_then_restored() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    server
        .patch(
            "horizontalpodautoscalers",
            NS,
            "shop-baseline",
            json!({"spec": {"maxReplicas": 3}}),
        )
        .unwrap();
    let cluster = cluster(&server).await;
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    assert_eq!(plan.required_replicas, 5);
    execute_rollback(&cluster, &plan, &fast(), &mut |_| {})
        .await
        .unwrap();
    let mut pinned = None;
    server.replay(|c, _| {
        if c.actor == USER && c.key.plural == "horizontalpodautoscalers" && pinned.is_none() {
            pinned = Some((
                c.object["spec"]["minReplicas"].clone(),
                c.object["spec"]["maxReplicas"].clone(),
            ));
        }
    });
    assert_eq!(pinned, Some((json!(5), json!(5))));
    let hpa = server
        .get("horizontalpodautoscalers", NS, "shop-baseline")
        .unwrap();
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(2), json!(3))
    );
    assert_route_invariant(&server, 50, 5);
}

/// Two plain-named ReplicaSets under one Service selecting both: baseline 1, canary 3 (with an HPA).
async fn replicaset_app(server: &TestServer) {
    for (name, track, replicas) in [("app-baseline", "baseline", 1), ("app-canary", "canary", 3)] {
        server
            .create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app", "track": track}},
                    "template": {"metadata": {"labels": {"app": "app", "track": track}},
                        "spec": {"containers": [{"name": "web", "image": "app"}]}}}}))
            .unwrap();
    }
    server
        .create(service("app", json!({"app": "app"})))
        .unwrap();
    server
        .create(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "app-canary", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-canary"},
                "minReplicas": 3, "maxReplicas": 5}}))
        .unwrap();
    for (name, replicas) in [("app-baseline", 1), ("app-canary", 3)] {
        for _ in 0..3000 {
            let rs = server.get("replicasets", NS, name).unwrap();
            if rs["status"]["readyReplicas"] == replicas {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn replicaset_request() -> RollbackRequest {
    RollbackRequest {
        canary: GroupRef::replica_set("app-canary"),
        baseline: GroupRef::replica_set("app-baseline"),
        traffic: TrafficSpec::Service {
            service: "app".into(),
        },
    }
}

/// The Service-selector path, interrupted after every write: same end state, and the Service
/// never selects only the baseline while it has fewer than the required 4 ready pods.
#[tokio::test]
async fn service_selector_rollback_interrupted_after_every_write_finishes_on_rerun() {
    let clean = TestServer::start().await.unwrap();
    replicaset_app(&clean).await;
    rollback(&cluster(&clean).await, &replicaset_request(), &fast())
        .await
        .unwrap()
        .unwrap();
    let total = deployer_writes(&clean).len();
    let end = |server: &TestServer| {
        (
            server.get("services", NS, "app").unwrap()["spec"]["selector"].clone(),
            server.get("replicasets", NS, "app-baseline").unwrap()["spec"]["replicas"].clone(),
            server.get("replicasets", NS, "app-canary").is_some(),
            server
                .get("horizontalpodautoscalers", NS, "app-canary")
                .is_some(),
        )
    };
    let expected = (
        json!({"app": "app", "track": "baseline"}),
        json!(4),
        false,
        false,
    );
    assert_eq!(end(&clean), expected);
    for k in 0..total {
        let server = TestServer::start().await.unwrap();
        replicaset_app(&server).await;
        let cluster = cluster(&server).await;
        server.inject(Fault::every_write_after(k));
        let first = rollback(&cluster, &replicaset_request(), &fast()).await;
        // The last write releases the traffic lock; its failure is only logged.
        assert!(first.is_err() || k + 1 == total, "write {k}");
        server.clear_faults();
        rollback(&cluster, &replicaset_request(), &fast())
            .await
            .unwrap();
        assert_eq!(end(&server), expected, "after interruption at write {k}");
        server.replay(|c, snap| {
            let Some(svc) = snap.get("services", NS, "app") else {
                return;
            };
            if svc["spec"]["selector"]["track"] == "baseline" {
                let ready = ready_with(snap, "app=app,track=baseline");
                assert!(
                    ready >= 4,
                    "write {k}: at rv {} the Service selects {ready} ready pods",
                    c.resource_version
                );
            }
        });
    }
}

/// The forensic retention deadline is recorded on the canary: a run killed while waiting resumes
/// with only the rest of the wait, and the canary is kept (at 0 replicas) until then.
#[tokio::test]
async fn retention_survives_a_restart() {
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster = cluster(&server).await;
    let opts = RollbackOptions {
        retention: Duration::from_secs(3),
        ..fast()
    };
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    assert!(plan
        .api_calls(&opts)
        .unwrap()
        .iter()
        .any(|c| c.contains("vigil.dev/retain-until")));
    // Killed 1 s into the retention: the rerun waits the 2 s left, not 3 s.
    let mut noop = |_: &vigil_deployer::rollback::StepReport| {};
    let retaining = async {
        while !server.get("deployments", NS, "shop-canary").unwrap()["metadata"]["annotations"]
            ["vigil.dev/retain-until"]
            .is_string()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    tokio::select! {
        r = execute_rollback(&cluster, &plan, &opts, &mut noop) => panic!("finished during retention: {r:?}"),
        _ = retaining => {}
    }
    let canary = server.get("deployments", NS, "shop-canary").unwrap();
    assert_eq!(canary["spec"]["replicas"], 0);
    let start = std::time::Instant::now();
    rollback(&cluster, &route_request(), &opts)
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2800),
        "waited {took:?}, not just the rest"
    );
    assert!(took >= Duration::from_millis(1500), "waited only {took:?}");
    assert_eq!(end_state(&server), expected_end_state());
}

/// The drain is cancellable: a cancelled run stops at once with `Cancelled` (traffic already on
/// the baseline, canary kept), and running the same rollback again finishes it.
#[tokio::test]
async fn a_cancelled_drain_stops_at_once_and_the_rerun_finishes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let server = TestServer::start().await.unwrap();
    shop_with_route(&server, 2, 4, (50, 50)).await;
    let cluster = cluster(&server).await;
    let plan = plan_rollback(&cluster, &route_request()).await.unwrap();
    let opts = RollbackOptions {
        drain: Duration::from_secs(30),
        ..fast()
    };
    let moved = Arc::new(AtomicBool::new(false));
    let flag = moved.clone();
    let mut progress = move |r: &vigil_deployer::rollback::StepReport| {
        if r.step == Step::MoveTraffic {
            flag.store(true, Ordering::SeqCst);
        }
    };
    let cancel = async move {
        while !moved.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let start = std::time::Instant::now();
    let e = vigil_deployer::rollback::execute_rollback_until(
        &cluster,
        &plan,
        &opts,
        &mut progress,
        cancel,
    )
    .await
    .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(&e, Error::Cancelled { step } if step == "drain"),
        "{e}"
    );
    assert_eq!(weights(&server), (100, 0));
    assert!(server.get("deployments", NS, "shop-canary").is_some());
    rollback(&cluster, &route_request(), &fast())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end_state(&server), expected_end_state());
}
