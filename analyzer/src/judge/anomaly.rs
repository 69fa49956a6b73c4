//! The anomaly signal: models fitted on the baseline — one over metric rows, one over 10-second
//! windows of log and span events — and how many canary windows each flags.

use std::collections::{BTreeMap, HashMap};

use vigil_models::anomaly::{self, AnomalyConfig, AnomalyModel};
use vigil_models::vigil_judge;

use super::metrics::MetricRules;
use super::{absent, Incremental, SideView, View};
use crate::telemetry::MetricTable;
use crate::telemetry::{Level, LogRecord, Span};
use crate::traces::TraceSide;
use crate::verdict::{strength, Coverage, Effect, Finding, Severity, Signal, SignalReport, Typed};

/// The features of the anomaly model: per metric row, every metric with a direction (one
/// latency quantile, not three) plus traffic, so that the model learns how they move together.
pub(crate) fn anomaly_features(t: &MetricTable, rules: &MetricRules) -> Vec<String> {
    t.columns
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            (rules.spec(n).is_some() && !l.contains("p95") && !l.contains("p99"))
                || l.contains("workload")
        })
        .cloned()
        .collect()
}

/// One row per canary metric row, one value per model feature. A feature the canary's table
/// lacks (a source that does not report that metric) is a missing value in every row — the model
/// imputes the baseline median, so an absent metric is no evidence either way — never a shorter
/// row.
fn feature_rows(t: &MetricTable, rows: (usize, usize), names: &[String]) -> Vec<Vec<f64>> {
    let cols: Vec<Option<&Vec<f64>>> = names
        .iter()
        .map(|n| t.columns.iter().find(|(m, _)| m == n).map(|(_, v)| v))
        .collect();
    (rows.0..rows.1)
        .map(|i| {
            cols.iter()
                .map(|c| c.and_then(|c| c.get(i)).copied().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// Fewest baseline rows for a trend test, as the metric judge's `min_trend_points`.
const TREND_MIN_POINTS: usize = 8;

/// The rows' times of a table's row range (empty when the range is out of bounds).
fn row_times(t: &MetricTable, rows: (usize, usize)) -> &[f64] {
    t.times.get(rows.0..rows.1).unwrap_or_default()
}

/// Removes each feature's trend from rows taken at `times` (a row per time).
fn detrend_rows(rows: &mut [Vec<f64>], times: &[f64], trends: &[Option<vigil_judge::TimeTrend>]) {
    for (row, t) in rows.iter_mut().zip(times) {
        for (v, trend) in row.iter_mut().zip(trends) {
            if let Some(trend) = trend {
                *v = trend.detrend(*t, *v);
            }
        }
    }
}

/// Width of the windows of the event model: a 3-minute core window gives up to 18, and a pod
/// that logs once a second still has ten events in each.
pub(crate) const EVENT_BUCKET_S: f64 = 10.0;

/// The fitted anomaly models of one analysis. Metric rows come once a minute over a long
/// baseline; logs and spans come as events over the short core window, so they get their own
/// model over 10-second windows rather than being forced onto the metric rows (where most
/// baseline minutes would have no events and every value would be imputed).
#[derive(Debug, Clone)]
pub struct AnomalyModels {
    /// The model over metric rows, or why none could be fitted.
    pub metrics: Result<AnomalyModel, String>,
    /// Per metric feature, the baseline's own steady trend, which the model reads removed on
    /// both sides (`None`: no trend). A before/after analysis compares the canary with the
    /// minutes before it: a memory that was already climbing sits above every baseline minute
    /// for no reason but time, and a model of the baseline's raw values flags it — about half of
    /// healthy canaries with such a trend, in the synthetic check of the note of 2026-12-07.
    pub metric_trends: Vec<Option<vigil_judge::TimeTrend>>,
    /// `Ok(None)`: neither logs nor spans were recorded on both sides, nothing to model.
    pub events: Result<Option<EventModel>, String>,
}

/// The event model and the baseline reference its latency feature is measured against.
#[derive(Debug, Clone)]
pub struct EventModel {
    model: AnomalyModel,
    reference: EventReference,
}

/// What the event features need from the baseline: which modalities both sides recorded, and
/// each operation's median log-latency, so that a window's latency is read relative to its own
/// operations and a shift in the operation mix is not mistaken for slowness.
#[derive(Debug, Clone)]
struct EventReference {
    logs: bool,
    spans: bool,
    span_errors: bool,
    op_log_median: BTreeMap<String, f64>,
}

impl EventReference {
    #[cfg(test)]
    fn new(view: &View) -> Self {
        Self::of(view, None)
    }

    /// From the view, or from the baseline's spans kept sorted per operation when the engine
    /// has them (the same medians, read off sorted data instead of sorting the window again).
    fn of(view: &View, kept: Option<&TraceSide>) -> Self {
        let logs = view.baseline.logs.is_some() && view.canary.logs.is_some();
        let spans = view.baseline.spans.is_some() && view.canary.spans.is_some();
        if let Some(kept) = kept {
            return Self {
                logs,
                spans,
                span_errors: spans && kept.has_status(),
                op_log_median: kept
                    .durations()
                    .filter_map(|(op, d)| log_median(d).map(|m| (op.to_owned(), m)))
                    .collect(),
            };
        }
        let span_errors = spans
            && view
                .baseline
                .spans
                .is_some_and(|s| s.iter().any(|x| x.error.is_some()));
        let mut by_op: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for x in view.baseline.spans.unwrap_or_default() {
            if x.duration_ms > 0.0 {
                by_op
                    .entry(x.operation.clone())
                    .or_default()
                    .push(x.duration_ms.ln());
            }
        }
        let op_log_median = by_op
            .into_iter()
            .filter_map(|(op, v)| vigil_judge::quantile(&v, 0.5).map(|m| (op, m)))
            .collect();
        Self {
            logs,
            spans,
            span_errors,
            op_log_median,
        }
    }

    /// Feature names with their resolution: one event per window for rates, a 5 % latency shift
    /// (0.05 in ln), a 5-point error share.
    fn names(&self) -> (Vec<String>, Vec<f64>) {
        let one_event = 1.0 / EVENT_BUCKET_S;
        let mut n = Vec::new();
        if self.logs {
            n.push(("log lines/s", one_event));
            n.push(("warn+error lines/s", one_event));
        }
        if self.spans {
            n.push(("spans/s", one_event));
            n.push(("span latency vs baseline (ln)", 0.05));
            if self.span_errors {
                n.push(("span error share", 0.05));
            }
        }
        n.into_iter().map(|(s, r)| (s.to_string(), r)).unzip()
    }

    /// One row per 10-second window (aligned to the epoch) that holds at least one event of
    /// every modality in use: a window with no events may simply not have been recorded (the
    /// exports cover only part of the core window), and reading it as "zero traffic" would
    /// invent anomalies. Windows that end after `until` are still filling and are left out.
    #[cfg(test)]
    fn rows(&self, side: &SideView, until: f64) -> Vec<Vec<f64>> {
        self.rows_of(&EventSide::of(side), until)
    }

    /// [`EventReference::rows`] from a side's events as the engine keeps them.
    fn rows_of(&self, side: &EventSide, until: f64) -> Vec<Vec<f64>> {
        let medians: Vec<Option<f64>> = side
            .op_names
            .iter()
            .map(|op| self.op_log_median.get(op).copied())
            .collect();
        side.buckets
            .iter()
            .filter(|(k, a)| {
                (**k as f64 + 1.0) * EVENT_BUCKET_S <= until
                    && (!self.logs || a.lines > 0.0)
                    && (!self.spans || a.spans > 0.0)
            })
            .map(|(_, a)| {
                let mut r = Vec::new();
                if self.logs {
                    r.push(a.lines / EVENT_BUCKET_S);
                    r.push(a.bad_lines / EVENT_BUCKET_S);
                }
                if self.spans {
                    let (mut shift_sum, mut shift_n) = (0.0, 0.0);
                    for &(op, ln) in &a.latencies {
                        if let Some(m) = medians[op as usize] {
                            shift_sum += ln - m;
                            shift_n += 1.0;
                        }
                    }
                    r.push(a.spans / EVENT_BUCKET_S);
                    r.push(if shift_n > 0.0 {
                        shift_sum / shift_n
                    } else {
                        f64::NAN
                    });
                    if self.span_errors {
                        r.push(a.errors / a.spans);
                    }
                }
                r
            })
            .collect()
    }
}

/// The median of the logarithms of a sorted slice's positive values, as
/// `vigil_judge::quantile(&ln_values, 0.5)` computes it: `ln` keeps the order, so the logs of
/// the sorted positive values are the sorted logs.
#[allow(
    clippy::cast_possible_truncation,
    reason = "pos lies in [0, len - 1], so floor and ceil are valid indices"
)]
fn log_median(sorted: &[f64]) -> Option<f64> {
    let lo = sorted.partition_point(|d| d.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater));
    let positive = &sorted[lo..];
    let positive = &positive[..positive.partition_point(|d| *d > 0.0)];
    let last = positive.len().checked_sub(1)?;
    let pos = 0.5 * last as f64;
    let (a, b) = (pos.floor() as usize, pos.ceil() as usize);
    let (la, lb) = (positive[a].ln(), positive[b].ln());
    Some(la + (lb - la) * (pos - a as f64))
}

/// One 10-second window's events on one side.
#[derive(Debug, Clone, Default)]
struct Bucket {
    lines: f64,
    bad_lines: f64,
    spans: f64,
    errors: f64,
    /// (operation, ln duration) of each span with a positive duration, in arrival order: the
    /// latency feature is read against the baseline's per-operation medians, which change while
    /// a concurrent baseline grows, so the sum is taken at judging time (in this order, as the
    /// batch computation adds them).
    latencies: Vec<(u32, f64)>,
}

/// One side's events per 10-second window, kept up to date as telemetry arrives, so that an
/// interval's event rows cost the windows, not a pass over every line and span again.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSide {
    buckets: BTreeMap<i64, Bucket>,
    op_names: Vec<String>,
    op_index: HashMap<String, u32>,
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "times are finite (checked at ingestion); `as` saturates far outside any real epoch"
)]
fn bucket_key(t: f64) -> i64 {
    (t / EVENT_BUCKET_S).floor() as i64
}

