//! The deployer's view of a cluster: server groups, traffic and autoscalers, read and written
//! through kube's `Client`. Every call retries transient API errors (409, 429, 5xx) a few times,
//! so one flaky response does not abort a rollback halfway; anything else is returned at once.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::Client;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::{Error, Result};

/// Deployments and ReplicaSets are both server groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupKind {
    Deployment,
    ReplicaSet,
}

impl GroupKind {
    pub fn plural(self) -> &'static str {
        match self {
            GroupKind::Deployment => "deployments",
            GroupKind::ReplicaSet => "replicasets",
        }
    }
}

/// A server group by kind and name: `deployment/shop-v002`, `replicaset/app-canary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub kind: GroupKind,
    pub name: String,
}

impl GroupRef {
    pub fn deployment(name: &str) -> Self {
        GroupRef {
            kind: GroupKind::Deployment,
            name: name.to_string(),
        }
    }
    pub fn replica_set(name: &str) -> Self {
        GroupRef {
            kind: GroupKind::ReplicaSet,
            name: name.to_string(),
        }
    }

    /// Parses `deployment/NAME`, `replicaset/NAME` or a bare NAME (a Deployment).
    pub fn parse(s: &str) -> Result<Self> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, n),
            None => ("deployment", s),
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => GroupKind::Deployment,
            "replicaset" | "replicasets" | "rs" => GroupKind::ReplicaSet,
            other => {
                return Err(Error::Invalid {
                    field: "server group".into(),
                    message: format!(
                        "expected deployment/NAME or replicaset/NAME, got kind {other:?}"
                    ),
                })
            }
        };
        if name.is_empty() {
            return Err(Error::Invalid {
                field: "server group".into(),
                message: format!("{s:?} has no name"),
            });
        }
        Ok(GroupRef {
            kind,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            GroupKind::Deployment => "deployment",
            GroupKind::ReplicaSet => "replicaset",
        };
        write!(f, "{k}/{}", self.name)
    }
}

/// What the deployer needs to know about a server group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub spec_replicas: i32,
    pub ready_replicas: i32,
    /// Pods ready for at least `minReadySeconds`: what a controller counts as serving.
    pub available_replicas: i32,
    /// All pods the group has now, of any template (`status.replicas`).
    pub status_replicas: i32,
    /// For Deployments: replicas running the current template; for ReplicaSets: all replicas.
    pub updated_replicas: i32,
    /// `status.observedGeneration >= metadata.generation`: the status describes the current spec.
    pub observed: bool,
    pub match_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub template: PodTemplateSpec,
}

impl GroupState {
    /// Ready for `required` replicas of traffic. A ready group is one whose controller will not
    /// take pods away: its status describes the current spec (`observedGeneration`), its rollout
    /// is complete (every pod runs the current template: `updatedReplicas == replicas`, so no
    /// `maxUnavailable` step is pending), and `required` pods are *available* (ready for
    /// `minReadySeconds`), not merely ready.
    pub fn is_ready_for(&self, required: i32) -> bool {
        self.observed
            && self.spec_replicas >= required
            && self.available_replicas >= required
            && self.updated_replicas >= required
            && self.rollout_complete()
    }

    /// No pod of an older template is left.
    pub fn rollout_complete(&self) -> bool {
        self.updated_replicas >= self.status_replicas
    }

    /// Why the group is not ready for `required`, in words.
    pub fn not_ready_detail(&self, required: i32) -> String {
        let mut why = Vec::new();
        if !self.observed {
            why.push("its status does not yet describe the current spec".to_string());
        }
        if self.spec_replicas < required {
            why.push(format!("spec.replicas is {}", self.spec_replicas));
        }
        if self.available_replicas < required {
            why.push(format!(
                "{} available ({} ready)",
                self.available_replicas, self.ready_replicas
            ));
        }
        if !self.rollout_complete() {
            why.push(format!(
                "its own rollout is in progress ({} of {} pods updated)",
                self.updated_replicas, self.status_replicas
            ));
        }
        why.join(", ")
    }
}

/// Deployment and ReplicaSet expose the same fields under different types.
pub trait GroupObject:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn state(&self) -> GroupState;
}

fn observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

