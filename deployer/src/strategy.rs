//! Deployment strategies over Spinnaker-style versioned server groups (`<cluster>-v000`, …),
//! found by the label `vigil.dev/cluster`.
//!
//! - **Red/black**: deploy the new group, wait until it is ready, move all traffic to it; the old
//!   groups stay scaled (instant rollback) up to `max_history`, older ones are deleted.
//! - **Rolling red/black**: grow the new group and shift traffic in steps (25/50/75/100 %); each
//!   step's traffic goes to the new group only after it has the ready replicas for that share.
//!   Between steps a hook (the analysis verdict) may stop, which rolls back with
//!   [`crate::rollback`].
//! - **Highlander**: like red/black, then delete every older group.
//!
//! Deploys and promotions respect deployment windows; rollbacks never check them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use serde_json::json;
use tracing::info;

use crate::cluster::{Cluster, GroupRef, TrafficSpec};
use crate::config::{DeployerConfig, StrategyConfig, TrafficConfig, Windows};
use crate::rollback::{self, RollbackRequest};
use crate::versioned::{self, ConfigRef};
use crate::{Error, Result};

pub const CLUSTER_LABEL: &str = "vigil.dev/cluster";
pub const GROUP_LABEL: &str = "vigil.dev/server-group";

/// What the analysis says between rolling steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepVerdict {
    Continue,
    Stop(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployReport {
    pub server_group: String,
    pub previous: Option<String>,
    /// Traffic percentages the new group reached, in order.
    pub steps: Vec<u32>,
    pub deleted_groups: Vec<String>,
    pub config_versions: BTreeMap<String, String>,
}

/// `shop-v012` → 12 for cluster `shop`.
pub fn group_version(cluster: &str, name: &str) -> Option<u32> {
    let v = name.strip_prefix(cluster)?.strip_prefix("-v")?;
    (v.len() >= 3 && v.chars().all(|c| c.is_ascii_digit())).then(|| v.parse().ok())?
}

/// The cluster's server groups, oldest first.
pub async fn server_groups(cluster: &Cluster, name: &str) -> Result<Vec<Deployment>> {
    let api = cluster.api::<Deployment>();
    let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}"));
    let mut groups = cluster
        .call("list deployments", || api.list(&lp))
        .await?
        .items;
    groups.sort_by_key(|d| {
        d.metadata
            .name
            .as_deref()
            .and_then(|n| group_version(name, n))
            .unwrap_or(0)
    });
    Ok(groups)
}

fn name_of(d: &Deployment) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

/// The group receiving (most) traffic now.
async fn serving_group(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    groups: &[Deployment],
) -> Result<Option<String>> {
    match &cfg.traffic {
        TrafficConfig::Service { service } => {
            let api = cluster.api::<Service>();
            let svc = cluster
                .call_opt(&format!("get services/{service}"), || api.get(service))
                .await?;
            let sel = svc
                .and_then(|s| s.spec)
                .and_then(|s| s.selector)
                .unwrap_or_default();
            Ok(groups
                .iter()
                .find(|d| {
                    d.spec
                        .as_ref()
                        .and_then(|s| s.selector.match_labels.as_ref())
                        == Some(&sel)
                })
                .map(name_of))
        }
        TrafficConfig::HttpRoute { route, .. } => {
            let api = cluster.routes();
            let r = cluster
                .call_opt(&format!("get httproutes/{route}"), || api.get(route))
                .await?;
            // Summed over every rule of the cluster.
            let mut total: BTreeMap<String, i64> = BTreeMap::new();
            for (_, refs) in r
                .map(|r| cluster_rules(&r.data, &cfg.cluster))
                .unwrap_or_default()
            {
                for b in refs {
                    *total.entry(b.0).or_default() += i64::from(b.1);
                }
            }
            Ok(total
                .into_iter()
                .filter(|(_, w)| *w > 0)
                .max_by_key(|(_, w)| *w)
                .map(|(n, _)| n))
        }
    }
}

