//! Notifications (issue 13): Slack, email and signed webhooks, delivered through an outbox.
//!
//! - [`config`]: the spec's `notify:` list, its checks and its redaction;
//! - [`Notifier::outbox_rows`]: which stored entries cause which messages — called inside the
//!   blocking task of `Core::append`, so the rows go into the SAME transaction as the entry
//!   ([`crate::store::Store::append_with_outbox`]);
//! - [`content`]: what a person receives (Block Kit, multipart email, webhook JSON);
//! - [`send`]: one attempt per channel, classified as delivered, retry or permanent failure;
//! - [`worker`]: the task that claims due rows, sends and marks.
//!
//! # Delivery guarantees
//! A row is written with its cause or not at all, and survives any crash after that commit. The
//! worker marks a row in the step right after the receiver's answer; a row still `pending` when
//! the process dies (even mid-send) is sent again after the restart, so delivery is at least
//! once. The idempotency key (`<analysis>/<event>/<target>`) is the row's primary key, so a
//! resumed analysis that re-appends an event enqueues nothing, and webhook receivers get it as
//! `X-Vigil-Delivery` to drop a repeat. The one window in which a crash repeats a Slack message or
//! an email is between the receiver's answer and the commit of the mark: one SQLite write (a WAL
//! append and, with `Durability::Full`, an fsync — about a millisecond here).
//!
//! Each target gets an analysis' messages in the order of their events: a row waits while an
//! older one of the same analysis and target is pending ([`crate::store::Store::outbox_due`]), so
//! a rollback's message never overtakes the Fail that caused it when the Fail is held back by a
//! 429 or a backoff. The price: a message waits for the one before it to be delivered or given up.

pub mod config;
pub mod content;
pub mod send;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

pub use config::{Event, Target};

use crate::store::{NewEntry, NewOutbox, Store, StoreError};

/// The channels, in counter order.
pub const CHANNELS: [&str; 3] = ["slack", "email", "webhook"];

/// Per channel: messages delivered, given up, and attempts to be retried (for `/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Delivered, per [`CHANNELS`].
    pub delivered: [AtomicU64; 3],
    /// Given up (a permanent failure, or out of attempts), per [`CHANNELS`].
    pub failed: [AtomicU64; 3],
    /// Attempts that failed and are retried, per [`CHANNELS`].
    pub retried: [AtomicU64; 3],
}

impl Counters {
    fn slot(channel: &str) -> Option<usize> {
        CHANNELS.iter().position(|c| *c == channel)
    }

