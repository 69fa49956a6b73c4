//! The trace judge: per operation, latency (rank test plus tail quantiles with intervals), error
//! rate (exact two-proportion test) and structure (operations or downstream calls that appear,
//! vanish or change their fan-out).
//!
//! Latency findings need both a significant rank test and a tail that moved beyond its own
//! sampling uncertainty: busy services have enough spans to make a 3 % shift significant, and a
//! p90 from 20 spans is noise. p-values are adjusted across operations (Benjamini-Hochberg).

use std::collections::{BTreeMap, HashMap};

use vigil_models::counts::{bh_adjust, fisher_exact, Alternative};
use vigil_models::vigil_judge::{mann_whitney_greater, quantile_sorted, rate_greater};

/// BH-adjusted p-values; p-values come from our own tests, so an invalid one cannot occur, and
/// if it did, nothing would be reported (all 1).
fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    bh_adjust(p).unwrap_or_else(|_| vec![1.0; p.len()])
}

/// One-sided Fisher exact test that x1/n1 exceeds x2/n2.
fn fisher_greater(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    fisher_exact([[x1, n1 - x1], [x2, n2 - x2]], Alternative::Greater).p_value
}

use crate::telemetry::Span;
use crate::verdict::{
    strength, Counts, Coverage, Effect, Finding, Severity, Signal, SignalReport, Typed,
};

/// Tunables with the defaults a user would keep.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// False discovery rate across operations.
    pub alpha: f64,
    /// Fewest spans per side for an operation's latency to be judged.
    pub min_spans: usize,
    /// Tail quantile compared.
    pub tail_quantile: f64,
    /// Canary tail at least this many times the baseline's: Fail (when its interval clears);
    /// 1.2× up to this: Warn. 2× rather than 1.5×: in the Nezha fault-free pairs, moments when the
    /// whole system slowed moved single operations' p90 by 1.5×, while the faults that slow a pod
    /// move it 3–80× (dev set: one false positive fewer, no fault lost, the same from 2× to 3×).
    pub tail_ratio_fail: f64,
    /// ... and at least this many milliseconds slower: a 1 ms database call taking 3 ms is a
    /// ratio of 3 that no user notices.
    pub tail_min_shift_ms: f64,
    /// Median shift (relative) for a Warn.
    pub median_shift_warn: f64,
    /// Fewest expected canary spans before a vanished operation is reported.
    pub min_expected_vanished: f64,
    /// Fewest canary spans of a new operation before it is reported.
    pub min_new_spans: usize,
    /// Fan-out ratio (either way) that counts as a structural change.
    pub fanout_ratio: f64,
    /// Fewest parent spans per side for a fan-out to be compared. Lower than `min_spans`: the
    /// exact count test needs fewer parents than a latency quantile needs spans.
    pub min_fanout_parents: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            alpha: 0.001,
            min_spans: 20,
            tail_quantile: 0.9,
            tail_ratio_fail: 2.0,
            tail_min_shift_ms: 10.0,
            median_shift_warn: 0.5,
            min_expected_vanished: 20.0,
            min_new_spans: 10,
            fanout_ratio: 2.0,
            min_fanout_parents: 10,
        }
    }
}

/// One operation's spans on one side: durations kept sorted as spans arrive, so that an
/// interval's rank test and quantiles read sorted data instead of sorting the window again.
#[derive(Debug, Clone, Default)]
struct OpSpans {
    /// Every duration, sorted by `f64::total_cmp`.
    durations: Vec<f64>,
    /// Spans with `error == Some(true)`.
    errors: u64,
    /// Durations arrived since the last [`TraceSide::settle`], not yet merged.
    fresh: Vec<f64>,
}

/// What the trace judge needs of one side's spans, kept up to date span by span: per operation
/// the sorted durations and error counts, and the calls per (parent operation, child operation)
/// that the fan-out compares. Adding spans costs their number (and a linear merge per operation
/// and interval); judging costs the operations, plus the rank test's linear pass over sorted
/// durations.
///
/// A child counts as a call of its parent once both are in: a child that arrives before its
/// parent waits for it. (With duplicated span ids the batch judgement takes the last span of an
/// id as every child's parent; here a child is matched with the span of that id present when
/// both are in. Span ids are unique in any well-formed trace.)
#[derive(Debug, Clone, Default)]
pub struct TraceSide {
    n: usize,
    ops: BTreeMap<String, OpSpans>,
    any_status: bool,
    op_names: Vec<String>,
    op_index: HashMap<String, u32>,
    span_ops: HashMap<String, u32>,
    waiting: HashMap<String, Vec<u32>>,
    calls: HashMap<(u32, u32), u64>,
}

