//! The live caller join: a span whose parent runs in another process (another pod or service,
//! told apart by [`super::convert::identity`]) makes the parent a *caller's span* with an edge
//! into the child — what the corpus's `caller_spans.csv` holds.
//!
//! Parent and child arrive in any order and in different requests. Each span is remembered for
//! [`MAX_DELAY_S`] seconds (as a possible parent), and a selected child whose parent has not
//! been seen waits as long; at most [`MAX_SPANS`] of each are held, the oldest evicted first.
//! So memory and delay are bounded, and a pair further apart than that is not joined (counted).

use std::collections::{HashMap, VecDeque};

use crate::analysis::Role;
use crate::telemetry::{CallerEdge, Span};

/// How long a span waits for its partner, seconds (of arrival time).
pub const MAX_DELAY_S: f64 = 60.0;
/// How many possible parents, and how many waiting children, are held at most.
pub const MAX_SPANS: usize = 100_000;

type Key = (String, String);

#[derive(Debug)]
struct Seen {
    who: String,
    span: Span,
}

#[derive(Debug)]
struct Waiting {
    who: String,
    span: Span,
    to: Vec<(String, Role)>,
}

/// The join's state.
#[derive(Debug, Default)]
pub struct Join {
    /// Recent spans by (trace, span id), as possible parents.
    seen: HashMap<Key, Seen>,
    seen_order: VecDeque<(Key, f64)>,
    /// Selected children waiting for their parent, by (trace, parent id).
    waiting: HashMap<Key, Vec<Waiting>>,
    waiting_order: VecDeque<(Key, f64)>,
    bytes: usize,
    /// Children that never met their parent (or whose entry was evicted).
    pub unjoined: u64,
}

/// The caller's span: the parent with an edge into `child`.
fn edge(parent: &Span, child: &Span) -> Span {
    Span {
        caller: Some(CallerEdge {
            callee_span_id: child.span_id.clone(),
            callee_operation: child.operation.clone(),
            callee_duration_ms: child.duration_ms,
        }),
        ..parent.clone()
    }
}

impl Join {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Spans held as possible parents, children waiting.
    pub fn held(&self) -> (usize, usize) {
        (self.seen.len(), self.waiting.values().map(Vec::len).sum())
    }

    /// Forgets what is older than [`MAX_DELAY_S`] or beyond [`MAX_SPANS`]; returns how many
    /// waiting children were given up.
    pub fn expire(&mut self, now: f64) -> u64 {
        let before = self.unjoined;
        while let Some((_, t)) = self.seen_order.front() {
            if *t > now - MAX_DELAY_S && self.seen_order.len() <= MAX_SPANS {
                break;
            }
            // A key is queued once, when first seen: its entry goes with it.
            if let Some((k, _)) = self.seen_order.pop_front() {
                if let Some(s) = self.seen.remove(&k) {
                    self.bytes = self
                        .bytes
                        .saturating_sub(super::span_bytes(&s.span) + s.who.len());
                }
            }
        }
        while let Some((_, t)) = self.waiting_order.front() {
            if *t > now - MAX_DELAY_S && self.waiting_order.len() <= MAX_SPANS {
                break;
            }
            if let Some((k, _)) = self.waiting_order.pop_front() {
                if let Some(v) = self.waiting.remove(&k) {
                    self.unjoined += v.len() as u64;
                    for w in &v {
                        self.bytes = self
                            .bytes
                            .saturating_sub(super::span_bytes(&w.span) + w.who.len());
                    }
                }
            }
        }
        self.unjoined - before
    }

    /// Adds a span emitted by `who`, selected for `to` (empty: selected by no analysis).
    /// Returns the callers' spans completed by it, each with the analyses and sides it goes to.
    pub fn add(
        &mut self,
        span: Span,
        who: &str,
        to: &[(String, Role)],
        now: f64,
    ) -> Vec<(Span, Vec<(String, Role)>)> {
        let mut out = Vec::new();
        // As a parent: children that waited for it.
        let key = (span.trace_id.clone(), span.span_id.clone());
        if let Some(children) = self.waiting.remove(&key) {
            for c in children {
                self.bytes = self
                    .bytes
                    .saturating_sub(super::span_bytes(&c.span) + c.who.len());
                if c.who != who {
                    out.push((edge(&span, &c.span), c.to));
                }
            }
        }
        // As a child: its parent seen already, or wait for it.
        if !to.is_empty() {
            if let Some(parent_id) = &span.parent_id {
                let pkey = (span.trace_id.clone(), parent_id.clone());
                match self.seen.get(&pkey) {
                    Some(p) => {
                        if p.who != who {
                            out.push((edge(&p.span, &span), to.to_vec()));
                        }
                    }
                    None => {
                        self.bytes += super::span_bytes(&span) + who.len();
                        self.waiting.entry(pkey.clone()).or_default().push(Waiting {
                            who: who.to_owned(),
                            span: span.clone(),
                            to: to.to_vec(),
                        });
                        self.waiting_order.push_back((pkey, now));
                    }
                }
            }
        }
        self.bytes += super::span_bytes(&span) + who.len();
        if let Some(old) = self.seen.insert(
            key.clone(),
            Seen {
                who: who.to_owned(),
                span,
            },
        ) {
            self.bytes = self
                .bytes
                .saturating_sub(super::span_bytes(&old.span) + old.who.len());
        } else {
            self.seen_order.push_back((key, now));
        }
        out
    }
}
