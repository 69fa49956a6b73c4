//! Kayenta's `WeightedSumScorer` and `ThresholdScoreClassifier`: from metric labels to group
//! scores, one summary score, and Pass / Marginal / Fail.
//!
//! Quirks kept on purpose (see `docs/judge.md`): a group whose metrics are all Nodata or Error
//! counts as 100 in the summary while being reported as 0; weights for groups with no metrics
//! are lost; weights above 100 give unweighted groups negative weight; the score is rounded
//! HALF_UP on its decimal representation, as commons-math `Precision.round` does.

use super::classify::Label;

/// Kayenta's `NODATA_THRESHOLD`: this percentage of Nodata metrics or more zeroes the canary.
pub const NODATA_THRESHOLD_PERCENT: f64 = 50.0;

/// What the scorer needs from one (unmuted) metric result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreInput<'a> {
    pub label: Label,
    pub groups: &'a [String],
    pub critical: bool,
    pub reason: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupScore {
    pub name: String,
    /// 100 · #Pass / #(Pass, High, Low, NodataFailMetric); 0 when that count is 0.
    pub score: f64,
    /// No metric in the group had a countable label; the summary then counts it as 100.
    pub no_data: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoreResult {
    /// In order of first appearance in the results.
    pub group_scores: Vec<GroupScore>,
    pub summary: f64,
    /// Why the summary was forced to 0, if it was.
    pub reason: Option<String>,
}

/// Score labels. Kayenta declares `Nodata` and `Error` here too but never produces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreLabel {
    Pass,
    Marginal,
    Fail,
}

impl ScoreLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreLabel::Pass => "Pass",
            ScoreLabel::Marginal => "Marginal",
            ScoreLabel::Fail => "Fail",
        }
    }
}

impl std::fmt::Display for ScoreLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `scoreThresholds` of the request. The judge compares with `>=`; orca's aggregation fails a
/// score equal to `marginal` (see [`super::intervals::interval_fails_fast`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreThresholds {
    pub pass: f64,
    pub marginal: f64,
}

/// `ThresholdScoreClassifier`: `>= pass` is Pass, else `>= marginal` is Marginal, else Fail.
pub fn classify_score(score: f64, thresholds: &ScoreThresholds) -> ScoreLabel {
    if score >= thresholds.pass {
        ScoreLabel::Pass
    } else if score >= thresholds.marginal {
        ScoreLabel::Marginal
    } else {
        ScoreLabel::Fail
    }
}

/// `WeightedSumScorer.score`. `group_weights` are `classifier.groupWeights` in config order.
pub fn score(results: &[ScoreInput<'_>], group_weights: &[(String, f64)]) -> ScoreResult {
    let group_scores = group_scores(results);

    if let Some(failure) = results
        .iter()
        .find(|r| r.critical && r.label != Label::Pass)
    {
        return ScoreResult {
            group_scores,
            summary: 0.0,
            reason: Some(format!(
                "Canary Failed: {}",
                failure.reason.unwrap_or("null")
            )),
        };
    }
    let nodata = results.iter().filter(|r| r.label == Label::Nodata).count();
    if nodata as f64 / results.len() as f64 * 100.0 >= NODATA_THRESHOLD_PERCENT {
        return ScoreResult {
            group_scores,
            summary: 0.0,
            reason: Some(format!(
                "Canary Failed: {}% or more metrics returned NODATA",
                NODATA_THRESHOLD_PERCENT as i64
            )),
        };
    }

    let weight_sum: f64 = group_weights.iter().map(|(_, w)| w).sum();
    let weight_of = |name: &str| {
        group_weights
            .iter()
            .find(|(g, _)| g == name)
            .map(|(_, w)| *w)
    };
    let unweighted = group_scores
        .iter()
        .filter(|g| weight_of(&g.name).is_none())
        .count();
    let shared = if unweighted > 0 {
        (100.0 - weight_sum) / unweighted as f64
    } else {
        0.0
    };
    let mut summary = 0.0;
    for g in &group_scores {
        let effective = if g.no_data { 100.0 } else { g.score };
        let weight = weight_of(&g.name).unwrap_or(shared);
        summary += effective * (weight / 100.0);
    }
    ScoreResult {
        group_scores,
        summary: round_half_up(summary, 2),
        reason: None,
    }
}

fn group_scores(results: &[ScoreInput<'_>]) -> Vec<GroupScore> {
    // (name, #Pass, #counted)
    let mut groups: Vec<(String, usize, usize)> = Vec::new();
    for r in results {
        for g in r.groups {
            let idx = match groups.iter().position(|(n, _, _)| n == g) {
                Some(i) => i,
                None => {
                    groups.push((g.clone(), 0, 0));
                    groups.len() - 1
                }
            };
            let entry = &mut groups[idx];
            match r.label {
                Label::Pass => {
                    entry.1 += 1;
                    entry.2 += 1;
                }
                Label::High | Label::Low | Label::NodataFailMetric => entry.2 += 1,
                Label::Nodata | Label::Error => {}
            }
        }
    }
    groups
        .into_iter()
        .map(|(name, pass, total)| GroupScore {
            name,
            score: if total == 0 {
                0.0
            } else {
                pass as f64 / total as f64 * 100.0
            },
            no_data: total == 0,
        })
        .collect()
}

/// commons-math `Precision.round(x, scale)`: HALF_UP on the shortest decimal representation of
/// `x` (Java's `Double.toString`), so 0.125 → 0.13 and 33.335 → 33.34 although neither is exact
/// in binary.
pub fn round_half_up(x: f64, scale: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let repr = format!("{}", x.abs());
    let (int_part, frac_part) = repr.split_once('.').unwrap_or((&repr, ""));
    let mut digits: Vec<u8> = int_part.bytes().map(|b| b - b'0').collect();
    let frac: Vec<u8> = frac_part.bytes().map(|b| b - b'0').collect();
    for i in 0..scale {
        digits.push(frac.get(i).copied().unwrap_or(0));
    }
    if frac.get(scale).copied().unwrap_or(0) >= 5 {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - scale;
    let text: String = digits[..split]
        .iter()
        .map(|d| char::from(b'0' + d))
        .chain(std::iter::once('.'))
        .chain(digits[split..].iter().map(|d| char::from(b'0' + d)))
        .collect();
    let magnitude: f64 = text.parse().unwrap_or(f64::NAN);
    if magnitude == 0.0 {
        // Precision.round returns 0.0 · x, keeping the sign of a negative input.
        0.0 * x
    } else {
        magnitude.copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_up_rounds_the_decimal_representation() {
        assert_eq!(round_half_up(0.125, 2), 0.13);
        assert_eq!(round_half_up(33.335, 2), 33.34);
        assert_eq!(round_half_up(33.334999, 2), 33.33);
        assert_eq!(round_half_up(99.995, 2), 100.0);
        assert_eq!(round_half_up(-2.345, 2), -2.35);
        assert_eq!(round_half_up(100.0 / 3.0, 2), 33.33);
        assert_eq!(round_half_up(1e-7, 2), 0.0);
    }
}
