//! A multivariate anomaly model over per-window feature vectors (metric values, log and span
//! rates), fitted on the baseline only and applied to the canary.
//!
//! Per-metric tests miss a canary whose every metric is individually plausible but whose
//! combination is not (CPU up while traffic is down). A Gaussian mixture (linfa) over robustly
//! standardised features captures the baseline's joint shape. Its threshold is calibrated on
//! leave-one-out scores of the baseline windows themselves, so that a healthy window is flagged
//! at the chosen false-alarm rate and not, as an in-sample threshold would, much more often.

use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use ndarray::{Array1, Array2};
use serde::Serialize;
use thiserror::Error;

/// Why a model could not be fitted.
#[derive(Debug, Error, PartialEq)]
pub enum AnomalyError {
    #[error("anomaly model needs at least {needed} baseline windows, got {got}")]
    TooFewWindows { needed: usize, got: usize },
    #[error("feature row {row} has {got} values, expected {expected} (one per feature name)")]
    RowLength {
        row: usize,
        got: usize,
        expected: usize,
    },
    #[error("no features")]
    NoFeatures,
    #[error("{got} feature resolutions for {expected} features (one per feature name)")]
    ResolutionLength { got: usize, expected: usize },
    #[error("Gaussian mixture fit failed: {0}")]
    Fit(String),
}

/// Tunables.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyConfig {
    /// Share of healthy windows the threshold lets through as anomalous.
    pub false_alarm_rate: f64,
    /// Upper bound on mixture components; fewer are used when windows are scarce.
    pub max_components: usize,
    /// Added to covariance diagonals (in standardised units) so small baselines stay invertible.
    pub reg_covariance: f64,
    /// Fewest baseline windows to fit at all.
    pub min_windows: usize,
    /// Folds of the cross-fitted calibration (leave-one-out when there are fewer windows).
    pub calibration_folds: usize,
    /// Level of the Mann-Kendall test that decides a baseline feature trends steadily, so that
    /// the model reads it detrended (the metric judge's default level).
    pub trend_alpha: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            false_alarm_rate: 0.05,
            max_components: 2,
            reg_covariance: 0.1,
            min_windows: 8,
            calibration_folds: 10,
            trend_alpha: 0.01,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct AnomalyModel {
    names: Vec<String>,
    center: Vec<f64>,
    scale: Vec<f64>,
    components: Vec<Component>,
    /// Negative log-likelihood above which a window is anomalous.
    pub threshold: f64,
    /// The share of healthy windows expected above `threshold`: (1 + calibration scores above
    /// it)/(n + 1), never below the configured rate (see `conformal_threshold`).
    pub false_alarm_rate: f64,
    /// Cross-fitted baseline scores the threshold was read from, and how many lie above it:
    /// what [`AnomalyModel::exceedance_p`] needs for the exact law of a count of flagged windows.
    calibration_n: usize,
    calibration_above: usize,
}

#[derive(Debug, Clone)]
struct Component {
    log_weight: f64,
    mean: Vec<f64>,
    /// Lower Cholesky factor of the covariance.
    chol: Vec<Vec<f64>>,
    log_det: f64,
}

/// One feature's share in pushing a window out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: String,
    /// Standardised deviation from the closest component's mean (signed).
    pub z: f64,
    pub value: f64,
    pub baseline_median: f64,
}

/// The score of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowScore {
    /// Negative log-likelihood under the baseline model (higher is stranger).
    pub score: f64,
    pub threshold: f64,
    pub anomalous: bool,
    /// Features sorted by |z|, largest first.
    pub contributions: Vec<Contribution>,
}

/// Fits the model on baseline rows (one row per window, one value per feature name). Missing
/// values (NaN) are imputed with the feature's baseline median.
pub fn fit(
    names: &[String],
    rows: &[Vec<f64>],
    config: &AnomalyConfig,
) -> Result<AnomalyModel, AnomalyError> {
    fit_with_resolution(names, rows, &vec![0.0; names.len()], config)
}