impl TraceSide {
    /// A side of the given spans, settled.
    pub fn of(spans: &[Span]) -> Self {
        let mut side = Self::default();
        side.extend(spans);
        side.settle();
        side
    }

    /// Spans of this side judged so far.
    pub fn len(&self) -> usize {
        self.n
    }

    /// No span yet.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn intern(&mut self, op: &str) -> u32 {
        if let Some(&i) = self.op_index.get(op) {
            return i;
        }
        let i = u32::try_from(self.op_names.len()).unwrap_or(u32::MAX);
        self.op_names.push(op.to_owned());
        self.op_index.insert(op.to_owned(), i);
        i
    }

    /// Adds spans (any order); call [`TraceSide::settle`] before judging.
    pub fn extend(&mut self, spans: &[Span]) {
        for s in spans {
            self.n += 1;
            self.any_status |= s.error.is_some();
            let entry = match self.ops.get_mut(s.operation.as_str()) {
                Some(e) => e,
                None => self.ops.entry(s.operation.clone()).or_default(),
            };
            entry.fresh.push(s.duration_ms);
            entry.errors += u64::from(s.error == Some(true));
            let op = self.intern(&s.operation);
            self.span_ops.insert(s.span_id.clone(), op);
            if let Some(children) = self.waiting.remove(s.span_id.as_str()) {
                for child in children {
                    *self.calls.entry((op, child)).or_default() += 1;
                }
            }
            if let Some(p) = s.parent_id.as_deref() {
                match self.span_ops.get(p) {
                    Some(&parent) => *self.calls.entry((parent, op)).or_default() += 1,
                    None => self.waiting.entry(p.to_owned()).or_default().push(op),
                }
            }
        }
    }

    /// Merges the durations added since the last call into each operation's sorted buffer.
    pub fn settle(&mut self) {
        for e in self.ops.values_mut() {
            if e.fresh.is_empty() {
                continue;
            }
            e.fresh.sort_by(f64::total_cmp);
            let old = std::mem::take(&mut e.durations);
            let mut merged = Vec::with_capacity(old.len() + e.fresh.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < e.fresh.len() {
                if old[i].total_cmp(&e.fresh[j]).is_le() {
                    merged.push(old[i]);
                    i += 1;
                } else {
                    merged.push(e.fresh[j]);
                    j += 1;
                }
            }
            merged.extend_from_slice(&old[i..]);
            merged.extend_from_slice(&e.fresh[j..]);
            e.fresh.clear();
            e.durations = merged;
        }
    }

    /// Each operation's sorted durations.
    pub fn durations(&self) -> impl Iterator<Item = (&str, &[f64])> {
        self.ops
            .iter()
            .map(|(op, e)| (op.as_str(), e.durations.as_slice()))
    }

    /// The sorted durations of one operation.
    pub fn op_durations(&self, op: &str) -> Option<&[f64]> {
        self.ops.get(op).map(|e| e.durations.as_slice())
    }

    /// Some span carries a status.
    pub(crate) fn has_status(&self) -> bool {
        self.any_status
    }
}

/// Judges canary spans against baseline spans. `exposure_*` are the seconds each side was
/// recorded (rates of operations are compared per second, so unequal windows are fine).
pub fn judge(
    baseline: &[Span],
    canary: &[Span],
    exposure_baseline: f64,
    exposure_canary: f64,
    config: &TraceConfig,
) -> SignalReport {
    judge_sides(
        &TraceSide::of(baseline),
        &TraceSide::of(canary),
        exposure_baseline,
        exposure_canary,
        config,
    )
}

