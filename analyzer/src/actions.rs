//! What an analysis may ask of the deployment system, as a narrow interface. The engine decides
//! *that* a canary must be rolled back (or promoted); how (Kubernetes, a CD tool, a dry run) is
//! the caller's business: the `vigil` binary wires its Kubernetes deployer in, tests wire a
//! recorder. Keeping the interface here is what lets the engine build without kube.
//!
//! The trait is asynchronous and object-safe (boxed futures): the service calls it from its
//! runner tasks, inside tokio, where a deployer that blocked on a runtime of its own would panic.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::verdict::Verdict;

/// `rollback.mode` of a spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Never act (the default).
    #[default]
    Off,
    /// Record the plan the rollback would execute; change nothing.
    DryRun,
    /// Roll back on a final Fail.
    On,
}

/// `promote.mode` of a spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteMode {
    /// Never act (the default).
    #[default]
    Off,
    /// Promote the canary on a final Pass.
    On,
}

/// Which server groups an action applies to: `app` (the deployer's cluster name: the newest
/// `app-vNNN` server group is the canary, the one before it the baseline) or both groups by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Kubernetes namespace of the server groups.
    pub namespace: String,
    /// The deployer's cluster name (`shop` for `shop-v001`, `shop-v002`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The canary server group: `deployment/NAME`, `replicaset/NAME` or `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// The baseline server group, written like `canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
}

/// A DNS-1123 label (a namespace, a cluster name).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (a Deployment or ReplicaSet name).
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// Checks a server group reference as the deployer reads it (`kind/name` or `name`).
fn check_group(s: &str) -> Result<(), String> {
    let (kind, name) = s.split_once('/').unwrap_or(("deployment", s));
    let kind_ok = matches!(
        kind.to_ascii_lowercase().as_str(),
        "deployment" | "deployments" | "deploy" | "replicaset" | "replicasets" | "rs"
    );
    if !kind_ok {
        return Err(format!(
            "`{s}`: kind `{kind}` is not a server group (deployment or replicaset)"
        ));
    }
    if !dns_subdomain(name) {
        return Err(format!(
            "`{s}`: `{name}` is not a Kubernetes object name (lower-case letters, digits, - and .)"
        ));
    }
    Ok(())
}

impl Target {
    /// Every constraint serde cannot express; `Err((field under the target, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        if !dns_label(&self.namespace) {
            return bad(
                "namespace",
                format!(
                    "`{}` is not a namespace name (1-63 lower-case letters, digits and -)",
                    self.namespace
                ),
            );
        }
        match (&self.app, &self.canary, &self.baseline) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bad(
                "app",
                "give either app or canary and baseline, not both".into(),
            ),
            (Some(app), None, None) => {
                if dns_label(app) {
                    Ok(())
                } else {
                    bad(
                        "app",
                        format!("`{app}` is not a deployer cluster name (a DNS label)"),
                    )
                }
            }
            (None, Some(c), Some(b)) => {
                check_group(c).or_else(|m| bad("canary", m))?;
                check_group(b).or_else(|m| bad("baseline", m))?;
                if c == b {
                    return bad("baseline", format!("`{b}` is the canary too"));
                }
                Ok(())
            }
            (None, Some(_), None) => bad("baseline", "missing (canary is given)".into()),
            (None, None, Some(_)) => bad("canary", "missing (baseline is given)".into()),
            (None, None, None) => bad(
                ".",
                "missing: app, or canary and baseline (the server groups to act on)".into(),
            ),
        }
    }
}

/// `rollback:` of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    /// `off` (default), `dry_run` or `on`.
    #[serde(default)]
    pub mode: RollbackMode,
    /// The server groups; required unless `mode: off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// `promote:` of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteSpec {
    /// `off` (default) or `on`.
    #[serde(default)]
    pub mode: PromoteMode,
    /// The server groups; default: `rollback.target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// The two actions an analysis can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Traffic back to the baseline, the canary removed.
    Rollback,
    /// All traffic to the canary, through the deployer's strategy.
    Promote,
}

impl Action {
    /// `rollback` or `promote`: the kind of the event that ends it, and the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rollback => "rollback",
            Action::Promote => "promote",
        }
    }

    /// The action of its stored name.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "rollback" => Some(Action::Rollback),
            "promote" => Some(Action::Promote),
            _ => None,
        }
    }

    /// The kind of the events that report its progress (`rollback_step`, `promote_step`).
    pub fn step_kind(self) -> &'static str {
        match self {
            Action::Rollback => "rollback_step",
            Action::Promote => "promote_step",
        }
    }
}

/// What an analysis's final verdict asks for: `(action, dry_run, target)`, or `None`. Only a
/// Fail rolls back and only a Pass promotes: a Marginal or Inconclusive canary is for a person
/// to decide.
pub fn decide<'a>(
    verdict: Verdict,
    rollback: Option<&'a RollbackSpec>,
    promote: Option<&'a PromoteSpec>,
) -> Option<(Action, bool, &'a Target)> {
    match verdict {
        Verdict::Fail => {
            let r = rollback?;
            let dry = match r.mode {
                RollbackMode::Off => return None,
                RollbackMode::DryRun => true,
                RollbackMode::On => false,
            };
            Some((Action::Rollback, dry, r.target.as_ref()?))
        }
        Verdict::Pass => {
            let p = promote?;
            if p.mode == PromoteMode::Off {
                return None;
            }
            let target = p
                .target
                .as_ref()
                .or_else(|| rollback.and_then(|r| r.target.as_ref()))?;
            Some((Action::Promote, false, target))
        }
        _ => None,
    }
}

