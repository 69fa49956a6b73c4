//! The Vigil metric classifier: the Kayenta judge's weaknesses, fixed.
//!
//! Kayenta decides with a Mann-Whitney confidence interval and a fixed "25 % of the estimate"
//! rule, which says nothing about how sure it is, misses a variance blow-up whose median does not
//! move, and cannot judge error counts that are zero most of the time. This classifier reports a
//! p-value and an effect size with its confidence interval for every decision, adds a dispersion
//! test and an exact count test, and says *Inconclusive* (with the numbers) instead of guessing
//! when a side has too few points.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::rank::normal_sf;

pub use crate::Direction;

/// What sort of values a metric holds; it picks the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MetricKind {
    /// A continuous level (CPU, memory, latency): rank test on location plus dispersion.
    Gauge,
    /// Event counts per sample that are often zero (errors): exact rate test on the totals.
    Count,
}

/// Tunables with the defaults a user would keep.
#[derive(Debug, Clone, Serialize)]
pub struct VigilJudgeConfig {
    /// One-sided significance level of each test.
    pub alpha: f64,
    /// Smallest relative shift (of the baseline median) that matters.
    pub min_relative_effect: f64,
    /// Smallest shift in units of the baseline's robust spread that matters.
    pub min_standardized_effect: f64,
    /// Fewer baseline points than this: Inconclusive.
    pub min_baseline_points: usize,
    /// Fewer canary points than this: Inconclusive.
    pub min_canary_points: usize,
    /// Canary spread (MAD) at least this many times the baseline's counts as a blow-up.
    pub dispersion_ratio: f64,
    /// Canary event rate at least this many times the baseline's counts as a rise.
    pub count_rate_ratio: f64,
    /// Fewest canary points for the trend (leak) test.
    pub min_trend_points: usize,
}

impl Default for VigilJudgeConfig {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            min_relative_effect: 0.2,
            min_standardized_effect: 1.0,
            min_baseline_points: 5,
            min_canary_points: 2,
            dispersion_ratio: 2.5,
            count_rate_ratio: 2.0,
            min_trend_points: 8,
        }
    }
}

/// The decision for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Pass,
    /// Significantly higher and the rise is harmful.
    High,
    /// Significantly lower and the fall is harmful.
    Low,
    /// Significantly more dispersed, with an unchanged level.
    Dispersed,
    /// Steadily rising through the canary (a leak), with an unchanged overall level.
    Trend,
    /// Not enough data to tell; see `reason`.
    Inconclusive,
}

/// Which test produced the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Test {
    /// Mann-Whitney U on the values, with the Hodges-Lehmann shift.
    Location,
    /// Mann-Whitney U on absolute deviations from each side's median (a rank Brown-Forsythe).
    Dispersion,
    /// Exact conditional binomial test on summed counts.
    Count,
    /// Mann-Kendall trend test over the canary, with the Theil-Sen slope.
    Trend,
    None,
}

/// A shift estimate with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Effect {
    /// Hodges-Lehmann estimate of canary minus baseline.
    pub shift: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// `shift` over the baseline median's magnitude (None when that median is 0).
    pub relative: Option<f64>,
    /// `shift` over the baseline robust spread (None when the spread is 0).
    pub standardized: Option<f64>,
}

/// Everything the classifier found for one metric: the decision and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricJudgement {
    pub outcome: Outcome,
    pub test: Test,
    /// The p-value of the test that decided (the location test for Pass).
    pub p_value: Option<f64>,
    pub effect: Option<Effect>,
    /// Canary MAD over baseline MAD.
    pub dispersion_ratio: Option<f64>,
    /// Canary over baseline mean count per sample (count metrics).
    pub rate_ratio: Option<f64>,
    pub baseline_n: usize,
    pub canary_n: usize,
    pub baseline_median: Option<f64>,
    pub canary_median: Option<f64>,
    /// One line a person can read, with the numbers.
    pub reason: String,
}

/// How to judge one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricRule {
    pub direction: Direction,
    pub kind: MetricKind,
    /// Smallest shift in the metric's own unit that matters (5 percentage points of CPU, 10 ms
    /// of latency); 0 to rely on the relative and standardised thresholds alone.
    pub min_abs_shift: f64,
}