/// [`judge`] on sides kept up to date as spans arrive (settled).
pub(crate) fn judge_sides(
    baseline: &TraceSide,
    canary: &TraceSide,
    exposure_baseline: f64,
    exposure_canary: f64,
    config: &TraceConfig,
) -> SignalReport {
    let mut findings = Vec::new();
    if baseline.len() < config.min_spans
        || canary.len() < config.min_spans / 2
        || exposure_canary <= 0.0
    {
        return SignalReport {
            signal: Signal::Traces,
            coverage: Coverage::Inconclusive(format!(
                "{} baseline and {} canary spans, need at least {} and {}",
                baseline.len(),
                canary.len(),
                config.min_spans,
                config.min_spans / 2
            )),
            findings,
        };
    }
    let ob: BTreeMap<&str, &[f64]> = baseline.durations().collect();
    let oc: BTreeMap<&str, &[f64]> = canary.durations().collect();

    // Latency per operation.
    struct Lat {
        op: String,
        p: f64,
        test: &'static str,
        b_med: f64,
        c_med: f64,
        b_tail: (f64, f64, f64),
        c_tail: (f64, f64, f64),
        nb: usize,
        nc: usize,
    }
    let mut lats = Vec::new();
    for (op, b) in &ob {
        let Some(c) = oc.get(op) else { continue };
        if b.len() < config.min_spans || c.len() < config.min_spans {
            continue;
        }
        // A side without durations (or with NaN ones) has no latency to compare: skipped,
        // as too few spans are, rather than counted as "tested, no change".
        let (Ok(p_rank), Some(b_med), Some(c_med)) = (
            mann_whitney_greater(c, b),
            quantile_sorted(b, 0.5),
            quantile_sorted(c, 0.5),
        ) else {
            continue;
        };
        let b_tail = quantile_ci(b, config.tail_quantile);
        // Both sides are sorted: the count above is a binary search, not a pass.
        let above = |v: &[f64]| (v.len() - v.partition_point(|&x| x <= b_tail.0)) as u64;
        let p_tail = fisher_greater(above(c), c.len() as u64, above(b), b.len() as u64);
        // Two tests per operation — the rank test for a shift of the whole distribution, an
        // exact test of how many canary spans exceed the baseline's tail quantile for a spread
        // that grows while the median stays — Bonferroni-combined, so that the
        // Benjamini–Hochberg step across operations still sees one valid p-value each.
        let (p, test) = if p_rank <= p_tail {
            (p_rank, "mann_whitney")
        } else {
            (p_tail, "tail_exceedance")
        };
        lats.push(Lat {
            op: op.to_string(),
            p: (2.0 * p).min(1.0),
            test,
            b_med,
            c_med,
            b_tail,
            c_tail: quantile_ci(c, config.tail_quantile),
            nb: b.len(),
            nc: c.len(),
        });
    }
    let adj = benjamini_hochberg(&lats.iter().map(|l| l.p).collect::<Vec<_>>());
    for (l, q) in lats.iter().zip(adj) {
        if q >= config.alpha {
            continue;
        }
        let tail_ratio = l.c_tail.0 / l.b_tail.0.max(1e-9);
        let tail_clear = l.c_tail.1 > l.b_tail.2;
        let med_shift = l.c_med / l.b_med.max(1e-9) - 1.0;
        let detail = format!(
            "p{:.0} {:.1} ms (CI {:.1}..{:.1}) -> {:.1} ms (CI {:.1}..{:.1}), x{tail_ratio:.2}; median {:.1} -> {:.1} ms; {} vs {} spans; q {q:.1e}",
            config.tail_quantile * 100.0,
            l.b_tail.0,
            l.b_tail.1,
            l.b_tail.2,
            l.c_tail.0,
            l.c_tail.1,
            l.c_tail.2,
            l.b_med,
            l.c_med,
            l.nb,
            l.nc
        );
        let tail_shift = l.c_tail.0 - l.b_tail.0;
        let severity = if tail_shift < config.tail_min_shift_ms {
            None
        } else if tail_clear && tail_ratio >= config.tail_ratio_fail {
            Some(Severity::Fail)
        } else if med_shift >= config.median_shift_warn || (tail_clear && tail_ratio >= 1.2) {
            Some(Severity::Warn)
        } else {
            None
        };
        if let Some(severity) = severity {
            findings.push(Finding {
                typed: Typed {
                    key: format!("latency:{}", l.op),
                    test: Some(l.test),
                    p: Some(l.p),
                    q: Some(q),
                    effect: Some(Effect {
                        kind: "ratio",
                        estimate: tail_ratio,
                        low: None,
                        high: None,
                    }),
                    counts: Some(Counts {
                        baseline: l.nb as u64,
                        canary: l.nc as u64,
                        of: "spans",
                    }),
                    operation: Some(l.op.clone()),
                    shift_ms: Some(tail_shift),
                    ..Typed::default()
                },
                signal: Signal::Traces,
                subject: format!("latency {}", l.op),
                severity,
                strength: strength(q),
                detail,
            });
        }
    }

    // Error rate per operation (only when spans carry a status).
    if baseline.any_status || canary.any_status {
        fn count(side: &TraceSide) -> BTreeMap<&str, (u64, u64)> {
            side.ops
                .iter()
                .map(|(op, e)| (op.as_str(), (e.errors, e.durations.len() as u64)))
                .collect()
        }
        let eb = count(baseline);
        let ec = count(canary);
        let mut tests = Vec::new();
        for (op, (xc, nc)) in &ec {
            let (xb, nb) = eb.get(op).copied().unwrap_or((0, 0));
            if nb == 0 || *xc < 3 {
                continue;
            }
            tests.push((
                op.to_string(),
                fisher_greater(*xc, *nc, xb, nb),
                *xc,
                *nc,
                xb,
                nb,
            ));
        }
        let adj = benjamini_hochberg(&tests.iter().map(|t| t.1).collect::<Vec<_>>());
        for (t, q) in tests.iter().zip(adj) {
            if q < config.alpha {
                findings.push(Finding {
                    typed: Typed {
                        key: format!("errors:{}", t.0),
                        test: Some("fisher_exact"),
                        p: Some(t.1),
                        q: Some(q),
                        counts: Some(Counts {
                            baseline: t.4,
                            canary: t.2,
                            of: "error spans",
                        }),
                        operation: Some(t.0.clone()),
                        ..Typed::default()
                    },
                    signal: Signal::Traces,
                    subject: format!("errors {}", t.0),
                    severity: Severity::Fail,
                    strength: strength(q),
                    detail: format!(
                        "error rate {}/{} = {:.1}% -> {}/{} = {:.1}% (Fisher exact q {q:.1e})",
                        t.4,
                        t.5,
                        100.0 * t.4 as f64 / t.5 as f64,
                        t.2,
                        t.3,
                        100.0 * t.2 as f64 / t.3 as f64
                    ),
                });
            }
        }
    }

    // Structure: operations that vanish or appear. "Vanished" compares rates, so it needs the
    // baseline's recorded seconds: without them (no trace window known) the expected canary
    // count is unknown, and nothing is reported rather than every operation at full strength.
    let rates_known = exposure_baseline > 0.0 && exposure_baseline.is_finite();
    for (op, b) in ob.iter().filter(|_| rates_known) {
        let expected = b.len() as f64 * exposure_canary / exposure_baseline;
        if oc.contains_key(op) || expected < config.min_expected_vanished {
            continue;
        }
        // Without a usable exposure there is no rate test; the Poisson chance of seeing none of
        // the expected spans stands in, as it does when the test cannot tell.
        let p = match rate_greater(b.len() as u64, exposure_baseline, 0, exposure_canary) {
            Ok(p) if p < 1.0 => p,
            _ => (-expected).exp(),
        };
        findings.push(Finding {
            typed: Typed {
                key: format!("vanished:{op}"),
                test: Some("rate_test"),
                p: Some(p),
                counts: Some(Counts {
                    baseline: b.len() as u64,
                    canary: 0,
                    of: "spans",
                }),
                operation: Some(op.to_string()),
                ..Typed::default()
            },
            signal: Signal::Traces,
            subject: format!("vanished {op}"),
            severity: Severity::Warn,
            strength: strength(p),
            detail: format!(
                "{} spans in baseline ({:.0} expected in canary), none in canary",
                b.len(),
                expected
            ),
        });
    }
    for (op, c) in &oc {
        if ob.contains_key(op) || c.len() < config.min_new_spans {
            continue;
        }
        findings.push(Finding {
            typed: Typed {
                key: format!("new:{op}"),
                counts: Some(Counts {
                    baseline: 0,
                    canary: c.len() as u64,
                    of: "spans",
                }),
                operation: Some(op.to_string()),
                ..Typed::default()
            },
            signal: Signal::Traces,
            subject: format!("new {op}"),
            severity: Severity::Warn,
            strength: (c.len() as f64).log10(),
            detail: format!(
                "{} canary spans of an operation never seen in baseline",
                c.len()
            ),
        });
    }
    findings.extend(fan_out(baseline, canary, config));
    SignalReport {
        signal: Signal::Traces,
        coverage: Coverage::Judged,
        findings,
    }
}

