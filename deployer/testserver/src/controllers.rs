//! Simulated controllers: just enough of kube-controller-manager for a deployer to be tested
//! against. Each writes through the API's conventions (resourceVersion, generation), and only
//! when something changed, so the history shows real transitions.
//!
//! - Deployment: one ReplicaSet per pod template (named `<deployment>-<template hash>`); old
//!   ReplicaSets keep their pods until the new one is fully ready (surge, never unavailable).
//! - ReplicaSet: creates and deletes Pods to match `spec.replicas` (unready ones go first).
//! - Pods become Ready after the configured delay, unless they match a never-ready selector.
//! - HPA: writes `clamp(desired, min, max)` to its target's replicas; a target at 0 replicas is
//!   left alone, as the real HPA does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{controller_delete, controller_update, owner_ref};
use crate::store::{labels_of, pod_is_ready, string_map, Key, SERVICE_NAME_LABEL};
use crate::{lock, Shared, State};

pub(crate) async fn run(state: State) {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut s = lock(&state);
        hpas(&mut s);
        deployments(&mut s);
        replicasets(&mut s);
        pods(&mut s);
        endpointslices(&mut s);
        gateway(&mut s);
        crate::api::garbage_collect(&mut s);
    }
}

fn owned<'a>(items: &'a [(Key, Value)], uid: &Value) -> Vec<&'a Value> {
    items
        .iter()
        .map(|(_, v)| v)
        .filter(|v| {
            v["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| &r["uid"] == uid))
        })
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn template_hash(template: &Value) -> String {
    let mut h = DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

fn create(s: &mut Shared, plural: &str, obj: Value, actor: &str) {
    let Some(res) = crate::store::resource(plural) else {
        return;
    };
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    if let Err(e) = crate::api::create_object(s, res, &ns, obj, actor) {
        tracing::warn!(error = e.message(), %plural, "simulated controller create rejected");
    }
}

/// `intstr` of a rolling-update parameter: an integer or a percentage of `desired`, rounded up
/// (maxSurge) or down (maxUnavailable) as the Deployment controller does.
fn int_or_percent(v: &Value, desired: i64, default_percent: i64, round_up: bool) -> i64 {
    let pct = |p: i64| {
        if round_up {
            (desired * p + 99) / 100
        } else {
            desired * p / 100
        }
    };
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0).max(0),
        Value::String(t) => t
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(pct(default_percent), pct),
        _ => pct(default_percent),
    }
}

/// The annotation recording the Deployment size a ReplicaSet was last scaled for.
const DESIRED_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";

fn annotate_desired(s: &mut Shared, rs: &Value, desired: i64, replicas: i64) {
    let mut next = rs.clone();
    next["metadata"]["annotations"][DESIRED_ANNOTATION] = json!(desired.to_string());
    next["spec"]["replicas"] = json!(replicas);
    controller_update(s, "replicasets", next, None, "controller/deployment");
}

fn set_rs_replicas(s: &mut Shared, rs: &Value, replicas: i64) {
    if int(&rs["spec"]["replicas"]) != replicas {
        let mut next = rs.clone();
        next["spec"]["replicas"] = json!(replicas);
        controller_update(s, "replicasets", next, None, "controller/deployment");
    }
}