impl EventSide {
    /// The events of a view's side.
    pub fn of(side: &SideView) -> Self {
        let mut e = Self::default();
        e.add_logs(side.logs.unwrap_or_default());
        e.add_spans(side.spans.unwrap_or_default());
        e
    }

    /// Counts log records (untimed ones cannot be placed and are skipped).
    pub(crate) fn add_logs(&mut self, logs: &[LogRecord]) {
        for l in logs {
            let Some(time) = l.time else { continue };
            let a = self.buckets.entry(bucket_key(time)).or_default();
            a.lines += 1.0;
            // The one rule for how bad a line is (level, else the body's words).
            if l.level() >= Level::Warn {
                a.bad_lines += 1.0;
            }
        }
    }

    /// Counts the pod's own spans.
    pub(crate) fn add_spans(&mut self, spans: &[Span]) {
        for x in spans {
            let op = match self.op_index.get(x.operation.as_str()) {
                Some(&i) => i,
                None => {
                    let i = u32::try_from(self.op_names.len()).unwrap_or(u32::MAX);
                    self.op_names.push(x.operation.clone());
                    self.op_index.insert(x.operation.clone(), i);
                    i
                }
            };
            let a = self.buckets.entry(bucket_key(x.start)).or_default();
            a.spans += 1.0;
            if x.duration_ms > 0.0 {
                a.latencies.push((op, x.duration_ms.ln()));
            }
            if x.error == Some(true) {
                a.errors += 1.0;
            }
        }
    }
}

