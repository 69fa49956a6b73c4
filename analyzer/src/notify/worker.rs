//! The delivery worker: a tokio task of `vigil serve` that takes due outbox rows, sends each and
//! marks it.
//!
//! # The crash window
//! A row is marked (delivered, retry at, or failed) in the step right after the receiver's
//! answer — one SQLite write, before the next row is touched. A crash before the answer leaves the
//! row pending: it is sent again after the restart (at least once). A crash after the answer and
//! before that write commits is the only case in which a receiver sees a message twice; the
//! window is that one write (about a millisecond). Webhook receivers can drop such a repeat by
//! `X-Vigil-Delivery`, email clients by `Message-ID`; Slack has no such key.
//!
//! One worker per store: rows are not leased, so two processes serving one data directory (which
//! the store does not support anyway) could both send a row.
//!
//! Rows are sent one after another (Slack accepts about one message per second per webhook
//! anyway); each attempt is bounded by [`super::send::ATTEMPT_TIMEOUT`].

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::content::Message;
use super::send::{Outcome, Sender};
use super::targets_of_spec;
use crate::service::runner::{now_ms, Core};
use crate::store::{OutboxMark, OutboxRow};

/// How the worker retries and what it links to.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base of the analysis page links (`--public-url`, else `http://<listen address>`).
    pub public_url: String,
    /// First retry delay; doubled per attempt.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Attempts before a message is given up.
    pub max_attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            public_url: "http://127.0.0.1:7700".into(),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            max_attempts: 20,
        }
    }
}

/// Rows taken per round.
const BATCH: u32 = 16;
/// Longest sleep between rounds when nothing is due (a wake-up comes sooner on new rows).
const IDLE: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (1-based): `base × 2^(attempt-1)` capped at `max`,
/// with "equal jitter" (between half and all of it), so that many failed messages do not come
/// back in one burst.
pub fn backoff(opts: &Options, attempt: u32, seed: u64) -> Duration {
    let exp = opts
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(opts.backoff_max);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seed);
    h.write_u32(attempt);
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    full.mul_f64(0.5 + 0.5 * frac)
}

/// Starts the worker over `core`'s store.
pub fn spawn(core: Arc<Core>, opts: Options) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { run(core, opts).await })
}

async fn run(core: Arc<Core>, opts: Options) {
    let sender = match Sender::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "notification worker not started");
            return;
        }
    };
    loop {
        let now = now_ms();
        let due = core.with_store(move |s| s.outbox_due(now, BATCH)).await;
        let (rows, next) = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if !rows.is_empty() {
            for row in rows {
                deliver(&core, &sender, &opts, row).await;
            }
            continue;
        }
        let wait = next.map_or(IDLE, |n| {
            Duration::from_millis(u64::try_from(n.saturating_sub(now_ms())).unwrap_or(0)).min(IDLE)
        });
        tokio::select! {
            () = core.notifier().woken() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn deliver(core: &Arc<Core>, sender: &Sender, opts: &Options, row: OutboxRow) {
    let id = row.analysis_id.clone();
    let read = core
        .with_store(move |s| {
            let Some(a) = s.get(&id)? else {
                return Ok(None);
            };
            let entries = s.entries_since(&id, 0, u32::MAX)?;
            Ok(Some((a, entries)))
        })
        .await;
    let outcome = match read {
        Err(e) => Outcome::Retry {
            after: None,
            error: format!("store: {e}"),
        },
        Ok(None) => Outcome::Permanent("the analysis was deleted".into()),
        Ok(Some((a, entries))) => {
            let targets = targets_of_spec(&a.spec_json);
            match usize::try_from(row.target)
                .ok()
                .and_then(|i| targets.get(i))
            {
                None => Outcome::Permanent(format!("the spec has no target {}", row.target)),
                Some(t) => {
                    let msg = Message::build(&a, &entries, &row, &opts.public_url);
                    sender.send(t, &msg).await
                }
            }
        }
    };
    let attempt = row.attempts.saturating_add(1);
    let (mark, outcome_name) = match outcome {
        Outcome::Delivered => (OutboxMark::Delivered, "delivered"),
        Outcome::Permanent(error) => (OutboxMark::Failed { error }, "failed"),
        Outcome::Retry { error, .. } if attempt >= opts.max_attempts => (
            OutboxMark::Failed {
                error: format!("gave up after {attempt} attempts: {error}"),
            },
            "failed",
        ),
        Outcome::Retry { after, error } => {
            let seed = row
                .key
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let d = after.unwrap_or_else(|| backoff(opts, attempt, seed));
            let next_ms = now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            (OutboxMark::Retry { next_ms, error }, "retried")
        }
    };
    // The mark, right after the answer: this write is the whole crash window (module docs).
    let key = row.key.clone();
    let m = mark.clone();
    let marked = core
        .with_store(move |s| s.outbox_mark(&key, now_ms(), &m))
        .await;
    core.snapshots().invalidate(&row.analysis_id);
    core.notifier().counters().count(&row.channel, outcome_name);
    match (&mark, marked) {
        (_, Err(e)) => tracing::error!(key = %row.key, error = %e, "cannot mark a notification"),
        (OutboxMark::Delivered, _) => tracing::info!(
            key = %row.key, channel = %row.channel, event = %row.event, attempt,
            "notification delivered"
        ),
        (OutboxMark::Retry { error, .. }, _) => tracing::warn!(
            key = %row.key, channel = %row.channel, attempt, error = %error,
            "notification failed; will retry"
        ),
        (OutboxMark::Failed { error }, _) => tracing::error!(
            key = %row.key, channel = %row.channel, attempt, error = %error,
            "notification given up"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let o = Options {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..Options::default()
        };
        for (attempt, full) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (4, 8.0),
            (5, 10.0),
            (30, 10.0),
        ] {
            for seed in 0..20 {
                let d = backoff(&o, attempt, seed).as_secs_f64();
                assert!(
                    d >= full * 0.5 - 1e-9 && d <= full + 1e-9,
                    "attempt {attempt}: {d}"
                );
            }
        }
    }
}
