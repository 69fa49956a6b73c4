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
use crate::store::{labels_of, pod_is_ready, Key};
use crate::{lock, Shared, State};

pub(crate) async fn run(state: State) {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut s = lock(&state);
        hpas(&mut s);
        deployments(&mut s);
        replicasets(&mut s);
        pods(&mut s);
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

fn deployments(s: &mut Shared) {
    let all_rs = s.store.list("replicasets", None);
    for (k, d) in s.store.list("deployments", None) {
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let hash = template_hash(&d["spec"]["template"]);
        let rs_name = format!("{}-{hash}", k.name);
        let mine = owned(&all_rs, &d["metadata"]["uid"]);
        let current = mine
            .iter()
            .find(|r| r["metadata"]["name"] == rs_name.as_str());
        match current {
            None => {
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = template["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": k.namespace, "labels": labels,
                        "ownerReferences": [owner_ref(&d)]},
                    "spec": {"replicas": desired, "selector": selector, "template": template},
                });
                create(s, "replicasets", rs, "controller/deployment");
            }
            Some(rs) if int(&rs["spec"]["replicas"]) != desired => {
                let mut next = (*rs).clone();
                next["spec"]["replicas"] = json!(desired);
                controller_update(s, "replicasets", next, None, "controller/deployment");
            }
            Some(_) => {}
        }
        let new_ready = current.map_or(0, |r| int(&r["status"]["readyReplicas"]));
        let new_observed = current.is_some_and(|r| {
            int(&r["status"]["observedGeneration"]) >= int(&r["metadata"]["generation"])
                && int(&r["spec"]["replicas"]) == desired
        });
        for old in mine
            .iter()
            .filter(|r| r["metadata"]["name"] != rs_name.as_str())
        {
            if new_observed && new_ready >= desired && int(&old["spec"]["replicas"]) != 0 {
                let mut next = (*old).clone();
                next["spec"]["replicas"] = json!(0);
                controller_update(s, "replicasets", next, None, "controller/deployment");
            }
        }
        let sum = |f: &str| mine.iter().map(|r| int(&r["status"][f])).sum::<i64>();
        let status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": sum("replicas"),
            "updatedReplicas": current.map_or(0, |r| int(&r["status"]["replicas"])),
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": sum("availableReplicas"),
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
        let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let mut mine: Vec<&Value> = owned(&all_pods, &rs["metadata"]["uid"]);
        let have = mine.len() as i64;
        if have < desired {
            for i in 0..(desired - have) {
                s.sim.pod_counter += 1;
                let name = format!("{}-{:05x}", k.name, s.sim.pod_counter);
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
        let status = json!({
            "replicas": mine.len(), "fullyLabeledReplicas": mine.len(),
            "readyReplicas": ready, "availableReplicas": ready,
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

fn pods(s: &mut Shared) {
    let now = Instant::now();
    for (k, pod) in s.store.list("pods", None) {
        if pod_is_ready(&pod) {
            continue;
        }
        let id = (k.namespace.clone(), k.name.clone());
        let delay = s.sim.ready_delay;
        let ready_at = *s.sim.pod_ready_at.entry(id).or_insert(now + delay);
        let labels = labels_of(&pod);
        let never = s
            .sim
            .never_ready
            .iter()
            .any(|(ns, sel)| ns == &k.namespace && sel.matches(labels.clone()));
        let status = if never || now < ready_at {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]})
        } else {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
        };
        if pod["status"] != status {
            let mut next = pod.clone();
            next["status"] = status;
            controller_update(s, "pods", next, Some("status"), "controller/kubelet");
        }
    }
}

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
