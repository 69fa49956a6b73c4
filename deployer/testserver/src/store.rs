//! The object store: every object the server knows, its resourceVersion and the full history of
//! changes. The history is what watches replay from and what tests check invariants against, so
//! every write — the API's and the simulated controllers' — goes through [`Store::put`] or
//! [`Store::remove`].

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::selector::LabelSelector;

/// One kind of object the server serves, and which API conventions apply to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Whether `metadata.generation` tracks spec changes (objects with a spec).
    pub has_spec: bool,
    /// Whether `status` is only writable through the `/status` subresource.
    pub status_subresource: bool,
    /// Whether `/scale` is served.
    pub scale_subresource: bool,
    /// A custom resource (CRD): the API server has no strategic-merge schema for it and answers
    /// a strategic merge patch with 415 Unsupported Media Type.
    pub custom: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        has_spec: true,
        status_subresource: true,
        scale_subresource: true,
        custom: false,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        has_spec: true,
        status_subresource: true,
        scale_subresource: true,
        custom: false,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        has_spec: true,
        status_subresource: true,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        has_spec: true,
        status_subresource: true,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        has_spec: false,
        status_subresource: false,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        has_spec: false,
        status_subresource: false,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "gateway.networking.k8s.io",
        version: "v1",
        kind: "HTTPRoute",
        plural: "httproutes",
        has_spec: true,
        status_subresource: true,
        scale_subresource: false,
        custom: true,
    },
    Resource {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        has_spec: true,
        status_subresource: true,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        has_spec: false,
        status_subresource: false,
        scale_subresource: false,
        custom: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        has_spec: true,
        status_subresource: false,
        scale_subresource: false,
        custom: false,
    },
];

pub fn resource(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

pub fn resource_by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// Where an object lives: resource plural, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn watch_type(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One write, as a watch would see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    pub change: ChangeType,
    pub key: Key,
    pub object: Value,
    /// Who made it: the bearer token of an API caller, or `controller/<name>`.
    pub actor: String,
}

/// A read-only view of all objects at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub objects: BTreeMap<Key, Value>,
}

impl Snapshot {
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|(k, _)| k.plural == plural && k.namespace == namespace && k.name == name)
            .map(|(_, v)| v)
    }

    /// Objects of one resource in one namespace whose labels match `selector` (`""` = all).
    pub fn list(&self, plural: &str, namespace: &str, selector: &LabelSelector) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(k, v)| {
                k.plural == plural && k.namespace == namespace && selector.matches(labels_of(v))
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// Pods in `namespace` whose labels include every pair of `selector` and that are Ready.
    pub fn ready_pods(&self, namespace: &str, selector: &BTreeMap<String, String>) -> usize {
        let sel = LabelSelector::from_map(selector);
        self.list("pods", namespace, &sel)
            .into_iter()
            .filter(|p| pod_is_ready(p))
            .count()
    }
}

/// One backend of one HTTPRoute rule, as the data plane sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendShare {
    /// The Service the backendRef names.
    pub service: String,
    /// Fraction of the rule's requests sent to this backend (its weight over the rule's total).
    pub share: f64,
    /// Ready endpoints behind the Service, from its EndpointSlices. Requests sent to a backend
    /// with none fail (a gateway answers 500/503).
    pub ready: usize,
}

impl Snapshot {
    /// Pod names of a Service's ready endpoints, read from its EndpointSlices (label
    /// `kubernetes.io/service-name`) the way kube-proxy and gateways read them — not from the
    /// Service's selector, so controller lag is part of what a test sees.
    pub fn ready_endpoints(&self, namespace: &str, service: &str) -> Vec<String> {
        let sel = LabelSelector::from_map(
            &[(SERVICE_NAME_LABEL.to_string(), service.to_string())]
                .into_iter()
                .collect(),
        );
        let mut out: Vec<String> = self
            .list("endpointslices", namespace, &sel)
            .into_iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| e["targetRef"]["name"].as_str().map(String::from))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Where an HTTPRoute's requests go, per rule: each backend's share of the rule's requests
    /// (weights; an absent weight is 1, per the Gateway API) and the ready endpoints behind it.
    /// `None` if the route does not exist or its gateway has not accepted it (not programmed).
    pub fn route_traffic(&self, namespace: &str, route: &str) -> Option<Vec<Vec<BackendShare>>> {
        let r = self.get("httproutes", namespace, route)?;
        let accepted = r["status"]["parents"].as_array().is_some_and(|ps| {
            !ps.is_empty()
                && ps.iter().all(|p| {
                    p["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                    })
                })
        });
        if !accepted {
            return None;
        }
        let rules = r["spec"]["rules"].as_array().cloned().unwrap_or_default();
        Some(
            rules
                .iter()
                .map(|rule| {
                    let refs = rule["backendRefs"].as_array().cloned().unwrap_or_default();
                    let weight = |b: &Value| b["weight"].as_i64().unwrap_or(1).max(0);
                    let total: i64 = refs.iter().map(weight).sum();
                    refs.iter()
                        .map(|b| {
                            let service = b["name"].as_str().unwrap_or_default().to_string();
                            let exists = self.get("services", namespace, &service).is_some();
                            BackendShare {
                                share: if total == 0 {
                                    0.0
                                } else {
                                    weight(b) as f64 / total as f64
                                },
                                ready: if exists {
                                    self.ready_endpoints(namespace, &service).len()
                                } else {
                                    0
                                },
                                service,
                            }
                        })
                        .collect()
                })
                .collect(),
        )
    }
}

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    string_map(&obj["metadata"]["labels"])
}

pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn pod_is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub struct Store {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    uids: u64,
    history: Vec<Change>,
    events: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(16_384);
        Store {
            objects: BTreeMap::new(),
            resource_version: 0,
            uids: 0,
            history: Vec::new(),
            events,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    pub fn history(&self) -> &[Change] {
        &self.history
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.objects.clone(),
        }
    }

    /// Objects of one resource, in one namespace or (with `None`) in all of them.
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.plural == plural && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn new_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    /// Writes an object, stamping a fresh resourceVersion, and records the change.
    pub fn put(&mut self, key: Key, mut object: Value, actor: &str) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let change = if self.objects.contains_key(&key) {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(change, key, object.clone(), actor);
        object
    }

    pub fn remove(&mut self, key: &Key, actor: &str) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(ChangeType::Deleted, key.clone(), object.clone(), actor);
        Some(object)
    }

    fn record(&mut self, change: ChangeType, key: Key, object: Value, actor: &str) {
        let c = Change {
            resource_version: self.resource_version,
            change,
            key,
            object,
            actor: actor.to_string(),
        };
        self.history.push(c.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(c);
    }
}