/// [`fit`], with the smallest change of each feature that means anything (one event per window
/// for a rate, the unit's floor for a gauge). A feature that never moved in the baseline — no
/// error lines at all, say — otherwise gets a scale of almost nothing, and its first move scores
/// a z of a million: still an alarm, but one whose explanation drowns every other feature.
pub fn fit_with_resolution(
    names: &[String],
    rows: &[Vec<f64>],
    resolution: &[f64],
    config: &AnomalyConfig,
) -> Result<AnomalyModel, AnomalyError> {
    if names.is_empty() {
        return Err(AnomalyError::NoFeatures);
    }
    if resolution.len() != names.len() {
        return Err(AnomalyError::ResolutionLength {
            got: resolution.len(),
            expected: names.len(),
        });
    }
    if rows.len() < config.min_windows.max(3) {
        return Err(AnomalyError::TooFewWindows {
            needed: config.min_windows.max(3),
            got: rows.len(),
        });
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != names.len() {
            return Err(AnomalyError::RowLength {
                row: i,
                got: r.len(),
                expected: names.len(),
            });
        }
    }
    let (center, mut scale) = robust_standardisation(rows, names.len());
    for (s, r) in scale.iter_mut().zip(resolution) {
        if r.is_finite() {
            *s = s.max(*r);
        }
    }
    let z: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| standardise(r, &center, &scale))
        .collect();
    let components = fit_components(&z, config)?;
    // Cross-fitted scores: each baseline window judged by a model that did not see it
    // (leave-one-out for small baselines, `calibration_folds` interleaved folds for larger ones).
    let folds = z.len().min(config.calibration_folds.max(2));
    let mut loo = Vec::with_capacity(z.len());
    for f in 0..folds {
        let rest: Vec<Vec<f64>> = z
            .iter()
            .enumerate()
            .filter(|(j, _)| j % folds != f)
            .map(|(_, r)| r.clone())
            .collect();
        let comps = fit_components(&rest, config)?;
        for (_, row) in z.iter().enumerate().filter(|(j, _)| j % folds == f) {
            loo.push(neg_log_likelihood(&comps, row).0);
        }
    }
    loo.sort_by(f64::total_cmp);
    // One cross-fitted score per window, and there are at least three windows (checked above).
    let (threshold, false_alarm_rate, calibration_above) =
        conformal_threshold(&loo, config.false_alarm_rate).ok_or(AnomalyError::TooFewWindows {
            needed: config.min_windows.max(3),
            got: loo.len(),
        })?;
    Ok(AnomalyModel {
        names: names.to_vec(),
        center,
        scale,
        components,
        threshold,
        false_alarm_rate,
        calibration_n: loo.len(),
        calibration_above,
    })
}

/// The threshold (the configured quantile of the `n` cross-fitted baseline scores) and the rate
/// at which a fresh healthy window exceeds it. For exchangeable scores a new one lands above all
/// but j of them with probability (n + 1 − j)/(n + 1); so with 10 baseline windows the 95 %
/// quantile, which lies between the two largest scores, is exceeded 2 times in 11, not 1 in 20.
/// The binomial test downstream must use that rate, or it reads ordinary healthy windows as
/// evidence.
fn conformal_threshold(sorted: &[f64], rate: f64) -> Option<(f64, f64, usize)> {
    let n = sorted.len();
    let threshold = crate::vigil_judge::quantile_sorted(sorted, 1.0 - rate)?;
    let above = sorted.iter().filter(|s| **s > threshold).count();
    let effective = (above + 1) as f64 / (n as f64 + 1.0);
    Some((threshold, effective.max(rate), above))
}