    /// Counts an outcome (`delivered`, `failed`, `retried`) of `channel`.
    pub fn count(&self, channel: &str, outcome: &str) {
        let Some(i) = Self::slot(channel) else { return };
        let arr = match outcome {
            "delivered" => &self.delivered,
            "failed" => &self.failed,
            _ => &self.retried,
        };
        arr[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the Prometheus text of the counters to `out`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, arr) in [
            (
                "vigil_notifications_delivered_total",
                "Notifications delivered since start, by channel.",
                &self.delivered,
            ),
            (
                "vigil_notifications_failed_total",
                "Notifications given up since start (a permanent refusal or out of attempts), by channel.",
                &self.failed,
            ),
            (
                "vigil_notifications_retried_total",
                "Notification attempts that failed and will be retried, since start, by channel.",
                &self.retried,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, c) in CHANNELS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{channel=\"{c}\"}} {}",
                    arr[i].load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// What the runner knows of one analysis's notifications: its targets and the last interim
/// verdict (to see a change).
#[derive(Debug, Clone)]
struct Known {
    targets: Arc<Vec<Target>>,
    last_verdict: Option<String>,
}

/// The service's side of notifications: which entries cause which outbox rows, the worker's wake
/// signal, and the counters.
#[derive(Debug, Default)]
pub struct Notifier {
    known: Mutex<HashMap<String, Known>>,
    wake: tokio::sync::Notify,
    counters: Counters,
}

/// The parts of an `IntervalRecord` an interim notification needs.
#[derive(Deserialize)]
struct IntervalHead {
    interval: u32,
    judgement: VerdictHead,
}

#[derive(Deserialize)]
struct VerdictHead {
    verdict: String,
}

/// The parts of an `EventRecord` an event notification needs.
#[derive(Deserialize)]
struct EventHead {
    kind: String,
    message: String,
    #[serde(default)]
    verdict: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The targets of a stored spec (its `notify:` list), or none when it has none or cannot be read.
pub fn targets_of_spec(spec_json: &str) -> Vec<Target> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        notify: Option<Vec<Target>>,
    }
    serde_json::from_str::<Only>(spec_json)
        .ok()
        .and_then(|o| o.notify)
        .unwrap_or_default()
}

/// The events `entries` cause, with a key part and a message each. `last_verdict` is the verdict
/// of the interval before (updated).
pub fn events_of(
    entries: &[NewEntry],
    last_verdict: &mut Option<String>,
) -> Vec<(Event, String, String)> {
    let mut out = Vec::new();
    for e in entries {
        if e.kind == "judgement" {
            let Ok(j) = serde_json::from_str::<IntervalHead>(&e.payload_json) else {
                continue;
            };
            let v = j.judgement.verdict;
            if last_verdict.as_deref() != Some(v.as_str()) {
                let message = match last_verdict.as_deref() {
                    Some(before) => format!("interval {}: {before} → {v}", j.interval),
                    None => format!("interval {}: {v}", j.interval),
                };
                out.push((Event::Interim, format!("interim-{}", j.interval), message));
            }
            *last_verdict = Some(v);
        } else if e.kind == "event" {
            let Ok(ev) = serde_json::from_str::<EventHead>(&e.payload_json) else {
                continue;
            };
            let event = match ev.kind.as_str() {
                "created" => Event::Started,
                "finished" => Event::of_verdict(ev.verdict.as_deref()),
                "cancelled" => Event::Cancelled,
                "rollback" => Event::Rollback,
                "promote" => Event::Promote,
                _ => continue,
            };
            // One final verdict per analysis, whichever it is: `final` keys it, so an analysis
            // that finished once never sends a second verdict.
            let part = match event {
                Event::Fail
                | Event::Marginal
                | Event::Pass
                | Event::Inconclusive
                | Event::Error => "final".to_owned(),
                other => other.as_str().to_owned(),
            };
            out.push((event, part, ev.message));
        }
    }
    out
}

impl Notifier {
    /// A notifier with nothing known yet.
    pub fn new() -> Notifier {
        Notifier::default()
    }

    /// The counters `/metrics` reports.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Wakes the worker (rows were enqueued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`Notifier::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The outbox rows `entries` of analysis `id` cause. Blocking (reads the spec from `store`
    /// the first time an analysis is seen): call it in the blocking task that appends.
    pub fn outbox_rows(
        &self,
        store: &Store,
        id: &str,
        entries: &[NewEntry],
    ) -> Result<Vec<NewOutbox>, StoreError> {
        // Only entries that can cause a message are worth a lookup.
        if !entries
            .iter()
            .any(|e| e.kind == "event" || e.kind == "judgement")
        {
            return Ok(Vec::new());
        }
        let cached = lock(&self.known).get(id).cloned();
        let mut known = match cached {
            Some(k) => k,
            None => {
                let Some(row) = store.get(id)? else {
                    return Ok(Vec::new());
                };
                Known {
                    targets: Arc::new(targets_of_spec(&row.spec_json)),
                    last_verdict: row.verdict,
                }
            }
        };
        let mut rows = Vec::new();
        if !known.targets.is_empty() {
            for (event, part, message) in events_of(entries, &mut known.last_verdict) {
                for (i, t) in known.targets.iter().enumerate() {
                    if t.on.contains(&event) {
                        rows.push(NewOutbox {
                            key: format!("{id}/{part}/{i}"),
                            target: u32::try_from(i).unwrap_or(u32::MAX),
                            channel: t.channel().to_owned(),
                            event: event.as_str().to_owned(),
                            message: message.clone(),
                        });
                    }
                }
            }
        }
        // A finished analysis is forgotten (a later action event reads the spec again).
        let finished = entries.iter().any(|e| {
            e.state
                .as_deref()
                .is_some_and(|s| !matches!(s, "pending" | "running"))
        });
        let mut map = lock(&self.known);
        if finished {
            map.remove(id);
        } else {
            map.insert(id.to_owned(), known);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests;
