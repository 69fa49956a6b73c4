//! Rollback of a failed canary, as a plan recorded in the cluster and executed in idempotent steps.
//!
//! [`plan_rollback`] only reads. It records nothing; it returns the plan a run would execute, or
//! the plan an interrupted run recorded (so a second process resumes the same plan, not a new one
//! computed from a half-changed cluster). [`execute_rollback`] runs the steps in order:
//!
//! 1. **Record** the plan and prior state as a JSON annotation on the canary and the baseline.
//! 2. **Pin** the baseline HPA's minimum (and maximum, if needed) to the required capacity.
//! 3. **Resize** the baseline up to that capacity (never down).
//! 4. **Wait** until the baseline's status, for its current generation, shows that many ready
//!    replicas; stop with [`Error::BaselineNotReady`] on timeout — traffic is not touched.
//! 5. **Move traffic** to the baseline, after re-checking readiness, and verify it by reading back.
//! 6. **Drain**: wait for load balancers to converge.
//! 7. **Remove the canary**: delete its HPA (so it cannot scale the canary back up), scale it to 0,
//!    wait out the retention period, delete it, then delete versioned ConfigMaps/Secrets only it
//!    referenced.
//! 8. **Restore** the baseline HPA's bounds from the record and remove the record.
//!
//! Every step reads before it writes and writes only what differs, so running the same rollback
//! again after a crash at any point ends in the same state.
//!
//! Required capacity: `baseline replicas + ceil(canary share × (baseline + canary replicas))`,
//! never below the baseline HPA's own minimum — the baseline keeps its own share and takes over
//! the canary's share of the whole group's capacity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::cluster::{Cluster, GroupRef, HpaBounds, TrafficSpec, TrafficState};
use crate::versioned::{self, ConfigRef};
use crate::{Error, Result, RETAIN_UNTIL_ANNOTATION, ROLLBACK_ANNOTATION};

/// What to roll back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub canary: GroupRef,
    pub baseline: GroupRef,
    pub traffic: TrafficSpec,
}

/// Timing of a rollback run.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackOptions {
    /// Time for load balancers to converge after traffic moved (default 30 s).
    pub drain: Duration,
    /// How long the canary stays at 0 replicas before it is deleted, for forensics (default 0).
    pub retention: Duration,
    /// How long to wait for the baseline to become ready (default 5 min).
    pub ready_timeout: Duration,
    /// Move the canary's traffic share to the baseline in these steps (percent of that share,
    /// increasing, ending at 100; HTTPRoute only). Each step waits until the baseline has the
    /// ready replicas for its new share: `ceil(required × share)`. Empty = one step.
    pub traffic_steps: Vec<u32>,
}

impl Default for RollbackOptions {
    fn default() -> Self {
        RollbackOptions {
            drain: Duration::from_secs(30),
            retention: Duration::ZERO,
            ready_timeout: Duration::from_secs(300),
            traffic_steps: Vec::new(),
        }
    }
}

/// The cluster as it was before the rollback started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorState {
    pub baseline_replicas: i32,
    pub canary_replicas: i32,
    pub baseline_hpa: Option<HpaBounds>,
    pub canary_hpa: Option<String>,
    pub traffic: TrafficState,
    /// Versioned ConfigMaps/Secrets the canary's pod template referenced.
    pub canary_config: Vec<ConfigRef>,
}