/// Downstream calls per parent span, per (parent operation, child operation): a change means the
/// canary calls its dependencies differently (retries, skipped calls, a new dependency).
fn fan_out(baseline: &TraceSide, canary: &TraceSide, config: &TraceConfig) -> Vec<Finding> {
    type Table<'a> = (HashMap<&'a str, u64>, HashMap<(&'a str, &'a str), u64>);
    fn table(side: &TraceSide) -> Table<'_> {
        let parents = side
            .ops
            .iter()
            .map(|(op, e)| (op.as_str(), e.durations.len() as u64))
            .collect();
        let name = |i: u32| side.op_names[i as usize].as_str();
        let calls = side
            .calls
            .iter()
            .map(|(&(p, c), &k)| ((name(p), name(c)), k))
            .collect();
        (parents, calls)
    }
    let (pb, cb) = table(baseline);
    let (pc, cc) = table(canary);
    let mut keys: Vec<(&str, &str)> = cb.keys().chain(cc.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for (parent, child) in keys {
        let (nb, nc) = (
            pb.get(parent).copied().unwrap_or(0),
            pc.get(parent).copied().unwrap_or(0),
        );
        if nb < config.min_fanout_parents as u64 || nc < config.min_fanout_parents as u64 {
            continue;
        }
        let (kb, kc) = (
            cb.get(&(parent, child)).copied().unwrap_or(0),
            cc.get(&(parent, child)).copied().unwrap_or(0),
        );
        let (fb, fc) = ((kb as f64 + 0.5) / nb as f64, (kc as f64 + 0.5) / nc as f64);
        let ratio = fc / fb;
        let tested = if ratio >= 1.0 {
            rate_greater(kc, nc as f64, kb, nb as f64)
        } else {
            rate_greater(kb, nb as f64, kc, nc as f64)
        };
        // nb, nc > 0 unless min_fanout_parents is 0; a parent never seen has no fan-out to test.
        let Ok(p) = tested else { continue };
        if p < config.alpha && (ratio >= config.fanout_ratio || ratio <= 1.0 / config.fanout_ratio)
        {
            out.push(Finding {
                typed: Typed {
                    key: format!("fanout:{parent}->{child}"),
                    test: Some("rate_test"),
                    p: Some(p),
                    effect: Some(Effect {
                        kind: "ratio",
                        estimate: ratio,
                        low: None,
                        high: None,
                    }),
                    counts: Some(Counts {
                        baseline: kb,
                        canary: kc,
                        of: "calls",
                    }),
                    operation: Some(format!("{parent} -> {child}")),
                    ..Typed::default()
                },
                signal: Signal::Traces,
                subject: format!("fan-out {parent} -> {child}"),
                // A new version may call a dependency more or less often on purpose.
                severity: Severity::Review,
                strength: strength(p),
                detail: format!(
                    "{:.2} -> {:.2} calls per {parent} span ({kb}/{nb} vs {kc}/{nc}), p {p:.1e}",
                    kb as f64 / nb as f64,
                    kc as f64 / nc as f64
                ),
            });
        }
    }
    out
}

