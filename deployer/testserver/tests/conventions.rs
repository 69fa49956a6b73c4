//! The test server, driven by kube's real client, follows the API conventions a deployer relies on.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::Client;
use serde_json::json;
use vigil_kube_testserver::{Fault, TestServer, Verb};

async fn client(server: &TestServer) -> Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    Client::try_from(config).unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "shop"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop", "group": name}},
            "template": {"metadata": {"labels": {"app": "shop", "group": name}},
                "spec": {"containers": [{"name": "web", "image": "shop:1"}]}}},
    }))
    .unwrap()
}

async fn wait_ready(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    for _ in 0..3000 {
        let d = api.get(name).await.unwrap();
        let st = d.status.clone().unwrap_or_default();
        if st.ready_replicas == Some(replicas) && st.observed_generation == d.metadata.generation {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deployment {name} never became ready with {replicas} replicas");
}

#[tokio::test]
async fn deployment_controller_creates_ready_pods_and_tracks_generation() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    let created = api
        .create(&PostParams::default(), &deployment("shop-v001", 3))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    wait_ready(&api, "shop-v001", 3).await;
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "default");
    let listed = pods
        .list(&ListParams::default().labels("group=shop-v001"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);

    // Scaling through the scale subresource bumps the generation; readiness follows.
    api.patch_scale(
        "shop-v001",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let d = api.get("shop-v001").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    wait_ready(&api, "shop-v001", 5).await;
    let scale = api.get_scale("shop-v001").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));

    // Annotations are metadata: no generation bump.
    api.patch(
        "shop-v001",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("shop-v001").await.unwrap().metadata.generation,
        Some(2)
    );
}

#[tokio::test]
async fn stale_replace_is_a_conflict() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "1"}})).unwrap();
    let first = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut a = first.clone();
    a.data = Some([("k".to_string(), "2".to_string())].into());
    let after_a = api
        .replace("cfg", &PostParams::default(), &a)
        .await
        .unwrap();
    let rv_a: u64 = after_a
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let rv_0: u64 = first
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv_a > rv_0);
    let mut b = first.clone();
    b.data = Some([("k".to_string(), "3".to_string())].into());
    match api.replace("cfg", &PostParams::default(), &b).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(api.get("cfg").await.unwrap().data.unwrap()["k"], "2");
    match api.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[tokio::test]
async fn delete_cascades_to_replicasets_and_pods_unless_orphaned() {
    let server = TestServer::start().await.unwrap();
    let c = client(&server).await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &deployment("a", 2))
        .await
        .unwrap();
    api.create(&PostParams::default(), &deployment("b", 2))
        .await
        .unwrap();
    wait_ready(&api, "a", 2).await;
    wait_ready(&api, "b", 2).await;
    api.delete("a", &DeleteParams::background()).await.unwrap();
    api.delete("b", &DeleteParams::orphan()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c, "default");
    assert_eq!(
        pods.list(&ListParams::default().labels("group=a"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    let orphans = pods
        .list(&ListParams::default().labels("group=b"))
        .await
        .unwrap()
        .items;
    assert_eq!(orphans.len(), 2);
    assert_eq!(server.list("replicasets", "default").len(), 1);
}

#[tokio::test]
async fn hpa_clamps_target_replicas() {
    let server = TestServer::start().await.unwrap();
    let c = client(&server).await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 3, "maxReplicas": 4},
    }))
    .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c, "default");
    hpas.create(&PostParams::default(), &hpa).await.unwrap();
    wait_ready(&api, "web", 3).await;
    server.set_hpa_desired("default", "web", 10);
    wait_ready(&api, "web", 4).await;
    // min > max is rejected the way the real API rejects it.
    let bad = hpas
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReplicas": 5}})),
        )
        .await;
    assert!(matches!(bad, Err(kube::Error::Api(s)) if s.code == 422));
}

#[tokio::test]
async fn watch_resumes_and_faults_fire_and_are_audited() {
    let server = TestServer::start().await.unwrap();
    let c = client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    for i in 0..3 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("c{i}"), "labels": {"n": i.to_string()}}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    use futures_util::StreamExt;
    let stream = api
        .watch(&WatchParams::default().labels("n in (0,2)").timeout(1), &rv)
        .await
        .unwrap();
    let events: Vec<_> = stream.take(2).collect().await;
    let names: Vec<String> = events
        .into_iter()
        .map(|e| match e.unwrap() {
            WatchEvent::Added(cm) => cm.metadata.name.unwrap(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, ["c0", "c2"]);

    server.inject(Fault::drop_watch_after(1));
    let stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap();
    let events: Vec<_> = stream.collect().await;
    assert_eq!(events.len(), 1, "the dropped watch ends after one event");

    server.inject(Fault::status(500).verb(Verb::Get).name("c1").times(1));
    assert!(api.get("c1").await.is_err());
    assert!(api.get("c1").await.is_ok());
    let audit = server.audit();
    let gets: Vec<u16> = audit
        .iter()
        .filter(|a| a.verb == Verb::Get)
        .map(|a| a.status)
        .collect();
    assert_eq!(gets, [500, 200]);
    assert!(audit
        .iter()
        .any(|a| a.verb == Verb::Watch && a.resource == "configmaps"));
}

#[tokio::test]
async fn json_strategic_and_apply_patches() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    // Server-side apply creates a missing object.
    let applied = api
        .patch(
            "web",
            &PatchParams::apply("vigil").force(),
            &Patch::Apply(deployment("web", 1)),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    // Strategic merge merges containers by name instead of replacing the list.
    let sidecar = json!({"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(sidecar))
        .await
        .unwrap();
    let names: Vec<String> = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["web", "proxy"]);
    // JSON patch with a failing test op is rejected and changes nothing.
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 7},
        {"op": "replace", "path": "/spec/replicas", "value": 9}]))
    .unwrap();
    assert!(api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(p))
        .await
        .is_err());
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 2}]))
    .unwrap();
    let d = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(p))
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}});
    match api
        .patch("web", &PatchParams::default(), &Patch::Merge(stale))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
}