/// The rules of a route that belong to a cluster: those whose backendRefs are empty or all name
/// its server groups (`<cluster>-vNNN`), with their (backend, weight) pairs. Rules for other
/// backends are left alone.
fn cluster_rules(data: &serde_json::Value, cluster: &str) -> Vec<(usize, Vec<(String, i32)>)> {
    data["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, rule)| {
            let refs: Vec<(String, i32)> = rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap_or_default().to_string(),
                        b["weight"].as_i64().unwrap_or(1).clamp(0, 1_000_000) as i32,
                    )
                })
                .collect();
            refs.iter()
                .all(|(n, _)| group_version(cluster, n).is_some())
                .then_some((i, refs))
        })
        .collect()
}

/// Sets every rule of the cluster (see [`cluster_rules`]) to exactly these backends and weights,
/// after each backend with weight has `ready` ready endpoints, then verifies the read-back and
/// that the gateway accepted the new generation.
async fn set_weights(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    route: &str,
    port: i32,
    weights: &[(String, i32)],
    ready: i32,
) -> Result<()> {
    let timeout = cfg.rollback.options().ready_timeout;
    for (name, w) in weights {
        if *w > 0 {
            let need = ((i64::from(ready) * i64::from(*w) + 99) / 100).max(1) as i32;
            cluster.wait_backend_ready(name, need, timeout).await?;
        }
    }
    let api = cluster.routes();
    let refs: Vec<serde_json::Value> = weights
        .iter()
        .map(|(n, w)| json!({"group": "", "kind": "Service", "name": n, "port": port, "weight": w}))
        .collect();
    let written = cluster
        .call(&format!("replace httproutes/{route} weights"), || async {
            let mut r = api.get(route).await?;
            let rules = cluster_rules(&r.data, &cfg.cluster);
            if rules.is_empty() {
                return Ok(None);
            }
            for (i, _) in rules {
                r.data["spec"]["rules"][i]["backendRefs"] = json!(refs);
            }
            api.replace(route, &PostParams::default(), &r).await.map(Some)
        })
        .await?
        .ok_or_else(|| Error::Invalid {
            field: format!("httproutes/{route} spec.rules"),
            message: format!(
                "no rule for cluster {:?}: a rule's backendRefs must be empty or name only its server groups",
                cfg.cluster
            ),
        })?;
    cluster
        .wait_route_accepted(route, written.metadata.generation.unwrap_or(0))
        .await?;
    let r = cluster
        .call(&format!("get httproutes/{route}"), || api.get(route))
        .await?;
    for (i, found) in cluster_rules(&r.data, &cfg.cluster) {
        if found != weights {
            return Err(Error::TrafficNotVerified {
                object: format!("httproutes/{route} rule {i}"),
                expected: format!("{weights:?}"),
                found: format!("{found:?}"),
            });
        }
    }
    info!(route, ?weights, "traffic weights set and verified");
    Ok(())
}

/// A Service per server group, for weighted routing.
async fn ensure_group_service(
    cluster: &Cluster,
    group: &str,
    selector: &BTreeMap<String, String>,
    port: i32,
) -> Result<()> {
    let api = cluster.api::<Service>();
    if cluster
        .call_opt(&format!("get services/{group}"), || api.get(group))
        .await?
        .is_some()
    {
        return Ok(());
    }
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": group, "labels": {GROUP_LABEL: group}},
        "spec": {"selector": selector, "ports": [{"port": port, "targetPort": port}]},
    }))
    .map_err(|e| Error::Invalid {
        field: "service".into(),
        message: e.to_string(),
    })?;
    let pp = PostParams::default();
    cluster
        .call(&format!("create services/{group}"), || {
            api.create(&pp, &svc)
        })
        .await?;
    Ok(())
}

/// Moves all traffic to `group` (and, for routes, keeps `others` listed at weight 0).
async fn switch_to(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    group: &Deployment,
    others: &[String],
) -> Result<()> {
    let name = name_of(group);
    let selector = group
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    match &cfg.traffic {
        TrafficConfig::Service { service } => {
            let state = crate::cluster::TrafficState::Selector { selector };
            cluster
                .write_traffic(
                    &TrafficSpec::Service {
                        service: service.clone(),
                    },
                    &state,
                )
                .await
        }
        TrafficConfig::HttpRoute { route, port } => {
            ensure_group_service(cluster, &name, &selector, *port).await?;
            let mut w = vec![(name, 100)];
            w.extend(others.iter().map(|o| (o.clone(), 0)));
            let replicas = group.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            set_weights(cluster, cfg, route, *port, &w, replicas).await
        }
    }
}

