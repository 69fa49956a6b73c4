//! The Kubernetes deployer behind the engine's narrow [`Deployer`] interface: this is where the
//! binary wires `vigil-deployer` (and with it kube) to the service, which never links it.
//!
//! `vigil serve --deployer-config FILE` builds one [`KubeDeployer`]: the file's traffic, strategy
//! and rollback timing apply to every analysis; each analysis's `rollback.target` /
//! `promote.target` gives the namespace and the server groups.
//!
//! # Whose server groups
//! Vigil acts only on server groups the deployer manages. A group is refused (a `rollback` /
//! `promote` event saying so, nothing changed) when an owner reference names an Argo Rollout
//! (`argoproj.io`) or a Flagger Canary (`flagger.app`), or when a Deployment `<name>-primary`
//! owned by a Flagger Canary exists beside it (Flagger's target; Flagger owns only the primary).
//! Those controllers act on Vigil's verdict themselves: Argo through its failed measurement,
//! Flagger through the rollback webhook's answer.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use vigil_analyzer::actions::{
    Action, ActionError, ActionOrder, ActionReport, BoxFuture, Deployer, Progress, Target,
};
use vigil_deployer::cluster::{Cluster, GroupKind, GroupRef, TrafficSpec};
use vigil_deployer::config::{DeployerConfig, TrafficConfig};
use vigil_deployer::rollback::{
    execute_rollback, plan_rollback, RollbackPlan, RollbackRequest, StepReport,
};
use vigil_deployer::strategy;
use vigil_deployer::Error;

/// Rolls back and promotes through the Kubernetes API, with the deployer's safe order (baseline
/// sized and ready before traffic moves, canary removed last).
pub struct KubeDeployer {
    client: kube::Client,
    config: DeployerConfig,
    identity: String,
    tune: Arc<dyn Fn(Cluster) -> Cluster + Send + Sync>,
    /// Actions run one at a time: they share one lock identity, under which the traffic Lease is
    /// re-entrant, so two analyses failing together must not roll the same route back at once.
    serial: tokio::sync::Mutex<()>,
}