/// The Deployment controller's rolling update: one ReplicaSet per pod template, the new one grown
/// while the total stays within `replicas + maxSurge`, old ones shrunk only while at least
/// `replicas - maxUnavailable` pods stay available (`minReadySeconds` counted), as in
/// kube-controller-manager's `rolloutRolling`. `Recreate` removes old pods before creating new.
fn deployments(s: &mut Shared) {
    let all_rs = s.store.list("replicasets", None);
    for (k, d) in s.store.list("deployments", None) {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            // Being deleted: the garbage collector, not this controller, handles its children.
            continue;
        }
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let min_ready = int(&d["spec"]["minReadySeconds"]);
        let hash = template_hash(&d["spec"]["template"]);
        let rs_name = format!("{}-{hash}", k.name);
        let mine = owned(&all_rs, &d["metadata"]["uid"]);
        let current = mine
            .iter()
            .find(|r| r["metadata"]["name"] == rs_name.as_str())
            .map(|r| (*r).clone());
        let mut olds: Vec<Value> = mine
            .iter()
            .filter(|r| r["metadata"]["name"] != rs_name.as_str())
            .map(|r| (*r).clone())
            .collect();
        // Oldest first (uids are handed out in creation order).
        olds.sort_by_key(|r| {
            r["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        let max_surge = int_or_percent(&ru["maxSurge"], desired, 25, true);
        let mut max_unavailable = int_or_percent(&ru["maxUnavailable"], desired, 25, false);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        let old_total: i64 = olds.iter().map(|r| int(&r["spec"]["replicas"])).sum();
        let old_pods: i64 = olds.iter().map(|r| int(&r["status"]["replicas"])).sum();
        match &current {
            None => {
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = template["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                let start = if recreate {
                    if old_total + old_pods > 0 {
                        0
                    } else {
                        desired
                    }
                } else {
                    (desired + max_surge - old_total).clamp(0, desired)
                };
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": k.namespace, "labels": labels,
                        "annotations": {DESIRED_ANNOTATION: desired.to_string()},
                        "ownerReferences": [owner_ref(&d)]},
                    "spec": {"replicas": start, "minReadySeconds": min_ready,
                        "selector": selector, "template": template},
                });
                create(s, "replicasets", rs, "controller/deployment");
            }
            Some(new) => {
                if int(&new["spec"]["minReadySeconds"]) != min_ready {
                    let mut next = new.clone();
                    next["spec"]["minReadySeconds"] = json!(min_ready);
                    controller_update(s, "replicasets", next, None, "controller/deployment");
                }
                let new_replicas = int(&new["spec"]["replicas"]);
                if recreate {
                    for old in &olds {
                        set_rs_replicas(s, old, 0);
                    }
                    if old_pods == 0 {
                        set_rs_replicas(s, new, desired);
                    }
                } else if olds.is_empty() || new_replicas > desired {
                    set_rs_replicas(s, new, desired);
                } else if olds.iter().chain([new]).any(|r| {
                    r["metadata"]["annotations"][DESIRED_ANNOTATION].as_str()
                        != Some(desired.to_string().as_str())
                }) && old_total > 0
                {
                    // Scaled in the middle of a rollout: every active ReplicaSet grows or shrinks
                    // in proportion to its size, within replicas + maxSurge (the controller's
                    // proportional scaling), the rest going to the new one.
                    let total = old_total + new_replicas;
                    let allowed = desired + max_surge;
                    let delta = allowed - total;
                    let mut given = 0;
                    for old in &olds {
                        let r = int(&old["spec"]["replicas"]);
                        let add = if total > 0 { delta * r / total } else { 0 };
                        given += add;
                        annotate_desired(s, old, desired, (r + add).max(0));
                    }
                    annotate_desired(
                        s,
                        new,
                        desired,
                        (new_replicas + delta - given).clamp(0, desired),
                    );
                } else {
                    // Scale up within the surge.
                    let total = old_total + new_replicas;
                    let up = (desired + max_surge - total).min(desired - new_replicas);
                    let new_replicas = if up > 0 {
                        set_rs_replicas(s, new, new_replicas + up);
                        new_replicas + up
                    } else {
                        new_replicas
                    };
                    // Scale down old ones while enough pods stay available.
                    let min_available = desired - max_unavailable;
                    let new_unavailable =
                        (new_replicas - int(&new["status"]["availableReplicas"])).max(0);
                    let mut budget = old_total + new_replicas - min_available - new_unavailable;
                    for old in &olds {
                        if budget <= 0 {
                            break;
                        }
                        let r = int(&old["spec"]["replicas"]);
                        let cut = r.min(budget);
                        if cut > 0 {
                            set_rs_replicas(s, old, r - cut);
                            budget -= cut;
                        }
                    }
                }
            }
        }
        let now_rs = s.store.list("replicasets", Some(&k.namespace));
        let mine = owned(&now_rs, &d["metadata"]["uid"]);
        let sum = |f: &str| mine.iter().map(|r| int(&r["status"][f])).sum::<i64>();
        let new_status = mine
            .iter()
            .find(|r| r["metadata"]["name"] == rs_name.as_str())
            .map(|r| r["status"].clone())
            .unwrap_or_default();
        let replicas = sum("replicas");
        let available = sum("availableReplicas");
        let status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": int(&new_status["replicas"]),
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": (desired - available).max(0),
        });
        if d["status"] != status {
            let mut next = d.clone();
            next["status"] = status;
            controller_update(
                s,
                "deployments",
                next,
                Some("status"),
                "controller/deployment",
            );
        }
    }
}

