//! The test server, driven by kube's real client, follows the API conventions a deployer relies on.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

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
    // Background: the garbage collector removes the dependents after the owner.
    until("a's pods to be collected", || {
        server
            .list("pods", "default")
            .iter()
            .all(|p| p["metadata"]["labels"]["group"] != "a")
    })
    .await;
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

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// kube-controller-manager's rolling update: with replicas 4, maxSurge 1 and maxUnavailable 1,
/// there are never more than 5 pods and never fewer than 3 available, at any point of the history.
#[tokio::test]
async fn rolling_update_honours_max_surge_and_max_unavailable() {
    let server = TestServer::start().await.unwrap();
    let mut d = serde_json::to_value(deployment("web", 4)).unwrap();
    d["metadata"]["namespace"] = json!("default");
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    server.create(d).unwrap();
    let api: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    wait_ready(&api, "web", 4).await;
    let from = server.history().len();
    server.set_ready_stagger(Duration::from_millis(20));
    server
        .patch(
            "deployments",
            "default",
            "web",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "shop:2"}]}}}}),
        )
        .unwrap();
    until("the rollout to complete", || {
        let d = server.get("deployments", "default", "web").unwrap();
        d["status"]["updatedReplicas"] == 4
            && d["status"]["replicas"] == 4
            && d["status"]["availableReplicas"] == 4
            && d["status"]["observedGeneration"] == d["metadata"]["generation"]
    })
    .await;
    let mut states = 0;
    let mut mid_rollout = 0;
    let mut index = 0;
    server.replay(|_, snap| {
        index += 1;
        if index <= from {
            return;
        }
        states += 1;
        // Terminating pods are not counted against maxSurge, as in kube-controller-manager
        // (before the alpha Deployment `podReplacementPolicy`).
        let pods: Vec<_> = snap
            .list(
                "pods",
                "default",
                &vigil_kube_testserver::LabelSelector::parse("group=web").unwrap(),
            )
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        assert!(
            pods.len() <= 5,
            "{} pods exceed replicas + maxSurge",
            pods.len()
        );
        let rs = snap.list(
            "replicasets",
            "default",
            &vigil_kube_testserver::LabelSelector::parse("group=web").unwrap(),
        );
        let available: i64 = rs
            .iter()
            .map(|r| int(&r["status"]["availableReplicas"]))
            .sum();
        let ready = pods
            .iter()
            .filter(|p| vigil_kube_testserver::store::pod_is_ready(p))
            .count();
        assert!(
            ready >= 3,
            "only {ready} ready pods: more than maxUnavailable gone"
        );
        if rs.len() == 2 && available >= 3 {
            mid_rollout += 1;
        }
        let d = snap.get("deployments", "default", "web").unwrap();
        if int(&d["status"]["updatedReplicas"]) < 4 {
            assert!(int(&d["status"]["updatedReplicas"]) <= int(&d["status"]["replicas"]));
        }
    });
    assert!(
        states > 10 && mid_rollout > 0,
        "the rollout was observed ({states} states)"
    );
}

/// `availableReplicas` counts pods Ready for at least `minReadySeconds`; `readyReplicas` does not
/// wait.
#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let server = TestServer::start().await.unwrap();
    let mut d = serde_json::to_value(deployment("web", 2)).unwrap();
    d["metadata"]["namespace"] = json!("default");
    d["spec"]["minReadySeconds"] = json!(1);
    server.create(d).unwrap();
    until("ready pods", || {
        server.get("deployments", "default", "web").unwrap()["status"]["readyReplicas"] == 2
    })
    .await;
    let d = server.get("deployments", "default", "web").unwrap();
    assert_eq!(
        d["status"]["availableReplicas"], 0,
        "ready, but not yet for minReadySeconds"
    );
    let start = std::time::Instant::now();
    until("available pods", || {
        server.get("deployments", "default", "web").unwrap()["status"]["availableReplicas"] == 2
    })
    .await;
    assert!(start.elapsed() >= Duration::from_millis(700));
}

fn service(name: &str, selector: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"port": 80}]}})
}