/// Fits both anomaly models on the baseline of a view.
pub fn fit_anomaly(view: &View, config: &AnomalyConfig, rules: &MetricRules) -> AnomalyModels {
    fit_anomaly_with(view, None, config, rules)
}

/// [`fit_anomaly`], reading logs and spans from the engine's incremental state when given.
pub fn fit_anomaly_with(
    view: &View,
    kept: Option<&Incremental>,
    config: &AnomalyConfig,
    rules: &MetricRules,
) -> AnomalyModels {
    let mut metric_trends = Vec::new();
    let metrics = match view.baseline.metrics {
        None => Err("no baseline metrics".to_string()),
        Some(bt) => {
            let names = anomaly_features(bt, rules);
            let mut rows = feature_rows(bt, view.baseline.metric_rows, &names);
            let times = row_times(bt, view.baseline.metric_rows);
            metric_trends = (0..names.len())
                .map(|j| {
                    let column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
                    vigil_judge::baseline_trend(
                        times,
                        &column,
                        config.trend_alpha,
                        TREND_MIN_POINTS,
                    )
                })
                .collect();
            detrend_rows(&mut rows, times, &metric_trends);
            // No unit floors here (tried: the metric judge's floors as resolution cost 2 of 55
            // faults on the dev set): this model exists to see joint moves below them.
            anomaly::fit(&names, &rows, config).map_err(|e| e.to_string())
        }
    };
    let reference = EventReference::of(view, kept.map(|k| &k.traces[0]));
    let (names, resolution) = reference.names();
    let events = if names.is_empty() {
        Ok(None)
    } else {
        let rows = match kept {
            Some(k) => reference.rows_of(&k.events[0], view.baseline.until),
            None => reference.rows_of(&EventSide::of(&view.baseline), view.baseline.until),
        };
        anomaly::fit_with_resolution(&names, &rows, &resolution, config)
            .map(|model| Some(EventModel { model, reference }))
            .map_err(|e| format!("10-s event windows: {e}"))
    };
    AnomalyModels {
        metrics,
        metric_trends,
        events,
    }
}

