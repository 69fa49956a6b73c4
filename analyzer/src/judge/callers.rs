//! The callers' signal over a view: the pod as its callers experience it.

use super::View;
use crate::callers::{self, CallerConfig, CallerSide, CallerSpan};
use crate::telemetry::Span;
use crate::verdict::SignalReport;

/// Vigil's callers' signal: the pod as its callers experience it.
pub fn vigil_callers(view: &View, config: &CallerConfig) -> SignalReport {
    vigil_callers_with(view, None, config)
}

/// Callers' spans as the judge reads them: one observation per span with an edge.
pub(crate) fn edges(spans: &[Span]) -> impl Iterator<Item = CallerSpan<'_>> {
    spans.iter().filter_map(|s| {
        let e = s.caller.as_ref()?;
        Some(CallerSpan {
            caller_operation: &s.operation,
            callee_operation: &e.callee_operation,
            duration_ms: s.duration_ms,
            callee_duration_ms: e.callee_duration_ms,
            error: s.error,
        })
    })
}

/// [`vigil_callers`] from the engine's per-edge sorted values (baseline, canary); a side
/// without callers' spans in the view is absent either way.
pub fn vigil_callers_with(
    view: &View,
    kept: Option<&[CallerSide; 2]>,
    config: &CallerConfig,
) -> SignalReport {
    if let Some([kb, kc]) = kept {
        let b = view.baseline.caller_spans.map(|_| kb);
        let c = view.canary.caller_spans.map(|_| kc);
        return callers::judge_sides(b, c, config);
    }
    let b = view
        .baseline
        .caller_spans
        .map(|s| edges(s).collect::<Vec<_>>());
    let c = view
        .canary
        .caller_spans
        .map(|s| edges(s).collect::<Vec<_>>());
    callers::judge(b.as_deref(), c.as_deref(), config)
}