async fn enforce_windows(cfg: &DeployerConfig) -> Result<()> {
    match &cfg.windows {
        Some(w) => Windows::from_config(w)?.enforce().await,
        None => Ok(()),
    }
}

/// Deploys `manifest` (a Deployment; its name is ignored) as the next server group of the cluster.
/// `hook` is called after each rolling step with the percentage the new group serves.
pub async fn deploy<F, Fut>(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    manifest: Deployment,
    hook: F,
) -> Result<DeployReport>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = StepVerdict>,
{
    enforce_windows(cfg).await?;
    let object = traffic_object(cfg);
    cluster.lock_traffic(object, lock_hold(cfg)).await?;
    let result = deploy_locked(cluster, cfg, manifest, hook).await;
    if let Err(e) = cluster.unlock_traffic(object).await {
        tracing::warn!(error = %e, "could not release the traffic lock; it expires by itself");
    }
    result
}

/// The route or Service a cluster's traffic is written to.
fn traffic_object(cfg: &DeployerConfig) -> &str {
    match &cfg.traffic {
        TrafficConfig::Service { service } => service,
        TrafficConfig::HttpRoute { route, .. } => route,
    }
}

/// How long a deploy may hold the traffic lock: a readiness wait per step and the rollback it
/// may run.
fn lock_hold(cfg: &DeployerConfig) -> std::time::Duration {
    let o = cfg.rollback.options();
    let steps = match &cfg.strategy {
        StrategyConfig::RollingRedBlack { steps, .. } => steps.len() as u32,
        _ => 1,
    };
    o.ready_timeout * (2 * steps + 2) + o.drain + o.retention
}

async fn deploy_locked<F, Fut>(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    manifest: Deployment,
    mut hook: F,
) -> Result<DeployReport>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = StepVerdict>,
{
    let groups = server_groups(cluster, &cfg.cluster).await?;
    let next = groups
        .iter()
        .filter_map(|d| group_version(&cfg.cluster, &name_of(d)))
        .max()
        .map_or(0, |v| v + 1);
    let name = format!("{}-v{next:03}", cfg.cluster);
    let previous = serving_group(cluster, cfg, &groups).await?;
    let mut d = manifest;
    let target = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let labels = [
        (CLUSTER_LABEL.to_string(), cfg.cluster.clone()),
        (GROUP_LABEL.to_string(), name.clone()),
    ];
    d.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        labels: Some(
            d.metadata
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(labels.clone())
                .collect(),
        ),
        annotations: d.metadata.annotations.clone(),
        ..Default::default()
    };
    let spec = d.spec.as_mut().ok_or_else(|| Error::Invalid {
        field: "manifest.spec".into(),
        message: "a Deployment manifest needs a spec".into(),
    })?;
    let ml = spec.selector.match_labels.get_or_insert_with(BTreeMap::new);
    ml.extend(labels.clone());
    let tmeta = spec.template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels);
    let config_versions = versioned::version_template(cluster, &mut spec.template).await?;
    let rolling = match &cfg.strategy {
        StrategyConfig::RollingRedBlack { steps, .. } => Some(steps.clone()),
        _ => None,
    };
    spec.replicas = Some(match (&rolling, &previous) {
        (Some(steps), Some(_)) => scaled(target, steps[0]),
        _ => target,
    });
    let api = cluster.api::<Deployment>();
    let pp = PostParams::default();
    let created = cluster
        .call(&format!("create deployments/{name}"), || {
            api.create(&pp, &d)
        })
        .await?;
    info!(group = %name, previous = ?previous, "server group created");
    let gref = GroupRef::deployment(&name);
    let timeout = cfg.rollback.options().ready_timeout;
    let mut reached = Vec::new();
    match (&rolling, &previous) {
        (Some(steps), Some(prev)) => {
            let TrafficConfig::HttpRoute { route, port } = &cfg.traffic else {
                return Err(Error::Invalid {
                    field: "traffic".into(),
                    message: "rolling_red_black needs traffic.type http_route".into(),
                });
            };
            let selector = created
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default();
            ensure_group_service(cluster, &name, &selector, *port).await?;
            for &p in steps {
                let replicas = scaled(target, p);
                let st = cluster.require_group(&gref).await?;
                if st.spec_replicas < replicas {
                    cluster.scale_group(&gref, replicas).await?;
                }
                cluster
                    .wait_group_ready(&gref, replicas, timeout)
                    .await
                    .map_err(|e| not_ready(e, &name))?;
                let w = vec![(name.clone(), p as i32), (prev.clone(), 100 - p as i32)];
                set_weights(cluster, cfg, route, *port, &w, target).await?;
                reached.push(p);
                info!(group = %name, percent = p, "rolling step reached");
                if let StepVerdict::Stop(reason) = hook(p).await {
                    let req = RollbackRequest {
                        canary: gref.clone(),
                        baseline: GroupRef::deployment(prev),
                        traffic: TrafficSpec::HttpRoute {
                            route: route.clone(),
                            canary_backend: name.clone(),
                            baseline_backend: prev.clone(),
                        },
                    };
                    rollback::rollback(cluster, &req, &cfg.rollback.options()).await?;
                    return Err(Error::Stopped { percent: p, reason });
                }
            }
        }
        _ => {
            cluster
                .wait_group_ready(&gref, target, timeout)
                .await
                .map_err(|e| not_ready(e, &name))?;
            let others: Vec<String> = groups.iter().map(name_of).collect();
            let others: Vec<String> = others
                .into_iter()
                .filter(|o| Some(o) == previous.as_ref())
                .collect();
            switch_to(cluster, cfg, &created, &others).await?;
            reached.push(100);
        }
    }
    let deleted_groups = trim(cluster, cfg, &name).await?;
    Ok(DeployReport {
        server_group: name,
        previous,
        steps: reached,
        deleted_groups,
        config_versions: config_versions
            .into_iter()
            .map(|(k, v)| (k.name, v))
            .collect(),
    })
}