impl GroupObject for Deployment {
    fn state(&self) -> GroupState {
        let spec = self.spec.clone().unwrap_or_default();
        let st = self.status.clone().unwrap_or_default();
        GroupState {
            spec_replicas: spec.replicas.unwrap_or(1),
            ready_replicas: st.ready_replicas.unwrap_or(0),
            available_replicas: st.available_replicas.unwrap_or(0),
            status_replicas: st.replicas.unwrap_or(0),
            updated_replicas: st.updated_replicas.unwrap_or(0),
            observed: observed(self.metadata.generation, st.observed_generation),
            match_labels: spec.selector.match_labels.unwrap_or_default(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            annotations: self.metadata.annotations.clone().unwrap_or_default(),
            template: spec.template,
        }
    }
}

impl GroupObject for ReplicaSet {
    fn state(&self) -> GroupState {
        let spec = self.spec.clone().unwrap_or_default();
        let st = self.status.clone().unwrap_or_default();
        GroupState {
            spec_replicas: spec.replicas.unwrap_or(1),
            ready_replicas: st.ready_replicas.unwrap_or(0),
            available_replicas: st.available_replicas.unwrap_or(0),
            status_replicas: st.replicas,
            updated_replicas: st.replicas,
            observed: observed(self.metadata.generation, st.observed_generation),
            match_labels: spec.selector.match_labels.unwrap_or_default(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            annotations: self.metadata.annotations.clone().unwrap_or_default(),
            template: spec.template.unwrap_or_default(),
        }
    }
}

/// An HPA's bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HpaBounds {
    pub name: String,
    pub min: i32,
    pub max: i32,
}

/// How traffic reaches server groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrafficSpec {
    /// One Service; the group it selects serves. Moving traffic rewrites the Service's selector
    /// to the target group's own `matchLabels` (atomic, and unlike relabelling a Deployment's pod
    /// template it does not start a rollout).
    Service { service: String },
    /// A Gateway API HTTPRoute whose rules' `backendRefs` name one Service per group.
    HttpRoute {
        route: String,
        canary_backend: String,
        baseline_backend: String,
    },
}

/// Traffic as read from the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrafficState {
    Selector { selector: BTreeMap<String, String> },
    Weights { canary: i32, baseline: i32 },
}

impl fmt::Display for TrafficState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficState::Selector { selector } => {
                let s: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "selector {{{}}}", s.join(","))
            }
            TrafficState::Weights { canary, baseline } => {
                write!(f, "weights canary={canary} baseline={baseline}")
            }
        }
    }
}

pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// A client from a kubeconfig file (optionally a named context), or — without a path — kube's
/// inference: `$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account.
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<(Client, String)> {
    #[cfg(feature = "tls")]
    {
        // One process-wide rustls provider, even if another crate links a second one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let connect_err = |context: String| {
        move |e: Box<dyn std::error::Error + Send + Sync>| Error::Connect { context, source: e }
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                connect_err(format!("reading kubeconfig {}", path.display()))(Box::new(e))
            })?;
            let opts = kube::config::KubeConfigOptions {
                context: context.map(String::from),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| {
                    connect_err(format!("loading kubeconfig {}", path.display()))(Box::new(e))
                })?
        }
        None if context.is_some() => {
            let opts = kube::config::KubeConfigOptions {
                context: context.map(String::from),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| connect_err("loading the default kubeconfig".into())(Box::new(e)))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            connect_err("inferring config (KUBECONFIG, ~/.kube/config, in-cluster)".into())(
                Box::new(e),
            )
        })?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config)
        .map_err(|e| connect_err("building the client".into())(Box::new(e)))?;
    Ok((client, namespace))
}

