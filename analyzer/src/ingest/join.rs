//! The live caller join: a span whose parent runs in another process (another pod or service,
//! told apart by [`super::convert::identity`]) makes the parent a *caller's span* with an edge
//! into the child — what the corpus's `caller_spans.csv` holds.
//!
//! Parent and child arrive in any order and in different requests. Each span is remembered for
//! [`MAX_DELAY_S`] seconds (as a possible parent), and a selected child whose parent has not
//! been seen waits as long; at most [`MAX_SPANS`] of each are held, the oldest evicted first.
//! So memory and delay are bounded, and a pair further apart than that is not joined (counted).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::convert::{LiveEdge, LiveSpan};
use crate::analysis::Role;

/// How long a span waits for its partner, seconds (of arrival time).
pub const MAX_DELAY_S: f64 = 60.0;
/// How many possible parents, and how many waiting children, are held at most.
pub const MAX_SPANS: usize = 100_000;

/// (trace id, span id): fixed bytes, hashed and compared without allocating.
type Key = ([u8; 16], [u8; 8]);

/// Where a selected span goes: (the hub's key of an analysis, side).
pub type Target = (u64, Role);

#[derive(Debug)]
struct Seen {
    who: Arc<str>,
    span: LiveSpan,
}

#[derive(Debug)]
struct Waiting {
    who: Arc<str>,
    span: LiveSpan,
    to: Vec<Target>,
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
fn edge(parent: &LiveSpan, child: &LiveSpan) -> LiveSpan {
    LiveSpan {
        caller: Some(LiveEdge {
            callee: child.id,
            operation: child.operation.clone(),
            duration_ms: child.duration_ms,
        }),
        ..parent.clone()
    }
}

/// Bytes one held entry costs: the span, its map slot and order entry, and the name (counted
/// whole for each holder, though shared: an upper bound).
fn held_bytes(s: &LiveSpan) -> usize {
    std::mem::size_of::<Seen>()
        + std::mem::size_of::<(Key, f64)>()
        + std::mem::size_of::<Key>()
        + s.operation.len()
        + 16
}

fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
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
                    self.bytes = self.bytes.saturating_sub(held_bytes(&s.span));
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
                            .saturating_sub(held_bytes(&w.span) + waiting_bytes(&w.to));
                    }
                }
            }
        }
        self.unjoined - before
    }

    /// Adds a span emitted by `who`, selected for `to` (empty: selected by no analysis).
    /// Completed callers' spans go to `out`, each with the analyses and sides it goes to.
    pub fn add(
        &mut self,
        span: LiveSpan,
        who: &Arc<str>,
        to: &[Target],
        now: f64,
        out: &mut Vec<(LiveSpan, Vec<Target>)>,
    ) {
        // As a parent: children that waited for it.
        let key = (span.trace, span.id);
        if let Some(children) = self.waiting.remove(&key) {
            for c in children {
                self.bytes = self
                    .bytes
                    .saturating_sub(held_bytes(&c.span) + waiting_bytes(&c.to));
                if !same(&c.who, who) {
                    out.push((edge(&span, &c.span), c.to));
                }
            }
        }
        // As a child: its parent seen already, or wait for it.
        if !to.is_empty() {
            if let Some(parent_id) = span.parent {
                let pkey = (span.trace, parent_id);
                match self.seen.get(&pkey) {
                    Some(p) => {
                        if !same(&p.who, who) {
                            out.push((edge(&p.span, &span), to.to_vec()));
                        }
                    }
                    None => {
                        self.bytes += held_bytes(&span) + waiting_bytes(to);
                        self.waiting.entry(pkey).or_default().push(Waiting {
                            who: who.clone(),
                            span: span.clone(),
                            to: to.to_vec(),
                        });
                        self.waiting_order.push_back((pkey, now));
                    }
                }
            }
        }
        self.bytes += held_bytes(&span);
        if let Some(old) = self.seen.insert(
            key,
            Seen {
                who: who.clone(),
                span,
            },
        ) {
            self.bytes = self.bytes.saturating_sub(held_bytes(&old.span));
        } else {
            self.seen_order.push_back((key, now));
        }
    }
}

fn waiting_bytes(to: &[Target]) -> usize {
    std::mem::size_of_val(to) + 16
}
