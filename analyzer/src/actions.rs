//! What an analysis may ask of the deployment system, as a narrow interface. The engine decides
//! *that* a canary must be rolled back; how (Kubernetes, a CD tool, a dry run) is the caller's
//! business: the `vigil` binary wires its Kubernetes deployer in, tests wire a recorder. Keeping
//! the interface here is what lets the engine build without kube.

use crate::analysis::Conclusion;
use crate::verdict::Verdict;

/// A rollback order: move all traffic back to `baseline`, then remove `canary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOrder {
    /// The failed server group, as the deployer names it (`kind/name` or `name`).
    pub canary: String,
    /// The server group that takes the traffic back.
    pub baseline: String,
    /// Why, in one line (the verdict and its strongest finding), for the deployer's audit trail.
    pub reason: String,
}

/// What the deployer did, step by step, in its own words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionReport {
    /// One line per step taken.
    pub steps: Vec<String>,
}

/// A deployer action that failed; the message is the deployer's.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {message}")]
pub struct ActionError {
    /// The action attempted (`rollback`).
    pub action: &'static str,
    /// The deployer's error, with its causes.
    pub message: String,
}

/// The deployment system as the engine sees it.
pub trait Deployer {
    /// Rolls the canary back; returns only when traffic has moved (or the attempt failed).
    fn rollback(&mut self, order: &RollbackOrder) -> Result<ActionReport, ActionError>;
}

/// Acts on an analysis's outcome: a Fail rolls the canary back; every other verdict leaves the
/// deployment alone (a Marginal canary is for a person to decide). Returns `None` when nothing
/// was asked of the deployer.
pub fn act_on(
    outcome: &Conclusion,
    canary: &str,
    baseline: &str,
    deployer: &mut dyn Deployer,
) -> Option<Result<ActionReport, ActionError>> {
    if outcome.verdict != Verdict::Fail {
        return None;
    }
    let why = outcome
        .evidence
        .first()
        .map(|f| format!("; strongest finding: {} {}", f.signal.as_str(), f.subject))
        .unwrap_or_default();
    let order = RollbackOrder {
        canary: canary.to_owned(),
        baseline: baseline.to_owned(),
        reason: format!("canary analysis failed (score {:.1}){why}", outcome.score),
    };
    Some(deployer.rollback(&order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Lifecycle;
    use crate::verdict::Judgement;

    #[derive(Default)]
    struct Recorder(Vec<RollbackOrder>);

    impl Deployer for Recorder {
        fn rollback(&mut self, order: &RollbackOrder) -> Result<ActionReport, ActionError> {
            self.0.push(order.clone());
            Ok(ActionReport {
                steps: vec!["traffic moved".into()],
            })
        }
    }

    fn outcome(verdict: Verdict) -> Conclusion {
        let mut a = Lifecycle::new();
        a.record(
            30.0,
            Judgement {
                verdict,
                score: 10.0,
                evidence: vec![],
                findings: vec![],
                signal_scores: vec![],
                note: None,
            },
        );
        a.outcome()
    }

    #[test]
    fn only_a_fail_rolls_back() {
        let mut d = Recorder::default();
        for v in [Verdict::Pass, Verdict::Marginal, Verdict::Inconclusive] {
            assert!(act_on(&outcome(v), "deploy/web-v2", "deploy/web-v1", &mut d).is_none());
        }
        assert!(d.0.is_empty());
        let r = act_on(
            &outcome(Verdict::Fail),
            "deploy/web-v2",
            "deploy/web-v1",
            &mut d,
        );
        assert!(matches!(r, Some(Ok(_))));
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].canary, "deploy/web-v2");
        assert_eq!(d.0[0].baseline, "deploy/web-v1");
        assert!(d.0[0].reason.contains("failed"), "{}", d.0[0].reason);
    }
}
