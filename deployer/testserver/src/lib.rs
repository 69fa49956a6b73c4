//! An in-memory Kubernetes API server for tests.
//!
//! It serves the real REST paths (`/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale`, …) over
//! plain HTTP on 127.0.0.1, so kube's real `Client` talks to it exactly as to a cluster. It follows
//! the API conventions the deployer relies on rather than replaying canned answers: monotonic
//! resourceVersions with 409 Conflict on stale writes, `metadata.generation` bumped on spec changes,
//! the status and scale subresources, watches that resume from a resourceVersion, label selectors,
//! delete propagation through ownerReferences. Simulated controllers turn Deployments into
//! ReplicaSets and Pods, make Pods ready after a delay (or never), and clamp replicas to HPA bounds.
//! Faults can be injected, and every request is recorded in an audit log so tests can check which
//! calls were made and that they stay within an RBAC Role.

// No panics on input-derived values outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api;
mod controllers;
pub mod patch;
pub mod selector;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

pub use selector::LabelSelector;
pub use store::{BackendShare, Change, ChangeType, Key, Snapshot};

/// The RBAC verb of a request, as the API server's authorizer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub verb: Verb,
    pub method: String,
    pub path: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource plural with the subresource if any: `deployments/scale`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The bearer token, which the generated kubeconfig sets to the user name.
    pub user: String,
    pub status: u16,
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this HTTP status and a `Status` body, without touching the store.
    Status(u16),
    /// Hold the request this long before serving it (a slow or timing-out server).
    Delay(Duration),
    /// For watches: close the stream after this many events.
    DropWatchAfter(usize),
}

/// A fault rule: which requests it matches, what it does, how often.
#[derive(Debug, Clone)]
pub struct Fault {
    pub verb: Option<Verb>,
    pub writes_only: bool,
    /// Resource plural, optionally with subresource (`deployments/scale`).
    pub resource: Option<String>,
    pub name: Option<String>,
    pub action: FaultAction,
    /// Matching requests to let through before the fault starts firing.
    pub skip: usize,
    /// How many times it fires; `None` = every time.
    pub times: Option<usize>,
}

impl Fault {
    pub fn new(action: FaultAction) -> Self {
        Fault {
            verb: None,
            writes_only: false,
            resource: None,
            name: None,
            action,
            skip: 0,
            times: None,
        }
    }
    pub fn status(code: u16) -> Self {
        Fault::new(FaultAction::Status(code))
    }
    pub fn delay(d: Duration) -> Self {
        Fault::new(FaultAction::Delay(d))
    }
    pub fn drop_watch_after(events: usize) -> Self {
        Fault::new(FaultAction::DropWatchAfter(events)).verb(Verb::Watch)
    }
    /// Fails every write after the first `k` with a 500: what the rest of the world sees when the
    /// writing process dies after its k-th call.
    pub fn every_write_after(k: usize) -> Self {
        let mut f = Fault::status(500);
        f.writes_only = true;
        f.skip = k;
        f
    }
    pub fn verb(mut self, v: Verb) -> Self {
        self.verb = Some(v);
        self
    }
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.to_string());
        self
    }
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.to_string());
        self
    }
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    fn matches(&self, verb: Verb, resource: &str, name: Option<&str>) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && (!self.writes_only || verb.is_write())
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self.name.as_deref().is_none_or(|n| Some(n) == name)
    }
}

/// Settings of the simulated controllers.
#[derive(Debug, Clone)]
struct Simulation {
    ready_delay: Duration,
    /// Extra delay per pod within one scale-up, so pods become ready one after another.
    ready_stagger: Duration,
    /// Pods matching any of these (namespace, selector) never become ready.
    never_ready: Vec<(String, LabelSelector)>,
    /// Pods matching any of these have a failing readiness probe: ready ones turn unready.
    failing: Vec<(String, LabelSelector)>,
    /// When each ready pod last turned Ready (for `minReadySeconds`).
    pod_ready_since: HashMap<(String, String), Instant>,
    /// What each HPA's metrics ask for, keyed by (namespace, name); absent = the target's current
    /// replicas (a steady load).
    hpa_desired: HashMap<(String, String), i64>,
    pod_ready_at: HashMap<(String, String), Instant>,
    pod_counter: u64,
    /// How long one second of a pod's termination grace period lasts here (time is compressed
    /// so a default 30 s grace period does not slow every test down).
    grace_second: Duration,
    /// When each gracefully terminating pod is removed by the kubelet.
    pod_gone_at: HashMap<(String, String), Instant>,
}

/// One rule of an RBAC Role, as in `rbac.authorization.k8s.io/v1` (deserializes from a Role's
/// `rules` entries).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

