//! The callers' view: how the pod's callers experience it. A span on another pod whose direct
//! child runs on the judged pod is an *edge* into the pod; per edge (caller operation → callee
//! operation) this judge compares the caller's latency and the time the caller spends *outside*
//! the callee's own span (caller duration minus callee duration: network, queues, connection
//! set-up) between baseline and canary.
//!
//! Why a signal of its own: a network delay or a slow accept on the pod barely moves the pod's own
//! span durations — the pod's clock starts when the request arrives — but every caller waits for
//! it. No peer judge reads this; a canary analysis that reads traces can.
//!
//! The effect is the Hodges–Lehmann shift of canary over baseline with its distribution-free 95 %
//! interval, and a finding needs the rank test (Benjamini–Hochberg across edges and measures) and
//! an interval whose lower end clears a practical floor. Both are medians of pairwise differences,
//! which is also what makes the judge robust to a partly contaminated baseline (fault labels are
//! right to about a minute, so the end of a before/after baseline may already hold the fault):
//! the shift estimate stays near the healthy part's until about half of the baseline is
//! contaminated, while a tail quantile such as the p90 would move with the first tenth. No label
//! or time is read to get this robustness.

use std::collections::BTreeMap;

use vigil_models::counts::{bh_adjust, binom_test, fisher_exact, Alternative};
use vigil_models::vigil_judge::{hodges_lehmann, mann_whitney_greater, quantile_sorted};

use crate::verdict::{strength, Coverage, Finding, Severity, Signal, SignalReport, Typed};

/// One edge observation: a caller's span and its child on the judged pod.
#[derive(Debug, Clone, Copy)]
pub struct CallerSpan<'a> {
    /// The caller span's operation (on another pod).
    pub caller_operation: &'a str,
    /// The child's operation, on the judged pod.
    pub callee_operation: &'a str,
    /// The caller span's duration.
    pub duration_ms: f64,
    /// The child's duration.
    pub callee_duration_ms: f64,
    /// The caller span's status where the source records one (`true` = error).
    pub error: Option<bool>,
}

/// Settings. The defaults are the trace judge's, not chosen on the callers' data: the same test
/// level, the same 10 ms floor below which no user notices a change, the same 2× that makes a
/// slowdown of the time outside the pod a Fail rather than a Warn.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerConfig {
    /// False discovery rate across edges and measures.
    pub alpha: f64,
    /// Fewest spans of an edge on each side for it to be compared: five, so that a median (and
    /// the Hodges–Lehmann shift) survives two contaminated spans. Lower than the trace judge's 20
    /// for a p90: a median shift and a rank test need fewer. Whether so few can show anything is
    /// the rank test's to say (see [`can_reach`]), not a larger floor's.
    pub min_spans: usize,
    /// The lower end of the shift's 95 % interval must clear this many milliseconds.
    pub min_shift_ms: f64,
    /// Canary median at least this many times the baseline's (and the floor above): Fail.
    pub fail_ratio: f64,
    /// Where an edge has no baseline to compare with (fewer than `min_spans` baseline calls, or
    /// none recorded), the callers' median time outside the pod is held against this ceiling
    /// instead: 100 ms, the limit under which a wait is perceived as instantaneous (Card, Moran
    /// & Newell 1983; Nielsen 1993), while a hop inside a cluster costs milliseconds. What
    /// exceeds it is a Review finding — without a baseline a person decides whether it is the
    /// release — and what stays under it vouches for nothing (see [`unpaired_test`]).
    /// Infinity turns the check off.
    pub transport_ceiling_ms: f64,
}

impl Default for CallerConfig {
    fn default() -> Self {
        Self {
            alpha: 0.001,
            min_spans: 5,
            min_shift_ms: 10.0,
            fail_ratio: 2.0,
            transport_ceiling_ms: 100.0,
        }
    }
}

/// Which of an edge's two measures a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Measure {
    /// Caller duration minus callee duration.
    Outside,
    /// The caller span's whole duration.
    Latency,
}