/// The recorded plan: enough for any process to finish the rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub namespace: String,
    pub request: RollbackRequest,
    pub prior: PriorState,
    /// Ready baseline replicas required before traffic moves.
    pub required_replicas: i32,
    /// Canary share of traffic before the rollback, 0–1.
    pub canary_share: f64,
    /// Traffic after the move.
    pub target_traffic: TrafficState,
    /// Other Services whose selector matches the canary's pods (a headless Service, a second
    /// Service): they keep sending the canary requests until it is deleted; the rollback cannot
    /// move them and reports them.
    #[serde(default)]
    pub other_services: Vec<String>,
    /// Whether this plan was read from a record left by an earlier run.
    #[serde(skip)]
    pub resumed: bool,
    /// Whether the canary server group still exists.
    #[serde(skip)]
    pub canary_present: bool,
}

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Record,
    PinHpa,
    ResizeBaseline,
    WaitReady,
    MoveTraffic,
    Drain,
    RemoveCanary,
    RestoreHpa,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::Record,
        Step::PinHpa,
        Step::ResizeBaseline,
        Step::WaitReady,
        Step::MoveTraffic,
        Step::Drain,
        Step::RemoveCanary,
        Step::RestoreHpa,
    ];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Step::Record => "record plan",
            Step::PinHpa => "pin baseline HPA",
            Step::ResizeBaseline => "resize baseline",
            Step::WaitReady => "wait for baseline ready",
            Step::MoveTraffic => "move traffic",
            Step::Drain => "drain",
            Step::RemoveCanary => "remove canary",
            Step::RestoreHpa => "restore baseline HPA",
        };
        f.write_str(s)
    }
}

/// What one step saw and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub read: String,
    pub changed: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackReport {
    pub plan: RollbackPlan,
    pub steps: Vec<StepReport>,
}

fn share(canary: i32, baseline: i32) -> f64 {
    if canary + baseline <= 0 {
        0.0
    } else {
        f64::from(canary.max(0)) / f64::from(canary.max(0) + baseline.max(0))
    }
}