impl KubeDeployer {
    /// A deployer over `client` with `config`'s traffic, strategy and timing. `identity` holds
    /// the traffic locks: a fixed one (not per process), so that a restarted service resumes a
    /// rollback under the lock its killed predecessor took — one `vigil serve` per store.
    pub fn new(client: kube::Client, config: DeployerConfig, identity: &str) -> Self {
        KubeDeployer {
            client,
            config,
            identity: identity.to_owned(),
            tune: Arc::new(|c| c),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Adjusts each namespace's [`Cluster`] (retries, polling), e.g. for tests.
    pub fn with_tuning(
        mut self,
        tune: impl Fn(Cluster) -> Cluster + Send + Sync + 'static,
    ) -> Self {
        self.tune = Arc::new(tune);
        self
    }

    fn cluster(&self, t: &Target) -> Cluster {
        (self.tune)(Cluster::new(self.client.clone(), &t.namespace).with_identity(&self.identity))
    }

    /// The config for `t`: its namespace, and its app as the deployer's cluster name.
    fn config_for(&self, t: &Target) -> DeployerConfig {
        let mut c = self.config.clone();
        c.namespace = t.namespace.clone();
        if let Some(app) = &t.app {
            c.cluster = app.clone();
        }
        c
    }

    fn request(&self, t: &Target) -> Result<RollbackRequest, ActionError> {
        let group = |g: &Option<String>, what: &str| {
            let g = g
                .as_deref()
                .ok_or_else(|| ActionError::Failed(format!("the target has no {what}")))?;
            GroupRef::parse(g).map_err(failed)
        };
        let canary = group(&t.canary, "canary")?;
        let baseline = group(&t.baseline, "baseline")?;
        let traffic = match &self.config.traffic {
            TrafficConfig::Service { service } => TrafficSpec::Service {
                service: service.clone(),
            },
            TrafficConfig::HttpRoute { route, .. } => TrafficSpec::HttpRoute {
                route: route.clone(),
                canary_backend: canary.name.clone(),
                baseline_backend: baseline.name.clone(),
            },
        };
        Ok(RollbackRequest {
            canary,
            baseline,
            traffic,
        })
    }

    async fn owners(&self, cluster: &Cluster, g: &GroupRef) -> Result<Vec<OwnerReference>, Error> {
        let what = format!("get {}/{}", g.kind.plural(), g.name);
        let meta = match g.kind {
            GroupKind::Deployment => {
                let api = cluster.api::<Deployment>();
                cluster
                    .call_opt(&what, || api.get(&g.name))
                    .await?
                    .map(|d| d.metadata)
            }
            GroupKind::ReplicaSet => {
                let api = cluster.api::<ReplicaSet>();
                cluster
                    .call_opt(&what, || api.get(&g.name))
                    .await?
                    .map(|d| d.metadata)
            }
        };
        Ok(meta.and_then(|m| m.owner_references).unwrap_or_default())
    }

    /// `Err(Refused)` when another controller owns `g` (see the module documentation).
    async fn check_ours(&self, cluster: &Cluster, g: &GroupRef) -> Result<(), ActionError> {
        let foreign = |o: &OwnerReference| {
            (o.api_version.starts_with("argoproj.io/") && o.kind == "Rollout")
                .then_some("Argo Rollout")
                .or_else(|| {
                    (o.api_version.starts_with("flagger.app/") && o.kind == "Canary")
                        .then_some("Flagger Canary")
                })
        };
        for o in self.owners(cluster, g).await.map_err(failed)? {
            if let Some(who) = foreign(&o) {
                return Err(ActionError::Refused(format!(
                    "{g} belongs to the {who} `{}`, whose controller acts on the verdict itself; \
                     rollback.mode applies only to server groups Vigil's deployer manages",
                    o.name
                )));
            }
        }
        if g.kind == GroupKind::Deployment {
            let primary = GroupRef::deployment(&format!("{}-primary", g.name));
            for o in self.owners(cluster, &primary).await.map_err(failed)? {
                if foreign(&o) == Some("Flagger Canary") {
                    return Err(ActionError::Refused(format!(
                        "{g} is the target of the Flagger Canary `{}` (it owns {primary}); \
                         Flagger rolls it back when its rollback webhook answers 200",
                        o.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> ActionError {
    ActionError::Failed(e.to_string())
}

fn step_line(r: &StepReport) -> String {
    format!("[{}] read: {}; changed: {}", r.step, r.read, r.changed)
}

fn plan_lines(plan: &impl std::fmt::Display) -> Vec<String> {
    plan.to_string()
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Deployer for KubeDeployer {
    fn resolve<'a>(&'a self, order: &'a ActionOrder) -> BoxFuture<'a, Result<Target, ActionError>> {
        Box::pin(async move {
            let cluster = self.cluster(&order.target);
            let mut t = order.target.clone();
            if let Some(app) = &t.app {
                // The newest `app-vNNN` is the canary, the one before it the baseline.
                let groups = strategy::server_groups(&cluster, app)
                    .await
                    .map_err(failed)?;
                let names: Vec<String> = groups
                    .iter()
                    .filter_map(|d| d.metadata.name.clone())
                    .collect();
                let [.., baseline, canary] = names.as_slice() else {
                    return Err(ActionError::Failed(format!(
                        "app `{app}` in namespace {} has {} server group(s) labelled \
                         vigil.dev/cluster={app}; a canary and a baseline need two",
                        t.namespace,
                        names.len()
                    )));
                };
                t.canary = Some(format!("deployment/{canary}"));
                t.baseline = Some(format!("deployment/{baseline}"));
            }
            let req = self.request(&t)?;
            self.check_ours(&cluster, &req.canary).await?;
            self.check_ours(&cluster, &req.baseline).await?;
            Ok(t)
        })
    }

    fn plan<'a>(
        &'a self,
        order: &'a ActionOrder,
    ) -> BoxFuture<'a, Result<ActionReport, ActionError>> {
        Box::pin(async move {
            let cluster = self.cluster(&order.target);
            match order.action {
                Action::Rollback => {
                    let req = self.request(&order.target)?;
                    let summary = format!("would roll {} back to {}", req.canary, req.baseline);
                    let plan: RollbackPlan = match plan_rollback(&cluster, &req).await {
                        Ok(p) => p,
                        Err(Error::NothingToRollBack { canary, baseline }) => {
                            return Ok(ActionReport {
                                summary: format!(
                                    "nothing to roll back: {canary} is gone and no unfinished \
                                     rollback is recorded on {baseline}"
                                ),
                                steps: vec![],
                            })
                        }
                        Err(e) => return Err(failed(e)),
                    };
                    let mut steps = plan_lines(&plan);
                    steps.push("API calls it would make:".into());
                    steps.extend(
                        plan.api_calls(&self.config.rollback.options())
                            .map_err(failed)?
                            .into_iter()
                            .map(|c| format!("  {c}")),
                    );
                    Ok(ActionReport { summary, steps })
                }
                Action::Promote => {
                    let req = self.request(&order.target)?;
                    let cfg = self.config_for(&order.target);
                    let plan = strategy::plan_promote(&cluster, &cfg, &req.canary.name)
                        .await
                        .map_err(failed)?;
                    Ok(ActionReport {
                        summary: format!("would promote {}", req.canary.name),
                        steps: plan_lines(&plan),
                    })
                }
            }
        })
    }

    fn execute<'a>(
        &'a self,
        order: &'a ActionOrder,
        progress: Progress,
    ) -> BoxFuture<'a, Result<ActionReport, ActionError>> {
        Box::pin(async move {
            let _one_at_a_time = self.serial.lock().await;
            let cluster = self.cluster(&order.target);
            let req = self.request(&order.target)?;
            match order.action {
                Action::Rollback => {
                    tracing::info!(analysis = %order.analysis, canary = %req.canary, reason = %order.reason, "rolling back");
                    let plan = match plan_rollback(&cluster, &req).await {
                        Ok(p) => p,
                        // A resumed rollback that had finished: the canary is gone and the record
                        // removed.
                        Err(Error::NothingToRollBack { canary, baseline }) => {
                            return Ok(ActionReport {
                                summary: format!(
                                    "rolled back: {canary} is gone and no unfinished rollback is \
                                     recorded on {baseline}"
                                ),
                                steps: vec![],
                            })
                        }
                        Err(e) => return Err(failed(e)),
                    };
                    let _ = progress.send(format!(
                        "plan{}: {} ready baseline replicas required before traffic moves",
                        if plan.resumed {
                            " (resumed from the cluster's record)"
                        } else {
                            ""
                        },
                        plan.required_replicas
                    ));
                    let mut steps = Vec::new();
                    let mut report = |r: &StepReport| {
                        let line = step_line(r);
                        let _ = progress.send(line.clone());
                        steps.push(line);
                    };
                    execute_rollback(
                        &cluster,
                        &plan,
                        &self.config.rollback.options(),
                        &mut report,
                    )
                    .await
                    .map_err(failed)?;
                    Ok(ActionReport {
                        summary: format!(
                            "rolled back: all traffic on {}; {} removed",
                            req.baseline, req.canary
                        ),
                        steps,
                    })
                }
                Action::Promote => {
                    let cfg = self.config_for(&order.target);
                    tracing::info!(analysis = %order.analysis, group = %req.canary.name, "promoting");
                    let _ = progress.send(format!(
                        "promoting {} (cluster {}, namespace {})",
                        req.canary.name, cfg.cluster, cfg.namespace
                    ));
                    let r = strategy::promote(&cluster, &cfg, &req.canary.name)
                        .await
                        .map_err(failed)?;
                    Ok(ActionReport {
                        summary: format!(
                            "promoted {}: all traffic on it (previous: {}; deleted: {})",
                            r.server_group,
                            r.previous.as_deref().unwrap_or("none"),
                            if r.deleted_groups.is_empty() {
                                "none".to_owned()
                            } else {
                                r.deleted_groups.join(", ")
                            }
                        ),
                        steps: vec![],
                    })
                }
            }
        })
    }
}