impl AnomalyModel {
    /// The probability that `k` or more of `m` healthy canary windows score above the
    /// threshold. All `m` windows are compared with one threshold read from `n` baseline scores,
    /// so their exceedances are not independent: given the calibration, each exceeds with the
    /// same unknown chance U ~ Beta(above + 1, n − above), and the count is beta-binomial. A
    /// binomial at the mean rate treats the estimated threshold as exact and makes two odd
    /// minutes after a 21-minute baseline look like p = 0.008 when it is 0.012. Exact when the
    /// threshold is one of the baseline scores; when it lies between two, exceeding it is rarer
    /// than exceeding the lower one, so the p-value is conservative, never too small.
    pub fn exceedance_p(&self, k: u64, m: u64) -> f64 {
        if k == 0 || m == 0 {
            return 1.0;
        }
        let a = (self.calibration_above + 1) as f64;
        let b = self
            .calibration_n
            .saturating_sub(self.calibration_above)
            .max(1) as f64;
        crate::counts::beta_binomial_sf(k.min(m), m, a, b).unwrap_or(1.0)
    }

    /// Scores one canary window and explains it. A row of the wrong width is an error, not a
    /// panic: rows come from telemetry, and a source may not report every feature.
    pub fn score(&self, row: &[f64]) -> Result<WindowScore, AnomalyError> {
        if row.len() != self.names.len() {
            return Err(AnomalyError::RowLength {
                row: 0,
                got: row.len(),
                expected: self.names.len(),
            });
        }
        let z = standardise(row, &self.center, &self.scale);
        let (nll, best) = neg_log_likelihood(&self.components, &z);
        let comp = &self.components[best];
        let mut contributions: Vec<Contribution> = (0..self.names.len())
            .map(|j| {
                let sd = comp.chol[j]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt()
                    .max(1e-9);
                Contribution {
                    feature: self.names[j].clone(),
                    z: (z[j] - comp.mean[j]) / sd,
                    value: row[j],
                    baseline_median: self.center[j],
                }
            })
            .collect();
        contributions.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
        Ok(WindowScore {
            score: nll,
            threshold: self.threshold,
            anomalous: nll > self.threshold,
            contributions,
        })
    }

    pub fn feature_names(&self) -> &[String] {
        &self.names
    }
}

fn robust_standardisation(rows: &[Vec<f64>], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut center = Vec::with_capacity(d);
    let mut scale = Vec::with_capacity(d);
    for j in 0..d {
        let col: Vec<f64> = rows
            .iter()
            .map(|r| r[j])
            .filter(|v| v.is_finite())
            .collect();
        let m = crate::vigil_judge::median(&col).unwrap_or(0.0);
        let dev: Vec<f64> = col.iter().map(|v| (v - m).abs()).collect();
        let mad = crate::vigil_judge::median(&dev).unwrap_or(0.0) * 1.4826;
        let mean_dev = dev.iter().sum::<f64>() / dev.len().max(1) as f64 * 1.2533;
        // A feature that barely moves in the baseline must not make every canary wiggle look
        // infinitely strange: floor its scale at 5 % of its level.
        let floor = (m.abs() * 0.05).max(1e-6);
        center.push(m);
        scale.push(mad.max(mean_dev).max(floor));
    }
    (center, scale)
}

fn standardise(row: &[f64], center: &[f64], scale: &[f64]) -> Vec<f64> {
    row.iter()
        .zip(center.iter().zip(scale))
        .map(|(v, (c, s))| {
            if v.is_finite() {
                ((v - c) / s).clamp(-1e6, 1e6)
            } else {
                0.0
            }
        })
        .collect()
}

fn fit_components(z: &[Vec<f64>], config: &AnomalyConfig) -> Result<Vec<Component>, AnomalyError> {
    let n = z.len();
    let d = z[0].len();
    // Enough windows per component to estimate a full covariance, at most `max_components`.
    let k = (n / (2 * d + 2)).clamp(1, config.max_components.max(1));
    let data = Array2::from_shape_fn((n, d), |(i, j)| z[i][j]);
    let dataset = DatasetBase::from(data);
    let gmm = GaussianMixtureModel::params(k)
        .reg_covariance(config.reg_covariance)
        .n_runs(1)
        .max_n_iterations(100)
        .fit(&dataset)
        .map_err(|e| AnomalyError::Fit(e.to_string()))?;
    let weights: &Array1<f64> = gmm.weights();
    let means = gmm.means();
    let covs = gmm.covariances();
    let mut out = Vec::with_capacity(k);
    for c in 0..weights.len() {
        let cov: Vec<Vec<f64>> = (0..d)
            .map(|i| (0..d).map(|j| covs[[c, i, j]]).collect())
            .collect();
        let chol = cholesky(&cov)
            .ok_or_else(|| AnomalyError::Fit("covariance is not positive definite".into()))?;
        let log_det = 2.0 * (0..d).map(|i| chol[i][i].ln()).sum::<f64>();
        out.push(Component {
            log_weight: weights[c].max(1e-300).ln(),
            mean: (0..d).map(|j| means[[c, j]]).collect(),
            chol,
            log_det,
        });
    }
    Ok(out)
}

