//! The callers' signal over a view: the pod as its callers experience it.

use super::View;
use crate::callers::{self, CallerConfig, CallerSpan};
use crate::telemetry::Span;
use crate::verdict::SignalReport;

/// Vigil's callers' signal: the pod as its callers experience it.
pub fn vigil_callers(view: &View, config: &CallerConfig) -> SignalReport {
    fn edges(spans: &[Span]) -> Vec<CallerSpan<'_>> {
        spans
            .iter()
            .filter_map(|s| {
                let e = s.caller.as_ref()?;
                Some(CallerSpan {
                    caller_operation: &s.operation,
                    callee_operation: &e.callee_operation,
                    duration_ms: s.duration_ms,
                    callee_duration_ms: e.callee_duration_ms,
                    error: s.error,
                })
            })
            .collect()
    }
    let b = view.baseline.caller_spans.map(edges);
    let c = view.canary.caller_spans.map(edges);
    callers::judge(b.as_deref(), c.as_deref(), config)
}