/// EndpointSlices list a Service's pods with their readiness; a pod whose probe fails turns
/// unready and leaves the ready endpoints.
#[tokio::test]
async fn endpointslices_follow_pod_readiness() {
    let server = TestServer::start().await.unwrap();
    let mut d = serde_json::to_value(deployment("web", 3)).unwrap();
    d["metadata"]["namespace"] = json!("default");
    server.create(d).unwrap();
    server
        .create(service("web", json!({"group": "web"})))
        .unwrap();
    until("3 ready endpoints", || {
        server.snapshot().ready_endpoints("default", "web").len() == 3
    })
    .await;
    let slices = server.list("endpointslices", "default");
    assert_eq!(slices.len(), 1);
    assert_eq!(
        slices[0]["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(
        slices[0]["metadata"]["ownerReferences"][0]["kind"],
        "Service"
    );
    server.fail_readiness("default", "group=web").unwrap();
    until("no ready endpoint", || {
        server
            .snapshot()
            .ready_endpoints("default", "web")
            .is_empty()
    })
    .await;
    until("the Deployment to count no ready pod", || {
        server.get("deployments", "default", "web").unwrap()["status"]["readyReplicas"] == 0
    })
    .await;
    let slice = &server.list("endpointslices", "default")[0];
    assert_eq!(
        slice["endpoints"].as_array().unwrap().len(),
        3,
        "unready endpoints stay listed"
    );
    server.clear_failing_readiness();
    until("ready again", || {
        server.snapshot().ready_endpoints("default", "web").len() == 3
    })
    .await;
}

/// The gateway sets `status.parents` (Accepted, ResolvedRefs with BackendNotFound for a missing
/// Service) for the route's generation, and requests go by weight to ready endpoints.
#[tokio::test]
async fn gateway_sets_route_status_and_routes_by_weight_to_ready_endpoints() {
    let server = TestServer::start().await.unwrap();
    let mut d = serde_json::to_value(deployment("web", 2)).unwrap();
    d["metadata"]["namespace"] = json!("default");
    server.create(d).unwrap();
    server
        .create(service("web", json!({"group": "web"})))
        .unwrap();
    server
        .create(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [
                {"backendRefs": [{"name": "web", "port": 80, "weight": 3}, {"name": "gone", "port": 80}]},
                {"backendRefs": [{"name": "web", "port": 80}]}]}}))
        .unwrap();
    until("route status", || {
        let r = server.get("httproutes", "default", "r").unwrap();
        r["status"]["parents"][0]["conditions"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    })
    .await;
    let r = server.get("httproutes", "default", "r").unwrap();
    let p = &r["status"]["parents"][0];
    assert_eq!(p["parentRef"]["name"], "gw");
    let cond = |t: &str| {
        p["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(cond("Accepted")["status"], "True");
    assert_eq!(cond("ResolvedRefs")["status"], "False");
    assert_eq!(cond("ResolvedRefs")["reason"], "BackendNotFound");
    assert_eq!(cond("Accepted")["observedGeneration"], 1);
    until("2 ready endpoints", || {
        server.snapshot().ready_endpoints("default", "web").len() == 2
    })
    .await;
    let t = server.snapshot().route_traffic("default", "r").unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!((t[0][0].share, t[0][0].ready), (0.75, 2));
    assert_eq!(
        (t[0][1].share, t[0][1].ready),
        (0.25, 0),
        "a missing backend gets its share and fails it"
    );
    assert_eq!(
        (t[1][0].share, t[1][0].ready),
        (1.0, 2),
        "an absent weight is 1"
    );
    server
        .create(service("gone", json!({"group": "none"})))
        .unwrap();
    until("refs resolved", || {
        let r = server.get("httproutes", "default", "r").unwrap();
        r["status"]["parents"][0]["conditions"][1]["status"] == "True"
    })
    .await;
}

/// A Role bound to a user authorizes its requests: a verb the rules do not grant is a 403
/// Forbidden (audited), `resourceNames` limit to named objects, other users are unaffected.
#[tokio::test]
async fn rbac_rules_authorize_a_bound_user() {
    let server = TestServer::start().await.unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})).unwrap();
    server.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}})).unwrap();
    let rules: Vec<vigil_kube_testserver::PolicyRule> = serde_json::from_value(json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["a"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}]))
    .unwrap();
    server.bind_role("sa", rules);
    let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig("default", "sa")).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let sa: Api<ConfigMap> = Api::namespaced(Client::try_from(cfg).unwrap(), "default");
    sa.get("a").await.unwrap();
    let denied = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        e => panic!("{e}"),
    };
    assert_eq!(
        denied(sa.get("b").await.unwrap_err()),
        (403, "Forbidden".to_string())
    );
    assert_eq!(
        denied(sa.list(&ListParams::default()).await.unwrap_err()).0,
        403
    );
    let admin: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    admin.get("b").await.unwrap();
    assert!(server
        .audit()
        .iter()
        .any(|a| a.user == "sa" && a.status == 403 && a.verb == Verb::List));
}