impl Measure {
    fn words(self) -> &'static str {
        match self {
            Measure::Outside => "time outside the pod",
            Measure::Latency => "caller latency",
        }
    }
}

type Edge<'a> = (&'a str, &'a str);

/// One edge's values of one measure: sorted as they arrive (merged per interval), so that an
/// interval's rank test and medians read sorted data.
#[derive(Debug, Clone, Default)]
struct Values {
    sorted: Vec<f64>,
    fresh: Vec<f64>,
}

/// What the callers' judge needs of one side, kept up to date as callers' spans arrive: per
/// edge and measure the sorted finite values, and per caller operation the error counts.
#[derive(Debug, Clone, Default)]
pub struct CallerSide {
    n: usize,
    any_status: bool,
    /// Per edge (caller operation, callee operation): [time outside, caller latency].
    edges: BTreeMap<(String, String), [Values; 2]>,
    /// Per caller operation: (errors, spans).
    errors: BTreeMap<String, (u64, u64)>,
}

impl CallerSide {
    /// A side of the given observations, settled.
    pub fn of(spans: &[CallerSpan]) -> Self {
        let mut side = Self::default();
        side.extend(spans.iter().copied());
        side.settle();
        side
    }

    /// Adds observations (any order); call [`CallerSide::settle`] before judging.
    pub fn extend<'a>(&mut self, spans: impl IntoIterator<Item = CallerSpan<'a>>) {
        for s in spans {
            self.n += 1;
            self.any_status |= s.error.is_some();
            let e = match self.errors.get_mut(s.caller_operation) {
                Some(e) => e,
                None => self
                    .errors
                    .entry(s.caller_operation.to_owned())
                    .or_default(),
            };
            e.1 += 1;
            e.0 += u64::from(s.error == Some(true));
            for (i, v) in [s.duration_ms - s.callee_duration_ms, s.duration_ms]
                .into_iter()
                .enumerate()
            {
                if !v.is_finite() {
                    continue;
                }
                let key = (s.caller_operation.to_owned(), s.callee_operation.to_owned());
                self.edges.entry(key).or_default()[i].fresh.push(v);
            }
        }
    }

    /// Merges what arrived since the last call into the sorted values.
    pub fn settle(&mut self) {
        for m in self.edges.values_mut() {
            for v in m.iter_mut() {
                if v.fresh.is_empty() {
                    continue;
                }
                v.fresh.sort_by(f64::total_cmp);
                let old = std::mem::take(&mut v.sorted);
                let mut merged = Vec::with_capacity(old.len() + v.fresh.len());
                let (mut i, mut j) = (0, 0);
                while i < old.len() && j < v.fresh.len() {
                    if old[i].total_cmp(&v.fresh[j]).is_le() {
                        merged.push(old[i]);
                        i += 1;
                    } else {
                        merged.push(v.fresh[j]);
                        j += 1;
                    }
                }
                merged.extend_from_slice(&old[i..]);
                merged.extend_from_slice(&v.fresh[j..]);
                v.fresh.clear();
                v.sorted = merged;
            }
        }
    }

    fn by_edge(&self, m: Measure) -> BTreeMap<Edge<'_>, &[f64]> {
        let i = match m {
            Measure::Outside => 0,
            Measure::Latency => 1,
        };
        self.edges
            .iter()
            .filter(|(_, v)| !v[i].sorted.is_empty())
            .map(|((a, b), v)| ((a.as_str(), b.as_str()), v[i].sorted.as_slice()))
            .collect()
    }
}

/// Judges the canary's callers against the baseline's. `None` on a side: no caller spans were
/// recorded there at all (the signal is absent, not healthy).
pub fn judge(
    baseline: Option<&[CallerSpan]>,
    canary: Option<&[CallerSpan]>,
    config: &CallerConfig,
) -> SignalReport {
    let b = baseline.map(CallerSide::of);
    let c = canary.map(CallerSide::of);
    judge_sides(b.as_ref(), c.as_ref(), config)
}