/// The anomaly signal: how many canary windows each baseline model flags, against the calibrated
/// false-alarm rate (the exact beta-binomial tail of a count of windows above a threshold read from
/// the baseline's own scores, so one odd window is not evidence).
pub fn vigil_anomaly(view: &View, models: Option<&AnomalyModels>) -> SignalReport {
    vigil_anomaly_with(view, None, models)
}

/// [`vigil_anomaly`], reading logs and spans from the engine's incremental state when given.
pub fn vigil_anomaly_with(
    view: &View,
    kept: Option<&Incremental>,
    models: Option<&AnomalyModels>,
) -> SignalReport {
    let Some(models) = models else {
        return absent(Signal::Anomaly);
    };
    let mut findings = Vec::new();
    let mut judged = false;
    let mut why_not = Vec::new();
    // Metric rows.
    match (&models.metrics, view.canary.metrics) {
        (_, None) => {}
        (Err(e), Some(_)) => why_not.push(e.clone()),
        (Ok(m), Some(ct)) => {
            let mut rows = feature_rows(ct, view.canary.metric_rows, m.feature_names());
            detrend_rows(
                &mut rows,
                row_times(ct, view.canary.metric_rows),
                &models.metric_trends,
            );
            if rows.is_empty() {
                why_not.push("no canary metric rows yet".into());
            } else {
                judged = true;
                findings.extend(anomaly_finding(m, &rows, "minute"));
            }
        }
    }
    // Event windows.
    match &models.events {
        Err(e) => why_not.push(e.clone()),
        Ok(None) => {}
        Ok(Some(em)) => {
            let rows = match kept {
                Some(k) => em.reference.rows_of(&k.events[1], view.canary.until),
                None => em
                    .reference
                    .rows_of(&EventSide::of(&view.canary), view.canary.until),
            };
            if !rows.is_empty() {
                judged = true;
                findings.extend(anomaly_finding(&em.model, &rows, "10-s window"));
            }
        }
    }
    if !judged {
        return SignalReport {
            signal: Signal::Anomaly,
            coverage: if why_not.is_empty() {
                Coverage::Absent
            } else {
                Coverage::Inconclusive(why_not.join("; "))
            },
            findings,
        };
    }
    SignalReport {
        signal: Signal::Anomaly,
        coverage: Coverage::Judged,
        findings,
    }
}