/// A quantile of sorted values with its distribution-free 95 % interval from order statistics
/// (the binomial interval on the rank, normal approximation).
#[allow(
    clippy::cast_possible_truncation,
    reason = "the rank bounds are clamped to [0, n - 1] before they index"
)]
pub(crate) fn quantile_ci(sorted: &[f64], q: f64) -> (f64, f64, f64) {
    let n = sorted.len();
    let Some(est) = quantile_sorted(sorted, q) else {
        return (f64::NAN, f64::NAN, f64::NAN);
    };
    let nf = n as f64;
    let half = 1.96 * (nf * q * (1.0 - q)).sqrt();
    let lo = ((nf * q - half).floor() as isize - 1).clamp(0, n as isize - 1) as usize;
    let hi = ((nf * q + half).ceil() as isize).clamp(0, n as isize - 1) as usize;
    (est, sorted[lo], sorted[hi])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(
        id: &str,
        parent: Option<&str>,
        op: &str,
        duration_ms: f64,
        error: Option<bool>,
    ) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            operation: op.into(),
            start: 0.0,
            duration_ms,
            error,
            caller: None,
        }
    }

    fn spans(op: &str, ids: &[String], durs: &[f64]) -> Vec<Span> {
        ids.iter()
            .zip(durs)
            .map(|(id, d)| span(id, None, op, *d, None))
            .collect()
    }

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn slower_operation_fails_and_same_latency_passes() {
        let ib = ids("b", 200);
        let ic = ids("c", 200);
        let base: Vec<f64> = (0..200).map(|i| 10.0 + (i % 20) as f64).collect();
        let slow: Vec<f64> = base.iter().map(|d| d * 2.0).collect();
        let r = judge(
            &spans("GET /x", &ib, &base),
            &spans("GET /x", &ic, &slow),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        assert_eq!(r.findings[0].severity, Severity::Fail);
        // The typed fields carry what the sentence says: 200 spans a side, a p90 of 27.1 ms
        // (linear interpolation, numpy's default: sorted[179] + 0.1 * (sorted[180] - sorted[179]) =
        // 27 + 0.1 = 27.1) doubled to 54.2 ms.
        let t = &r.findings[0].typed;
        assert_eq!(t.key, "latency:GET /x");
        assert_eq!(t.operation.as_deref(), Some("GET /x"));
        assert_eq!(t.test, Some("mann_whitney"));
        assert_eq!(t.counts.map(|c| (c.baseline, c.canary)), Some((200, 200)));
        assert!(t.q.is_some_and(|q| q < 1e-3), "{t:?}");
        assert!(t.shift_ms.is_some_and(|d| (d - 27.1).abs() < 1e-9), "{t:?}");
        assert!(
            t.effect.is_some_and(|e| (e.estimate - 2.0).abs() < 1e-9),
            "{t:?}"
        );
        let r = judge(
            &spans("GET /x", &ib, &base),
            &spans("GET /x", &ic, &base),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn a_spread_that_grows_while_the_median_stays_is_found_by_its_tail() {
        // Same median (100 ms), three times the spread: the rank test sees no shift (p about
        // 0.5), but 1 in 10 baseline spans exceeds the baseline's p90 against about 1 in 3
        // canary spans — the exact exceedance test finds it, and the p90's 1.3x is a Warn.
        let ib = ids("b", 420);
        let ic = ids("c", 420);
        let base: Vec<f64> = (0..420)
            .map(|i| 100.0 + 2.0 * ((i % 21) as f64 - 10.0))
            .collect();
        let wide: Vec<f64> = (0..420)
            .map(|i| 100.0 + 6.0 * ((i % 21) as f64 - 10.0))
            .collect();
        let r = judge(
            &spans("GET /x", &ib, &base),
            &spans("GET /x", &ic, &wide),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(f.severity, Severity::Warn, "{f:?}");
        assert_eq!(f.typed.test, Some("tail_exceedance"), "{f:?}");
        // Narrower is not slower: the same spread reversed finds nothing.
        let r = judge(
            &spans("GET /x", &ib, &wide),
            &spans("GET /x", &ic, &base),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn a_tail_one_and_a_half_times_slower_is_a_warning_not_a_failure() {
        // The whole system slowing for a minute moves an operation's p90 by about 1.5x; a fault
        // in the pod moves it several times. 1.6x (interval clear of the baseline's) is a Warn.
        let ib = ids("b", 400);
        let ic = ids("c", 400);
        let base: Vec<f64> = (0..400).map(|i| 20.0 + (i % 20) as f64).collect();
        let slower: Vec<f64> = base.iter().map(|d| d * 1.6).collect();
        let r = judge(
            &spans("GET /x", &ib, &base),
            &spans("GET /x", &ic, &slower),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        assert_eq!(r.findings[0].severity, Severity::Warn, "{:?}", r.findings);
    }

    #[test]
    fn quantile_interval_brackets_the_estimate() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let (e, lo, hi) = quantile_ci(&v, 0.9);
        assert!((e - 90.1).abs() < 1e-9);
        // Order statistics around rank 90 ± 1.96·3 = 84..96.
        assert!((82.0..=85.0).contains(&lo), "{lo}");
        assert!((95.0..=98.0).contains(&hi), "{hi}");
    }

    #[test]
    fn errors_and_vanished_operations_are_found() {
        let ib = ids("b", 100);
        let ic = ids("c", 100);
        let d = vec![5.0; 100];
        let mut b = spans("pay", &ib, &d);
        for s in b.iter_mut() {
            s.error = Some(false);
        }
        b.extend(spans("audit", &ib[..40], &d[..40]));
        let mut c = spans("pay", &ic, &d);
        for (i, s) in c.iter_mut().enumerate() {
            s.error = Some(i % 5 == 0);
        }
        let r = judge(&b, &c, 60.0, 60.0, &TraceConfig::default());
        let subjects: Vec<&str> = r.findings.iter().map(|f| f.subject.as_str()).collect();
        assert!(subjects.contains(&"errors pay"), "{subjects:?}");
        assert!(subjects.contains(&"vanished audit"), "{subjects:?}");
    }

    #[test]
    fn no_baseline_exposure_means_no_vanished_operation() {
        let ib = ids("b", 100);
        let ic = ids("c", 100);
        let d = vec![5.0; 100];
        let mut b = spans("pay", &ib, &d);
        b.extend(spans("audit", &ib[..40], &d[..40]));
        let c = spans("pay", &ic, &d);
        let r = judge(&b, &c, 0.0, 60.0, &TraceConfig::default());
        assert!(
            r.findings
                .iter()
                .all(|f| !f.subject.starts_with("vanished")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn tripled_fan_out_on_a_dozen_requests_is_for_review_and_nine_are_too_few() {
        // 12 `search` requests per side; each calls `price` once in the baseline, three times in
        // the canary (a retry loop, say). 12 vs 36 calls is far beyond chance (exact test).
        let ids: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        let build = |parents: usize, calls: usize, offset: usize| -> Vec<Span> {
            let mut v = Vec::new();
            let mut next = offset;
            for _ in 0..parents {
                let p = next;
                next += 1;
                v.push(span(&ids[p], None, "search", 10.0, None));
                for _ in 0..calls {
                    v.push(span(&ids[next], Some(&ids[p]), "price", 2.0, None));
                    next += 1;
                }
            }
            v
        };
        let config = TraceConfig::default();
        let r = judge(&build(12, 1, 0), &build(12, 3, 100), 60.0, 60.0, &config);
        let f = r
            .findings
            .iter()
            .find(|f| f.subject == "fan-out search -> price")
            .unwrap_or_else(|| panic!("{:?}", r.findings));
        assert_eq!(f.severity, Severity::Review);
        let r = judge(&build(9, 1, 0), &build(9, 3, 100), 60.0, 60.0, &config);
        assert!(
            r.findings.iter().all(|f| !f.subject.starts_with("fan-out")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn a_dependency_called_a_third_as_often_is_a_fan_out_change() {
        // Each of 60 `checkout` spans calls `pay` once in the baseline; in the canary only every
        // third one does (an exception before the call, say).
        let mut ids = Vec::new();
        for side in ["b", "c"] {
            for i in 0..60 {
                ids.push((format!("{side}p{i}"), format!("{side}k{i}")));
            }
        }
        let build = |side: &str, every: usize| -> Vec<Span> {
            let mut v = Vec::new();
            for (i, (p, k)) in ids.iter().filter(|(p, _)| p.starts_with(side)).enumerate() {
                v.push(span(p, None, "checkout", 10.0, None));
                if i % every == 0 {
                    v.push(span(k, Some(p), "pay", 2.0, None));
                }
            }
            v
        };
        let r = judge(
            &build("b", 1),
            &build("c", 3),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        let subjects: Vec<&str> = r.findings.iter().map(|f| f.subject.as_str()).collect();
        assert!(
            subjects.contains(&"fan-out checkout -> pay"),
            "{subjects:?}"
        );
        let r = judge(
            &build("b", 1),
            &build("c", 1),
            60.0,
            60.0,
            &TraceConfig::default(),
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }
}
