//! What NetflixACAJudge does to each side before classifying it, and the descriptive statistics
//! it reports: NaN removal or replacement, the IQR outlier filter (with Kayenta's undocumented
//! P1/P99 widening), commons-math's R-7 percentiles, mean and variance.
//!
//! Means and variances follow commons-math's two-pass formulas so that `resultMetadata.ratio` and
//! the reported stats match Kayenta's to the last bit rather than merely to rounding.

/// How a side's NaN values (missing points, padded in by Kayenta's mixer) are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanStrategy {
    /// Drop NaN points (Kayenta's default).
    Remove,
    /// Replace NaN points with 0.0; "no data" then means Pass.
    Replace,
}

/// Whether the IQR outlier filter runs. Off by default since Kayenta PR #621.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutlierStrategy {
    Keep,
    /// Remove points outside the widened IQR fences with this factor (default 3.0).
    Remove {
        factor: f64,
    },
}

pub fn remove_nans(data: &[f64]) -> Vec<f64> {
    data.iter().copied().filter(|v| !v.is_nan()).collect()
}

pub fn replace_nans(data: &[f64], value: f64) -> Vec<f64> {
    data.iter()
        .map(|v| if v.is_nan() { value } else { *v })
        .collect()
}

/// Applies the NaN strategy, then the outlier strategy, in Kayenta's order.
pub fn preprocess(data: &[f64], nan: NanStrategy, outliers: OutlierStrategy) -> Vec<f64> {
    let cleaned = match nan {
        NanStrategy::Remove => remove_nans(data),
        NanStrategy::Replace => replace_nans(data, 0.0),
    };
    match outliers {
        OutlierStrategy::Keep => cleaned,
        OutlierStrategy::Remove { factor } => remove_outliers(
            &cleaned,
            &Detector::Iqr {
                factor,
                reduce_sensitivity: true,
            },
        ),
    }
}

/// Kayenta's outlier detectors. The judge only ever uses `Iqr` with `reduce_sensitivity`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// Tukey fences `p25 − f·IQR`, `p75 + f·IQR`; with `reduce_sensitivity` the fences are widened
    /// to at least P1 and P99, so a filter never removes more than the outer 1% on each side.
    Iqr {
        factor: f64,
        reduce_sensitivity: bool,
    },
    /// `|x − mean| > k · population sd`.
    KSigma { k: f64 },
}

impl Detector {
    /// One flag per point; outliers are strictly outside the fences.
    pub fn outliers(&self, data: &[f64]) -> Vec<bool> {
        if data.is_empty() {
            return Vec::new();
        }
        match *self {
            Detector::Iqr {
                factor,
                reduce_sensitivity,
            } => {
                let mut sorted = data.to_vec();
                sorted.sort_by(f64::total_cmp);
                let p25 = percentile_sorted(&sorted, 25.0);
                let p75 = percentile_sorted(&sorted, 75.0);
                let iqr = p75 - p25;
                let mut lower = p25 - factor * iqr;
                let mut upper = p75 + factor * iqr;
                if reduce_sensitivity {
                    lower = lower.min(percentile_sorted(&sorted, 1.0));
                    upper = upper.max(percentile_sorted(&sorted, 99.0));
                }
                data.iter().map(|&v| v > upper || v < lower).collect()
            }
            Detector::KSigma { k } => {
                let m = mean(data);
                let sd = population_variance(data).sqrt();
                data.iter().map(|&v| (v - m).abs() > k * sd).collect()
            }
        }
    }
}

pub fn remove_outliers(data: &[f64], detector: &Detector) -> Vec<f64> {
    let flags = detector.outliers(data);
    data.iter()
        .zip(flags)
        .filter(|(_, out)| !out)
        .map(|(v, _)| *v)
        .collect()
}

/// commons-math `Percentile` with `EstimationType.R_7` for `p` in (0, 100]; NaN when empty.
pub fn percentile_r7(data: &[f64], p: f64) -> f64 {
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, p)
}

#[allow(
    clippy::float_cmp,
    reason = "p = 1 is an exact special case in the estimator Kayenta uses"
)]
fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let q = p / 100.0;
    let pos = if q == 0.0 {
        1.0
    } else if q == 1.0 {
        n as f64
    } else {
        1.0 + (n as f64 - 1.0) * q
    };
    let fpos = pos.floor();
    let dif = pos - fpos;
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= n as f64 {
        return sorted[n - 1];
    }
    let int_pos = fpos as usize;
    let lower = sorted[int_pos - 1];
    let upper = sorted[int_pos];
    lower + dif * (upper - lower)
}

/// commons-math `Mean`: the sum over n, refined by the mean residual. NaN when empty.
pub fn mean(data: &[f64]) -> f64 {
    if data.is_empty() {
        return f64::NAN;
    }
    let n = data.len() as f64;
    let xbar = data.iter().sum::<f64>() / n;
    let correction: f64 = data.iter().map(|v| v - xbar).sum();
    xbar + correction / n
}

