//! The trace signal over a view.

use super::{absent, View};
use crate::traces::{self, TraceConfig, TraceSide};
use crate::verdict::{Signal, SignalReport};

/// Vigil's trace signal.
pub fn vigil_traces(view: &View, config: &TraceConfig) -> SignalReport {
    vigil_traces_with(view, None, config)
}

/// [`vigil_traces`] from the engine's per-operation sorted durations (baseline, canary).
pub fn vigil_traces_with(
    view: &View,
    kept: Option<&[TraceSide; 2]>,
    config: &TraceConfig,
) -> SignalReport {
    let (Some(b), Some(c)) = (view.baseline.spans, view.canary.spans) else {
        return absent(Signal::Traces);
    };
    if let Some([kb, kc]) = kept {
        return traces::judge_sides(
            kb,
            kc,
            view.baseline.trace_exposure,
            view.canary.trace_exposure,
            config,
        );
    }
    traces::judge(
        b,
        c,
        view.baseline.trace_exposure,
        view.canary.trace_exposure,
        config,
    )
}
