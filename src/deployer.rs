//! The Kubernetes deployer behind the engine's narrow [`Deployer`] interface: this is where the
//! binary wires `vigil-deployer` (and with it kube) to the analysis engine, which never links it.

use vigil_analyzer::actions::{ActionError, ActionReport, Deployer, RollbackOrder};
use vigil_deployer::cluster::{Cluster, GroupRef, TrafficSpec};
use vigil_deployer::config::TrafficConfig;
use vigil_deployer::rollback::{execute_rollback, plan_rollback, RollbackOptions, StepReport};

/// Rolls back through the Kubernetes API with the deployer's safe order (baseline sized and
/// ready before traffic moves, canary removed last).
pub struct KubeDeployer {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
    traffic: TrafficConfig,
    options: RollbackOptions,
}

impl KubeDeployer {
    /// A deployer over `cluster`, moving traffic as `traffic` says (the deployer config's).
    pub fn new(
        cluster: Cluster,
        traffic: TrafficConfig,
        options: RollbackOptions,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            runtime,
            cluster,
            traffic,
            options,
        })
    }
}

fn failed(e: impl std::fmt::Display) -> ActionError {
    ActionError {
        action: "rollback",
        message: e.to_string(),
    }
}

impl Deployer for KubeDeployer {
    fn rollback(&mut self, order: &RollbackOrder) -> Result<ActionReport, ActionError> {
        let canary = GroupRef::parse(&order.canary).map_err(failed)?;
        let baseline = GroupRef::parse(&order.baseline).map_err(failed)?;
        let traffic = match &self.traffic {
            TrafficConfig::Service { service } => TrafficSpec::Service {
                service: service.clone(),
            },
            TrafficConfig::HttpRoute { route, .. } => TrafficSpec::HttpRoute {
                route: route.clone(),
                canary_backend: canary.name.clone(),
                baseline_backend: baseline.name.clone(),
            },
        };
        let request = vigil_deployer::rollback::RollbackRequest {
            canary,
            baseline,
            traffic,
        };
        tracing::info!(canary = %order.canary, reason = %order.reason, "rolling back");
        let (cluster, options) = (&self.cluster, &self.options);
        self.runtime.block_on(async {
            let plan = plan_rollback(cluster, &request).await.map_err(failed)?;
            let mut steps = Vec::new();
            let mut progress = |r: &StepReport| {
                steps.push(format!(
                    "[{}] read: {}; changed: {}",
                    r.step, r.read, r.changed
                ));
            };
            execute_rollback(cluster, &plan, options, &mut progress)
                .await
                .map_err(failed)?;
            Ok(ActionReport { steps })
        })
    }
}