fn is_transient(e: &kube::Error) -> bool {
    match e {
        // A 409 Conflict (stale resourceVersion) is retried after a fresh read; a 409
        // AlreadyExists is an answer — someone else created the object — not a transient error.
        kube::Error::Api(s) if s.code == 409 => s.reason != "AlreadyExists",
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A namespace of one cluster, as the deployer uses it.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    namespace: String,
    retries: u32,
    backoff: Duration,
    poll: Duration,
    status_timeout: Duration,
    identity: String,
}

fn lease_name(object: &str) -> String {
    format!("vigil-traffic-{object}")
}

/// A Lease's MicroTime: RFC 3339 with microseconds.
fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

impl Cluster {
    pub fn new(client: Client, namespace: &str) -> Self {
        Cluster {
            client,
            namespace: namespace.to_string(),
            retries: 3,
            backoff: Duration::from_millis(200),
            poll: Duration::from_millis(500),
            status_timeout: Duration::from_secs(60),
            identity: format!(
                "vigil-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
                std::process::id()
            ),
        }
    }

    /// How often a transient error is retried and how long to wait between attempts.
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// How often readiness is re-checked when a watch ends early.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// How long a written HTTPRoute may take to be accepted by its gateway (default 60 s).
    pub fn with_status_timeout(mut self, timeout: Duration) -> Self {
        self.status_timeout = timeout;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn routes(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &httproute_resource())
    }

    /// Runs one API call, retrying transient failures.
    pub async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, kube::Error>>,
    {
        let mut attempt = 0;
        loop {
            debug!(call = what, attempt, "API call");
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.retries && is_transient(&e) => {
                    warn!(call = what, error = %e, attempt, "transient API error, retrying");
                    attempt += 1;
                    tokio::time::sleep(self.backoff * attempt).await;
                }
                Err(e) => {
                    return Err(Error::Api {
                        call: what.to_string(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Like [`Cluster::call`], with 404 as `None`.
    pub async fn call_opt<T, F, Fut>(&self, what: &str, f: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, kube::Error>>,
    {
        match self.call(what, f).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::Api { source, .. }) if is_not_found(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn group(&self, g: &GroupRef) -> Result<Option<GroupState>> {
        match g.kind {
            GroupKind::Deployment => self.group_of::<Deployment>(&g.name).await,
            GroupKind::ReplicaSet => self.group_of::<ReplicaSet>(&g.name).await,
        }
    }

    async fn group_of<K: GroupObject>(&self, name: &str) -> Result<Option<GroupState>> {
        let api = self.api::<K>();
        let what = format!("get {}/{name}", K::plural(&()));
        Ok(self
            .call_opt(&what, || api.get(name))
            .await?
            .map(|o| o.state()))
    }

    pub async fn require_group(&self, g: &GroupRef) -> Result<GroupState> {
        self.group(g).await?.ok_or_else(|| Error::NotFound {
            kind: g.kind.plural().to_string(),
            name: g.name.clone(),
            namespace: self.namespace.clone(),
        })
    }

    /// Sets replicas through the scale subresource.
    pub async fn scale_group(&self, g: &GroupRef, replicas: i32) -> Result<()> {
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        let pp = PatchParams::default();
        let what = format!(
            "patch {}/{}/scale replicas={replicas}",
            g.kind.plural(),
            g.name
        );
        match g.kind {
            GroupKind::Deployment => {
                let api = self.api::<Deployment>();
                self.call(&what, || api.patch_scale(&g.name, &pp, &patch))
                    .await?;
            }
            GroupKind::ReplicaSet => {
                let api = self.api::<ReplicaSet>();
                self.call(&what, || api.patch_scale(&g.name, &pp, &patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) one annotation with a merge patch.
    pub async fn annotate_group(&self, g: &GroupRef, key: &str, value: Option<&str>) -> Result<()> {
        let patch = Patch::Merge(json!({"metadata": {"annotations": {key: value}}}));
        let what = format!("patch {}/{} annotation {key}", g.kind.plural(), g.name);
        let pp = PatchParams::default();
        match g.kind {
            GroupKind::Deployment => {
                let api = self.api::<Deployment>();
                self.call(&what, || api.patch(&g.name, &pp, &patch)).await?;
            }
            GroupKind::ReplicaSet => {
                let api = self.api::<ReplicaSet>();
                self.call(&what, || api.patch(&g.name, &pp, &patch)).await?;
            }
        }
        Ok(())
    }

    /// Deletes a server group with foreground propagation and waits (up to the status timeout)
    /// until it is gone: its ReplicaSets and pods go first, so when this returns nothing of the
    /// group still references its versioned ConfigMaps/Secrets, and their collection that
    /// follows does not leave them behind (with background propagation the ReplicaSets linger
    /// and the copies leaked). `false` if it was already gone.
    pub async fn delete_group(&self, g: &GroupRef) -> Result<bool> {
        let deleted = self.delete_group_foreground(g).await?;
        let start = Instant::now();
        while self.group(g).await?.is_some() {
            if start.elapsed() >= self.status_timeout {
                warn!(group = %g, "still being deleted; its config copies are collected by a later run");
                break;
            }
            tokio::time::sleep(self.poll.min(Duration::from_millis(100))).await;
        }
        Ok(deleted)
    }

    async fn delete_group_foreground(&self, g: &GroupRef) -> Result<bool> {
        let dp = DeleteParams::foreground();
        let what = format!("delete {}/{}", g.kind.plural(), g.name);
        let gone = match g.kind {
            GroupKind::Deployment => {
                let api = self.api::<Deployment>();
                self.call_opt(&what, || api.delete(&g.name, &dp))
                    .await?
                    .is_some()
            }
            GroupKind::ReplicaSet => {
                let api = self.api::<ReplicaSet>();
                self.call_opt(&what, || api.delete(&g.name, &dp))
                    .await?
                    .is_some()
            }
        };
        Ok(gone)
    }

    /// Waits until the group is ready for `required` replicas, watching the object and
    /// re-establishing the watch when it drops. Gives up after `timeout` with the last state seen.
    pub async fn wait_group_ready(
        &self,
        g: &GroupRef,
        required: i32,
        timeout: Duration,
    ) -> Result<GroupState> {
        let start = Instant::now();
        loop {
            let remaining = timeout.saturating_sub(start.elapsed());
            let watched = match g.kind {
                GroupKind::Deployment => {
                    self.watch_ready::<Deployment>(&g.name, required, remaining)
                        .await
                }
                GroupKind::ReplicaSet => {
                    self.watch_ready::<ReplicaSet>(&g.name, required, remaining)
                        .await
                }
            };
            if let Some(state) = watched {
                return Ok(state);
            }
            // The watch timed out or failed: decide from a fresh read.
            let state = self.require_group(g).await?;
            if state.is_ready_for(required) {
                return Ok(state);
            }
            if start.elapsed() >= timeout {
                return Err(Error::BaselineNotReady {
                    group: g.to_string(),
                    ready: state.available_replicas,
                    required,
                    detail: state.not_ready_detail(required),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(self.poll.min(timeout.saturating_sub(start.elapsed()))).await;
        }
    }

    async fn watch_ready<K: GroupObject>(
        &self,
        name: &str,
        required: i32,
        within: Duration,
    ) -> Option<GroupState> {
        let cond = move |o: Option<&K>| o.is_some_and(|o| o.state().is_ready_for(required));
        let waiting = kube::runtime::wait::await_condition(self.api::<K>(), name, cond);
        match tokio::time::timeout(within, waiting).await {
            Ok(Ok(Some(obj))) => Some(obj.state()),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                warn!(error = %e, name, "watch for readiness failed; re-reading");
                None
            }
            Err(_) => None,
        }
    }

    /// The HPA whose `scaleTargetRef` is this group, if any.
    pub async fn hpa_for(&self, g: &GroupRef) -> Result<Option<HpaBounds>> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let lp = ListParams::default();
        let list = self
            .call("list horizontalpodautoscalers", || api.list(&lp))
            .await?;
        let kind = match g.kind {
            GroupKind::Deployment => "Deployment",
            GroupKind::ReplicaSet => "ReplicaSet",
        };
        Ok(list.items.into_iter().find_map(|h| {
            let spec = h.spec?;
            (spec.scale_target_ref.kind == kind && spec.scale_target_ref.name == g.name).then(
                || HpaBounds {
                    name: h.metadata.name.unwrap_or_default(),
                    min: spec.min_replicas.unwrap_or(1),
                    max: spec.max_replicas,
                },
            )
        }))
    }

    pub async fn hpa(&self, name: &str) -> Result<Option<HpaBounds>> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let h = self
            .call_opt(&format!("get horizontalpodautoscalers/{name}"), || {
                api.get(name)
            })
            .await?;
        Ok(h.and_then(|h| {
            let spec = h.spec?;
            Some(HpaBounds {
                name: name.to_string(),
                min: spec.min_replicas.unwrap_or(1),
                max: spec.max_replicas,
            })
        }))
    }

    pub async fn set_hpa_bounds(&self, name: &str, min: i32, max: i32) -> Result<()> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let patch = Patch::Merge(json!({"spec": {"minReplicas": min, "maxReplicas": max}}));
        let pp = PatchParams::default();
        let what = format!("patch horizontalpodautoscalers/{name} min={min} max={max}");
        self.call(&what, || api.patch(name, &pp, &patch)).await?;
        Ok(())
    }

    /// Gives the HPA back its `prior` bounds, but only the bounds that still hold what the
    /// rollback `pinned`: a bound someone edited meanwhile is theirs and stays. The patch carries
    /// the resourceVersion it was computed from, so an edit racing with it is a 409 and the
    /// decision is made again on a fresh read. Returns what changed.
    pub async fn restore_hpa_bounds(
        &self,
        name: &str,
        pinned: (i32, i32),
        prior: (i32, i32),
    ) -> Result<Option<(i32, i32)>> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let pp = PatchParams::default();
        let what = format!("restore horizontalpodautoscalers/{name} bounds");
        self.call(&what, || async {
            let Some(h) = api.get_opt(name).await? else {
                return Ok(None);
            };
            let spec = h.spec.clone().unwrap_or_default();
            let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
            let new_min = if min == pinned.0 { prior.0 } else { min };
            let new_max = if max == pinned.1 { prior.1 } else { max }.max(new_min);
            if (new_min, new_max) == (min, max) {
                return Ok(None);
            }
            let patch = Patch::Merge(json!({
                "metadata": {"resourceVersion": h.metadata.resource_version},
                "spec": {"minReplicas": new_min, "maxReplicas": new_max}}));
            api.patch(name, &pp, &patch).await?;
            Ok(Some((new_min, new_max)))
        })
        .await
    }

    /// Takes (or renews) the lock on a traffic object — a Lease `vigil-traffic-<object>` — so
    /// that a deploy and a rollback never write the same route or Service at once. The holder is
    /// this client's identity (re-entrant: a deploy that rolls back keeps its lock). A lock held
    /// by another identity is [`Error::Locked`] until it expires (`hold`: how long the caller
    /// may need it; a crashed holder's lock expires after that).
    pub async fn lock_traffic(&self, object: &str, hold: Duration) -> Result<()> {
        let api = self.api::<Lease>();
        let name = lease_name(object);
        let secs = i32::try_from(hold.as_secs().saturating_add(60)).unwrap_or(i32::MAX);
        let now = micro_time(jiff::Timestamp::now());
        let me = self.identity.clone();
        let pp = PostParams::default();
        let outcome = self
            .call(&format!("lock leases/{name}"), || async {
                match api.get_opt(&name).await? {
                    None => {
                        let lease: Lease = serde_json::from_value(json!({
                            "metadata": {"name": name},
                            "spec": {"holderIdentity": me, "leaseDurationSeconds": secs,
                                "acquireTime": now, "renewTime": now}}))
                        .map_err(kube::Error::SerdeError)?;
                        api.create(&pp, &lease).await?;
                        Ok(Ok(()))
                    }
                    Some(mut lease) => {
                        let v = serde_json::to_value(&lease).unwrap_or_default();
                        let holder = v["spec"]["holderIdentity"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let expires = v["spec"]["renewTime"]
                            .as_str()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .and_then(|t| {
                                t.checked_add(jiff::SignedDuration::from_secs(
                                    v["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0),
                                ))
                                .ok()
                            });
                        let expired = expires.is_none_or(|e| e < jiff::Timestamp::now());
                        if !holder.is_empty() && holder != me && !expired {
                            return Ok(Err(Error::Locked {
                                object: object.to_string(),
                                holder,
                                until: expires.map(|e| e.to_string()).unwrap_or_default(),
                            }));
                        }
                        let mut spec = v["spec"].clone();
                        if holder != me {
                            spec["acquireTime"] = json!(now);
                        }
                        spec["holderIdentity"] = json!(me);
                        spec["leaseDurationSeconds"] = json!(secs);
                        spec["renewTime"] = json!(now);
                        lease.spec =
                            serde_json::from_value(spec).map_err(kube::Error::SerdeError)?;
                        // Replace carries the resourceVersion: two takers race to a 409.
                        api.replace(&name, &pp, &lease).await?;
                        Ok(Ok(()))
                    }
                }
            })
            .await?;
        outcome
    }

    /// Releases the traffic lock if this client holds it (deletes the Lease).
    pub async fn unlock_traffic(&self, object: &str) -> Result<()> {
        let api = self.api::<Lease>();
        let name = lease_name(object);
        let held = self
            .call_opt(&format!("get leases/{name}"), || api.get(&name))
            .await?
            .is_some_and(|l| {
                l.spec.and_then(|s| s.holder_identity).as_deref() == Some(self.identity.as_str())
            });
        if held {
            let dp = DeleteParams::default();
            self.call_opt(&format!("delete leases/{name}"), || api.delete(&name, &dp))
                .await?;
        }
        Ok(())
    }

    /// Who this client is when it holds a lock.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Sets the lock identity (default: `vigil-<host>-<pid>`).
    pub fn with_identity(mut self, identity: &str) -> Self {
        self.identity = identity.to_string();
        self
    }

    pub async fn delete_hpa(&self, name: &str) -> Result<bool> {
        let api = self.api::<HorizontalPodAutoscaler>();
        let dp = DeleteParams::default();
        let what = format!("delete horizontalpodautoscalers/{name}");
        Ok(self
            .call_opt(&what, || api.delete(name, &dp))
            .await?
            .is_some())
    }

    pub async fn read_traffic(&self, spec: &TrafficSpec) -> Result<TrafficState> {
        match spec {
            TrafficSpec::Service { service } => {
                let api = self.api::<Service>();
                let svc = self
                    .call_opt(&format!("get services/{service}"), || api.get(service))
                    .await?
                    .ok_or_else(|| self.not_found("services", service))?;
                Ok(TrafficState::Selector {
                    selector: svc.spec.and_then(|s| s.selector).unwrap_or_default(),
                })
            }
            TrafficSpec::HttpRoute {
                route,
                canary_backend,
                baseline_backend,
            } => {
                let api = self.routes();
                let r = self
                    .call_opt(&format!("get httproutes/{route}"), || api.get(route))
                    .await?
                    .ok_or_else(|| self.not_found("httproutes", route))?;
                route_weights(&r.data, route, canary_backend, baseline_backend)
            }
        }
    }

    /// Writes traffic and verifies it by reading it back from the API.
    pub async fn write_traffic(&self, spec: &TrafficSpec, target: &TrafficState) -> Result<()> {
        match (spec, target) {
            (TrafficSpec::Service { service }, TrafficState::Selector { selector }) => {
                let api = self.api::<Service>();
                // A merge patch of the selector alone (keys to drop set to null), carrying the
                // resourceVersion it was computed from: fields this client's typed model does
                // not know survive (a replace through the v1_33 model would drop them), and a
                // concurrent writer makes this a 409, retried after a fresh read.
                self.call(&format!("patch services/{service} selector"), || async {
                    let svc = api.get(service).await?;
                    let current = svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.clone())
                        .unwrap_or_default();
                    let mut sel = serde_json::Map::new();
                    for k in current.keys().filter(|k| !selector.contains_key(*k)) {
                        sel.insert(k.clone(), Value::Null);
                    }
                    for (k, v) in selector {
                        sel.insert(k.clone(), json!(v));
                    }
                    let patch = Patch::Merge(json!({
                        "metadata": {"resourceVersion": svc.metadata.resource_version},
                        "spec": {"selector": sel}}));
                    api.patch(service, &PatchParams::default(), &patch).await
                })
                .await?;
            }
            (
                TrafficSpec::HttpRoute {
                    route,
                    canary_backend,
                    baseline_backend,
                },
                TrafficState::Weights { canary, baseline },
            ) => {
                let svc_api = self.api::<Service>();
                let backend = self
                    .call_opt(&format!("get services/{baseline_backend}"), || {
                        svc_api.get(baseline_backend)
                    })
                    .await?;
                if *baseline > 0 && backend.is_none() {
                    return Err(self.not_found("services", baseline_backend));
                }
                let api = self.routes();
                let written = self
                    .call(&format!("replace httproutes/{route} weights"), || async {
                        let mut r = api.get(route).await?;
                        let port = backend
                            .as_ref()
                            .and_then(|svc| baseline_port(&r.data, canary_backend, svc));
                        if let Err(e) = set_route_weights(
                            &mut r.data,
                            canary_backend,
                            *canary,
                            baseline_backend,
                            *baseline,
                            port,
                        ) {
                            return Ok(Err(e));
                        }
                        api.replace(route, &PostParams::default(), &r).await.map(Ok)
                    })
                    .await??;
                let generation = written.metadata.generation.unwrap_or(0);
                // Stored is not programmed: wait until the gateway accepted this generation.
                self.wait_route_accepted(route, generation).await?;
                let found = self.routes_read(route).await?;
                let rules = rule_weights(&found, canary_backend, baseline_backend);
                let off: Vec<String> = rules
                    .iter()
                    .filter(|(_, c, b)| (*c, *b) != (*canary, *baseline))
                    .map(|(i, c, b)| format!("rule {i}: canary={c} baseline={b}"))
                    .collect();
                if !off.is_empty() {
                    return Err(Error::TrafficNotVerified {
                        object: format!("httproutes/{route}"),
                        expected: target.to_string(),
                        found: off.join("; "),
                    });
                }
            }
            _ => {
                return Err(Error::Invalid {
                    field: "traffic".into(),
                    message: format!("{target} cannot be written to {spec:?}"),
                })
            }
        }
        let found = self.read_traffic(spec).await?;
        if &found != target {
            return Err(Error::TrafficNotVerified {
                object: match spec {
                    TrafficSpec::Service { service } => format!("services/{service}"),
                    TrafficSpec::HttpRoute { route, .. } => format!("httproutes/{route}"),
                },
                expected: target.to_string(),
                found: found.to_string(),
            });
        }
        Ok(())
    }

    async fn routes_read(&self, route: &str) -> Result<Value> {
        let api = self.routes();
        Ok(self
            .call_opt(&format!("get httproutes/{route}"), || api.get(route))
            .await?
            .ok_or_else(|| self.not_found("httproutes", route))?
            .data)
    }

    /// Waits (polling, up to the status timeout) until every parent Gateway accepted the route
    /// and resolved its backends for `generation`: a route that is stored but not programmed
    /// moves no request.
    pub async fn wait_route_accepted(&self, route: &str, generation: i64) -> Result<()> {
        let start = Instant::now();
        loop {
            let api = self.routes();
            let r = self
                .call_opt(&format!("get httproutes/{route}"), || api.get(route))
                .await?
                .ok_or_else(|| self.not_found("httproutes", route))?;
            let mut data = r.data.clone();
            data["metadata"] = serde_json::to_value(&r.metadata).unwrap_or_default();
            match route_status_ok(&data, generation) {
                Ok(()) => return Ok(()),
                Err(status) if start.elapsed() >= self.status_timeout => {
                    return Err(Error::RouteNotAccepted {
                        route: route.to_string(),
                        status,
                    })
                }
                Err(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Services whose selector matches pods with these labels (headless ones included).
    pub async fn services_selecting(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let api = self.api::<Service>();
        let lp = ListParams::default();
        let list = self.call("list services", || api.list(&lp)).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|s| {
                let sel = s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.selector.clone())
                    .unwrap_or_default();
                !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .filter_map(|s| s.metadata.name)
            .collect())
    }

    /// Ready endpoints behind a Service, from its EndpointSlices (what proxies and gateways
    /// route to). An endpoint whose `ready` condition is unset counts as ready, per the API.
    pub async fn ready_endpoints(&self, service: &str) -> Result<i32> {
        let api = self.api::<EndpointSlice>();
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let list = self
            .call(&format!("list endpointslices for {service}"), || {
                api.list(&lp)
            })
            .await?;
        Ok(list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .count() as i32)
    }

    /// Waits until the Service exists and has `required` ready endpoints.
    pub async fn wait_backend_ready(
        &self,
        service: &str,
        required: i32,
        timeout: Duration,
    ) -> Result<i32> {
        let start = Instant::now();
        let api = self.api::<Service>();
        self.call_opt(&format!("get services/{service}"), || api.get(service))
            .await?
            .ok_or_else(|| self.not_found("services", service))?;
        loop {
            let ready = self.ready_endpoints(service).await?;
            if ready >= required {
                return Ok(ready);
            }
            if start.elapsed() >= timeout {
                return Err(Error::BackendNotReady {
                    service: service.to_string(),
                    ready,
                    required,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    pub(crate) fn not_found(&self, kind: &str, name: &str) -> Error {
        Error::NotFound {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: self.namespace.clone(),
        }
    }
}

/// (canary, baseline) weights of every rule that names either backend, with the rule's index;
/// an absent backend weighs 0, an absent weight is 1 (Gateway API).
fn rule_weights(data: &Value, canary: &str, baseline: &str) -> Vec<(usize, i32, i32)> {
    let rules = data["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let refs = rule["backendRefs"].as_array().cloned().unwrap_or_default();
            let weight = |name: &str| {
                refs.iter()
                    .filter(|b| b["name"] == name)
                    .map(|b| b["weight"].as_i64().unwrap_or(1).clamp(0, 1_000_000) as i32)
                    .reduce(|a, b| a + b)
            };
            match (weight(canary), weight(baseline)) {
                (None, None) => None,
                (c, b) => Some((i, c.unwrap_or(0), b.unwrap_or(0))),
            }
        })
        .collect()
}

/// Traffic of a route as one state: the rule that sends the canary the largest share (requests
/// per rule are unknown, so the worst rule decides both the capacity needed and whether traffic
/// has moved).
fn route_weights(data: &Value, route: &str, canary: &str, baseline: &str) -> Result<TrafficState> {
    let rules = rule_weights(data, canary, baseline);
    let share = |c: i32, b: i32| {
        if c + b <= 0 {
            0.0
        } else {
            f64::from(c) / f64::from(c + b)
        }
    };
    rules
        .into_iter()
        .max_by(|x, y| share(x.1, x.2).total_cmp(&share(y.1, y.2)))
        .map(|(_, c, b)| TrafficState::Weights {
            canary: c,
            baseline: b,
        })
        .ok_or_else(|| Error::Invalid {
            field: format!("httproutes/{route} spec.rules[].backendRefs"),
            message: format!("no rule has a backendRef named {canary:?} or {baseline:?}"),
        })
}

/// Sets the two backends' weights in every rule that names either. A rule without the baseline
/// gets a baseline backendRef on `baseline_port` (the baseline Service's port, not the canary's).
fn set_route_weights(
    data: &mut Value,
    canary: &str,
    cw: i32,
    baseline: &str,
    bw: i32,
    baseline_port: Option<i64>,
) -> Result<()> {
    let Some(rules) = data["spec"]["rules"].as_array_mut() else {
        return Ok(());
    };
    for rule in rules {
        let Some(refs) = rule["backendRefs"].as_array_mut() else {
            continue;
        };
        let names = |n: &str| refs.iter().any(|b| b["name"] == n);
        if !names(canary) && !names(baseline) {
            continue;
        }
        if !names(baseline) && bw > 0 {
            let port = baseline_port.ok_or_else(|| Error::Invalid {
                field: format!("services/{baseline} spec.ports"),
                message: "a rule needs a backendRef to the baseline Service, and its port is \
                          ambiguous (not exactly one port, none matching the canary's)"
                    .into(),
            })?;
            refs.push(json!({"group": "", "kind": "Service", "name": baseline, "port": port}));
        }
        for b in refs.iter_mut() {
            if b["name"] == canary {
                b["weight"] = json!(cw);
            } else if b["name"] == baseline {
                b["weight"] = json!(bw);
            }
        }
    }
    Ok(())
}

/// The port a new baseline backendRef uses: the canary's port if the baseline Service serves it,
/// else the baseline Service's only port.
fn baseline_port(route: &Value, canary: &str, svc: &Service) -> Option<i64> {
    let ports: Vec<i64> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .iter()
        .map(|p| i64::from(p.port))
        .collect();
    let canary_port = route["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["backendRefs"].as_array().cloned().unwrap_or_default())
        .find(|b| b["name"] == canary)
        .and_then(|b| b["port"].as_i64());
    match (canary_port, ports.as_slice()) {
        (Some(p), ps) if ps.contains(&p) => Some(p),
        (_, [only]) => Some(*only),
        _ => None,
    }
}

/// Whether every parent accepted the route and resolved its references for `generation`.
fn route_status_ok(route: &Value, generation: i64) -> std::result::Result<(), String> {
    let parents = route["spec"]["parentRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if parents.is_empty() {
        return Err("the route has no parentRefs".into());
    }
    for p in &parents {
        let name = p["name"].as_str().unwrap_or_default();
        let st: Vec<&Value> = status
            .iter()
            .filter(|s| s["parentRef"]["name"] == p["name"])
            .collect();
        if st.is_empty() {
            return Err(format!("parent {name:?} has not reported status"));
        }
        for ty in ["Accepted", "ResolvedRefs"] {
            let cond = st
                .iter()
                .flat_map(|s| s["conditions"].as_array().cloned().unwrap_or_default())
                .find(|c| c["type"] == ty);
            match cond {
                None => return Err(format!("parent {name:?} has no {ty} condition")),
                Some(c)
                    if c["observedGeneration"]
                        .as_i64()
                        .is_some_and(|g| g < generation) =>
                {
                    return Err(format!(
                        "parent {name:?} has not observed generation {generation} yet"
                    ))
                }
                Some(c) if c["status"] != "True" => {
                    return Err(format!(
                        "parent {name:?}: {ty} is {} ({}: {})",
                        c["status"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