/// commons-math `Variance` with bias correction (n − 1); 0 for one point, NaN when empty.
pub fn variance(data: &[f64]) -> f64 {
    corrected_sum_of_squares(data, true)
}

fn population_variance(data: &[f64]) -> f64 {
    corrected_sum_of_squares(data, false)
}

fn corrected_sum_of_squares(data: &[f64], bias_corrected: bool) -> f64 {
    match data.len() {
        0 => f64::NAN,
        1 => 0.0,
        len => {
            let m = mean(data);
            let (mut accum, mut accum2) = (0.0, 0.0);
            for v in data {
                let dev = v - m;
                accum += dev * dev;
                accum2 += dev;
            }
            let n = len as f64;
            let denom = if bias_corrected { n - 1.0 } else { n };
            (accum - accum2 * accum2 / n) / denom
        }
    }
}

/// `experimentMetadata.stats` / `controlMetadata.stats`, computed on the preprocessed side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub std: f64,
    pub count: usize,
}

/// Kayenta reports all zeros for an empty side rather than NaN.
pub fn summary(data: &[f64]) -> Summary {
    if data.is_empty() {
        return Summary {
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            std: 0.0,
            count: 0,
        };
    }
    Summary {
        min: data.iter().copied().fold(f64::INFINITY, f64::min),
        max: data.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mean: mean(data),
        std: variance(data).sqrt(),
        count: data.len(),
    }
}

/// Kayenta's `Transforms.addGaussianNoise`: `x + mean + stdev·z` with `z` from `standard_normal`.
pub fn add_gaussian_noise(
    data: &[f64],
    mean: f64,
    stdev: f64,
    standard_normal: &mut dyn FnMut() -> f64,
) -> Vec<f64> {
    data.iter()
        .map(|v| v + mean + stdev * standard_normal())
        .collect()
}

/// `java.util.Random` (which `scala.util.Random` wraps): the generator Kayenta draws its
/// tie-breaking noise from. Kayenta seeds it from the clock; Vigil takes a seed so that a replay
/// gives the same answer twice.
#[derive(Debug, Clone)]
pub struct JavaRandom {
    seed: u64,
    next_gaussian: Option<f64>,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5DEE_CE66D;
    const MASK: u64 = (1 << 48) - 1;

    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK,
            next_gaussian: None,
        }
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> (48 - bits)) as i64 as i32
    }

    pub fn next_double(&mut self) -> f64 {
        let hi = (self.next(26) as i64) << 27;
        let lo = self.next(27) as i64;
        (hi + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Marsaglia's polar method, caching the second draw, as the JDK does.
    pub fn next_gaussian(&mut self) -> f64 {
        if let Some(g) = self.next_gaussian.take() {
            return g;
        }
        loop {
            let v1 = 2.0 * self.next_double() - 1.0;
            let v2 = 2.0 * self.next_double() - 1.0;
            let s = v1 * v1 + v2 * v2;
            if s < 1.0 && s != 0.0 {
                let multiplier = (-2.0 * s.ln() / s).sqrt();
                self.next_gaussian = Some(v2 * multiplier);
                return v1 * multiplier;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_matches_the_jdk() {
        // The widely quoted first draws of `new java.util.Random(42)`.
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next(32), -1170105035);
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_double(), 0.7275636800328681);
        // The JDK takes the log from fdlibm (StrictMath); the platform's may differ in the last
        // bit, which is all the tolerance allows.
        let mut r = JavaRandom::new(42);
        assert!((r.next_gaussian() - 1.1419053154730547).abs() < 1e-15);
    }

    #[test]
    fn iqr_widening_keeps_points_inside_p1_p99() {
        // Plain Tukey fences with factor 0 flag everything outside [p25, p75]; the widening
        // pulls the fences out to P1/P99, so only points beyond those remain flagged.
        let data: Vec<f64> = (0..200).map(f64::from).collect();
        let plain = Detector::Iqr {
            factor: 0.0,
            reduce_sensitivity: false,
        }
        .outliers(&data);
        let widened = Detector::Iqr {
            factor: 0.0,
            reduce_sensitivity: true,
        }
        .outliers(&data);
        assert_eq!(plain.iter().filter(|o| **o).count(), 100);
        // P1 = 1 + 199·0.01 → 1.99, P99 → 197.01, so 0, 1 and 198, 199 are outside.
        assert_eq!(widened.iter().filter(|o| **o).count(), 4);
    }

    #[test]
    fn summary_of_empty_side_is_zeros() {
        assert_eq!(summary(&[]).count, 0);
        assert_eq!(summary(&[]).mean, 0.0);
        assert!(mean(&[]).is_nan());
    }
}