impl MetricRule {
    pub fn new(direction: Direction, kind: MetricKind) -> Self {
        Self {
            direction,
            kind,
            min_abs_shift: 0.0,
        }
    }
}

/// Classifies one metric. Non-finite values are dropped first (they are gaps, not readings).
pub fn classify(
    baseline: &[f64],
    canary: &[f64],
    rule: MetricRule,
    config: &VigilJudgeConfig,
) -> MetricJudgement {
    let (direction, kind) = (rule.direction, rule.kind);
    let b: Vec<f64> = baseline.iter().copied().filter(|v| v.is_finite()).collect();
    let c: Vec<f64> = canary.iter().copied().filter(|v| v.is_finite()).collect();
    let mut j = MetricJudgement {
        outcome: Outcome::Inconclusive,
        test: Test::None,
        p_value: None,
        effect: None,
        dispersion_ratio: None,
        rate_ratio: None,
        baseline_n: b.len(),
        canary_n: c.len(),
        baseline_median: median(&b),
        canary_median: median(&c),
        reason: String::new(),
    };
    if b.len() < config.min_baseline_points || c.len() < config.min_canary_points {
        j.reason = format!(
            "too little data: {} baseline and {} canary points, need at least {} and {}",
            b.len(),
            c.len(),
            config.min_baseline_points,
            config.min_canary_points
        );
        return j;
    }
    let zero_share = b.iter().filter(|v| **v == 0.0).count() as f64 / b.len() as f64;
    if kind == MetricKind::Count || (zero_share >= 0.5 && is_count_like(&b) && is_count_like(&c)) {
        return count_judgement(j, &b, &c, direction, config);
    }
    location_and_dispersion(j, &b, &c, direction, rule.min_abs_shift, config)
}

fn is_count_like(v: &[f64]) -> bool {
    v.iter().all(|x| *x >= 0.0 && x.fract() == 0.0)
}

fn count_judgement(
    mut j: MetricJudgement,
    b: &[f64],
    c: &[f64],
    direction: Direction,
    config: &VigilJudgeConfig,
) -> MetricJudgement {
    let sb: f64 = b.iter().sum();
    let sc: f64 = c.iter().sum();
    let (nb, nc) = (b.len() as f64, c.len() as f64);
    let ratio = ((sc + 0.5) / nc) / ((sb + 0.5) / nb);
    j.test = Test::Count;
    j.rate_ratio = Some(ratio);
    let tested = rate_greater(sc.round() as u64, nc, sb.round() as u64, nb).and_then(|up| {
        rate_greater(sb.round() as u64, nb, sc.round() as u64, nc).map(|down| (up, down))
    });
    let (p_up, p_down) = match tested {
        Ok(p) => p,
        Err(e) => {
            j.reason = format!("count test not possible: {e}");
            return j;
        }
    };
    let up_bad = direction != Direction::Decrease;
    let down_bad = direction != Direction::Increase;
    if up_bad && p_up < config.alpha && ratio >= config.count_rate_ratio {
        j.outcome = Outcome::High;
        j.p_value = Some(p_up);
    } else if down_bad && p_down < config.alpha && 1.0 / ratio >= config.count_rate_ratio {
        j.outcome = Outcome::Low;
        j.p_value = Some(p_down);
    } else {
        j.outcome = Outcome::Pass;
        j.p_value = Some(if up_bad { p_up } else { p_down });
    }
    j.reason = format!(
        "count {sc} in {nc} canary vs {sb} in {nb} baseline samples, rate ratio {ratio:.2}, exact p {:.2e}",
        j.p_value.unwrap_or(1.0)
    );
    j
}