fn replicasets(s: &mut Shared) {
    let all_pods = s.store.list("pods", None);
    for (k, rs) in s.store.list("replicasets", None) {
        if !rs["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let min_ready = Duration::from_secs(int(&rs["spec"]["minReadySeconds"]).max(0) as u64);
        let mut mine: Vec<&Value> = owned(&all_pods, &rs["metadata"]["uid"]);
        let have = mine.len() as i64;
        if have < desired {
            for i in 0..(desired - have) {
                s.sim.pod_counter += 1;
                let n = s.sim.pod_counter;
                let name = format!("{}-{n:05x}", k.name);
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": k.namespace,
                        "labels": rs["spec"]["template"]["metadata"]["labels"].clone(),
                        "annotations": rs["spec"]["template"]["metadata"]["annotations"].clone(),
                        "ownerReferences": [owner_ref(&rs)]},
                    "spec": rs["spec"]["template"]["spec"].clone(),
                });
                let ready_at =
                    Instant::now() + s.sim.ready_delay + s.sim.ready_stagger * (i as u32);
                s.sim
                    .pod_ready_at
                    .insert((k.namespace.clone(), name), ready_at);
                create(s, "pods", pod, "controller/replicaset");
            }
        } else if have > desired {
            // Unready pods go first, then the newest.
            mine.sort_by_key(|p| {
                (
                    pod_is_ready(p),
                    std::cmp::Reverse(p["metadata"]["name"].as_str().unwrap_or("").to_string()),
                )
            });
            for p in mine.iter().take((have - desired) as usize) {
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                controller_delete(s, "pods", &k.namespace, &name, "controller/replicaset");
            }
        }
        let pods_now = s.store.list("pods", Some(&k.namespace));
        let mine = owned(&pods_now, &rs["metadata"]["uid"]);
        let ready = mine.iter().filter(|p| pod_is_ready(p)).count() as i64;
        // Available: Ready for at least minReadySeconds.
        let available = mine
            .iter()
            .filter(|p| pod_is_ready(p))
            .filter(|p| {
                let id = (
                    k.namespace.clone(),
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                s.sim
                    .pod_ready_since
                    .get(&id)
                    .is_some_and(|t| t.elapsed() >= min_ready)
            })
            .count() as i64;
        let status = json!({
            "replicas": mine.len(), "fullyLabeledReplicas": mine.len(),
            "readyReplicas": ready, "availableReplicas": available,
            "observedGeneration": rs["metadata"]["generation"],
        });
        if rs["status"] != status {
            let mut next = rs.clone();
            next["status"] = status;
            controller_update(
                s,
                "replicasets",
                next,
                Some("status"),
                "controller/replicaset",
            );
        }
    }
}