/// A strategic merge patch on a custom resource (HTTPRoute) is a 415: CRDs have no
/// strategic-merge schema.
#[tokio::test]
async fn strategic_merge_on_a_custom_resource_is_unsupported() {
    let server = TestServer::start().await.unwrap();
    server
        .create(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "default"}, "spec": {"rules": []}}),
        )
        .unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client(&server).await, "default", &ar);
    let e = api
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 415));
    api.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
}

/// After a compaction a watch from an older resourceVersion gets an ERROR event with a 410
/// Expired Status (the client must re-list); one from the current version works.
#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_gone() {
    use futures_util::StreamExt;
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let pp = PostParams::default();
    let cm = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()
    };
    let first = api.create(&pp, &cm("a")).await.unwrap();
    let old_rv = first.metadata.resource_version.clone().unwrap();
    api.create(&pp, &cm("b")).await.unwrap();
    server.compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let now_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &now_rv)
        .await
        .unwrap()
        .boxed();
    api.create(&pp, &cm("c")).await.unwrap();
    loop {
        match stream.next().await {
            Some(Ok(WatchEvent::Bookmark(_))) => continue,
            Some(Ok(WatchEvent::Added(o))) => {
                assert_eq!(o.metadata.name.as_deref(), Some("c"));
                break;
            }
            other => panic!("expected ADDED c, got {other:?}"),
        }
    }
}

/// `limit` pages a list with a `continue` token and `remainingItemCount`; every item comes
/// exactly once; a token from before a compaction is 410 Expired.
#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let server = TestServer::start().await.unwrap();
    for i in 0..5 {
        server
            .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": "default"}}))
            .unwrap();
    }
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                assert_eq!(
                    page.metadata.remaining_item_count,
                    Some(5 - names.len() as i64)
                );
                lp = lp.continue_token(&token);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "later", "namespace": "default"}}))
        .unwrap();
    server.compact();
    let token = first.metadata.continue_.unwrap();
    let e = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 410));
}

/// Deletion: background deletes the owner at once and its dependents after (garbage collector);
/// foreground keeps the owner, with `deletionTimestamp` and the `foregroundDeletion` finalizer,
/// until its dependents are gone; another finalizer holds an object until it is removed.
#[tokio::test]
async fn deletion_with_deletion_timestamp_finalizers_and_foreground() {
    let server = TestServer::start().await.unwrap();
    let c = client(&server).await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &deployment("a", 2))
        .await
        .unwrap();
    wait_ready(&api, "a", 2).await;
    api.delete("a", &DeleteParams::foreground()).await.unwrap();
    let marked = server
        .get("deployments", "default", "a")
        .expect("kept while dependents exist");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    until("the foreground deletion to finish", || {
        server.get("deployments", "default", "a").is_none()
    })
    .await;
    // The owner went last: every pod and ReplicaSet deletion comes before it in the history.
    let history = server.history();
    let owner_gone = history
        .iter()
        .position(|c| {
            c.key.plural == "deployments" && c.change == vigil_kube_testserver::ChangeType::Deleted
        })
        .unwrap();
    assert!(history[owner_gone..]
        .iter()
        .all(|c| c.key.plural == "deployments"
            || c.change != vigil_kube_testserver::ChangeType::Deleted));
    assert!(server.list("pods", "default").is_empty());
    assert!(server.list("replicasets", "default").is_empty());

    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "held by its finalizer"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    until("the finalized object to go", || {
        server.get("configmaps", "default", "held").is_none()
    })
    .await;
}