fn location_and_dispersion(
    mut j: MetricJudgement,
    b: &[f64],
    c: &[f64],
    direction: Direction,
    min_abs_shift: f64,
    config: &VigilJudgeConfig,
) -> MetricJudgement {
    let bm = median(b).unwrap_or(0.0);
    let spread = robust_spread(b);
    let tested =
        mann_whitney_greater(c, b).and_then(|up| mann_whitney_greater(b, c).map(|down| (up, down)));
    let ((p_up, p_down), hl) = match (tested, hodges_lehmann(c, b, 0.95)) {
        (Ok(p), Some(hl)) => (p, hl),
        (Err(e), _) => {
            j.reason = format!("rank test not possible: {e}");
            return j;
        }
        (Ok(_), None) => {
            j.reason = "rank test not possible: a side has no values".into();
            return j;
        }
    };
    let effect = Effect {
        shift: hl.estimate,
        ci_low: hl.low,
        ci_high: hl.high,
        relative: (bm != 0.0).then(|| hl.estimate / bm.abs()),
        standardized: (spread > 0.0).then(|| hl.estimate / spread),
    };
    j.effect = Some(effect);
    let big = |shift_bound: f64| {
        let rel = if bm != 0.0 {
            shift_bound.abs() / bm.abs()
        } else {
            f64::INFINITY
        };
        let std = if spread > 0.0 {
            shift_bound.abs() / spread
        } else {
            f64::INFINITY
        };
        rel >= config.min_relative_effect
            && std >= config.min_standardized_effect
            && shift_bound.abs() >= min_abs_shift
    };
    let up_bad = direction != Direction::Decrease;
    let down_bad = direction != Direction::Increase;
    j.test = Test::Location;
    // Practical significance is judged on the point estimate; the CI must exclude zero shift.
    if up_bad && p_up < config.alpha && effect.ci_low > 0.0 && big(effect.shift) {
        j.outcome = Outcome::High;
        j.p_value = Some(p_up);
    } else if down_bad && p_down < config.alpha && effect.ci_high < 0.0 && big(effect.shift) {
        j.outcome = Outcome::Low;
        j.p_value = Some(p_down);
    } else {
        j.outcome = Outcome::Pass;
        j.p_value = Some(if up_bad { p_up } else { p_down });
    }
    let rel = effect
        .relative
        .map(|r| format!("{:+.0}%", r * 100.0))
        .unwrap_or_else(|| "n/a".into());
    j.reason = format!(
        "median {:.4} -> {:.4}, shift {:+.4} (95% CI {:+.4} .. {:+.4}, {rel}), p {:.2e}",
        bm,
        j.canary_median.unwrap_or(f64::NAN),
        effect.shift,
        effect.ci_low,
        effect.ci_high,
        j.p_value.unwrap_or(1.0)
    );
    if j.outcome != Outcome::Pass || c.len() < 5 {
        return j;
    }
    // A slow leak: the canary climbs steadily while the baseline did not.
    if direction != Direction::Decrease && c.len() >= config.min_trend_points {
        let (p_trend, slope) = mann_kendall_increasing(c);
        let (p_base, _) = mann_kendall_increasing(b);
        let rise = slope * (c.len() - 1) as f64;
        // A leak matters by how far it climbed, not by its share of the level: the unit floor and
        // the baseline's spread are the yardsticks.
        let climbed = rise >= min_abs_shift
            && (spread == 0.0 || rise / spread >= config.min_standardized_effect);
        if p_trend < config.alpha && p_base >= config.alpha && climbed {
            j.outcome = Outcome::Trend;
            j.test = Test::Trend;
            j.p_value = Some(p_trend);
            j.reason = format!(
                "rising through the canary: Theil-Sen slope {slope:+.4} per sample, {rise:+.4} over {} samples (baseline median {bm:.4}), Mann-Kendall p {p_trend:.2e}",
                c.len()
            );
            return j;
        }
    }
    // The level did not move: did the spread blow up?
    let cm = median(c).unwrap_or(0.0);
    let db: Vec<f64> = b.iter().map(|v| (v - bm).abs()).collect();
    let dc: Vec<f64> = c.iter().map(|v| (v - cm).abs()).collect();
    let (mad_b, mad_c) = (median(&db).unwrap_or(0.0), median(&dc).unwrap_or(0.0));
    let ratio = if mad_b > 0.0 {
        mad_c / mad_b
    } else if mad_c > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    j.dispersion_ratio = Some(ratio);
    // dc and db have one value per canary and baseline point, both non-empty here.
    let Ok(p_disp) = mann_whitney_greater(&dc, &db) else {
        return j;
    };
    // Like the shift, a spread change must matter in the metric's own unit.
    let spread_grew_enough = (mad_c - mad_b) * 1.4826 >= min_abs_shift;
    if p_disp < config.alpha && ratio >= config.dispersion_ratio && spread_grew_enough {
        j.outcome = Outcome::Dispersed;
        j.test = Test::Dispersion;
        j.p_value = Some(p_disp);
        // A constant baseline has no spread to multiply: say so instead of printing "x inf".
        let growth = if ratio.is_finite() {
            format!("x{ratio:.1}")
        } else {
            "from none (constant baseline)".into()
        };
        j.reason = format!(
            "median within tolerance ({bm:.4} -> {cm:.4}) but spread {growth} (MAD {mad_b:.4} -> {mad_c:.4}), p {p_disp:.2e}"
        );
    }
    j
}