/// [`judge`] on sides kept up to date as spans arrive (settled).
pub(crate) fn judge_sides(
    baseline: Option<&CallerSide>,
    canary: Option<&CallerSide>,
    config: &CallerConfig,
) -> SignalReport {
    let absent = || SignalReport {
        signal: Signal::Callers,
        coverage: Coverage::Absent,
        findings: Vec::new(),
    };
    let Some(canary) = canary else {
        return absent();
    };
    // A baseline without callers' spans has nothing to compare; the canary's callers may still
    // wait beyond what any transport explains (see `unpaired_test`).
    let nothing = CallerSide::default();
    let recorded = baseline.is_some();
    let baseline = baseline.unwrap_or(&nothing);
    struct Test<'a> {
        edge: Edge<'a>,
        measure: Measure,
        p: f64,
        b_med: f64,
        c_med: f64,
        shift: (f64, f64, f64),
        nb: usize,
        nc: usize,
    }
    let mut tests = Vec::new();
    for measure in [Measure::Outside, Measure::Latency] {
        let b = baseline.by_edge(measure);
        let c = canary.by_edge(measure);
        for (edge, bv) in &b {
            let Some(cv) = c.get(edge) else { continue };
            if bv.len() < config.min_spans
                || cv.len() < config.min_spans
                || !can_reach(bv.len(), cv.len(), config.alpha)
            {
                continue;
            }
            // An edge whose values cannot be ranked (empty or NaN) is not tested, rather than
            // counted as "tested, no change".
            let (Ok(p), Some(b_med), Some(c_med), Some(hl)) = (
                mann_whitney_greater(cv, bv),
                quantile_sorted(bv, 0.5),
                quantile_sorted(cv, 0.5),
                hodges_lehmann(cv, bv, 0.95),
            ) else {
                continue;
            };
            tests.push(Test {
                edge: *edge,
                measure,
                p,
                b_med,
                c_med,
                shift: (hl.estimate, hl.low, hl.high),
                nb: bv.len(),
                nc: cv.len(),
            });
        }
    }
    let errors = error_tests(baseline, canary, config);
    let unpaired = unpaired_test(baseline, canary, config);
    let inconclusive = || {
        if !recorded {
            return absent();
        }
        SignalReport {
            signal: Signal::Callers,
            coverage: Coverage::Inconclusive(format!(
                "{} baseline and {} canary caller spans, no edge with {} on both sides",
                baseline.n, canary.n, config.min_spans
            )),
            findings: Vec::new(),
        }
    };
    if tests.is_empty() && errors.is_empty() && unpaired.is_none() {
        return inconclusive();
    }
    let p: Vec<f64> = tests
        .iter()
        .map(|t| t.p)
        .chain(errors.iter().map(|e| e.p))
        .chain(unpaired.iter().map(|u| u.p))
        .collect();
    // Our own p-values are in [0, 1]; were one not, nothing is reported rather than guessed.
    let q = bh_adjust(&p).unwrap_or_else(|_| vec![1.0; p.len()]);
    let mut findings = Vec::new();
    for (t, q) in tests.iter().zip(&q) {
        let (est, lo, hi) = t.shift;
        if *q >= config.alpha || lo < config.min_shift_ms {
            continue;
        }
        let ratio = t.c_med / t.b_med.max(1.0);
        // A caller's latency is the callee's own time plus the time outside it. The first is the
        // trace judge's to fail (on the pod's own spans, with its stricter tail rule), the second
        // this judge's; failing on their sum as well would count one slowdown twice. So the
        // callers' latency informs (Warn) and only the time outside can fail.
        let severity = if t.measure == Measure::Outside && ratio >= config.fail_ratio {
            Severity::Fail
        } else {
            Severity::Warn
        };
        findings.push(Finding {
            typed: Typed::default(),
            signal: Signal::Callers,
            subject: format!("{} {} -> {}", t.measure.words(), t.edge.0, t.edge.1),
            severity,
            strength: strength(*q),
            detail: format!(
                "{}: median {:.1} -> {:.1} ms (x{ratio:.1}), shift +{est:.1} ms (95% CI {lo:.1}..{hi:.1}); {} vs {} calls from {} into {}; q {q:.1e}",
                t.measure.words(),
                t.b_med,
                t.c_med,
                t.nb,
                t.nc,
                t.edge.0,
                t.edge.1
            ),
        });
    }
    let (for_errors, for_unpaired) = q[tests.len()..].split_at(errors.len());
    for (e, q) in errors.iter().zip(for_errors) {
        if *q >= config.alpha {
            continue;
        }
        findings.push(Finding {
            typed: Typed::default(),
            signal: Signal::Callers,
            subject: format!("caller errors {}", e.caller),
            severity: Severity::Fail,
            strength: strength(*q),
            detail: format!(
                "callers' error rate {}/{} -> {}/{} (Fisher exact q {q:.1e})",
                e.xb, e.nb, e.xc, e.nc
            ),
        });
    }
    match (unpaired, for_unpaired.first()) {
        (Some(u), Some(&q)) if q < config.alpha => findings.push(Finding {
            typed: Typed::default(),
            signal: Signal::Callers,
            subject: format!("time outside the pod, no baseline: {}", u.edges.join(", ")),
            severity: Severity::Review,
            strength: strength(q),
            detail: format!(
                "callers waited a median {:.1} ms outside the pod ({} of {} calls above {:.0} ms, sign test q {q:.1e}); the baseline has fewer than {} calls on these edges to compare with, and a hop inside a cluster takes milliseconds",
                u.median, u.above, u.n, config.transport_ceiling_ms, config.min_spans
            ),
        }),
        // Under the ceiling is no evidence of health: without a baseline the signal stays as
        // it would be without this check.
        _ if tests.is_empty() && errors.is_empty() => return inconclusive(),
        _ => {}
    }
    SignalReport {
        signal: Signal::Callers,
        coverage: Coverage::Judged,
        findings,
    }
}

