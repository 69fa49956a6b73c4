//! The lifecycle of one analysis as it runs live: a judgement every interval on the data seen so
//! far, fail fast on the first Fail, otherwise the last interval decides.
//!
//! Replay drives it from files; a live service drives it from data arriving while it runs. Keeping
//! the rules here, apart from where the data comes from, is what makes a replayed time to detect
//! the one a live analysis would have had.

use serde::Serialize;

use crate::verdict::{Finding, Judgement, Verdict};

/// One interval of the verdict timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub elapsed_s: f64,
    pub verdict: Verdict,
    pub score: f64,
}

/// What an analysis concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub score: f64,
    /// Elapsed canary time of the first interval of the final flagged streak, when the final
    /// verdict flags the canary: an earlier alarm that cleared again was not a detection.
    pub time_to_detect_s: Option<f64>,
    pub evidence: Vec<Finding>,
    /// Every finding of the deciding interval (the evidence is its top three).
    pub findings: Vec<Finding>,
    pub note: Option<String>,
    pub timeline: Vec<Step>,
}

/// The intervals judged so far.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    steps: Vec<(Step, Judgement)>,
}

impl Analysis {
    pub fn new() -> Self {
        Self::default()
    }

    /// A Fail ends the analysis: there is no reason to keep a bad canary running.
    pub fn is_done(&self) -> bool {
        self.steps
            .last()
            .is_some_and(|(_, j)| j.verdict == Verdict::Fail)
    }

    /// Records the judgement of the interval ending `elapsed_s` into the canary. Ignored once the
    /// analysis is done, so a caller cannot overturn a Fail by judging again.
    pub fn record(&mut self, elapsed_s: f64, judgement: Judgement) {
        if self.is_done() {
            return;
        }
        let step = Step {
            elapsed_s,
            verdict: judgement.verdict,
            score: judgement.score,
        };
        self.steps.push((step, judgement));
    }

    /// The verdict so far: the last interval's, with its evidence and the whole timeline.
    pub fn outcome(&self) -> Outcome {
        let timeline: Vec<Step> = self.steps.iter().map(|(s, _)| s.clone()).collect();
        let Some((_, last)) = self.steps.last() else {
            return Outcome {
                verdict: Verdict::Error,
                score: 0.0,
                time_to_detect_s: None,
                evidence: vec![],
                findings: vec![],
                note: Some("no interval ran".into()),
                timeline,
            };
        };
        let time_to_detect_s = if last.verdict.flagged() {
            let streak = self
                .steps
                .iter()
                .rev()
                .take_while(|(_, j)| j.verdict.flagged())
                .count();
            Some(self.steps[self.steps.len() - streak].0.elapsed_s)
        } else {
            None
        };
        Outcome {
            verdict: last.verdict,
            score: last.score,
            time_to_detect_s,
            evidence: last.evidence.clone(),
            findings: last.findings.clone(),
            note: last.note.clone(),
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(verdict: Verdict) -> Judgement {
        Judgement {
            verdict,
            score: match verdict {
                Verdict::Pass => 100.0,
                Verdict::Marginal => 60.0,
                _ => 0.0,
            },
            evidence: vec![],
            findings: vec![],
            signal_scores: vec![],
            note: None,
        }
    }

    fn run(verdicts: &[Verdict]) -> Analysis {
        let mut a = Analysis::new();
        for (i, v) in verdicts.iter().enumerate() {
            a.record(30.0 * (i + 1) as f64, judged(*v));
        }
        a
    }

    #[test]
    fn fail_ends_the_analysis_and_later_intervals_cannot_overturn_it() {
        use Verdict::*;
        let a = run(&[Pass, Marginal, Fail, Pass, Pass]);
        assert!(a.is_done());
        let o = a.outcome();
        assert_eq!(o.verdict, Fail);
        assert_eq!(o.timeline.len(), 3);
        assert_eq!(o.time_to_detect_s, Some(60.0), "the streak began at 60 s");
    }

    #[test]
    fn the_last_interval_decides_and_a_cleared_alarm_is_no_detection() {
        use Verdict::*;
        let cleared = run(&[Marginal, Pass, Pass]).outcome();
        assert_eq!(cleared.verdict, Pass);
        assert_eq!(cleared.time_to_detect_s, None);
        let late = run(&[Marginal, Pass, Marginal, Marginal]).outcome();
        assert_eq!(late.verdict, Marginal);
        assert_eq!(late.time_to_detect_s, Some(90.0));
        let unsure = run(&[Inconclusive, Inconclusive]).outcome();
        assert_eq!(unsure.verdict, Inconclusive);
        assert_eq!(unsure.time_to_detect_s, None);
    }

    #[test]
    fn an_analysis_that_never_ran_is_an_error_not_a_pass() {
        let o = Analysis::new().outcome();
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.timeline.is_empty());
    }
}