/// [`classify`], with the samples' times, so that a baseline's own steady trend is not read as a
/// shift. Comparing a canary with the baseline that ran *before* it (a before/after analysis), a
/// metric that was already climbing is higher in the canary for no reason but time: its location
/// test fails a healthy release. When the location test finds a shift and the baseline alone
/// trends the same way (Mann-Kendall at the judge's level over at least `min_trend_points`
/// baseline samples), both sides are detrended with the baseline's Theil-Sen slope per second,
/// anchored at the baseline's last sample, and judged again: a shift that survives stands (its
/// numbers are the detrended ones, and the reason says so); one the trend explains passes. The
/// trend can only excuse a finding, never make one, so a falling baseline cannot manufacture a
/// rise in a flat canary. With a concurrent baseline the two sides share their times, and
/// detrending moves both alike.
pub fn classify_with_times(
    baseline: (&[f64], &[f64]),
    canary: (&[f64], &[f64]),
    rule: MetricRule,
    config: &VigilJudgeConfig,
) -> MetricJudgement {
    let (b_times, b_values) = baseline;
    let (c_times, c_values) = canary;
    let j = classify(b_values, c_values, rule, config);
    let rising = match j.outcome {
        Outcome::High => true,
        Outcome::Low => false,
        _ => return j,
    };
    if j.test != Test::Location {
        return j;
    }
    let pairs = |t: &[f64], v: &[f64]| -> Vec<(f64, f64)> {
        t.iter()
            .zip(v)
            .filter(|(t, v)| t.is_finite() && v.is_finite())
            .map(|(t, v)| (*t, *v))
            .collect()
    };
    let b = pairs(b_times, b_values);
    let c = pairs(c_times, c_values);
    if b.len() < config.min_trend_points.max(3) || c.is_empty() {
        return j;
    }
    let in_order: Vec<f64> = b
        .iter()
        .map(|(_, v)| if rising { *v } else { -*v })
        .collect();
    let (p_trend, _) = mann_kendall_increasing(&in_order);
    if p_trend >= config.alpha {
        return j;
    }
    let Some(slope) = theil_sen_per_second(&b) else {
        return j;
    };
    let anchor = b.iter().map(|(t, _)| *t).fold(f64::NEG_INFINITY, f64::max);
    let detrend = |v: &[(f64, f64)]| -> Vec<f64> {
        v.iter().map(|(t, x)| x - slope * (t - anchor)).collect()
    };
    let mut again = classify(&detrend(&b), &detrend(&c), rule, config);
    let trend =
        format!("the baseline itself trends {slope:+.4e} per s (Mann-Kendall p {p_trend:.2e})");
    if again.outcome == j.outcome {
        again.reason = format!("{}; detrended by {trend}", again.reason);
        // The medians a person reads stay the raw ones.
        again.baseline_median = j.baseline_median;
        again.canary_median = j.canary_median;
        return again;
    }
    let mut pass = j;
    pass.outcome = Outcome::Pass;
    pass.reason = format!(
        "{}; explained by the baseline's own trend: {trend}, and the canary continues it",
        pass.reason
    );
    pass
}

