//! What `GetAnalysis` answers, kept in memory. Pollers — Argo's `web` provider, Flagger's webhooks,
//! a pipeline's `vigil analysis get`, a dashboard — ask for the same few analyses over and over,
//! while an analysis changes at most once per interval. Without this each poll cost two blocking
//! SQLite reads, JSON decoding of every stored entry and a spec parse (benches/README.md: 0.27 of a
//! trivial tonic server).
//!
//! Consistency: the cache may only hold what the store holds now. Every store write that changes
//! an analysis calls [`Snapshots::invalidate`] (or [`Snapshots::clear`]) from the blocking task
//! that wrote, once the write returns — inside that task, so an aborted caller cannot skip it. A
//! reader takes a [`Ticket`] *before* it reads the store and may fill the cache only if no write
//! happened since the ticket: a read that raced a write is served but not kept. (A write that has
//! committed but not yet invalidated can be filled by a reader; its invalidation then removes it.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use vigil_proto::v1 as pb;

/// At most this many analyses are kept; past it, an arbitrary one makes room. An entry is a few
/// KiB (the spec and the last judgement's evidence), so this bounds the cache to tens of MiB.
pub const MAX_SNAPSHOTS: usize = 8192;

/// The cache of `GetAnalysis` answers (see the module documentation for its consistency rule).
#[derive(Default)]
pub struct Snapshots {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every write to any analysis.
    generation: u64,
    map: HashMap<String, Arc<pb::Analysis>>,
}

/// Proof of when a reader looked: fills are refused if a write came after it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent (single inserts and removes).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer for `id`, if any.
    pub fn get(&self, id: &str) -> Option<Arc<pb::Analysis>> {
        self.lock().map.get(id).cloned()
    }

    /// Taken before reading the store for a fill.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Keeps `a` unless a write happened since `ticket`. Returns whether it was kept.
    pub fn fill(&self, ticket: Ticket, a: Arc<pb::Analysis>) -> bool {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return false;
        }
        if inner.map.len() >= MAX_SNAPSHOTS && !inner.map.contains_key(&a.id) {
            if let Some(k) = inner.map.keys().next().cloned() {
                inner.map.remove(&k);
            }
        }
        inner.map.insert(a.id.clone(), a);
        true
    }

    /// `id` was written: drop its answer and refuse fills that read before now.
    pub fn invalidate(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.remove(id);
    }

    /// Several analyses were written (a retention sweep): drop everything.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.clear();
    }

    /// How many answers are kept (for tests and `/metrics`).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(id: &str, score: f64) -> Arc<pb::Analysis> {
        Arc::new(pb::Analysis {
            id: id.into(),
            score: Some(score),
            ..Default::default()
        })
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let s = Snapshots::default();
        let before = s.ticket();
        // The writer commits and invalidates while the reader still holds what it read before.
        s.invalidate("a");
        assert!(!s.fill(before, analysis("a", 1.0)));
        assert!(s.get("a").is_none());
        // A read that starts after the write may fill.
        let after = s.ticket();
        assert!(s.fill(after, analysis("a", 2.0)));
        assert_eq!(s.get("a").and_then(|a| a.score), Some(2.0));
        // A write to another analysis also refuses older reads (one generation for all), and a
        // write to this one drops it.
        let t = s.ticket();
        s.invalidate("b");
        assert!(!s.fill(t, analysis("a", 3.0)));
        assert_eq!(s.get("a").and_then(|a| a.score), Some(2.0));
        s.invalidate("a");
        assert!(s.get("a").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_a_sweep_empties_it() {
        let s = Snapshots::default();
        for i in 0..MAX_SNAPSHOTS + 10 {
            let t = s.ticket();
            assert!(s.fill(t, analysis(&format!("a{i}"), 0.0)));
        }
        assert_eq!(s.len(), MAX_SNAPSHOTS);
        s.clear();
        assert!(s.is_empty());
    }
}