/// What a deploy or promote would do, read from the cluster without changing it (`--dry-run`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployPlan {
    /// `deploy` or `promote`.
    pub action: String,
    /// The server group that would receive the traffic (created by a deploy).
    pub server_group: String,
    /// The group receiving (most) traffic now.
    pub previous: Option<String>,
    pub strategy: String,
    /// Traffic percentages the group would reach, in order.
    pub traffic_steps: Vec<u32>,
    /// Replicas the group would run (at full traffic).
    pub replicas: i32,
    /// Unversioned ConfigMaps/Secrets the pod template references: each gets a `name-vNNN` copy
    /// (or reuses the latest identical one).
    pub config_to_version: Vec<String>,
    /// Older server groups the strategy's clean-up would delete.
    pub would_delete: Vec<String>,
    /// Whether a deployment window is open now (`None`: no windows configured).
    pub window: Option<String>,
}

impl std::fmt::Display for DeployPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} plan ({})", self.action, self.strategy)?;
        writeln!(
            f,
            "  server group: {} ({} replicas)",
            self.server_group, self.replicas
        )?;
        writeln!(
            f,
            "  traffic now on: {}",
            self.previous.as_deref().unwrap_or("none")
        )?;
        let steps: Vec<String> = self.traffic_steps.iter().map(|p| format!("{p}%")).collect();
        writeln!(f, "  traffic steps: {}", steps.join(" -> "))?;
        if !self.config_to_version.is_empty() {
            writeln!(
                f,
                "  config to version: {}",
                self.config_to_version.join(", ")
            )?;
        }
        writeln!(
            f,
            "  would delete: {}",
            if self.would_delete.is_empty() {
                "none".to_string()
            } else {
                self.would_delete.join(", ")
            }
        )?;
        if let Some(w) = &self.window {
            writeln!(f, "  deployment window: {w}")?;
        }
        Ok(())
    }
}

fn strategy_name(cfg: &DeployerConfig) -> String {
    match &cfg.strategy {
        StrategyConfig::RedBlack { max_history } => format!("red_black, max_history {max_history}"),
        StrategyConfig::RollingRedBlack { steps, max_history } => {
            format!("rolling_red_black {steps:?}, max_history {max_history}")
        }
        StrategyConfig::Highlander => "highlander".into(),
    }
}