/// The callers' time outside the pod on the edges that have no baseline to compare with,
/// pooled — a network delay on the pod reaches every edge alike — and held against
/// [`CallerConfig::transport_ceiling_ms`].
struct Unpaired {
    edges: Vec<String>,
    n: usize,
    above: usize,
    median: f64,
    p: f64,
}

/// The sign test that the callers' median time outside the pod exceeds the ceiling, over the
/// canary's calls on edges with at least `min_spans` canary calls and fewer than `min_spans`
/// baseline calls. The paired comparison needs a baseline that a new edge, a baseline window
/// the pod's traces did not cover, or a label a minute off may not have; without this, such a
/// canary would pass on the pod's own spans however long its callers wait. `None` when no edge
/// qualifies or the ceiling is off.
fn unpaired_test(
    baseline: &CallerSide,
    canary: &CallerSide,
    config: &CallerConfig,
) -> Option<Unpaired> {
    if !config.transport_ceiling_ms.is_finite() {
        return None;
    }
    let b = baseline.by_edge(Measure::Outside);
    let mut pooled = Vec::new();
    let mut edges = Vec::new();
    for (edge, cv) in canary.by_edge(Measure::Outside) {
        let nb = b.get(&edge).map_or(0, |v| v.len());
        if nb >= config.min_spans || cv.len() < config.min_spans {
            continue;
        }
        pooled.extend_from_slice(cv);
        edges.push(format!("{} -> {}", edge.0, edge.1));
    }
    if pooled.is_empty() {
        return None;
    }
    pooled.sort_by(f64::total_cmp);
    let n = pooled.len();
    let above = pooled
        .iter()
        .filter(|&&v| v > config.transport_ceiling_ms)
        .count();
    let p = binom_test(above as u64, n as u64, 0.5, Alternative::Greater).ok()?;
    Some(Unpaired {
        edges,
        n,
        above,
        median: quantile_sorted(&pooled, 0.5)?,
        p,
    })
}

struct ErrorTest<'a> {
    caller: &'a str,
    p: f64,
    xb: u64,
    nb: u64,
    xc: u64,
    nc: u64,
}

