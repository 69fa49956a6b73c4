//! The rollback scenario against a real cluster (kind). See deployer/README.md for how to run it:
//! `cargo test -p vigil-deployer --features tls --test cluster -- --ignored`.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vigil_deployer::cluster::{connect, Cluster, GroupRef, TrafficSpec};
use vigil_deployer::rollback::{plan_rollback, rollback, RollbackOptions, RollbackRequest};

fn deployment(name: &str, track: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop", "track": track}},
            "template": {"metadata": {"labels": {"app": "shop", "track": track}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn rollback_on_a_real_cluster() {
    let (client, _) = connect(None, None).await.unwrap();
    let ns = "vigil-e2e";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    for _ in 0..120 {
        if namespaces.get_opt(ns).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces.create(&PostParams::default(), &n).await.unwrap();

    let pp = PostParams::default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(&pp, &deployment("shop-baseline", "baseline", 1))
        .await
        .unwrap();
    deployments
        .create(&pp, &deployment("shop-canary", "canary", 1))
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "shop"},
        "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&pp, &svc).await.unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({"metadata": {"name": "shop-baseline"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-baseline"},
            "minReplicas": 1, "maxReplicas": 4}})).unwrap();
    hpas.create(&pp, &hpa).await.unwrap();

    let cluster = Cluster::new(client.clone(), ns);
    cluster
        .wait_group_ready(
            &GroupRef::deployment("shop-baseline"),
            1,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    cluster
        .wait_group_ready(
            &GroupRef::deployment("shop-canary"),
            1,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let req = RollbackRequest {
        canary: GroupRef::deployment("shop-canary"),
        baseline: GroupRef::deployment("shop-baseline"),
        traffic: TrafficSpec::Service {
            service: "shop".into(),
        },
    };
    let plan = plan_rollback(&cluster, &req).await.unwrap();
    assert_eq!(plan.required_replicas, 2, "1 + ceil(0.5 × 2)");
    let opts = RollbackOptions {
        drain: Duration::from_secs(1),
        ready_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    rollback(&cluster, &req, &opts).await.unwrap().unwrap();
    let svc = services.get("shop").await.unwrap();
    assert_eq!(svc.spec.unwrap().selector.unwrap()["track"], "baseline");
    assert!(deployments.get_opt("shop-canary").await.unwrap().is_none());
    assert_eq!(
        hpas.get("shop-baseline")
            .await
            .unwrap()
            .spec
            .unwrap()
            .min_replicas,
        Some(1)
    );
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
}