fn window_now(cfg: &DeployerConfig) -> Result<Option<String>> {
    let Some(w) = &cfg.windows else {
        return Ok(None);
    };
    let w = Windows::from_config(w)?;
    Ok(Some(match w.check(jiff::Timestamp::now()) {
        Ok(()) => "open now".to_string(),
        Err(why) => why,
    }))
}

/// Older groups the clean-up would delete once `serving` has the traffic.
fn doomed(cfg: &DeployerConfig, names: &[String], serving: &str) -> Vec<String> {
    let older: Vec<&String> = names.iter().filter(|n| n.as_str() != serving).collect();
    let keep = match &cfg.strategy {
        StrategyConfig::Highlander => 0,
        StrategyConfig::RedBlack { max_history }
        | StrategyConfig::RollingRedBlack { max_history, .. } => *max_history,
    };
    older
        .iter()
        .take(older.len().saturating_sub(keep))
        .map(|s| s.to_string())
        .collect()
}

/// What [`deploy`] would do with `manifest`, reading only.
pub async fn plan_deploy(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    manifest: &Deployment,
) -> Result<DeployPlan> {
    let groups = server_groups(cluster, &cfg.cluster).await?;
    let next = groups
        .iter()
        .filter_map(|d| group_version(&cfg.cluster, &name_of(d)))
        .max()
        .map_or(0, |v| v + 1);
    let name = format!("{}-v{next:03}", cfg.cluster);
    let previous = serving_group(cluster, cfg, &groups).await?;
    let spec = manifest.spec.as_ref().ok_or_else(|| Error::Invalid {
        field: "manifest.spec".into(),
        message: "a Deployment manifest needs a spec".into(),
    })?;
    let traffic_steps = match (&cfg.strategy, &previous) {
        (StrategyConfig::RollingRedBlack { steps, .. }, Some(_)) => steps.clone(),
        _ => vec![100],
    };
    let mut names: Vec<String> = groups.iter().map(name_of).collect();
    names.push(name.clone());
    Ok(DeployPlan {
        action: "deploy".into(),
        would_delete: doomed(cfg, &names, &name),
        server_group: name,
        previous,
        strategy: strategy_name(cfg),
        traffic_steps,
        replicas: spec.replicas.unwrap_or(1),
        config_to_version: versioned::config_refs(&spec.template)
            .into_iter()
            .filter(|r| versioned::split_version(&r.name).is_none())
            .map(|r| format!("{} {}", r.kind.plural(), r.name))
            .collect(),
        window: window_now(cfg)?,
    })
}

/// What [`promote`] would do for `group`, reading only.
pub async fn plan_promote(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    group: &str,
) -> Result<DeployPlan> {
    let groups = server_groups(cluster, &cfg.cluster).await?;
    let g = groups
        .iter()
        .find(|d| name_of(d) == group)
        .ok_or_else(|| cluster.not_found("deployments", group))?;
    let previous = serving_group(cluster, cfg, &groups).await?;
    let names: Vec<String> = groups.iter().map(name_of).collect();
    Ok(DeployPlan {
        action: "promote".into(),
        server_group: group.to_string(),
        previous,
        strategy: strategy_name(cfg),
        traffic_steps: vec![100],
        replicas: g.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        config_to_version: Vec::new(),
        would_delete: doomed(cfg, &names, group),
        window: window_now(cfg)?,
    })
}

fn not_ready(e: Error, name: &str) -> Error {
    match e {
        Error::BaselineNotReady {
            ready,
            required,
            waited,
            ..
        } => Error::NotReady {
            group: name.to_string(),
            ready,
            required,
            waited,
        },
        e => e,
    }
}

fn scaled(target: i32, percent: u32) -> i32 {
    ((i64::from(target) * i64::from(percent) + 99) / 100).max(1) as i32
}

/// Moves all traffic to an existing server group (after it is ready at its own size), then
/// applies the strategy's clean-up.
pub async fn promote(cluster: &Cluster, cfg: &DeployerConfig, group: &str) -> Result<DeployReport> {
    enforce_windows(cfg).await?;
    let object = traffic_object(cfg);
    cluster.lock_traffic(object, lock_hold(cfg)).await?;
    let result = promote_locked(cluster, cfg, group).await;
    if let Err(e) = cluster.unlock_traffic(object).await {
        tracing::warn!(error = %e, "could not release the traffic lock; it expires by itself");
    }
    result
}