/// Negative log-likelihood of the mixture and the index of the most responsible component.
fn neg_log_likelihood(comps: &[Component], x: &[f64]) -> (f64, usize) {
    let d = x.len() as f64;
    let lls: Vec<f64> = comps
        .iter()
        .map(|c| {
            let diff: Vec<f64> = x.iter().zip(&c.mean).map(|(a, b)| a - b).collect();
            let y = forward_substitute(&c.chol, &diff);
            let maha: f64 = y.iter().map(|v| v * v).sum();
            c.log_weight - 0.5 * (d * (2.0 * std::f64::consts::PI).ln() + c.log_det + maha)
        })
        .collect();
    let (best, max) = lls
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |acc, (i, v)| {
            if *v > acc.1 {
                (i, *v)
            } else {
                acc
            }
        });
    let lse = max + lls.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    (-lse, best)
}

fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i][j] = v.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

fn forward_substitute(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i][i];
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
    }

    fn normalish(seed: &mut u64) -> f64 {
        (0..12).map(|_| lcg(seed)).sum::<f64>() - 6.0
    }

    fn baseline(seed: &mut u64, n: usize) -> Vec<Vec<f64>> {
        // CPU follows traffic: a correlated pair plus an independent latency.
        (0..n)
            .map(|_| {
                let load = 100.0 + 10.0 * normalish(seed);
                vec![
                    load,
                    0.2 * load + normalish(seed),
                    50.0 + 2.0 * normalish(seed),
                ]
            })
            .collect()
    }

    fn names() -> Vec<String> {
        vec!["workload".into(), "cpu".into(), "latency".into()]
    }

    #[test]
    fn calibrated_false_alarm_rate_holds_on_fresh_healthy_windows() {
        let mut seed = 7;
        let model = fit(
            &names(),
            &baseline(&mut seed, 40),
            &AnomalyConfig::default(),
        )
        .unwrap();
        let fresh = baseline(&mut seed, 400);
        let flagged = fresh
            .iter()
            .filter(|r| model.score(r).unwrap().anomalous)
            .count();
        // 5 % nominal (1/41 ≈ 2.4 % granularity with 40 windows); cross-fitting keeps it near,
        // an in-sample threshold would not.
        assert!(model.false_alarm_rate <= 0.08, "{}", model.false_alarm_rate);
        assert!(flagged <= 60, "flagged {flagged} of 400 healthy windows");
    }

    #[test]
    fn broken_correlation_is_flagged_and_explained() {
        let mut seed = 11;
        let model = fit(
            &names(),
            &baseline(&mut seed, 40),
            &AnomalyConfig::default(),
        )
        .unwrap();
        // Traffic normal, CPU doubled: each value alone is within the baseline's range of CPU.
        assert_eq!(
            model.score(&[90.0, 36.0]).err(),
            Some(AnomalyError::RowLength {
                row: 0,
                got: 2,
                expected: 3
            })
        );
        let s = model.score(&[90.0, 36.0, 50.0]).unwrap();
        assert!(s.anomalous, "{s:?}");
        assert_eq!(s.contributions[0].feature, "cpu");
    }

    #[test]
    fn threshold_rate_is_what_the_number_of_windows_allows() {
        let scores: Vec<f64> = (1..=10).map(f64::from).collect();
        // 10 scores: the 95 % quantile lies between 9 and 10, one score above it, so a fresh
        // healthy score exceeds it 2 times in 11.
        let (t, r, _) = conformal_threshold(&scores, 0.05).expect("scores");
        assert!(t > 9.0 && t < 10.0, "{t}");
        assert!((r - 2.0 / 11.0).abs() < 1e-12);
        // 101 scores: the 95 % quantile is score 96, five above it, rate 6/102.
        let scores: Vec<f64> = (1..=101).map(f64::from).collect();
        let (t, r, _) = conformal_threshold(&scores, 0.05).expect("scores");
        assert_eq!(t, 96.0);
        assert!((r - 6.0 / 102.0).abs() < 1e-12);
        // Monte Carlo with 12 calibration windows: healthy scores exceed the threshold at most at
        // the stated rate (2/13; the exact rate lies between 1/13 and 2/13).
        let mut seed = 3u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut over, mut total, mut stated) = (0usize, 0usize, 0.0);
        for _ in 0..4000 {
            let mut cal: Vec<f64> = (0..12).map(|_| next()).collect();
            cal.sort_by(f64::total_cmp);
            let (t, r, _) = conformal_threshold(&cal, 0.05).expect("scores");
            stated = r;
            for _ in 0..5 {
                total += 1;
                if next() > t {
                    over += 1;
                }
            }
        }
        // The stated rate bounds what healthy windows do; the nominal 5 % would not.
        let observed = over as f64 / total as f64;
        assert!(observed <= stated + 0.01, "{observed} vs {stated}");
        assert!(observed > 0.05 + 0.03, "{observed}");
    }

    /// Several canary windows share one threshold read from the baseline, so the count above it
    /// is beta-binomial, not binomial: checked by simulation. With 21 calibration scores the
    /// 95 % quantile is the 20th score itself and the law is exact; with 10 it lies between two
    /// scores and the beta-binomial bounds the count from above (a valid, conservative p).
    #[test]
    fn count_of_windows_above_a_shared_threshold_is_beta_binomial() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (reps, m) = (200_000, 3u64);
        let mut simulate = |n: usize| {
            let (mut hits, mut above, mut rate) = (0usize, 0, 0.0);
            for _ in 0..reps {
                let mut cal: Vec<f64> = (0..n).map(|_| next()).collect();
                cal.sort_by(f64::total_cmp);
                let (t, r, a) = conformal_threshold(&cal, 0.05).expect("scores");
                (above, rate) = (a, r);
                if (0..m).filter(|_| next() > t).count() >= 2 {
                    hits += 1;
                }
            }
            (hits as f64 / reps as f64, above, rate)
        };
        // Standard errors of the observed shares are about 0.0006.
        let (observed, above, rate) = simulate(21);
        assert_eq!(above, 1);
        let exact = crate::counts::beta_binomial_sf(2, m, 2.0, 20.0).unwrap();
        let binomial =
            crate::counts::binom_test(2, m, rate, crate::counts::Alternative::Greater).unwrap();
        assert!((observed - exact).abs() < 0.003, "{observed} vs {exact}");
        assert!(
            observed > binomial + 0.005,
            "{observed} vs binomial {binomial}"
        );
        let (observed, above, _) = simulate(10);
        assert_eq!(above, 1);
        let bound = crate::counts::beta_binomial_sf(2, m, 2.0, 9.0).unwrap();
        assert!(observed < bound, "{observed} vs {bound}");
    }

    #[test]
    fn too_few_windows_is_an_error_that_says_how_many() {
        let rows = vec![vec![1.0, 2.0, 3.0]; 4];
        let err = fit(&names(), &rows, &AnomalyConfig::default()).unwrap_err();
        assert_eq!(err, AnomalyError::TooFewWindows { needed: 8, got: 4 });
        assert!(err.to_string().contains("at least 8"));
        let rows = vec![vec![1.0, 2.0, 3.0]; 10];
        let err =
            fit_with_resolution(&names(), &rows, &[0.1], &AnomalyConfig::default()).unwrap_err();
        assert_eq!(
            err,
            AnomalyError::ResolutionLength {
                got: 1,
                expected: 3
            }
        );
    }
}