/// A steady trend of one series over time: the Theil-Sen slope per second and the time it is
/// anchored at (the last sample), with its two-sided Mann-Kendall p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeTrend {
    /// Value per second.
    pub slope: f64,
    /// The time at which the detrended value equals the raw one.
    pub anchor: f64,
    /// Two-sided Mann-Kendall p-value over the samples in time order.
    pub p_value: f64,
}

impl TimeTrend {
    /// The value with the trend removed, as it would read at the anchor.
    pub fn detrend(&self, t: f64, v: f64) -> f64 {
        v - self.slope * (t - self.anchor)
    }
}

/// The baseline's own steady trend, when Mann-Kendall (two-sided, over at least
/// `min_points` finite samples in time order) finds one at level `alpha`. The anomaly model of a
/// before/after analysis reads its features through it, for the reason
/// [`classify_with_times`] gives: a metric that was already climbing is higher in the canary for
/// no reason but time. `None` when there is no such trend.
pub fn baseline_trend(
    times: &[f64],
    values: &[f64],
    alpha: f64,
    min_points: usize,
) -> Option<TimeTrend> {
    let mut points: Vec<(f64, f64)> = times
        .iter()
        .zip(values)
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .map(|(t, v)| (*t, *v))
        .collect();
    if points.len() < min_points.max(3) {
        return None;
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let in_order: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    let negated: Vec<f64> = in_order.iter().map(|v| -v).collect();
    let (p_up, _) = mann_kendall_increasing(&in_order);
    let (p_down, _) = mann_kendall_increasing(&negated);
    let p_value = (2.0 * p_up.min(p_down)).min(1.0);
    if p_value >= alpha {
        return None;
    }
    let slope = theil_sen_per_second(&points)?;
    if slope == 0.0 || !slope.is_finite() {
        return None;
    }
    let anchor = points.last().map(|(t, _)| *t)?;
    Some(TimeTrend {
        slope,
        anchor,
        p_value,
    })
}

/// Median of the pairwise slopes (value per second) of `(time, value)` points; `None` when no
/// two points differ in time.
fn theil_sen_per_second(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, (ti, vi)) in points.iter().enumerate() {
        for (tk, vk) in &points[i + 1..] {
            let dt = tk - ti;
            if dt != 0.0 {
                slopes.push((vk - vi) / dt);
            }
        }
    }
    median(&slopes)
}

/// One-sided Mann-Kendall test for an increasing trend over sample order (normal approximation
/// with tie correction), and the Theil-Sen slope per sample.
#[allow(
    clippy::float_cmp,
    reason = "ties in the Mann-Kendall test are exactly equal values"
)]
pub fn mann_kendall_increasing(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n < 3 {
        return (1.0, 0.0);
    }
    let mut s = 0.0;
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for k in i + 1..n {
            let d = v[k] - v[i];
            s += d.signum() * (d != 0.0) as i32 as f64;
            slopes.push(d / (k - i) as f64);
        }
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut k = i;
        while k + 1 < n && sorted[k + 1] == sorted[i] {
            k += 1;
        }
        let t = (k - i + 1) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = k + 1;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let p = if var > 0.0 {
        normal_sf((s - 1.0) / var.sqrt())
    } else {
        1.0
    };
    (p, median(&slopes).unwrap_or(0.0))
}

/// Median of finite values; None when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile (numpy's default), None when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile_sorted(&s, q)
}

/// Linear-interpolated quantile of already sorted values; `None` when there are none (an empty
/// slice has no quantile, and used to panic here).
pub fn quantile_sorted(s: &[f64], q: f64) -> Option<f64> {
    let last = s.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

/// Scaled MAD (consistent for the normal sd), falling back to IQR/1.349 and then the mean
/// absolute deviation, so that a mostly-constant baseline still has a usable spread.
fn robust_spread(v: &[f64]) -> f64 {
    let m = median(v).unwrap_or(0.0);
    let dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&dev).unwrap_or(0.0) * 1.4826;
    if mad > 0.0 {
        return mad;
    }
    let iqr = quantile(v, 0.75).unwrap_or(0.0) - quantile(v, 0.25).unwrap_or(0.0);
    if iqr > 0.0 {
        return iqr / 1.349;
    }
    dev.iter().sum::<f64>() / dev.len().max(1) as f64 * 1.2533
}

