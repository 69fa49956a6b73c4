//! The trace signal over a view.

use super::{absent, View};
use crate::traces::{self, TraceConfig};
use crate::verdict::{Signal, SignalReport};

/// Vigil's trace signal.
pub fn vigil_traces(view: &View, config: &TraceConfig) -> SignalReport {
    let (Some(b), Some(c)) = (view.baseline.spans, view.canary.spans) else {
        return absent(Signal::Traces);
    };
    traces::judge(
        b,
        c,
        view.baseline.trace_exposure,
        view.canary.trace_exposure,
        config,
    )
}