async fn promote_locked(
    cluster: &Cluster,
    cfg: &DeployerConfig,
    group: &str,
) -> Result<DeployReport> {
    let groups = server_groups(cluster, &cfg.cluster).await?;
    let g = groups
        .iter()
        .find(|d| name_of(d) == group)
        .ok_or_else(|| cluster.not_found("deployments", group))?;
    let previous = serving_group(cluster, cfg, &groups).await?;
    let gref = GroupRef::deployment(group);
    let st = cluster.require_group(&gref).await?;
    cluster
        .wait_group_ready(
            &gref,
            st.spec_replicas.max(1),
            cfg.rollback.options().ready_timeout,
        )
        .await
        .map_err(|e| not_ready(e, group))?;
    let others: Vec<String> = previous
        .iter()
        .filter(|p| p.as_str() != group)
        .cloned()
        .collect();
    switch_to(cluster, cfg, g, &others).await?;
    let deleted_groups = trim(cluster, cfg, group).await?;
    Ok(DeployReport {
        server_group: group.to_string(),
        previous,
        steps: vec![100],
        deleted_groups,
        config_versions: BTreeMap::new(),
    })
}

/// Deletes older server groups the strategy no longer keeps (with their HPAs and per-group
/// Services), then old config versions beyond the history limit.
async fn trim(cluster: &Cluster, cfg: &DeployerConfig, serving: &str) -> Result<Vec<String>> {
    let groups = server_groups(cluster, &cfg.cluster).await?;
    let names: Vec<String> = groups.iter().map(name_of).collect();
    let older: Vec<String> = names.iter().filter(|n| *n != serving).cloned().collect();
    let doomed = doomed(cfg, &names, serving);
    if doomed.is_empty() {
        return Ok(doomed);
    }
    let mut bases = BTreeSet::new();
    for d in groups.iter().filter(|d| doomed.contains(&name_of(d))) {
        if let Some(spec) = &d.spec {
            for r in versioned::config_refs(&spec.template) {
                if let Some((base, _)) = versioned::split_version(&r.name) {
                    bases.insert(ConfigRef {
                        kind: r.kind,
                        name: base.to_string(),
                    });
                }
            }
        }
    }
    if let TrafficConfig::HttpRoute { route, port } = &cfg.traffic {
        let kept: Vec<(String, i32)> = std::iter::once((serving.to_string(), 100))
            .chain(
                older
                    .iter()
                    .filter(|o| !doomed.contains(o))
                    .map(|o| (o.clone(), 0)),
            )
            .collect();
        set_weights(cluster, cfg, route, *port, &kept, 1).await?;
    }
    // Requests already sent to the old groups finish, and load balancers converge on the new
    // traffic, before their pods go: the same drain as a rollback's.
    let drain = cfg.rollback.options().drain;
    if !drain.is_zero() {
        info!(?drain, groups = ?doomed, "draining before the older groups are deleted");
        tokio::time::sleep(drain).await;
    }
    for name in &doomed {
        let g = GroupRef::deployment(name);
        if let Some(h) = cluster.hpa_for(&g).await? {
            cluster.delete_hpa(&h.name).await?;
        }
        cluster.delete_group(&g).await?;
        if matches!(cfg.traffic, TrafficConfig::HttpRoute { .. }) {
            let api = cluster.api::<Service>();
            let dp = kube::api::DeleteParams::default();
            cluster
                .call_opt(&format!("delete services/{name}"), || api.delete(name, &dp))
                .await?;
        }
        info!(group = %name, "older server group deleted");
    }
    versioned::collect_garbage(cluster, &bases, cfg.config_history).await?;
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_step_sizes() {
        assert_eq!(group_version("shop", "shop-v012"), Some(12));
        assert_eq!(group_version("shop", "shopping-v012"), None);
        assert_eq!(group_version("shop", "shop-v1"), None);
        assert_eq!(scaled(4, 25), 1);
        assert_eq!(scaled(4, 50), 2);
        assert_eq!(scaled(5, 50), 3);
        assert_eq!(scaled(4, 100), 4);
    }
}