/// One-sided Mann-Whitney U p-value for "x tends to be larger than y", as scipy's
/// `mannwhitneyu(x, y, alternative="greater")` (method auto), via [`crate::rank`]. An empty
/// sample or a NaN value is an error for the caller to report, not a p of 1. (With the
/// continuity correction on, as here, the p-value itself is never NaN.)
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Result<f64, crate::rank::RankError> {
    use crate::rank::{mann_whitney_u, Alternative, MannWhitneyOptions};
    let opts = MannWhitneyOptions {
        alternative: Alternative::Greater,
        ..MannWhitneyOptions::default()
    };
    mann_whitney_u(x, y, &opts).map(|r| r.pvalue)
}

/// A shift estimate and its confidence interval, as [`hodges_lehmann`] returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftEstimate {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// Hodges-Lehmann estimate of x - y with the distribution-free confidence interval from the
/// ordered pairwise differences (the interval Kayenta's judge also uses). Large samples are
/// thinned to evenly spaced order statistics first, which keeps the estimate and costs
/// O(300²) instead of O(n·m). `None` when a sample is empty: there is no shift to estimate
/// (this used to be a shift of 0 with the interval 0..0, i.e. "no change").
pub fn hodges_lehmann(x: &[f64], y: &[f64], confidence: f64) -> Option<ShiftEstimate> {
    let xs = thin(x, 300);
    let ys = thin(y, 300);
    let mut d: Vec<f64> = Vec::with_capacity(xs.len() * ys.len());
    for a in &xs {
        for b in &ys {
            d.push(a - b);
        }
    }
    d.sort_by(f64::total_cmp);
    let est = quantile_sorted(&d, 0.5)?;
    let (m, n) = (xs.len() as f64, ys.len() as f64);
    let z = Normal::standard().inverse_cdf(0.5 + confidence / 2.0);
    let k = (m * n / 2.0 - z * (m * n * (m + n + 1.0) / 12.0).sqrt()).floor();
    let k = k.max(0.0) as usize;
    let lo = d[k.min(d.len() - 1)];
    let hi = d[(d.len() - 1).saturating_sub(k)];
    Some(ShiftEstimate {
        estimate: est,
        low: lo,
        high: hi,
    })
}

fn thin(v: &[f64], max: usize) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.len() <= max {
        return s;
    }
    (0..max)
        .map(|i| s[(i * (s.len() - 1)) / (max - 1)])
        .collect()
}