fn template_labels(g: &crate::cluster::GroupState) -> BTreeMap<String, String> {
    g.template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// Whether a Service selector matches pods with these labels (an empty selector selects none).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The selector that sends the Service's requests to the baseline's pods and none of the
/// canary's: the baseline's `matchLabels` if they exclude the canary's pods (a broad selector
/// such as `{app: shop}` does not), else all of the baseline's pod template labels.
fn baseline_only_selector(
    baseline: &crate::cluster::GroupState,
    b_labels: &BTreeMap<String, String>,
    c_labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    for candidate in [&baseline.match_labels, b_labels] {
        if selects(candidate, b_labels) && !selects(candidate, c_labels) {
            return Ok(candidate.clone());
        }
    }
    Err(Error::Invalid {
        field: "traffic".into(),
        message: format!(
            "no selector selects the baseline's pods without the canary's: baseline pod labels \
             {b_labels:?}, canary pod labels {c_labels:?}; give the baseline a distinguishing label"
        ),
    })
}

fn read_record(
    object: &GroupRef,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Option<RollbackPlan>> {
    annotations
        .get(ROLLBACK_ANNOTATION)
        .map(|s| {
            serde_json::from_str::<RollbackPlan>(s).map_err(|source| Error::BadRecord {
                object: object.to_string(),
                source,
            })
        })
        .transpose()
}

/// Reads the cluster and returns the plan a run would execute — the recorded one if an earlier
/// run left it. Makes no changes.
pub async fn plan_rollback(cluster: &Cluster, req: &RollbackRequest) -> Result<RollbackPlan> {
    let canary = cluster.group(&req.canary).await?;
    let baseline = cluster.require_group(&req.baseline).await?;
    let recorded = match &canary {
        Some(c) => read_record(&req.canary, &c.annotations)?,
        None => read_record(&req.baseline, &baseline.annotations)?,
    };
    if let Some(mut plan) = recorded {
        if plan.request != *req {
            return Err(Error::Invalid {
                field: "rollback request".into(),
                message: format!(
                    "an unfinished rollback recorded on {} is for {:?}, not this request",
                    if canary.is_some() {
                        &req.canary
                    } else {
                        &req.baseline
                    },
                    plan.request
                ),
            });
        }
        plan.resumed = true;
        plan.canary_present = canary.is_some();
        info!(canary = %req.canary, "resuming the recorded rollback plan");
        return Ok(plan);
    }
    let Some(canary) = canary else {
        return Err(Error::NothingToRollBack {
            canary: req.canary.to_string(),
            baseline: req.baseline.to_string(),
        });
    };
    let traffic = cluster.read_traffic(&req.traffic).await?;
    let c_labels = template_labels(&canary);
    let b_labels = template_labels(&baseline);
    let canary_share = match &traffic {
        TrafficState::Weights { canary, baseline } => share(*canary, *baseline),
        TrafficState::Selector { selector } => {
            let c = if selects(selector, &c_labels) {
                canary.ready_replicas
            } else {
                0
            };
            let b = if selects(selector, &b_labels) {
                baseline.ready_replicas
            } else {
                0
            };
            share(c, b)
        }
    };
    let baseline_hpa = cluster.hpa_for(&req.baseline).await?;
    let canary_hpa = cluster.hpa_for(&req.canary).await?.map(|h| h.name);
    let b = baseline.spec_replicas;
    let c = canary.spec_replicas;
    let takeover = (canary_share * f64::from(b + c)).ceil() as i32;
    let mut required = (b + takeover).max(1);
    if let Some(h) = &baseline_hpa {
        required = required.max(h.min);
    }
    let target_traffic = match (&req.traffic, &traffic) {
        (TrafficSpec::Service { .. }, _) => TrafficState::Selector {
            selector: baseline_only_selector(&baseline, &b_labels, &c_labels)?,
        },
        (TrafficSpec::HttpRoute { .. }, TrafficState::Weights { canary, baseline }) => {
            TrafficState::Weights {
                canary: 0,
                baseline: (canary + baseline).max(1),
            }
        }
        (TrafficSpec::HttpRoute { .. }, TrafficState::Selector { .. }) => {
            return Err(Error::Invalid {
                field: "traffic".into(),
                message: "an HTTPRoute read back as a selector".into(),
            })
        }
    };
    let exclude: Vec<&str> = match &req.traffic {
        TrafficSpec::Service { service } => vec![service.as_str()],
        TrafficSpec::HttpRoute { canary_backend, .. } => vec![canary_backend.as_str()],
    };
    let other_services: Vec<String> = cluster
        .services_selecting(&c_labels)
        .await?
        .into_iter()
        .filter(|s| !exclude.contains(&s.as_str()))
        .collect();
    if !other_services.is_empty() {
        tracing::warn!(services = ?other_services, canary = %req.canary,
            "other Services select the canary's pods and keep sending them requests until it is deleted");
    }
    let canary_config = versioned::config_refs(&canary.template)
        .into_iter()
        .filter(|r| versioned::split_version(&r.name).is_some())
        .collect();
    Ok(RollbackPlan {
        namespace: cluster.namespace().to_string(),
        request: req.clone(),
        prior: PriorState {
            baseline_replicas: b,
            canary_replicas: c,
            baseline_hpa,
            canary_hpa,
            traffic,
            canary_config,
        },
        required_replicas: required,
        canary_share,
        target_traffic,
        other_services,
        resumed: false,
        canary_present: true,
    })
}

impl RollbackPlan {
    /// The API calls a run would make, for `--dry-run`. Calls that find nothing to change are
    /// skipped at run time.
    pub fn api_calls(&self, opts: &RollbackOptions) -> Result<Vec<String>> {
        let ns = &self.namespace;
        let gpath = |g: &GroupRef| {
            format!(
                "/apis/apps/v1/namespaces/{ns}/{}/{}",
                g.kind.plural(),
                g.name
            )
        };
        let hpath =
            |n: &str| format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{n}");
        let (c, b) = (&self.request.canary, &self.request.baseline);
        let mut calls = vec![
            format!(
                "PATCH  {}  (merge: annotation {ROLLBACK_ANNOTATION} = plan + prior state)",
                gpath(c)
            ),
            format!(
                "PATCH  {}  (merge: annotation {ROLLBACK_ANNOTATION} = plan + prior state)",
                gpath(b)
            ),
        ];
        if let Some(h) = &self.prior.baseline_hpa {
            calls.push(format!(
                "PATCH  {}  (merge: minReplicas {} -> {}, maxReplicas {} -> {})",
                hpath(&h.name),
                h.min,
                h.min.max(self.required_replicas),
                h.max,
                h.max.max(self.required_replicas)
            ));
        }
        calls.push(format!(
            "PATCH  {}/scale  (merge: replicas {} -> {})",
            gpath(b),
            self.prior.baseline_replicas,
            self.prior.baseline_replicas.max(self.required_replicas)
        ));
        let tpath = match &self.request.traffic {
            TrafficSpec::Service { service } => {
                format!("/api/v1/namespaces/{ns}/services/{service}")
            }
            TrafficSpec::HttpRoute { route, .. } => {
                format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/{route}")
            }
        };
        let mut from = self.prior.traffic.clone();
        for (target, need) in traffic_steps(self, opts)? {
            calls.push(format!(
                "WATCH  {}  (until observedGeneration current and {need} replicas ready; timeout {:?})",
                gpath(b),
                opts.ready_timeout
            ));
            calls.push(format!("GET    {}  (re-check baseline ready)", gpath(b)));
            calls.push(format!("PUT    {tpath}  ({from} -> {target})"));
            calls.push(format!("GET    {tpath}  (verify: expect {target})"));
            from = target;
        }
        calls.push(format!("SLEEP  {:?}  (drain)", opts.drain));
        if let Some(h) = &self.prior.canary_hpa {
            calls.push(format!("DELETE {}", hpath(h)));
        }
        calls.push(format!(
            "PATCH  {}/scale  (merge: replicas {} -> 0)",
            gpath(c),
            self.prior.canary_replicas
        ));
        if !opts.retention.is_zero() {
            calls.push(format!(
                "PATCH  {}  (merge: annotation {RETAIN_UNTIL_ANNOTATION} = now + {:?})",
                gpath(c),
                opts.retention
            ));
            calls.push(format!("SLEEP  {:?}  (retention)", opts.retention));
        }
        calls.push(format!(
            "DELETE {}  (propagationPolicy=Foreground; wait until gone)",
            gpath(c)
        ));
        for r in &self.prior.canary_config {
            calls.push(format!(
                "DELETE /api/v1/namespaces/{ns}/{}/{}  (if no server group references it)",
                r.kind.plural(),
                r.name
            ));
        }
        if let Some(h) = &self.prior.baseline_hpa {
            calls.push(format!(
                "PATCH  {}  (merge: minReplicas -> {}, maxReplicas -> {})",
                hpath(&h.name),
                h.min,
                h.max
            ));
        }
        calls.push(format!(
            "PATCH  {}  (merge: remove annotation {ROLLBACK_ANNOTATION})",
            gpath(b)
        ));
        Ok(calls)
    }
}

impl fmt::Display for RollbackPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        writeln!(
            f,
            "Rollback plan ({}namespace {})",
            if self.resumed { "resumed, " } else { "" },
            self.namespace
        )?;
        writeln!(
            f,
            "  canary:   {} ({} replicas, {:.0}% of traffic)",
            r.canary,
            self.prior.canary_replicas,
            self.canary_share * 100.0
        )?;
        writeln!(
            f,
            "  baseline: {} ({} replicas)",
            r.baseline, self.prior.baseline_replicas
        )?;
        match &self.prior.baseline_hpa {
            Some(h) => writeln!(
                f,
                "  baseline HPA: {} (min {}, max {})",
                h.name, h.min, h.max
            )?,
            None => writeln!(f, "  baseline HPA: none")?,
        }
        writeln!(
            f,
            "  required ready baseline replicas before traffic moves: {}",
            self.required_replicas
        )?;
        writeln!(
            f,
            "  traffic: {} -> {}",
            self.prior.traffic, self.target_traffic
        )?;
        if !self.other_services.is_empty() {
            writeln!(
                f,
                "  WARNING: other Services select the canary's pods until it is deleted: {}",
                self.other_services.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Runs (or resumes) a rollback. `progress` is called after each step.
///
/// A resumed plan runs every step again, whatever became of the canary: each step reads first
/// and changes only what differs, so a finished step costs reads, and traffic that never moved
/// (someone deleted the canary after a failed run) is moved now, after pin, resize and wait.
pub async fn execute_rollback(
    cluster: &Cluster,
    plan: &RollbackPlan,
    opts: &RollbackOptions,
    progress: &mut (dyn FnMut(&StepReport) + Send),
) -> Result<RollbackReport> {
    execute_rollback_until(cluster, plan, opts, progress, std::future::pending()).await
}

/// Like [`execute_rollback`], stopping with [`Error::Cancelled`] when `cancel` completes during
/// a wait (the drain, a readiness wait, the retention): nothing is left half-written, and running
/// the same rollback again resumes it.
pub async fn execute_rollback_until(
    cluster: &Cluster,
    plan: &RollbackPlan,
    opts: &RollbackOptions,
    progress: &mut (dyn FnMut(&StepReport) + Send),
    cancel: impl std::future::Future<Output = ()> + Send,
) -> Result<RollbackReport> {
    let run = Run {
        cluster,
        plan,
        opts,
        moves: traffic_steps(plan, opts)?,
        record: serde_json::to_string(plan).map_err(|source| Error::BadRecord {
            object: plan.request.canary.to_string(),
            source,
        })?,
    };
    // Deploys and rollbacks of the same traffic object exclude each other. The lock is held for
    // the longest the run can take (each wait's timeout, drain, retention), so it needs no renewal.
    let object = traffic_object(&plan.request.traffic);
    let hold = opts.ready_timeout * (run.moves.len() as u32 + 1) + opts.drain + opts.retention;
    cluster.lock_traffic(object, hold).await?;
    let mut steps = Vec::new();
    let result = async {
        tokio::pin!(cancel);
        for step in Step::ALL {
            let doing = run.step(step);
            let report = tokio::select! {
                r = doing => r?,
                _ = &mut cancel => return Err(Error::Cancelled { step: step.to_string() }),
            };
            info!(%step, read = %report.read, changed = %report.changed, "rollback step");
            progress(&report);
            steps.push(report);
        }
        Ok(())
    }
    .await;
    // Released on failure too, so a rerun by another process need not wait for the expiry.
    if let Err(e) = cluster.unlock_traffic(object).await {
        tracing::warn!(error = %e, "could not release the traffic lock; it expires by itself");
    }
    result?;
    Ok(RollbackReport {
        plan: plan.clone(),
        steps,
    })
}

/// The object traffic is written to: the Service or the HTTPRoute.
pub(crate) fn traffic_object(spec: &TrafficSpec) -> &str {
    match spec {
        TrafficSpec::Service { service } => service,
        TrafficSpec::HttpRoute { route, .. } => route,
    }
}

/// One execution of a plan: what every step needs.
struct Run<'a> {
    cluster: &'a Cluster,
    plan: &'a RollbackPlan,
    opts: &'a RollbackOptions,
    /// Traffic after each move and the ready baseline replicas it needs.
    moves: Vec<(TrafficState, i32)>,
    /// The plan as recorded in the annotation.
    record: String,
}

impl Run<'_> {
    async fn step(&self, step: Step) -> Result<StepReport> {
        let (read, changed) = match step {
            Step::Record => self.record().await?,
            Step::PinHpa => self.pin_hpa().await?,
            Step::ResizeBaseline => self.resize_baseline().await?,
            Step::WaitReady => self.wait_ready().await?,
            Step::MoveTraffic => self.move_traffic().await?,
            Step::Drain => self.drain().await,
            Step::RemoveCanary => self.remove_canary().await?,
            Step::RestoreHpa => self.restore_hpa().await?,
        };
        Ok(StepReport {
            step,
            read,
            changed,
        })
    }

    /// Step 1: the plan on the canary (if it still exists) and the baseline.
    async fn record(&self) -> Result<(String, String)> {
        let req = &self.plan.request;
        let mut changed = Vec::new();
        let mut present = Vec::new();
        for g in [&req.canary, &req.baseline] {
            let Some(st) = self.cluster.group(g).await? else {
                if g == &req.baseline {
                    return Err(self.cluster.not_found(g.kind.plural(), &g.name));
                }
                continue;
            };
            present.push(g.to_string());
            if st.annotations.get(ROLLBACK_ANNOTATION) != Some(&self.record) {
                self.cluster
                    .annotate_group(g, ROLLBACK_ANNOTATION, Some(&self.record))
                    .await?;
                changed.push(format!("annotated {g}"));
            }
        }
        Ok((
            format!(
                "present: {}; plan requires {} ready",
                present.join(", "),
                self.plan.required_replicas
            ),
            joined(changed),
        ))
    }

    /// Step 2: the baseline HPA's bounds at least the required capacity.
    async fn pin_hpa(&self) -> Result<(String, String)> {
        let Some(prior) = &self.plan.prior.baseline_hpa else {
            return Ok(("baseline has no HPA".into(), "nothing".into()));
        };
        let required = self.plan.required_replicas;
        let (min, max) = (prior.min.max(required), prior.max.max(required));
        let now = self.cluster.hpa(&prior.name).await?;
        let changed = match &now {
            Some(h) if h.min >= min && h.max >= max => "nothing".to_string(),
            Some(_) => {
                self.cluster.set_hpa_bounds(&prior.name, min, max).await?;
                format!("min -> {min}, max -> {max}")
            }
            None => {
                return Err(self
                    .cluster
                    .not_found("horizontalpodautoscalers", &prior.name))
            }
        };
        Ok((
            format!("HPA {} now {:?}", prior.name, now.map(|h| (h.min, h.max))),
            changed,
        ))
    }

    /// Step 3: the baseline up to the required capacity, never down.
    async fn resize_baseline(&self) -> Result<(String, String)> {
        let req = &self.plan.request;
        let required = self.plan.required_replicas;
        let st = self.cluster.require_group(&req.baseline).await?;
        let changed = if st.spec_replicas < required {
            self.cluster.scale_group(&req.baseline, required).await?;
            format!("replicas {} -> {required}", st.spec_replicas)
        } else {
            "nothing".into()
        };
        Ok((format!("baseline replicas {}", st.spec_replicas), changed))
    }

    /// The ready replicas the next traffic move needs (all of them once traffic has moved).
    async fn next_need(&self) -> Result<i32> {
        let now = self
            .cluster
            .read_traffic(&self.plan.request.traffic)
            .await?;
        Ok(self
            .moves
            .iter()
            .find(|(s, _)| !reached(&now, s))
            .map_or(self.plan.required_replicas, |(_, n)| *n))
    }

    /// Step 4: the baseline ready (available, rollout complete) for the next move.
    async fn wait_ready(&self) -> Result<(String, String)> {
        let need = self.next_need().await?;
        let st = self
            .cluster
            .wait_group_ready(&self.plan.request.baseline, need, self.opts.ready_timeout)
            .await?;
        Ok((
            format!(
                "baseline {}/{} available, rollout complete, generation observed",
                st.available_replicas, st.spec_replicas
            ),
            "nothing".into(),
        ))
    }

    /// Step 5: each move after the capacity it needs is ready — the group, and for a route the
    /// ready endpoints behind the baseline backend — re-checked right before the write.
    async fn move_traffic(&self) -> Result<(String, String)> {
        let req = &self.plan.request;
        let first = self.cluster.read_traffic(&req.traffic).await?;
        let mut now = first.clone();
        let mut changed = Vec::new();
        for (target, need) in &self.moves {
            if reached(&now, target) {
                continue;
            }
            self.cluster
                .wait_group_ready(&req.baseline, *need, self.opts.ready_timeout)
                .await?;
            let endpoints = match &req.traffic {
                TrafficSpec::HttpRoute {
                    baseline_backend, ..
                } => Some(
                    self.cluster
                        .wait_backend_ready(baseline_backend, *need, self.opts.ready_timeout)
                        .await?,
                ),
                TrafficSpec::Service { .. } => None,
            };
            // Another controller (KEDA reconciling its HPA) may have undone the pin since step
            // 2: pin again right before traffic moves, so the HPA cannot shrink the baseline
            // under its new load.
            let (_, repinned) = self.pin_hpa().await?;
            if repinned != "nothing" {
                changed.push(format!("HPA pin restored before the move: {repinned}"));
            }
            let st = self.cluster.require_group(&req.baseline).await?;
            if !st.is_ready_for(*need) {
                return Err(Error::BaselineNotReady {
                    group: req.baseline.to_string(),
                    ready: st.available_replicas,
                    required: *need,
                    detail: st.not_ready_detail(*need),
                    waited: Duration::ZERO,
                });
            }
            self.cluster.write_traffic(&req.traffic, target).await?;
            changed.push(format!(
                "{now} -> {target} with {} available{} (verified by read-back)",
                st.available_replicas,
                endpoints.map_or(String::new(), |e| format!(", {e} ready endpoints"))
            ));
            now = target.clone();
        }
        if !self.plan.other_services.is_empty() {
            changed.push(format!(
                "WARNING: Services {} still select the canary's pods until it is deleted",
                self.plan.other_services.join(", ")
            ));
        }
        Ok((format!("traffic {first}"), joined(changed)))
    }

    /// Step 6: load balancers converge.
    async fn drain(&self) -> (String, String) {
        tokio::time::sleep(self.opts.drain).await;
        ("nothing".into(), format!("waited {:?}", self.opts.drain))
    }

    /// Step 7: the canary's HPA, the canary (after the retention), its unreferenced config.
    async fn remove_canary(&self) -> Result<(String, String)> {
        let req = &self.plan.request;
        let cluster = self.cluster;
        let mut changed = Vec::new();
        if let Some(h) = &self.plan.prior.canary_hpa {
            if cluster.delete_hpa(h).await? {
                changed.push(format!("deleted HPA {h}"));
            }
        }
        let st = cluster.group(&req.canary).await?;
        if let Some(st) = &st {
            if st.spec_replicas > 0 {
                cluster.scale_group(&req.canary, 0).await?;
                changed.push(format!("scaled {} {} -> 0", req.canary, st.spec_replicas));
            }
            if !self.opts.retention.is_zero() {
                // The deadline is recorded on the canary, so a resumed run waits only for what
                // is left of it.
                let until = match st
                    .annotations
                    .get(RETAIN_UNTIL_ANNOTATION)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                {
                    Some(t) => t,
                    None => {
                        let span = jiff::SignedDuration::try_from(self.opts.retention)
                            .unwrap_or(jiff::SignedDuration::MAX);
                        let t = jiff::Timestamp::now()
                            .checked_add(span)
                            .unwrap_or(jiff::Timestamp::MAX);
                        cluster
                            .annotate_group(
                                &req.canary,
                                RETAIN_UNTIL_ANNOTATION,
                                Some(&t.to_string()),
                            )
                            .await?;
                        changed.push(format!("retained until {t}"));
                        t
                    }
                };
                let left = jiff::Timestamp::now().duration_until(until);
                if let Ok(left) = Duration::try_from(left) {
                    tokio::time::sleep(left).await;
                }
            }
            if cluster.delete_group(&req.canary).await? {
                changed.push(format!("deleted {}", req.canary));
            }
        }
        let candidates: BTreeSet<ConfigRef> =
            self.plan.prior.canary_config.iter().cloned().collect();
        for r in versioned::delete_unreferenced(cluster, &candidates).await? {
            changed.push(format!("deleted {} {}", r.kind.plural(), r.name));
        }
        let read = format!(
            "canary {}",
            if st.is_some() {
                "present"
            } else {
                "already deleted"
            }
        );
        Ok((read, joined(changed)))
    }

    /// Step 8: the baseline HPA's bounds back, the record removed.
    async fn restore_hpa(&self) -> Result<(String, String)> {
        let req = &self.plan.request;
        let mut changed = Vec::new();
        if let Some(prior) = &self.plan.prior.baseline_hpa {
            let required = self.plan.required_replicas;
            let pinned = (prior.min.max(required), prior.max.max(required));
            if let Some((min, max)) = self
                .cluster
                .restore_hpa_bounds(&prior.name, pinned, (prior.min, prior.max))
                .await?
            {
                changed.push(format!("HPA {} min -> {min}, max -> {max}", prior.name));
            }
        }
        let st = self.cluster.require_group(&req.baseline).await?;
        if st.annotations.contains_key(ROLLBACK_ANNOTATION) {
            self.cluster
                .annotate_group(&req.baseline, ROLLBACK_ANNOTATION, None)
                .await?;
            changed.push(format!("removed record from {}", req.baseline));
        }
        Ok((
            format!("baseline replicas {}", st.spec_replicas),
            joined(changed),
        ))
    }
}

/// The traffic after each step and the ready baseline replicas it needs.
fn traffic_steps(plan: &RollbackPlan, opts: &RollbackOptions) -> Result<Vec<(TrafficState, i32)>> {
    let steps = if opts.traffic_steps.is_empty() {
        vec![100]
    } else {
        opts.traffic_steps.clone()
    };
    if steps.windows(2).any(|w| w[0] >= w[1])
        || steps.iter().any(|p| *p == 0 || *p > 100)
        || steps.last() != Some(&100)
    {
        return Err(Error::Invalid {
            field: "traffic_steps".into(),
            message: format!(
                "expected increasing percentages in 1..=100 ending at 100, got {steps:?}"
            ),
        });
    }
    match (&plan.prior.traffic, steps.len()) {
        (_, 1) => Ok(vec![(plan.target_traffic.clone(), plan.required_replicas)]),
        (TrafficState::Weights { canary, baseline }, _) => {
            let total = (canary + baseline).max(1);
            Ok(steps
                .iter()
                .map(|p| {
                    let moved = if *p == 100 {
                        *canary
                    } else {
                        (i64::from(*canary) * i64::from(*p) / 100) as i32
                    };
                    let b = baseline + moved;
                    let state = if *p == 100 {
                        plan.target_traffic.clone()
                    } else {
                        TrafficState::Weights {
                            canary: canary - moved,
                            baseline: b,
                        }
                    };
                    let need =
                        ((i64::from(plan.required_replicas) * i64::from(b) + i64::from(total) - 1)
                            / i64::from(total)) as i32;
                    (state, need.min(plan.required_replicas))
                })
                .collect())
        }
        (TrafficState::Selector { .. }, _) => Err(Error::Invalid {
            field: "traffic_steps".into(),
            message: "a Service selector moves traffic at once; steps need an HTTPRoute".into(),
        }),
    }
}

/// Whether `now` already gives the baseline at least the traffic of `step`.
fn reached(now: &TrafficState, step: &TrafficState) -> bool {
    match (now, step) {
        (
            TrafficState::Weights {
                canary: c,
                baseline: b,
            },
            TrafficState::Weights {
                canary: sc,
                baseline: sb,
            },
        ) => {
            // Compare baseline shares without division.
            i64::from(*b) * i64::from(sc + sb) >= i64::from(*sb) * i64::from(c + b)
        }
        _ => now == step,
    }
}

fn joined(v: Vec<String>) -> String {
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join("; ")
    }
}

/// Plans and executes in one go: what the service calls on a Fail verdict. Finishing an already
/// finished rollback is success with no steps.
pub async fn rollback(
    cluster: &Cluster,
    req: &RollbackRequest,
    opts: &RollbackOptions,
) -> Result<Option<RollbackReport>> {
    match plan_rollback(cluster, req).await {
        Ok(plan) => execute_rollback(cluster, &plan, opts, &mut |_| {})
            .await
            .map(Some),
        Err(Error::NothingToRollBack { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