impl PolicyRule {
    /// Whether this rule grants `verb` on `resource` (with its subresource, `deployments/scale`)
    /// in `group`, for the object `name`. `*` matches anything; `resourceNames` never grant
    /// `create` or collection verbs (`list`, `watch`), as in the RBAC authorizer.
    pub fn allows(&self, group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        any(&self.api_groups, group)
            && any(&self.resources, resource)
            && any(&self.verbs, verb)
            && (self.resource_names.is_empty()
                || name.is_some_and(|n| self.resource_names.iter().any(|r| r == n)))
    }
}

pub(crate) struct Shared {
    store: store::Store,
    /// Users bound to a Role: their requests are authorized by its rules; other users are admins.
    roles: HashMap<String, Vec<PolicyRule>>,
    /// Watches and continue tokens from before this resourceVersion have expired (410).
    compacted: u64,
    faults: Vec<Fault>,
    audit: Vec<AuditEntry>,
    sim: Simulation,
}

pub(crate) type State = Arc<Mutex<Shared>>;

pub(crate) fn lock(state: &State) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock is a test-server bug; keep serving what is there.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running test server. Dropping it stops the server and its controllers.
pub struct TestServer {
    addr: SocketAddr,
    state: State,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestServer {
    /// Starts a server on an ephemeral 127.0.0.1 port with pods becoming ready after 20 ms.
    pub async fn start() -> std::io::Result<TestServer> {
        let state: State = Arc::new(Mutex::new(Shared {
            store: store::Store::new(),
            roles: HashMap::new(),
            compacted: 0,
            faults: Vec::new(),
            audit: Vec::new(),
            sim: Simulation {
                ready_delay: Duration::from_millis(20),
                ready_stagger: Duration::ZERO,
                never_ready: Vec::new(),
                failing: Vec::new(),
                pod_ready_since: HashMap::new(),
                hpa_desired: HashMap::new(),
                pod_ready_at: HashMap::new(),
                pod_counter: 0,
                grace_second: Duration::from_millis(1),
                pod_gone_at: HashMap::new(),
            },
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = api::router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "test API server stopped");
            }
        });
        let controllers = tokio::spawn(controllers::run(state.clone()));
        Ok(TestServer {
            addr,
            state,
            tasks: vec![server, controllers],
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server; `user` becomes the bearer token, which the audit
    /// log records as who made each call.
    pub fn kubeconfig(&self, namespace: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vigil-test\n  cluster:\n    server: {}\n\
             users:\n- name: {user}\n  user:\n    token: {user}\ncontexts:\n- name: vigil-test\n  context:\n    \
             cluster: vigil-test\n    user: {user}\n    namespace: {namespace}\ncurrent-context: vigil-test\n",
            self.url()
        )
    }

    /// Creates an object directly (as a cluster admin would before the test starts). The object's
    /// `kind` picks the resource.
    pub fn create(&self, object: Value) -> Result<Value, String> {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let res = store::resource_by_kind(&kind).ok_or(format!("unsupported kind {kind:?}"))?;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let mut s = lock(&self.state);
        api::create_object(&mut s, res, &ns, object, "test").map_err(|e| e.message().to_string())
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let s = lock(&self.state);
        let res = store::resource(plural)?;
        s.store
            .get(&Key {
                plural: res.plural,
                namespace: namespace.into(),
                name: name.into(),
            })
            .cloned()
    }

    pub fn list(&self, plural: &str, namespace: &str) -> Vec<Value> {
        lock(&self.state)
            .store
            .list(plural, Some(namespace))
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Applies a merge patch directly (what another actor, e.g. an autoscaler or a human, does).
    pub fn patch(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, String> {
        let res = store::resource(plural).ok_or(format!("unknown resource {plural}"))?;
        let mut s = lock(&self.state);
        api::patch_object(
            &mut s,
            res,
            namespace,
            name,
            None,
            &patch,
            patch::PatchType::Merge,
            "test",
        )
        .map_err(|e| e.message().to_string())
    }

    /// Deletes an object directly (background propagation), as another actor would.
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) -> Result<Value, String> {
        let res = store::resource(plural).ok_or(format!("unknown resource {plural}"))?;
        let mut s = lock(&self.state);
        api::delete_object(&mut s, res, namespace, name, "Background", None, "test")
            .map_err(|e| e.message().to_string())
    }

    pub fn snapshot(&self) -> Snapshot {
        lock(&self.state).store.snapshot()
    }

    pub fn history(&self) -> Vec<Change> {
        lock(&self.state).store.history().to_vec()
    }

    /// Calls `f` with the state after every change, in order: for checking invariants over the
    /// server's whole history.
    pub fn replay(&self, mut f: impl FnMut(&Change, &Snapshot)) {
        let history = self.history();
        let mut snap = Snapshot::default();
        for c in &history {
            match c.change {
                ChangeType::Deleted => {
                    snap.objects.remove(&c.key);
                }
                _ => {
                    snap.objects.insert(c.key.clone(), c.object.clone());
                }
            }
            f(c, &snap);
        }
    }

    pub fn audit(&self) -> Vec<AuditEntry> {
        lock(&self.state).audit.clone()
    }

    /// The writes (create, update, patch, delete) `user` made, as `VERB resource/name`, in order:
    /// what the deployer's and the service's tests assert a run did (or did not) change.
    pub fn writes_by(&self, user: &str) -> Vec<String> {
        lock(&self.state)
            .audit
            .iter()
            .filter(|a| a.user == user && a.verb.is_write())
            .map(|a| {
                format!(
                    "{} {}/{}",
                    a.verb.as_str(),
                    a.resource,
                    a.name.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }

    pub fn clear_audit(&self) {
        lock(&self.state).audit.clear();
    }

    /// Binds `user` (the bearer token) to a Role with these rules: from now on its requests are
    /// authorized like the API server's RBAC authorizer does, and a denied one is a 403.
    pub fn bind_role(&self, user: &str, rules: Vec<PolicyRule>) {
        lock(&self.state).roles.insert(user.to_string(), rules);
    }

    /// Compacts the history as etcd does: a watch or a continue token from before now is
    /// answered 410 Expired, and the client has to list again.
    pub fn compact(&self) {
        let mut s = lock(&self.state);
        s.compacted = s.store.resource_version();
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    pub fn set_ready_delay(&self, d: Duration) {
        lock(&self.state).sim.ready_delay = d;
    }

    /// How long one second of a pod's termination grace period lasts on this server's clock
    /// (1 ms by default): a deleted pod is removed `period × this` after the delete.
    pub fn set_grace_second(&self, d: Duration) {
        lock(&self.state).sim.grace_second = d;
    }

    /// Deletes a pod with this `gracePeriodSeconds`, as `kubectl delete --grace-period` does.
    pub fn delete_pod_with_grace(
        &self,
        namespace: &str,
        name: &str,
        grace_seconds: i64,
    ) -> Result<Value, String> {
        let res = store::resource("pods").ok_or("no pods resource")?;
        let mut s = lock(&self.state);
        api::delete_object(
            &mut s,
            res,
            namespace,
            name,
            "Background",
            Some(grace_seconds),
            "test",
        )
        .map_err(|e| e.message().to_string())
    }

    /// The n-th pod of one scale-up becomes ready `n × stagger` after the first.
    pub fn set_ready_stagger(&self, stagger: Duration) {
        lock(&self.state).sim.ready_stagger = stagger;
    }

    /// Pods in `namespace` matching `selector` (label query syntax) will never become ready.
    pub fn never_ready(&self, namespace: &str, selector: &str) -> Result<(), String> {
        let sel = LabelSelector::parse(selector)?;
        lock(&self.state)
            .sim
            .never_ready
            .push((namespace.to_string(), sel));
        Ok(())
    }

    /// Pods no longer match the never-ready selectors: they turn ready after their delay.
    pub fn clear_never_ready(&self) {
        lock(&self.state).sim.never_ready.clear();
    }

    /// The readiness probe of pods in `namespace` matching `selector` starts failing: ready ones
    /// turn unready (and leave their Services' ready endpoints), new ones never turn ready.
    pub fn fail_readiness(&self, namespace: &str, selector: &str) -> Result<(), String> {
        let sel = LabelSelector::parse(selector)?;
        lock(&self.state)
            .sim
            .failing
            .push((namespace.to_string(), sel));
        Ok(())
    }

    /// Every failing readiness probe passes again.
    pub fn clear_failing_readiness(&self) {
        lock(&self.state).sim.failing.clear();
    }

    /// Sets what an HPA's metrics ask for; the simulated HPA clamps it to its min/max and writes
    /// it to the target, as the real one does.
    pub fn set_hpa_desired(&self, namespace: &str, hpa: &str, replicas: i64) {
        lock(&self.state)
            .sim
            .hpa_desired
            .insert((namespace.to_string(), hpa.to_string()), replicas);
    }

    /// Waits until the controllers have nothing left to do (no write for `quiet`), up to `limit`.
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let start = Instant::now();
        let mut last = lock(&self.state).store.resource_version();
        let mut since = Instant::now();
        while start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let rv = lock(&self.state).store.resource_version();
            if rv != last {
                last = rv;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}
