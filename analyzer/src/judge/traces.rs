//! The trace signal over a view.

use super::{absent, View};
use crate::telemetry::Span;
use crate::traces::{self, SpanRecord, TraceConfig};
use crate::verdict::{Signal, SignalReport};

fn span_records(spans: &[Span]) -> Vec<SpanRecord<'_>> {
    spans
        .iter()
        .map(|s| SpanRecord {
            span_id: &s.span_id,
            parent_id: s.parent_id.as_deref(),
            operation: &s.operation,
            duration_ms: s.duration_ms,
            error: s.error,
        })
        .collect()
}

/// Vigil's trace signal.
pub fn vigil_traces(view: &View, config: &TraceConfig) -> SignalReport {
    let (Some(b), Some(c)) = (view.baseline.spans, view.canary.spans) else {
        return absent(Signal::Traces);
    };
    traces::judge(
        &span_records(b),
        &span_records(c),
        view.baseline.trace_exposure,
        view.canary.trace_exposure,
        config,
    )
}