/// One-sided exact rate test (canary rate higher), via [`crate::counts::rate_test`]. An invalid
/// exposure (no time recorded) is an error naming it, for the caller to report: it used to
/// become p = 1, which reads as "tested, no difference".
pub fn rate_greater(
    canary: u64,
    canary_exposure: f64,
    baseline: u64,
    baseline_exposure: f64,
) -> Result<f64, crate::counts::CountsError> {
    crate::counts::rate_test(canary, canary_exposure, baseline, baseline_exposure, 0.95)
        .map(|r| r.p_greater)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: scipy 1.17, `scipy.stats.mannwhitneyu(x, y, alternative="greater")`.
    #[test]
    fn mann_whitney_exact_matches_scipy() {
        let x = [1.1, 2.3, 3.5, 4.2, 5.9];
        let y = [0.5, 0.9, 1.7, 2.0, 2.8, 3.1];
        // scipy: MannwhitneyuResult(statistic=24.0, pvalue=0.06277056277056277)
        let p = mann_whitney_greater(&x, &y).unwrap();
        assert!((p - 0.06277056277056277).abs() < 1e-12, "{p}");
    }

    #[test]
    fn mann_whitney_ties_use_normal_approximation_like_scipy() {
        let x = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0];
        let y = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
        // scipy 1.17 (asymptotic with ties): statistic=30.0, pvalue=0.10614843917823746
        let p = mann_whitney_greater(&x, &y).unwrap();
        assert!((p - 0.10614843917823746).abs() < 1e-9, "{p}");
    }

    /// A steady climb with a fixed wobble: 0.05 per 60-s sample, noise up to ±0.2.
    fn climbing(from: usize, to: usize, extra: f64) -> (Vec<f64>, Vec<f64>) {
        let t: Vec<f64> = (from..to).map(|i| 1_000.0 + 60.0 * i as f64).collect();
        let v = (from..to)
            .map(|i| 50.0 + 0.5 * i as f64 + [0.2, -0.1, 0.0, -0.2, 0.1][i % 5] + extra)
            .collect();
        (t, v)
    }

    #[test]
    fn a_trend_that_runs_on_from_the_baseline_is_not_a_shift() {
        let cfg = VigilJudgeConfig::default();
        let rule = MetricRule::new(Direction::Increase, MetricKind::Gauge);
        // Memory climbing 0.5 per minute for 40 minutes of baseline, and on through 20 of canary.
        let (bt, b) = climbing(0, 40, 0.0);
        let (ct, c) = climbing(40, 60, 0.0);
        // Without the times the canary (70..80) is far above the baseline (50..70): High.
        assert_eq!(classify(&b, &c, rule, &cfg).outcome, Outcome::High);
        let j = classify_with_times((&bt, &b), (&ct, &c), rule, &cfg);
        assert_eq!(j.outcome, Outcome::Pass, "{}", j.reason);
        assert!(j.reason.contains("baseline's own trend"), "{}", j.reason);
        // The same trend with a 20-unit step at the change (29 % of the level the trend has
        // reached, far beyond the noise) still fails, with the step estimated once the trend is
        // taken out.
        let (ct, c) = climbing(40, 60, 20.0);
        let j = classify_with_times((&bt, &b), (&ct, &c), rule, &cfg);
        assert_eq!(j.outcome, Outcome::High, "{}", j.reason);
        let shift = j.effect.unwrap().shift;
        assert!((shift - 20.0).abs() < 1.0, "{shift}");
        assert!(j.reason.contains("detrended"), "{}", j.reason);
    }

    #[test]
    fn a_trend_only_excuses_a_shift_in_its_own_direction() {
        let cfg = VigilJudgeConfig::default();
        let rule = MetricRule::new(Direction::Increase, MetricKind::Gauge);
        // The baseline falls; the canary jumps above all of it: a rise that no falling trend
        // explains.
        let (bt, b): (Vec<f64>, Vec<f64>) = climbing(0, 40, 0.0);
        let b: Vec<f64> = b.iter().map(|v| 120.0 - v).collect();
        let ct: Vec<f64> = (40..60).map(|i| 1_000.0 + 60.0 * i as f64).collect();
        let c = vec![90.0; 20];
        let j = classify_with_times((&bt, &b), (&ct, &c), rule, &cfg);
        assert_eq!(j.outcome, Outcome::High, "{}", j.reason);
        // A flat canary after a falling baseline is not made a rise by extrapolating the fall.
        let c = vec![b[39]; 20];
        assert_eq!(
            classify_with_times((&bt, &b), (&ct, &c), rule, &cfg).outcome,
            Outcome::Pass
        );
        // Too few baseline points for a trend test: the plain judgement stands.
        let j = classify_with_times((&bt[..6], &b[..6]), (&ct, &[200.0; 20]), rule, &cfg);
        assert_eq!(j, classify(&b[..6], &[200.0; 20], rule, &cfg));
    }

    #[test]
    fn cpu_jump_is_high_and_noise_passes() {
        let cfg = VigilJudgeConfig::default();
        let base: Vec<f64> = (0..20).map(|i| 10.0 + (i % 5) as f64 * 0.3).collect();
        let high = [30.0, 31.0, 29.5, 32.0];
        let j = classify(
            &base,
            &high,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::High, "{}", j.reason);
        let same = [10.1, 10.6, 10.9, 10.3];
        let j = classify(
            &base,
            &same,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Pass, "{}", j.reason);
        // a drop of CPU is not harmful
        let low = [1.0, 1.1, 0.9, 1.2];
        let j = classify(
            &base,
            &low,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Pass, "{}", j.reason);
    }

    #[test]
    fn a_shift_below_the_absolute_floor_passes() {
        let cfg = VigilJudgeConfig::default();
        // CPU 1 % -> 2 %: doubled, significant, but one percentage point does not matter.
        let base: Vec<f64> = (0..20).map(|i| 1.0 + (i % 5) as f64 * 0.02).collect();
        let canary = [2.0, 2.05, 1.98, 2.02];
        let rule = MetricRule {
            min_abs_shift: 5.0,
            ..MetricRule::new(Direction::Increase, MetricKind::Gauge)
        };
        assert_eq!(classify(&base, &canary, rule, &cfg).outcome, Outcome::Pass);
        let rule = MetricRule::new(Direction::Increase, MetricKind::Gauge);
        assert_eq!(classify(&base, &canary, rule, &cfg).outcome, Outcome::High);
    }

    #[test]
    fn mann_kendall_matches_pymannkendall() {
        // Mann-Kendall by its textbook formula in numpy/scipy 1.17 (as pymannkendall computes it):
        // S = 22, var S = 65.33, z = (S - 1)/sqrt(var) = 2.5981, scipy.stats.norm.sf(z) = 0.0046874;
        // Theil-Sen slope = median of pairwise slopes = 1.0
        let (p, slope) = mann_kendall_increasing(&[1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 8.0, 7.0]);
        assert!((p - 0.004687384229717438).abs() < 1e-9, "{p}");
        assert!((slope - 1.0).abs() < 1e-12, "{slope}");
    }

    #[test]
    fn slow_leak_is_a_trend() {
        let cfg = VigilJudgeConfig::default();
        let base: Vec<f64> = (0..30)
            .map(|i| 300.0 + ((i * 7) % 5) as f64 * 0.4)
            .collect();
        let canary: Vec<f64> = (0..20)
            .map(|i| 300.0 + 3.0 * i as f64 + ((i * 3) % 4) as f64 * 0.5)
            .collect();
        let rule = MetricRule {
            min_abs_shift: 16.0,
            ..MetricRule::new(Direction::Increase, MetricKind::Gauge)
        };
        let j = classify(&base, &canary, rule, &cfg);
        assert_eq!(j.outcome, Outcome::Trend, "{}", j.reason);
    }

    #[test]
    fn too_little_data_is_inconclusive_and_says_how_little() {
        let cfg = VigilJudgeConfig::default();
        let j = classify(
            &[1.0, 2.0, 3.0],
            &[5.0],
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Inconclusive);
        assert!(j.reason.contains("3 baseline and 1 canary"), "{}", j.reason);
    }

    #[test]
    fn variance_blow_up_with_same_median_is_dispersed() {
        let cfg = VigilJudgeConfig::default();
        let base: Vec<f64> = (0..30)
            .map(|i| 100.0 + ((i * 7) % 11) as f64 * 0.2 - 1.0)
            .collect();
        let canary: Vec<f64> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    100.0 + 8.0 + i as f64
                } else {
                    100.0 - 8.0 - i as f64
                }
            })
            .collect();
        let j = classify(
            &base,
            &canary,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Dispersed, "{}", j.reason);
    }

    #[test]
    fn spread_from_a_constant_baseline_is_worded_without_infinity() {
        let cfg = VigilJudgeConfig::default();
        let base = vec![50.0; 30];
        let canary: Vec<f64> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    40.0 - i as f64
                } else {
                    60.0 + i as f64
                }
            })
            .chain([50.0])
            .collect();
        let j = classify(
            &base,
            &canary,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Dispersed, "{}", j.reason);
        assert!(
            j.reason.contains("from none (constant baseline)") && !j.reason.contains("inf"),
            "{}",
            j.reason
        );
    }

    #[test]
    fn zero_inflated_errors_use_the_count_test() {
        let cfg = VigilJudgeConfig::default();
        let base = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let canary = [3.0, 2.0, 4.0, 3.0];
        let j = classify(
            &base,
            &canary,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.test, Test::Count);
        assert_eq!(j.outcome, Outcome::High, "{}", j.reason);
        let quiet = [0.0, 1.0, 0.0, 0.0];
        let j = classify(
            &base,
            &quiet,
            MetricRule::new(Direction::Increase, MetricKind::Gauge),
            &cfg,
        );
        assert_eq!(j.outcome, Outcome::Pass, "{}", j.reason);
    }
}