fn anomaly_finding(model: &AnomalyModel, rows: &[Vec<f64>], unit: &str) -> Option<Finding> {
    // Rows are built one value per feature (`feature_rows`, `rows_of`); a row that is not is
    // left out rather than scored.
    let scores: Vec<_> = rows.iter().filter_map(|r| model.score(r).ok()).collect();
    let k = scores.iter().filter(|s| s.anomalous).count() as u64;
    let m = scores.len() as u64;
    let rate = model.false_alarm_rate;
    let p = model.exceedance_p(k, m);
    let worst = scores.iter().max_by(|a, b| a.score.total_cmp(&b.score))?;
    if k == 0 || p >= 0.05 {
        return None;
    }
    let top: Vec<String> = worst
        .contributions
        .iter()
        .take(3)
        .map(|c| {
            format!(
                "{} {:.3} vs {:.3} (z {:+.1})",
                c.feature, c.value, c.baseline_median, c.z
            )
        })
        .collect();
    Some(Finding {
        typed: Typed {
            key: format!("anomaly:{unit}"),
            test: Some("beta_binomial"),
            statistic: Some(worst.score),
            p: Some(p),
            effect: Some(Effect {
                kind: "flagged_share",
                estimate: k as f64 / m as f64,
                low: None,
                high: None,
            }),
            ..Typed::default()
        },
        signal: Signal::Anomaly,
        subject: format!("{k}/{m} canary {unit}s anomalous"),
        severity: if k >= 2 && p < 0.01 {
            Severity::Fail
        } else {
            Severity::Warn
        },
        strength: strength(p),
        detail: format!(
            "{k} of {m} {unit}s beyond the baseline's threshold (false-alarm rate {:.1}%, p {p:.1e}); worst score {:.1} > {:.1}: {}",
            rate * 100.0,
            worst.score,
            worst.threshold,
            top.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{side, view, Lcg};
    use super::*;

    #[test]
    fn a_feature_the_canary_lacks_is_missing_in_every_row_never_a_shorter_row() {
        // The baseline reported cpu and mem; the canary's source only cpu. Scoring such a row
        // once panicked (index out of bounds in the model).
        let canary = MetricTable {
            times: vec![0.0, 60.0, 120.0],
            columns: vec![("cpu".into(), vec![0.1, 0.2, 0.3])],
        };
        let names = vec!["cpu".to_string(), "mem".to_string()];
        let rows = feature_rows(&canary, (0, 3), &names);
        assert_eq!(rows.len(), 3);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), 2, "row {i}: {r:?}");
            assert_eq!(r[0], canary.columns[0].1[i]);
            assert!(r[1].is_nan(), "row {i}: {r:?}");
        }
    }

    #[test]
    fn event_model_flags_slower_spans_and_names_the_latency_feature() {
        let mut rng = Lcg(5);
        let baseline = side(&mut rng, 0.0, 1.0);
        let slow = side(&mut rng, 180.0, 2.5);
        let v = view(&baseline, &slow);
        let models = fit_anomaly(&v, &AnomalyConfig::default(), &MetricRules::default());
        assert!(models.metrics.is_err(), "no metrics here");
        let em = models.events.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(em.model.feature_names().len(), 4);
        let r = vigil_anomaly(&v, Some(&models));
        assert_eq!(r.coverage, Coverage::Judged);
        let f = r
            .findings
            .iter()
            .find(|f| f.subject.contains("10-s window"))
            .unwrap_or_else(|| panic!("{:?}", r.findings));
        assert_eq!(f.severity, Severity::Fail, "{f:?}");
        // The explanation starts with the feature that moved.
        let explained = f.detail.split(": ").last().unwrap_or_default();
        assert!(
            explained.starts_with("span latency vs baseline"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn event_model_leaves_a_healthy_canary_alone() {
        let mut rng = Lcg(9);
        let baseline = side(&mut rng, 0.0, 1.0);
        let healthy = side(&mut rng, 180.0, 1.0);
        let v = view(&baseline, &healthy);
        let models = fit_anomaly(&v, &AnomalyConfig::default(), &MetricRules::default());
        let r = vigil_anomaly(&v, Some(&models));
        assert_eq!(r.coverage, Coverage::Judged);
        assert!(
            r.findings.iter().all(|f| f.severity != Severity::Fail),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn event_windows_without_events_are_not_read_as_zero_traffic() {
        // The canary recorded only its first and last minute (an export gap in between): the
        // gap must not become "zero spans" windows.
        let mut rng = Lcg(11);
        let baseline = side(&mut rng, 0.0, 1.0);
        let mut gappy = side(&mut rng, 180.0, 1.0);
        gappy
            .0
            .retain(|l| l.time.is_some_and(|t| !(240.0..300.0).contains(&t)));
        gappy.1.retain(|s| s.start < 240.0 || s.start >= 300.0);
        let v = view(&baseline, &gappy);
        let models = fit_anomaly(&v, &AnomalyConfig::default(), &MetricRules::default());
        let em = models.events.as_ref().unwrap().as_ref().unwrap();
        let rows = em.reference.rows(&v.canary, v.canary.until);
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|r| r[2] > 0.0), "{rows:?}");
    }

    #[test]
    fn event_features_read_a_line_without_a_level_by_its_words() {
        let mut rng = Lcg(7);
        let baseline = side(&mut rng, 0.0, 1.0);
        let mut canary = side(&mut rng, 180.0, 1.0);
        for l in canary.0.iter_mut() {
            l.severity = None;
            l.body = format!("{} failed: TimeoutException", l.body);
        }
        let v = view(&baseline, &canary);
        let reference = EventReference::new(&v);
        let rows = reference.rows(&v.canary, v.canary.until);
        assert!(!rows.is_empty());
        // Feature 1 is warn+error lines/s: every canary line is an error by its words.
        assert!(rows.iter().all(|r| r[1] > 0.0 && r[1] == r[0]), "{rows:?}");
    }

    /// Memory climbing 3 MiB a minute before and after the change, CPU flat: the canary's
    /// minutes sit above every baseline minute, which the model must read as the trend going on.
    /// A step of 40 MiB on top of the same trend is still flagged.
    #[test]
    fn metric_model_reads_a_steady_baseline_trend_as_no_anomaly() {
        let table = |rng: &mut Lcg, start: f64, minutes: usize, step: f64| MetricTable {
            times: (0..minutes).map(|i| start + 60.0 * i as f64).collect(),
            columns: vec![
                (
                    "CpuUsageRate(%)".into(),
                    (0..minutes).map(|_| 20.0 + 3.0 * rng.uniform()).collect(),
                ),
                (
                    "MemoryUsage(Mi)".into(),
                    (0..minutes)
                        .map(|i| {
                            let t = start + 60.0 * i as f64;
                            300.0 + 3.0 * t / 60.0 + 2.0 * rng.uniform() + step
                        })
                        .collect(),
                ),
            ],
        };
        let mut rng = Lcg(21);
        let base = table(&mut rng, -1800.0, 30, 0.0);
        for (step, flagged) in [(0.0, false), (40.0, true)] {
            let can = table(&mut rng, 0.0, 10, step);
            let v = View {
                baseline: SideView {
                    metrics: Some(&base),
                    metric_rows: (0, 30),
                    until: 0.0,
                    ..SideView::default()
                },
                canary: SideView {
                    metrics: Some(&can),
                    metric_rows: (0, 10),
                    until: 600.0,
                    ..SideView::default()
                },
            };
            let models = fit_anomaly(&v, &AnomalyConfig::default(), &MetricRules::default());
            let trend = models.metric_trends[1].expect("memory trends in the baseline");
            assert!((trend.slope * 60.0 - 3.0).abs() < 0.3, "{trend:?}");
            assert!(
                models.metric_trends[0].is_none(),
                "{:?}",
                models.metric_trends
            );
            let r = vigil_anomaly(&v, Some(&models));
            assert_eq!(r.coverage, Coverage::Judged);
            assert_eq!(
                !r.findings.is_empty(),
                flagged,
                "step {step}: {:?}",
                r.findings
            );
        }
    }
}