/// Whether a one-sided rank test of `nb` against `nc` values can reach `alpha` at all: its
/// smallest attainable p-value is 1 / C(nb + nc, nb), every canary value above every baseline
/// one. An edge that cannot is left out of the comparison instead of being tested, because each
/// test counted in the Benjamini–Hochberg step raises the bar for the others while this one could
/// never pass it (Tarone's rule, Biometrics 46:515, 1990). This is what lets an edge with a
/// handful of calls on each side be compared without a larger fixed floor.
fn can_reach(nb: usize, nc: usize, alpha: f64) -> bool {
    // C(n, k) grows past 1/alpha quickly; stop as soon as it does (no overflow, no big numbers).
    let (k, n) = (nb.min(nc), nb + nc);
    let mut c = 1.0_f64;
    for i in 0..k {
        c = c * (n - i) as f64 / (i + 1) as f64;
        if c * alpha > 1.0 {
            return true;
        }
    }
    c * alpha > 1.0
}

/// Callers' error rate per caller operation, where spans carry a status: a canary that answers
/// with errors the callers see (or times out on them) shows here even when its own spans look
/// fine.
fn error_tests<'a>(
    baseline: &'a CallerSide,
    canary: &'a CallerSide,
    config: &CallerConfig,
) -> Vec<ErrorTest<'a>> {
    if !(baseline.any_status || canary.any_status) {
        return Vec::new();
    }
    let (b, c) = (&baseline.errors, &canary.errors);
    c.iter()
        .filter_map(|(op, &(xc, nc))| {
            let &(xb, nb) = b.get(op)?;
            let min = u64::try_from(config.min_spans).unwrap_or(u64::MAX);
            if nb < min || nc < min || xc < 3 {
                return None;
            }
            let p = fisher_exact([[xc, nc - xc], [xb, nb - xb]], Alternative::Greater).p_value;
            Some(ErrorTest {
                caller: op,
                p,
                xb,
                nb,
                xc,
                nc,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic "noise": a fixed low-discrepancy sequence in [0, 1).
    fn jitter(i: usize) -> f64 {
        (i as f64 * 0.618_033_988_749_895).fract()
    }

    fn side(n: usize, outside_ms: f64, callee_ms: f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                let callee = callee_ms * (0.8 + 0.4 * jitter(i));
                let outside = outside_ms * (0.5 + jitter(i + 7));
                (callee + outside, callee)
            })
            .collect()
    }

    fn spans(v: &[(f64, f64)]) -> Vec<CallerSpan<'static>> {
        v.iter()
            .map(|(d, c)| CallerSpan {
                caller_operation: "HTTP POST",
                callee_operation: "/api/v1/orders",
                duration_ms: *d,
                callee_duration_ms: *c,
                error: None,
            })
            .collect()
    }

    #[test]
    fn a_network_delay_fails_while_the_pods_own_spans_barely_move() {
        // Callee time is the same on both sides; callers wait 200 ms longer outside it.
        let b = spans(&side(60, 3.0, 40.0));
        let c = spans(&side(60, 203.0, 40.0));
        let r = judge(Some(&b), Some(&c), &CallerConfig::default());
        assert_eq!(r.coverage, Coverage::Judged);
        let f = r
            .findings
            .iter()
            .find(|f| f.subject.starts_with("time outside the pod"))
            .expect("an outside-time finding");
        assert_eq!(f.severity, Severity::Fail);
        assert!(
            f.subject.contains("HTTP POST -> /api/v1/orders"),
            "{}",
            f.subject
        );
    }

    #[test]
    fn a_slower_callee_is_the_trace_judges_to_fail_not_the_callers() {
        // The callee itself twice as slow, nothing outside it: callers see it (Warn) but only the
        // pod's own spans may fail it.
        let b = spans(&side(60, 3.0, 40.0));
        let c = spans(&side(60, 3.0, 120.0));
        let r = judge(Some(&b), Some(&c), &CallerConfig::default());
        assert!(
            r.findings
                .iter()
                .any(|f| f.subject.starts_with("caller latency") && f.severity == Severity::Warn),
            "{:?}",
            r.findings
        );
        assert!(r.findings.iter().all(|f| f.severity != Severity::Fail));
    }

    #[test]
    fn a_shift_under_the_floor_is_not_reported_however_significant() {
        // 2 ms more outside on 500 calls a side: significant, not noticeable.
        let b = spans(&side(500, 3.0, 40.0));
        let c = spans(&side(500, 5.0, 40.0));
        let r = judge(Some(&b), Some(&c), &CallerConfig::default());
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn a_partly_contaminated_baseline_still_shows_the_delay() {
        // The last quarter of the baseline already holds the 300 ms delay (a label a minute late).
        let mut bv = side(45, 3.0, 40.0);
        bv.extend(side(15, 303.0, 40.0));
        let b = spans(&bv);
        let c = spans(&side(60, 303.0, 40.0));
        let r = judge(Some(&b), Some(&c), &CallerConfig::default());
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Fail && f.subject.starts_with("time outside")),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn no_caller_spans_is_absent_and_too_few_is_inconclusive() {
        let b = spans(&side(60, 3.0, 40.0));
        let r = judge(None, Some(&b), &CallerConfig::default());
        assert_eq!(r.coverage, Coverage::Absent);
        let few = spans(&side(4, 3.0, 40.0));
        let r = judge(Some(&b), Some(&few), &CallerConfig::default());
        assert!(matches!(r.coverage, Coverage::Inconclusive(_)), "{r:?}");
    }

    #[test]
    fn an_edge_is_compared_when_its_rank_test_can_reach_the_level() {
        // Reference values: C(10, 5) = 252, C(11, 5) = 462, C(12, 6) = 924, C(13, 6) = 1716,
        // C(20, 7) = 77,520 (Python's math.comb).
        assert!(!can_reach(5, 5, 0.001) && !can_reach(5, 6, 0.001) && !can_reach(6, 6, 0.001));
        assert!(can_reach(6, 7, 0.001) && can_reach(7, 13, 0.001));
        assert!(can_reach(5, 5, 1.0 / 200.0) && !can_reach(5, 5, 1.0 / 300.0));
        assert!(
            can_reach(10_000, 10_000, 1e-300),
            "large samples must not overflow"
        );
        // 5 calls a side, every canary call 1 s slower: the best p is 1/252, never below 0.001,
        // so the edge is left out (Inconclusive), not tested and passed.
        let cfg = CallerConfig::default();
        let r = judge(
            Some(&spans(&side(5, 3.0, 15.0))),
            Some(&spans(&side(5, 1003.0, 15.0))),
            &cfg,
        );
        assert!(matches!(r.coverage, Coverage::Inconclusive(_)), "{r:?}");
        // 7 against 13, as in a TrainTicket network delay: tested, and the delay fails it.
        let r = judge(
            Some(&spans(&side(7, 3.0, 15.0))),
            Some(&spans(&side(13, 1003.0, 15.0))),
            &cfg,
        );
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Fail && f.subject.starts_with("time outside")),
            "{r:?}"
        );
    }

    /// `n` calls on one edge, each waiting `outside(i)` ms outside a 15 ms callee.
    fn calls(
        caller: &'static str,
        n: usize,
        outside: impl Fn(usize) -> f64,
    ) -> Vec<CallerSpan<'static>> {
        (0..n)
            .map(|i| CallerSpan {
                caller_operation: caller,
                callee_operation: "/api/v1/foods",
                duration_ms: 15.0 + outside(i),
                callee_duration_ms: 15.0,
                error: None,
            })
            .collect()
    }

    #[test]
    fn callers_waiting_beyond_any_transport_are_a_review_finding_when_no_baseline_compares() {
        let cfg = CallerConfig::default();
        // No caller spans in the baseline at all; 40 canary calls wait ~2 s outside the pod.
        let c = calls("HTTP GET", 40, |i| 2000.0 + jitter(i));
        let r = judge(None, Some(&c), &cfg);
        assert_eq!(r.coverage, Coverage::Judged, "{r:?}");
        let f = &r.findings[0];
        assert_eq!(f.severity, Severity::Review, "{f:?}");
        assert!(
            f.subject.contains("no baseline") && f.subject.contains("HTTP GET -> /api/v1/foods"),
            "{}",
            f.subject
        );
        assert!(
            f.detail.contains("40 of 40 calls above 100 ms"),
            "{}",
            f.detail
        );
        // Two baseline calls (fewer than min_spans) are no baseline either; the edges without
        // one are pooled: 5 + 5 calls on two edges, all above the ceiling.
        let b = calls("HTTP GET", 2, |_| 3.0);
        let mut c = calls("HTTP GET", 5, |_| 2000.0);
        c.extend(calls("HTTP POST", 5, |_| 2000.0));
        let r = judge(Some(&b), Some(&c), &cfg);
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Review && f.detail.contains("10 of 10")),
            "{r:?}"
        );
    }

    #[test]
    fn the_ceiling_is_a_sign_test_at_the_callers_level() {
        // One-sided sign test, H0 median <= ceiling: 10 of 10 above gives p = 2^-10 = 0.000977
        // (scipy.stats.binomtest(10, 10, 0.5, 'greater')), under 0.001; 9 of 10 gives
        // 11/1024 = 0.0107, over it.
        let cfg = CallerConfig::default();
        let all = calls("HTTP GET", 10, |_| 500.0);
        let r = judge(None, Some(&all), &cfg);
        assert!(
            r.findings.iter().any(|f| f.severity == Severity::Review),
            "{r:?}"
        );
        let nine = calls("HTTP GET", 10, |i| if i == 0 { 2.0 } else { 500.0 });
        let r = judge(None, Some(&nine), &cfg);
        assert!(r.findings.is_empty(), "{r:?}");
        // Off at infinity.
        let off = CallerConfig {
            transport_ceiling_ms: f64::INFINITY,
            ..CallerConfig::default()
        };
        assert_eq!(judge(None, Some(&all), &off).coverage, Coverage::Absent);
    }

    #[test]
    fn under_the_ceiling_vouches_for_nothing_and_a_real_baseline_is_compared_instead() {
        let cfg = CallerConfig::default();
        // Canary callers at 4 ms with no baseline: no finding, and the signal stays absent (or
        // inconclusive when the baseline records a few calls) rather than passing the canary.
        let c = calls("HTTP GET", 40, |i| 3.0 + jitter(i));
        assert_eq!(judge(None, Some(&c), &cfg).coverage, Coverage::Absent);
        let r = judge(Some(&calls("HTTP GET", 2, |_| 3.0)), Some(&c), &cfg);
        assert!(matches!(r.coverage, Coverage::Inconclusive(_)), "{r:?}");
        // Seven baseline calls are a baseline: the paired rank test decides, and 7 against 5
        // (best p 1/792) cannot reach the level, so no ceiling finding stands in for it.
        let r = judge(
            Some(&calls("HTTP GET", 7, |_| 3.0)),
            Some(&calls("HTTP GET", 5, |_| 2000.0)),
            &cfg,
        );
        assert!(r.findings.is_empty(), "{r:?}");
        assert!(matches!(r.coverage, Coverage::Inconclusive(_)), "{r:?}");
    }

    #[test]
    fn callers_errors_fail_where_spans_carry_a_status() {
        let mk = |n: usize, errs: usize| -> Vec<CallerSpan<'static>> {
            (0..n)
                .map(|i| CallerSpan {
                    caller_operation: "grpc.Checkout/PlaceOrder",
                    callee_operation: "PaymentService/Charge",
                    duration_ms: 50.0,
                    callee_duration_ms: 45.0,
                    error: Some(i < errs),
                })
                .collect()
        };
        let (b, c) = (mk(200, 1), mk(200, 30));
        let r = judge(Some(&b), Some(&c), &CallerConfig::default());
        assert!(
            r.findings
                .iter()
                .any(|f| f.subject == "caller errors grpc.Checkout/PlaceOrder"
                    && f.severity == Severity::Fail),
            "{:?}",
            r.findings
        );
    }
}