/// A raw GET (status code and body), for requests kube's client refuses to build itself.
async fn raw_get(server: &TestServer, path_and_query: &str) -> (u16, serde_json::Value) {
    let addr = server.url().trim_start_matches("http://").to_string();
    let req = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let text = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        // Read the headers, then exactly Content-Length bytes (the server may keep the
        // connection open).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len || n == 0 {
                    return text;
                }
            }
            if n == 0 {
                return text;
            }
        }
    })
    .await
    .unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, serde_json::from_str(body).unwrap_or_default())
}

fn api_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other}"),
    }
}

/// `list` serves the state the request's resourceVersion asks for, per the API conventions
/// ("Resource versions", semantics for list): unset = most recent, "0" = any (current here),
/// `Exact` = that state (410 Expired once compacted), `NotOlderThan` = the current state if it is
/// at least that new; a version the server has not reached is 504 "Too large resource version";
/// the pages of one list all come from the state the first page was taken at.
#[tokio::test]
async fn list_honours_resource_version_and_match() {
    use kube::api::VersionMatch;
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let pp = PostParams::default();
    let cm = |n: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}, "data": {"v": v}})).unwrap()
    };
    api.create(&pp, &cm("a", "1")).await.unwrap();
    let b = api.create(&pp, &cm("b", "1")).await.unwrap();
    let at_b = b.metadata.resource_version.clone().unwrap();
    api.replace("a", &pp, &{
        let mut a = api.get("a").await.unwrap();
        a.data = Some([("v".to_string(), "2".to_string())].into());
        a
    })
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let state = |l: &kube::core::ObjectList<ConfigMap>| -> Vec<(String, String)> {
        l.items
            .iter()
            .map(|c| {
                (
                    c.metadata.name.clone().unwrap(),
                    c.data.as_ref().unwrap()["v"].clone(),
                )
            })
            .collect()
    };
    let now = vec![("a".to_string(), "2".to_string())];

    // Most recent and "any".
    let latest = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(state(&latest), now);
    let current_rv: u64 = latest
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        state(&api.list(&ListParams::default().at("0")).await.unwrap()),
        now
    );

    // Exact: the state right after b was created, with that resourceVersion.
    let exact = api
        .list(
            &ListParams::default()
                .at(&at_b)
                .matching(VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(
        state(&exact),
        vec![("a".into(), "1".into()), ("b".into(), "1".into())]
    );
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(at_b.as_str())
    );

    // NotOlderThan an old version: the current state is not older, so it is served.
    let nol = api
        .list(
            &ListParams::default()
                .at(&at_b)
                .matching(VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(state(&nol), now);
    assert_eq!(
        nol.metadata.resource_version,
        latest.metadata.resource_version
    );

    // A version the server has not reached yet (raw: kube's client retries a 504).
    let future = current_rv + 100;
    for m in ["Exact", "NotOlderThan"] {
        let (code, body) = raw_get(
            &server,
            &format!("/api/v1/namespaces/default/configmaps?resourceVersion={future}&resourceVersionMatch={m}"),
        )
        .await;
        assert_eq!((code, body["reason"].as_str()), (504, Some("Timeout")));
    }

    // Pages of an Exact list come from that state even if it changes in between.
    let first = api
        .list(
            &ListParams::default()
                .at(&at_b)
                .matching(VersionMatch::Exact)
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(state(&first), vec![("a".into(), "1".into())]);
    api.create(&pp, &cm("c", "1")).await.unwrap();
    let second = api
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(&first.metadata.continue_.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(state(&second), vec![("b".into(), "1".into())]);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));

    // Invalid combinations are rejected as the API server's ListOptions validation does.
    let (code, _) = raw_get(
        &server,
        "/api/v1/namespaces/default/configmaps?resourceVersion=0&resourceVersionMatch=Exact",
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = raw_get(
        &server,
        "/api/v1/namespaces/default/configmaps?resourceVersionMatch=NotOlderThan",
    )
    .await;
    assert_eq!(code, 422);

    // After a compaction an Exact read from before it has expired; NotOlderThan still works.
    server.compact();
    let e = api
        .list(
            &ListParams::default()
                .at(&at_b)
                .matching(VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (410, "Expired".to_string()));
    let nol = api
        .list(
            &ListParams::default()
                .at(&at_b)
                .matching(VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(nol.items.len(), 2);
}

/// Graceful termination (pod registry `CheckGracefulDelete`, kubelet, EndpointSlice controller):
/// a deleted pod is marked with `deletionTimestamp` and `deletionGracePeriodSeconds` (the
/// request's `gracePeriodSeconds`, else `spec.terminationGracePeriodSeconds`, defaulted to 30),
/// its endpoint turns `terminating` and not `ready` at once while `serving` follows its probe, its
/// ReplicaSet no longer counts it (and replaces it), and it is removed only when the period is
/// over. A later delete can shorten the period; `gracePeriodSeconds=0` removes it at once. Pods
/// removed by a scale-down terminate the same way.
#[tokio::test]
async fn pods_terminate_gracefully() {
    let server = TestServer::start().await.unwrap();
    // One grace second lasts 100 ms here: a 5 s period is half a second.
    server.set_grace_second(Duration::from_millis(100));
    let c = client(&server).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c, "default");
    let mut d = deployment("shop-v001", 3);
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .termination_grace_period_seconds = Some(5);
    deps.create(&PostParams::default(), &d).await.unwrap();
    server
        .create(service("shop", json!({"group": "shop-v001"})))
        .unwrap();
    wait_ready(&deps, "shop-v001", 3).await;
    until("3 ready endpoints", || {
        server.snapshot().ready_endpoints("default", "shop").len() == 3
    })
    .await;

    let lp = ListParams::default().labels("group=shop-v001");
    let victim = pods.list(&lp).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let deleted_at = std::time::Instant::now();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let marked = pods.get(&victim).await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(5));
    // A longer period does not extend the pending deletion.
    pods.delete(&victim, &DeleteParams::default().grace_period(60))
        .await
        .unwrap();
    assert_eq!(
        pods.get(&victim)
            .await
            .unwrap()
            .metadata
            .deletion_grace_period_seconds,
        Some(5)
    );
    until("the victim's endpoint is terminating", || {
        let snap = server.snapshot();
        let slices = snap.list("endpointslices", "default", &Default::default());
        slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .any(|e| {
                e["targetRef"]["name"] == victim.as_str()
                    && e["conditions"]
                        == json!({"ready": false, "serving": true, "terminating": true})
            })
    })
    .await;
    assert!(!server
        .snapshot()
        .ready_endpoints("default", "shop")
        .contains(&victim));
    // The ReplicaSet does not count it and replaces it.
    until("a replacement is ready", || {
        server.snapshot().ready_endpoints("default", "shop").len() == 3
    })
    .await;
    if deleted_at.elapsed() < Duration::from_millis(350) {
        assert!(
            server.get("pods", "default", &victim).is_some(),
            "removed before its grace period"
        );
    }
    until("the victim is removed after its grace period", || {
        server.get("pods", "default", &victim).is_none()
    })
    .await;
    assert!(deleted_at.elapsed() >= Duration::from_millis(500));

    // Scale-down: the removed pods terminate gracefully too.
    deps.patch(
        "shop-v001",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    until("two pods terminating", || {
        server
            .list("pods", "default")
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .count()
            == 2
    })
    .await;
    for p in server
        .list("pods", "default")
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
    {
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 5);
    }
    until("scaled down to one pod", || {
        server.list("pods", "default").len() == 1
    })
    .await;

    // The default period, a shortened one, and zero.
    server
        .create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "solo", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}))
        .unwrap();
    assert_eq!(
        server.get("pods", "default", "solo").unwrap()["spec"]["terminationGracePeriodSeconds"],
        30
    );
    until("solo has an IP", || {
        server.get("pods", "default", "solo").unwrap()["status"]["podIP"].is_string()
    })
    .await;
    pods.delete("solo", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        pods.get("solo")
            .await
            .unwrap()
            .metadata
            .deletion_grace_period_seconds,
        Some(30)
    );
    pods.delete("solo", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    assert_eq!(
        pods.get("solo")
            .await
            .unwrap()
            .metadata
            .deletion_grace_period_seconds,
        Some(1)
    );
    pods.delete("solo", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(
        server.get("pods", "default", "solo").is_none(),
        "gracePeriodSeconds=0 removes at once"
    );
}
