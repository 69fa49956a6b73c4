//! What the engine keeps up to date as telemetry arrives, so that an interval's judgement costs
//! the new data and the number of templates, operations and windows — not a pass over (and a
//! re-mining or re-sorting of) the whole window at every interval.
//!
//! Each judge has one code path: its batch form (a [`super::View`] of record slices) builds the
//! same state from the slices and judges it, so the engine's judgement of an interval equals the
//! batch judgement of the same data mined in the same order.

use super::anomaly::EventSide;
use super::JudgeConfig;
use crate::callers::CallerSide;
use crate::logs::judge::LogSession;
use crate::telemetry::{LogRecord, Span};
use crate::traces::TraceSide;

/// Both sides' incremental state (index 0 the baseline, 1 the canary).
#[derive(Debug, Clone)]
pub struct Incremental {
    /// The log judge's miners and tallies, shared by both sides (a pattern has one id on both).
    pub(crate) logs: LogSession,
    /// Each side's own spans, per operation.
    pub(crate) traces: [TraceSide; 2],
    /// Each side's callers' spans, per edge.
    pub(crate) callers: [CallerSide; 2],
    /// Each side's events per 10-second window, for the anomaly model.
    pub(crate) events: [EventSide; 2],
}

impl Incremental {
    /// Nothing received yet.
    pub fn new(config: &JudgeConfig) -> Self {
        Self {
            logs: LogSession::new(&config.log.miner, None),
            traces: Default::default(),
            callers: Default::default(),
            events: Default::default(),
        }
    }

    /// Takes log records of one side (`canary`: the canary's), in the order they are to be
    /// mined.
    pub(crate) fn add_logs(&mut self, canary: bool, logs: &[LogRecord]) {
        self.logs.mine_all(canary, logs);
        self.events[usize::from(canary)].add_logs(logs);
    }

    /// Takes the pod's own spans of one side.
    pub(crate) fn add_spans(&mut self, canary: bool, spans: &[Span]) {
        let i = usize::from(canary);
        self.traces[i].extend(spans);
        self.events[i].add_spans(spans);
    }

    /// Takes callers' spans (spans with a caller edge) of one side.
    pub(crate) fn add_caller_spans(&mut self, canary: bool, spans: &[Span]) {
        self.callers[usize::from(canary)].extend(super::callers::edges(spans));
    }

    /// Merges what arrived into the sorted buffers; call before judging.
    pub fn settle(&mut self) {
        for t in &mut self.traces {
            t.settle();
        }
        for c in &mut self.callers {
            c.settle();
        }
    }

    /// The log judge's state: what its memory is (templates and their tallies).
    pub fn logs(&self) -> &LogSession {
        &self.logs
    }
}