/// An order to the deployer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOrder {
    /// Roll back or promote.
    pub action: Action,
    /// The server groups.
    pub target: Target,
    /// The analysis that decided (for the deployer's audit trail and logs).
    pub analysis: String,
    /// Why, in one line (the verdict and score).
    pub reason: String,
}

/// What the deployer did (or, for a plan, would do), in its own words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionReport {
    /// One line for a person: the outcome.
    pub summary: String,
    /// One line per step taken (or planned, with the API calls a plan would make).
    pub steps: Vec<String>,
}

/// Why a deployer action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Not Vigil's to change: another controller (Argo Rollouts, Flagger) owns the server group.
    #[error("refused: {0}")]
    Refused(String),
    /// The deployer tried and failed; the message is the deployer's, with its causes.
    #[error("failed: {0}")]
    Failed(String),
}

/// A boxed future, so that [`Deployer`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a deployer reports each step as it completes (the service records them as events).
pub type Progress = tokio::sync::mpsc::UnboundedSender<String>;

/// The deployment system as the service sees it.
pub trait Deployer: Send + Sync {
    /// The target with both server groups named (an `app` target resolved to its canary and
    /// baseline), or [`ActionError::Refused`] when they are not Vigil's to change. Called once,
    /// when the action starts; the service stores the answer, so a resumed action acts on the
    /// same groups even after the canary is gone.
    fn resolve<'a>(&'a self, order: &'a ActionOrder) -> BoxFuture<'a, Result<Target, ActionError>>;

    /// What `order` would do, reading only (a rollback's plan and API calls, a promotion's plan).
    fn plan<'a>(
        &'a self,
        order: &'a ActionOrder,
    ) -> BoxFuture<'a, Result<ActionReport, ActionError>>;

    /// Carries `order` out; returns when it is complete or has failed. Must be resumable: called
    /// again for the same order after a crash, it finishes what the first call started (and
    /// succeeds with nothing to do when it had finished).
    fn execute<'a>(
        &'a self,
        order: &'a ActionOrder,
        progress: Progress,
    ) -> BoxFuture<'a, Result<ActionReport, ActionError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            namespace: "shop".into(),
            app: None,
            canary: Some("deployment/shop-v002".into()),
            baseline: Some("shop-v001".into()),
        }
    }

    #[test]
    fn only_a_fail_rolls_back_and_only_a_pass_promotes() {
        let r = RollbackSpec {
            mode: RollbackMode::On,
            target: Some(target()),
        };
        let p = PromoteSpec {
            mode: PromoteMode::On,
            target: None,
        };
        for v in [Verdict::Marginal, Verdict::Inconclusive, Verdict::Error] {
            assert!(decide(v, Some(&r), Some(&p)).is_none(), "{v:?}");
        }
        let (a, dry, t) = decide(Verdict::Fail, Some(&r), Some(&p)).unwrap();
        assert_eq!((a, dry), (Action::Rollback, false));
        assert_eq!(t.canary.as_deref(), Some("deployment/shop-v002"));
        // Promote takes rollback's target when it has none.
        let (a, _, t) = decide(Verdict::Pass, Some(&r), Some(&p)).unwrap();
        assert_eq!(a, Action::Promote);
        assert_eq!(t.namespace, "shop");
        // Off is off; dry_run is flagged.
        let off = RollbackSpec::default();
        assert!(decide(Verdict::Fail, Some(&off), None).is_none());
        assert!(decide(Verdict::Pass, Some(&r), Some(&PromoteSpec::default())).is_none());
        let dry = RollbackSpec {
            mode: RollbackMode::DryRun,
            ..r.clone()
        };
        assert!(decide(Verdict::Fail, Some(&dry), None).unwrap().1);
    }

    #[test]
    fn targets_name_what_is_wrong() {
        assert_eq!(target().check(), Ok(()));
        let e = |t: Target| t.check().unwrap_err();
        let mut t = target();
        t.namespace = "Shop".into();
        assert_eq!(e(t).0, "namespace");
        let mut t = target();
        t.baseline = None;
        assert_eq!(
            e(t),
            ("baseline".into(), "missing (canary is given)".into())
        );
        let mut t = target();
        t.canary = Some("statefulset/db".into());
        let (f, m) = e(t);
        assert_eq!(f, "canary");
        assert!(m.contains("kind `statefulset`"), "{m}");
        let mut t = target();
        t.app = Some("shop".into());
        assert_eq!(e(t).0, "app");
        let t = Target {
            namespace: "shop".into(),
            app: None,
            canary: None,
            baseline: None,
        };
        assert!(e(t).1.starts_with("missing: app, or canary and baseline"));
        let mut t = target();
        t.baseline = t.canary.clone();
        assert!(e(t).1.contains("is the canary too"));
    }
}