/// The kubelet: a pod gets an IP, turns Ready after its delay unless its readiness probe fails
/// (never-ready selectors), and turns unready again when its probe starts failing
/// ([`crate::TestServer::fail_readiness`]). The Ready condition's transition time is kept, as
/// `minReadySeconds` counts from it.
fn pods(s: &mut Shared) {
    let now = Instant::now();
    for (k, pod) in s.store.list("pods", None) {
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let id = (k.namespace.clone(), k.name.clone());
        let delay = s.sim.ready_delay;
        let ready_at = *s.sim.pod_ready_at.entry(id.clone()).or_insert(now + delay);
        let labels = labels_of(&pod);
        let probe_fails = |list: &[(String, crate::LabelSelector)]| {
            list.iter()
                .any(|(ns, sel)| ns == &k.namespace && sel.matches(labels.clone()))
        };
        let was_ready = pod_is_ready(&pod);
        let ready = if was_ready {
            !probe_fails(&s.sim.failing)
        } else {
            !probe_fails(&s.sim.never_ready) && !probe_fails(&s.sim.failing) && now >= ready_at
        };
        let ip = match pod["status"]["podIP"].as_str() {
            Some(ip) => ip.to_string(),
            None => {
                s.sim.pod_counter += 1;
                let n = s.sim.pod_counter;
                format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
            }
        };
        if ready != was_ready {
            if ready {
                s.sim.pod_ready_since.insert(id.clone(), now);
            } else {
                s.sim.pod_ready_since.remove(&id);
            }
        }
        let since = if ready == was_ready {
            pod["status"]["conditions"][0]["lastTransitionTime"].clone()
        } else {
            json!(crate::api::now())
        };
        let status = json!({"phase": "Running", "podIP": ip, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": since}]});
        if pod["status"] != status {
            let mut next = pod.clone();
            next["status"] = status;
            controller_update(s, "pods", next, Some("status"), "controller/kubelet");
        }
    }
}

/// The EndpointSlice controller: one slice per Service with a selector (label
/// `kubernetes.io/service-name`, owned by the Service), listing every non-terminating pod the
/// selector matches with its `ready` condition — what kube-proxy and gateway implementations
/// route to.
fn endpointslices(s: &mut Shared) {
    let pods = s.store.list("pods", None);
    let slices = s.store.list("endpointslices", None);
    for (k, svc) in s.store.list("services", None) {
        let selector = string_map(&svc["spec"]["selector"]);
        if selector.is_empty() {
            continue;
        }
        let sel = crate::LabelSelector::from_map(&selector);
        let mut endpoints: Vec<Value> = pods
            .iter()
            .filter(|(pk, p)| {
                pk.namespace == k.namespace
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["podIP"].is_string()
                    && sel.matches(labels_of(p))
            })
            .map(|(pk, p)| {
                let ready = pod_is_ready(p);
                json!({"addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "targetRef": {"kind": "Pod", "namespace": pk.namespace, "name": pk.name,
                        "uid": p["metadata"]["uid"]}})
            })
            .collect();
        endpoints.sort_by_key(|e| {
            e["targetRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| json!({"name": p["name"].as_str().unwrap_or(""), "port": p["targetPort"].as_i64().or(p["port"].as_i64()), "protocol": "TCP"}))
            .collect();
        let existing = slices.iter().find(|(sk, sl)| {
            sk.namespace == k.namespace
                && sl["metadata"]["labels"][SERVICE_NAME_LABEL] == k.name.as_str()
        });
        match existing {
            Some((_, sl)) => {
                if sl["endpoints"] != json!(endpoints) || sl["ports"] != json!(ports) {
                    let mut next = sl.clone();
                    next["endpoints"] = json!(endpoints);
                    next["ports"] = json!(ports);
                    controller_update(s, "endpointslices", next, None, "controller/endpointslice");
                }
            }
            None => {
                let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{}-", k.name), "namespace": k.namespace,
                        "labels": {SERVICE_NAME_LABEL: k.name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                        "ownerReferences": [owner_ref(&svc)]},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
                create(s, "endpointslices", slice, "controller/endpointslice");
            }
        }
    }
}

/// A minimal Gateway API implementation: every HTTPRoute is accepted by each parent it names,
/// and `ResolvedRefs` says whether every backendRef is a Service that exists (reason
/// `BackendNotFound` otherwise), each condition with the route's `observedGeneration`. Where
/// requests then go is [`crate::Snapshot::route_traffic`]: by weight, to ready endpoints.
fn gateway(s: &mut Shared) {
    for (k, route) in s.store.list("httproutes", None) {
        let generation = route["metadata"]["generation"].clone();
        let missing: Vec<String> = route["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["backendRefs"].as_array().cloned().unwrap_or_default())
            .filter(|b| {
                let kind = b["kind"].as_str().unwrap_or("Service");
                let group = b["group"].as_str().unwrap_or("");
                let name = b["name"].as_str().unwrap_or_default();
                kind != "Service"
                    || !group.is_empty()
                    || s.store
                        .get(&Key {
                            plural: "services",
                            namespace: k.namespace.clone(),
                            name: name.to_string(),
                        })
                        .is_none()
            })
            .filter_map(|b| b["name"].as_str().map(String::from))
            .collect();
        let old_parents = route["status"]["parents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let condition = |p: &Value, ty: &str, status: bool, reason: &str, message: String| {
            let st = if status { "True" } else { "False" };
            // The transition time changes only when the status does.
            let since = old_parents
                .iter()
                .filter(|op| op["parentRef"] == *p)
                .flat_map(|op| op["conditions"].as_array().cloned().unwrap_or_default())
                .find(|c| c["type"] == ty && c["status"] == st)
                .map_or_else(
                    || json!(crate::api::now()),
                    |c| c["lastTransitionTime"].clone(),
                );
            json!({"type": ty, "status": st, "reason": reason, "message": message,
                "observedGeneration": generation, "lastTransitionTime": since})
        };
        let parents: Vec<Value> = route["spec"]["parentRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let resolved = if missing.is_empty() {
                    condition(
                        p,
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "all references resolved".into(),
                    )
                } else {
                    condition(
                        p,
                        "ResolvedRefs",
                        false,
                        "BackendNotFound",
                        format!("backend Services not found: {}", missing.join(", ")),
                    )
                };
                json!({"parentRef": p, "controllerName": GATEWAY_CONTROLLER, "conditions": [
                    condition(p, "Accepted", true, "Accepted", "accepted".into()), resolved]})
            })
            .collect();
        if route["status"]["parents"] != json!(parents) {
            let mut next = route.clone();
            next["status"] = json!({"parents": parents});
            controller_update(s, "httproutes", next, Some("status"), GATEWAY_CONTROLLER);
        }
    }
}

/// The `controllerName` the test gateway writes into HTTPRoute status.
pub const GATEWAY_CONTROLLER: &str = "vigil.dev/test-gateway";

fn hpas(s: &mut Shared) {
    for (k, hpa) in s.store.list("horizontalpodautoscalers", None) {
        let target_kind = hpa["spec"]["scaleTargetRef"]["kind"]
            .as_str()
            .unwrap_or_default();
        let plural = match target_kind {
            "Deployment" => "deployments",
            "ReplicaSet" => "replicasets",
            _ => continue,
        };
        let target_name = hpa["spec"]["scaleTargetRef"]["name"]
            .as_str()
            .unwrap_or_default();
        let tkey = Key {
            plural,
            namespace: k.namespace.clone(),
            name: target_name.to_string(),
        };
        let Some(target) = s.store.get(&tkey).cloned() else {
            continue;
        };
        let current = target["spec"]["replicas"].as_i64().unwrap_or(1);
        if current == 0 {
            continue;
        }
        let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
        let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(current);
        let wanted = s
            .sim
            .hpa_desired
            .get(&(k.namespace.clone(), k.name.clone()))
            .copied()
            .unwrap_or(current);
        let next_replicas = wanted.clamp(min, max.max(min));
        if next_replicas != current {
            let mut next = target.clone();
            next["spec"]["replicas"] = json!(next_replicas);
            controller_update(
                s,
                plural,
                next,
                None,
                "controller/horizontal-pod-autoscaler",
            );
        }
        let status = json!({"currentReplicas": current, "desiredReplicas": next_replicas});
        if hpa["status"] != status {
            let mut next = hpa.clone();
            next["status"] = status;
            controller_update(
                s,
                "horizontalpodautoscalers",
                next,
                Some("status"),
                "controller/horizontal-pod-autoscaler",
            );
        }
    }
}
