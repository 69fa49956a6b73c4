//! The analysis runner: one task per unfinished analysis, judging it interval by interval on the
//! engine's session ([`Analysis`]) with the engine's [`Lifecycle`] (fail fast, the last interval
//! decides, time to detect). Each interim judgement and event is appended to the store before
//! watchers are woken, so a watcher never sees what a restart could lose.
//!
//! Time: interval `k` closes at `t0 + k × interval`. A window wholly in the past is judged at
//! once, interval by interval; otherwise each interval waits for the wall clock (plus one query
//! step of lateness, for the last scrape to land). Each interval queries the whole window so far
//! (a late sample still counts); a sample the session already holds is kept as first read.
//!
//! After a restart an analysis resumes at its next interval: the lifecycle is rebuilt from the
//! stored judgements and the session from the source, which keeps history. Pushed telemetry has
//! no such source (the hub holds it in memory): an analysis fed by it ends as Error instead,
//! saying why (`lost_pushed`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::metrics::{MetricSource, Sample, Side};
use super::record::{
    EventRecord, IntervalRecord, JudgementRecord, MetricDataRecord, SeriesRecord, MAX_SERIES_POINTS,
};
use super::spec::{OnInconclusive, Plan, Spec};
use super::store::{AnalysisRow, Feedback, NewEntry, Store, StoreError};
use crate::analysis::{Analysis, Batch, Lifecycle, Role};
use crate::telemetry::MetricSample;
use crate::verdict::{Judgement, Verdict};

/// Unix seconds now.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix milliseconds now.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the wall clock in ms fits an i64 for 292 million years"
)]
pub fn now_ms() -> i64 {
    (now_s() * 1000.0) as i64
}

/// Why a service call failed; the gRPC layer maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Malformed input; the message starts with the field.
    #[error("{0}")]
    Invalid(String),
    /// No such analysis.
    #[error("analysis `{0}` not found")]
    NotFound(String),
    /// The id is taken by a different spec.
    #[error("analysis `{0}` already exists with a different spec")]
    Conflict(String),
    /// Not in a state that allows it.
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("internal: {0}")]
    Internal(String),
}

struct Running {
    /// Held while an interval's entries are appended, and by a cancellation: a cancelled
    /// analysis never gets an entry after its `cancelled` event.
    lock: Arc<tokio::sync::Mutex<()>>,
    abort: Option<tokio::task::AbortHandle>,
}

/// The service's state: the store, the metric source, the running analyses and the watchers.
pub struct Core {
    store: Store,
    source: Arc<dyn MetricSource>,
    /// Per analysis, the last sequence number appended: watchers wait on it.
    hub: Mutex<HashMap<String, watch::Sender<u64>>>,
    running: Mutex<HashMap<String, Running>>,
    counters: super::routes::Counters,
    /// `GetAnalysis` answers; every write below invalidates what it changed.
    snapshots: Arc<super::snapshot::Snapshots>,
    /// Pushed telemetry (OTLP) routed to the running analyses that select by attributes.
    hub_ingest: Arc<crate::ingest::Hub>,
    /// Who carries out rollbacks and promotions (`None`: the service has no deployer, and an
    /// ordered action ends in an event saying so).
    deployer: std::sync::OnceLock<Arc<dyn crate::actions::Deployer>>,
    /// Which entries cause notifications (enqueued with them), and the worker's wake-up.
    notifier: Arc<crate::notify::Notifier>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts/removes).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The final state of an analysis whose lifecycle ended with `verdict`.
pub fn final_state(verdict: Verdict, policy: OnInconclusive) -> &'static str {
    match verdict {
        Verdict::Pass => "succeeded",
        Verdict::Fail | Verdict::Marginal => "failed",
        Verdict::Inconclusive if policy == OnInconclusive::Pass => "succeeded",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Error => "error",
    }
}

impl Core {
    /// A core over `store`, fetching metrics from `source`.
    pub fn new(store: Store, source: Arc<dyn MetricSource>) -> Arc<Core> {
        Core::with_hub(
            store,
            source,
            Arc::new(crate::ingest::Hub::new(crate::ingest::DEFAULT_BUDGET_BYTES)),
        )
    }

    /// A core whose analyses also take pushed telemetry from `ingest`.
    pub fn with_hub(
        store: Store,
        source: Arc<dyn MetricSource>,
        ingest: Arc<crate::ingest::Hub>,
    ) -> Arc<Core> {
        Arc::new(Core {
            store,
            source,
            hub: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            counters: super::routes::Counters::default(),
            snapshots: Arc::default(),
            hub_ingest: ingest,
            deployer: std::sync::OnceLock::new(),
            notifier: Arc::default(),
        })
    }

    /// Notifications: the outbox's producer side and the worker's wake-up.
    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }

    /// The deployer, if the service has one.
    pub(crate) fn deployer(&self) -> Option<&Arc<dyn crate::actions::Deployer>> {
        self.deployer.get()
    }

    /// Sets the deployer that carries out rollbacks and promotions (once, before
    /// [`Core::resume_all`]); returns false if one was set already.
    pub fn set_deployer(&self, deployer: Arc<dyn crate::actions::Deployer>) -> bool {
        self.deployer.set(deployer).is_ok()
    }

    /// Where pushed telemetry is routed.
    pub fn ingest(&self) -> &Arc<crate::ingest::Hub> {
        &self.hub_ingest
    }

    /// The cache of `GetAnalysis` answers.
    pub fn snapshots(&self) -> &super::snapshot::Snapshots {
        &self.snapshots
    }

    /// The cache, for a blocking task that writes and must invalidate.
    pub(crate) fn snapshots_arc(&self) -> Arc<super::snapshot::Snapshots> {
        self.snapshots.clone()
    }

    /// The counters `/metrics` reports.
    pub fn counters(&self) -> &super::routes::Counters {
        &self.counters
    }

    /// Runs `f` on the store off the async workers (the store is synchronous).
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(ServiceError::from)
    }

    /// A receiver woken with the last sequence number whenever `id` gets entries.
    pub fn subscribe(&self, id: &str) -> watch::Receiver<u64> {
        let mut hub = lock(&self.hub);
        hub.entry(id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, id: &str, seq: u64) {
        let mut hub = lock(&self.hub);
        if let Some(tx) = hub.get(id) {
            tx.send_replace(seq);
            if tx.receiver_count() == 0 {
                hub.remove(id);
            }
        }
    }

    /// Appends `entries` to `id` and wakes its watchers.
    pub async fn append(&self, id: &str, entries: Vec<NewEntry>) -> Result<u64, ServiceError> {
        let key = id.to_owned();
        for e in &entries {
            if e.kind == "judgement" {
                if let Some(v) = &e.verdict {
                    self.counters.judgement(v);
                }
            }
        }
        let t = std::time::Instant::now();
        let snapshots = self.snapshots.clone();
        let notifier = self.notifier.clone();
        let (seq, enqueued) = self
            .with_store(move |s| {
                // The messages these entries cause go into the same transaction as they do.
                let outbox = notifier.outbox_rows(s, &key, &entries)?;
                let seq = s
                    .append_with_outbox(&key, &entries, &outbox)
                    .map(|seq| (seq, !outbox.is_empty()));
                // In the blocking task, so that a caller dropped mid-write cannot skip it.
                snapshots.invalidate(&key);
                seq
            })
            .await?;
        self.counters
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counters.append_us.fetch_add(
            u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.notify(id, seq);
        if enqueued {
            self.notifier.wake();
        }
        Ok(seq)
    }

    /// Starts the runner of `row` (a new analysis, or one resumed after a restart).
    pub fn start(self: &Arc<Self>, row: AnalysisRow, spec: Spec) {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let id = row.id.clone();
        {
            let mut running = lock_map(&self.running);
            if running.contains_key(&id) {
                return;
            }
            running.insert(
                id.clone(),
                Running {
                    lock: lock.clone(),
                    abort: None,
                },
            );
        }
        if spec.pushed() {
            if let Ok(plan) = spec.plan(row.created_ms as f64 / 1000.0) {
                self.route_pushed(&id, &spec, &plan);
                self.mark_first_record(&id);
            }
        }
        let core = self.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = core.run(row, spec, lock).await {
                tracing::error!(analysis = %task_id, error = %e, "analysis runner stopped");
            }
            core.hub_ingest.unregister(&task_id);
            lock_map(&core.running).remove(&task_id);
        });
        if let Some(r) = lock_map(&self.running).get_mut(&id) {
            r.abort = Some(handle.abort_handle());
        }
    }

    /// Stores an event the moment the first pushed record reaches `id`: after a restart, that
    /// event says the analysis had data the hub held in memory, now lost (`lost_pushed`).
    /// (A crash between the record's acceptance and this write is the one way to lose it
    /// silently: a few milliseconds, once per analysis.)
    fn mark_first_record(self: &Arc<Self>, id: &str) {
        let Some(first) = self.hub_ingest.first_record(id) else {
            return;
        };
        let (core, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            // An error: the analysis ended before any record came.
            if first.await.is_ok() {
                let key = id.clone();
                let state = match core.with_store(move |s| s.get(&key)).await {
                    Ok(Some(row)) => row.state,
                    _ => return,
                };
                let ev = EventRecord {
                    kind: RECEIVING.into(),
                    message: "the first pushed records arrived (held in memory until judged)"
                        .into(),
                    state,
                    verdict: None,
                    score: None,
                    time_to_detect_s: None,
                    intervals_total: None,
                };
                let mut entry = event_entry(&ev, None);
                // An event beside the lifecycle: it changes no state.
                entry.state = None;
                if let Err(e) = core.append(&id, vec![entry]).await {
                    tracing::warn!(analysis = %id, error = %e, "could not store the first pushed record's arrival");
                }
            }
        });
    }

    /// Whether an event of `kind` is stored for `id`.
    async fn has_stored_event(&self, id: &str, kind: &'static str) -> Result<bool, ServiceError> {
        let key = id.to_owned();
        let entries = self
            .with_store(move |s| s.entries_since(&key, 0, u32::MAX))
            .await?;
        Ok(has_event(&entries, kind))
    }

    /// Resumes every unfinished analysis of the store (at start-up), and every rollback or
    /// promotion that a finished analysis ordered and that did not complete.
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, ServiceError> {
        super::action::resume(self).await?;
        let rows = self.with_store(|s| s.unfinished()).await?;
        let mut n = 0;
        for row in rows {
            let outcome = match Spec::parse(&row.spec_json) {
                Err(e) => Err(format!("stored spec no longer valid: {e}")),
                Ok(spec) if spec.pushed() && self.has_stored_event(&row.id, RECEIVING).await? => {
                    Err(lost_pushed(&row))
                }
                Ok(spec) => Ok(spec),
            };
            match outcome {
                Ok(spec) => {
                    self.start(row, spec);
                    n += 1;
                }
                Err(message) => {
                    let ev = EventRecord {
                        kind: "finished".into(),
                        message,
                        state: "error".into(),
                        verdict: Some("Error".into()),
                        score: None,
                        time_to_detect_s: None,
                        intervals_total: None,
                    };
                    self.append(&row.id, vec![event_entry(&ev, Some(now_ms()))])
                        .await?;
                }
            }
        }
        Ok(n)
    }

    /// Cancels a pending or running analysis.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<(), ServiceError> {
        let running_lock = lock_map(&self.running).get(id).map(|r| r.lock.clone());
        let _guard = match &running_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let key = id.to_owned();
        let row = self
            .with_store(move |s| s.get(&key))
            .await?
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        if super::record::is_final_state(&row.state) {
            return Err(ServiceError::Precondition(format!(
                "analysis `{id}` already finished ({})",
                row.state
            )));
        }
        if let Some(r) = lock_map(&self.running).remove(id) {
            if let Some(a) = r.abort {
                a.abort();
            }
        }
        self.hub_ingest.unregister(id);
        let ev = EventRecord {
            kind: "cancelled".into(),
            message: if reason.is_empty() {
                "cancelled".into()
            } else {
                format!("cancelled: {reason}")
            },
            state: "cancelled".into(),
            verdict: row.verdict.clone(),
            score: row.score,
            time_to_detect_s: None,
            intervals_total: None,
        };
        self.append(id, vec![event_entry(&ev, Some(now_ms()))])
            .await?;
        Ok(())
    }

    /// Deletes analyses finished more than `retention` ago; returns how many.
    pub async fn sweep(&self, retention: Duration) -> Result<usize, ServiceError> {
        let cutoff =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let snapshots = self.snapshots.clone();
        self.with_store(move |s| {
            let purged = s.purge_finished_before(cutoff);
            if !matches!(purged, Ok(0)) {
                snapshots.clear();
            }
            purged
        })
        .await
    }

    async fn fetch(
        &self,
        spec: &Spec,
        side: Side,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Sample>, String> {
        // Align to the step, as Prometheus does, so that every interval reads the same rows.
        let a = (start / step).ceil() * step;
        let b = (end / step).floor() * step;
        if b < a {
            return Ok(Vec::new());
        }
        self.source.fetch(spec, side, a, b, step).await
    }

    async fn run(
        self: &Arc<Self>,
        row: AnalysisRow,
        spec: Spec,
        lock: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<(), ServiceError> {
        let id = row.id.clone();
        let plan = spec
            .plan(row.created_ms as f64 / 1000.0)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let mut life = Lifecycle::new();
        let mut total = plan.intervals;
        let mut k = row.next_interval.max(1);
        if k > 1 {
            let key = id.clone();
            let entries = self
                .with_store(move |s| s.entries_since(&key, 0, u32::MAX))
                .await?;
            for e in &entries {
                if e.kind == "judgement" {
                    if let Ok(rec) = serde_json::from_str::<IntervalRecord>(&e.payload_json) {
                        if rec.interval < k {
                            life.record(rec.elapsed_s, stub(&rec.judgement));
                        }
                    }
                } else if let Ok(ev) = serde_json::from_str::<EventRecord>(&e.payload_json) {
                    if let Some(t) = ev.intervals_total {
                        total = t;
                    }
                }
            }
            let ev = EventRecord {
                kind: "resumed".into(),
                message: format!("resumed at interval {k} after a restart"),
                state: row.state.clone(),
                verdict: None,
                score: None,
                time_to_detect_s: None,
                intervals_total: None,
            };
            self.append(&id, vec![event_entry(&ev, None)]).await?;
        }
        // The session, with the modalities it was built for and the feedback it applies.
        let mut session: Option<(super::spec::Pushed, String, Analysis)> = None;
        // Pushed telemetry: routed here while the analysis runs. It counts against the hub's
        // budget from the moment it is routed until the session has reduced it to its judges'
        // state: each interval's drained records are released after that interval's judgement
        // (those stamped after its end, which the session keeps pending, after the next one).
        // Feedback changes a running session in place (`set_metric_rules`); only a modality
        // seen for the first time rebuilds it, from `history`, which is therefore kept (and
        // stays counted) only while a side's records are undeclared and some modality unseen.
        let pushed = spec.pushed();
        if pushed {
            self.route_pushed(&id, &spec, &plan);
        }
        let event_clock = pushed && spec.clock == super::spec::Clock::Event;
        if event_clock && self.input_ended(&id).await? {
            // Stored, so that a restart does not wait for input the client already ended.
            self.hub_ingest.end_input(&id);
        }
        let mut history: Vec<(Role, crate::ingest::Drained)> = Vec::new();
        let mut history_bytes = 0usize;
        let mut carried = 0usize;
        let mut action = None;
        let mut seen = super::spec::Pushed::default();
        loop {
            let end = plan.end_of(k);
            let elapsed = plan.elapsed_of(k);
            let lateness = plan.step.min(10.0);
            let wait = end + lateness - now_s();
            if event_clock {
                self.wait_for_watermark(&id, end).await;
            } else if end > now_s() - lateness && wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            // Feedback as of this interval: a session is rebuilt when it changed.
            let app = spec.app.clone();
            let feedback = self
                .with_store(move |s| s.feedback_for(&app, now_ms()))
                .await?;
            // Pushed telemetry up to this interval's end; a modality seen for the first time
            // rebuilds the session with it declared.
            let drained = if pushed {
                let (hub, key) = (self.hub_ingest.clone(), id.clone());
                // Sorting and converting an interval's records is CPU work too.
                tokio::task::spawn_blocking(move || hub.drain(&key, end))
                    .await
                    .map_err(|e| ServiceError::Internal(format!("draining interval {k}: {e}")))?
            } else {
                None
            };
            for d in drained.iter().flatten() {
                seen.logs |= !d.logs.is_empty();
                seen.spans |= d.spans.iter().any(|s| s.caller.is_none());
                seen.callers |= d.spans.iter().any(|s| s.caller.is_some());
            }
            // Sides that declare what they record do not change with what arrived.
            let declared = spec.baseline.records.is_some() && spec.canary.records.is_some();
            let modalities = if declared {
                super::spec::Pushed::default()
            } else {
                seen
            };
            let fb_key = format!("{feedback:?}");
            let mut aspec = spec.analysis_spec_with(&plan, seen);
            apply_feedback(&mut aspec.judges, &feedback);
            match &mut session {
                Some((m, key, analysis)) if *m == modalities => {
                    if *key != fb_key {
                        analysis.set_metric_rules(aspec.judges.metrics.clone());
                        *key = fb_key.clone();
                    }
                }
                _ => {
                    let mut fresh = Analysis::new(aspec);
                    // The judges read their incremental state, never the records (tested in
                    // `analysis`: the same judgements either way): the session keeps none.
                    fresh.keep_records(false);
                    // An interval of pushed lines is mined on every core: the pattern miner
                    // is what bounds how many log records a second the service sustains.
                    fresh.mining_threads(0);
                    for (role, d) in &history {
                        ingest_pushed(&mut fresh, *role, d.clone());
                    }
                    session = Some((modalities, fb_key, fresh));
                }
            }
            let Some((session_mods, session_key, mut analysis)) = session.take() else {
                continue;
            };
            let (b_start, b_end) = plan.baseline_window.unwrap_or((plan.t0, end));
            let (base, can) = tokio::join!(
                self.fetch(&spec, Side::Baseline, b_start + plan.step, b_end, plan.step),
                self.fetch(&spec, Side::Canary, plan.t0 + plan.step, end, plan.step),
            );
            let data = data_counts(&spec, &base, &can, b_end, end);
            // What earlier intervals stored: the canary (and a concurrent baseline) up to the
            // previous interval's end; a fixed baseline window entirely, after the first.
            let c_from = if k == 1 {
                f64::NEG_INFINITY
            } else {
                plan.end_of(k - 1)
            };
            let b_from = match (plan.baseline_window, k) {
                (None, _) => c_from,
                (Some(_), 1) => f64::NEG_INFINITY,
                (Some(_), _) => f64::INFINITY,
            };
            let mut series = new_series(&spec, "baseline", &base, b_from, b_end);
            series.extend(new_series(&spec, "canary", &can, c_from, end));
            let mut pushed_now = Vec::new();
            // Bytes to hand back to the hub once this interval is judged.
            let mut release = std::mem::take(&mut carried);
            let all_seen = seen.logs && seen.spans && seen.callers;
            let keep_history = !declared && !all_seen;
            if let Some(sides) = drained {
                for (role, d) in [Role::Baseline, Role::Canary].into_iter().zip(sides) {
                    if keep_history {
                        // Held (and counted) as long as the history is.
                        history_bytes += d.held_bytes;
                        history.push((role, d.clone()));
                    } else {
                        release += d.held_bytes - d.held_after;
                        carried += d.held_after;
                    }
                    pushed_now.push((role, d));
                }
            }
            if !keep_history && !history.is_empty() {
                history = Vec::new();
                release += std::mem::take(&mut history_bytes);
            }
            // Ingesting an interval's pushed records and judging are CPU work that can take a
            // while (hundreds of thousands of log lines to mine): off the async workers, so the
            // OTLP receivers and the API on them keep answering meanwhile.
            let (analysis, judgement) = tokio::task::spawn_blocking(move || {
                for (role, d) in pushed_now {
                    ingest_pushed(&mut analysis, role, d);
                }
                let judgement = match (base, can) {
                    (Ok(b), Ok(c)) => {
                        ingest(&mut analysis, Role::Baseline, &b);
                        ingest(&mut analysis, Role::Canary, &c);
                        analysis
                            .judge(elapsed)
                            .cloned()
                            .unwrap_or_else(|| error_judgement("the analysis had already failed"))
                    }
                    (Err(e), _) => error_judgement(&format!("source error (baseline): {e}")),
                    (_, Err(e)) => error_judgement(&format!("source error (canary): {e}")),
                };
                (analysis, judgement)
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("judging interval {k}: {e}")))?;
            session = Some((session_mods, session_key, analysis));
            if pushed && release > 0 {
                self.hub_ingest.release(&id, release);
            }
            let mut jrec = JudgementRecord::from_judgement(&judgement);
            annotate(&mut jrec, &feedback);
            life.record(elapsed, judgement.clone());
            let rec = IntervalRecord {
                interval: k,
                elapsed_s: elapsed,
                window_start: plan.t0,
                window_end: end,
                judgement: jrec,
                data,
                series,
            };
            let at = now_ms();
            let mut entries = vec![NewEntry {
                kind: "judgement".into(),
                payload_json: serde_json::to_string(&rec).unwrap_or_default(),
                state: Some("running".into()),
                verdict: Some(judgement.verdict.as_str().into()),
                score: Some(judgement.score),
                next_interval: Some(k + 1),
                finished_ms: None,
                at_ms: at,
            }];
            let extending = total > plan.intervals;
            let decided = extending && judgement.verdict != Verdict::Inconclusive;
            let mut done = false;
            if life.is_done() || k >= total || decided {
                let outcome = life.outcome();
                let can_extend = spec.on_inconclusive == OnInconclusive::Extend
                    && !extending
                    && plan.extra_intervals > 0
                    && outcome.verdict == Verdict::Inconclusive;
                if can_extend {
                    total = plan.intervals + plan.extra_intervals;
                    entries.push(event_entry(
                        &EventRecord {
                            kind: "extended".into(),
                            message: format!(
                                "Inconclusive at the end of the lifetime; extended by {} intervals (on_inconclusive: extend)",
                                plan.extra_intervals
                            ),
                            state: "running".into(),
                            verdict: Some(outcome.verdict.as_str().into()),
                            score: Some(outcome.score),
                            time_to_detect_s: None,
                            intervals_total: Some(total),
                        },
                        None,
                    ));
                } else {
                    action = super::action::order(self, &id, &spec, outcome.verdict).await?;
                    let state = final_state(outcome.verdict, spec.on_inconclusive);
                    let message = finish_message(&outcome.verdict, state, &spec, &outcome.note);
                    entries.push(event_entry(
                        &EventRecord {
                            kind: "finished".into(),
                            message,
                            state: state.into(),
                            verdict: Some(outcome.verdict.as_str().into()),
                            score: Some(outcome.score),
                            time_to_detect_s: outcome.time_to_detect_s,
                            intervals_total: None,
                        },
                        Some(at),
                    ));
                    done = true;
                }
            }
            {
                let _g = lock.lock().await;
                self.append(&id, entries).await?;
            }
            tracing::debug!(analysis = %id, interval = k, verdict = judgement.verdict.as_str(), "interval judged");
            if done {
                if let Some((a, dry_run)) = action {
                    let reason = format!(
                        "verdict {} (score {:.1})",
                        life.outcome().verdict.as_str(),
                        life.outcome().score
                    );
                    super::action::run(self, &id, &spec, a, dry_run, reason, false).await?;
                }
                return Ok(());
            }
            k += 1;
        }
    }
}

impl Core {
    /// Routes pushed telemetry to `id` from now on (idempotent): before the runner's task
    /// starts, so that nothing a client pushes right after creating the analysis is dropped.
    fn route_pushed(&self, id: &str, spec: &Spec, plan: &Plan) {
        let step = plan.step;
        let m = |s: &super::spec::ScopeSpec| -> Vec<(String, String)> {
            s.attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        self.hub_ingest
            .register(id, m(&spec.baseline), m(&spec.canary), step);
        let w = |s: &super::spec::ScopeSpec| {
            s.window.as_ref().and_then(|w| {
                Some((
                    crate::telemetry::parse_time(&w.start)?,
                    crate::telemetry::parse_time(&w.end)?,
                ))
            })
        };
        self.hub_ingest
            .set_windows(id, [w(&spec.baseline), w(&spec.canary)]);
        // The same origin at every call (the plan's), so a second call moves nothing.
        self.hub_ingest.align(id, plan.t0);
    }

    /// Waits until the pushed data of event-time analysis `id` passed `end` (a record stamped at
    /// or after it arrived: pushed in time order, everything before it is in) or its input
    /// ended. Polled: an interval closes within a few milliseconds of its watermark.
    async fn wait_for_watermark(&self, id: &str, end: f64) {
        while let Some((watermark, ended)) = self.hub_ingest.progress(id) {
            if ended || watermark >= end {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the client ended the input of `id` (an `input_ended` event is stored).
    async fn input_ended(&self, id: &str) -> Result<bool, ServiceError> {
        self.has_stored_event(id, "input_ended").await
    }

    /// Ends the pushed input of event-time analysis `id`: its remaining intervals close on
    /// what it received. Stored as an `input_ended` event, so a restart keeps it.
    pub async fn end_input(&self, id: &str) -> Result<(), ServiceError> {
        let key = id.to_owned();
        let row = self
            .with_store(move |s| s.get(&key))
            .await?
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        let spec = Spec::parse(&row.spec_json).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if !(spec.pushed() && spec.clock == super::spec::Clock::Event) {
            return Err(ServiceError::Precondition(format!(
                "analysis `{id}` does not run on event time (its spec has no `clock: event`)"
            )));
        }
        if super::record::is_final_state(&row.state) {
            return Ok(());
        }
        if !self.input_ended(id).await? {
            let ev = EventRecord {
                kind: "input_ended".into(),
                message: "end of input: the remaining intervals close on the data received".into(),
                state: row.state.clone(),
                verdict: None,
                score: None,
                time_to_detect_s: None,
                intervals_total: None,
            };
            self.append(id, vec![event_entry(&ev, None)]).await?;
        }
        self.hub_ingest.end_input(id);
        Ok(())
    }
}

fn lock_map<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock(m)
}

fn finish_message(verdict: &Verdict, state: &str, spec: &Spec, note: &Option<String>) -> String {
    let mut m = format!("finished {}: {state}", verdict.as_str());
    if *verdict == Verdict::Inconclusive {
        m.push_str(&format!(
            " (on_inconclusive: {})",
            match spec.on_inconclusive {
                OnInconclusive::Fail => "fail",
                OnInconclusive::Pass => "pass",
                OnInconclusive::Extend => "extend",
            }
        ));
    }
    if let Some(n) = note {
        m.push_str(&format!("; {n}"));
    }
    m
}

/// An entry for an event; `finished_ms` set for a final one.
pub fn event_entry(ev: &EventRecord, finished_ms: Option<i64>) -> NewEntry {
    let final_state = super::record::is_final_state(&ev.state);
    NewEntry {
        kind: "event".into(),
        payload_json: serde_json::to_string(ev).unwrap_or_default(),
        state: Some(ev.state.clone()),
        verdict: if final_state {
            ev.verdict.clone()
        } else {
            None
        },
        score: if final_state { ev.score } else { None },
        next_interval: None,
        finished_ms: if final_state { finished_ms } else { None },
        at_ms: now_ms(),
    }
}

/// Whether `entries` hold an event of `kind`.
pub(crate) fn has_event(entries: &[super::store::Entry], kind: &str) -> bool {
    entries.iter().any(|e| {
        e.kind == "event"
            && serde_json::from_str::<EventRecord>(&e.payload_json).is_ok_and(|ev| ev.kind == kind)
    })
}

/// The event kind that says an analysis's first pushed record arrived.
const RECEIVING: &str = "receiving";

/// Why an unfinished analysis that had received pushed records cannot resume after a restart:
/// the hub holds them in memory (no spool yet), so they are gone, and judging what arrives after
/// the restart would be a verdict on partial data — which the service never gives
/// (`design/service.md`, Durability). It ends as Error saying so. An analysis that had received
/// nothing has lost nothing and resumes.
fn lost_pushed(row: &AnalysisRow) -> String {
    format!(
        "the service restarted before interval {} was judged: the pushed telemetry this analysis \
         had received was held in memory and is lost (pushed data is not spooled to disk yet), \
         and a verdict on what arrives after the restart would judge partial data; push it again \
         into a new analysis",
        row.next_interval.max(1)
    )
}

/// A judgement for an interval the source could not deliver: Error, with why.
pub fn error_judgement(why: &str) -> Judgement {
    Judgement {
        verdict: Verdict::Error,
        score: 0.0,
        evidence: vec![],
        findings: vec![],
        signal_scores: vec![],
        note: Some(why.to_owned()),
    }
}

/// A stored interval's verdict and score, for rebuilding the lifecycle after a restart (only the
/// last interval's evidence matters, and the next interval supersedes it).
fn stub(j: &JudgementRecord) -> Judgement {
    Judgement {
        verdict: super::record::verdict_of(&j.verdict).unwrap_or(Verdict::Error),
        score: j.score,
        evidence: vec![],
        findings: vec![],
        signal_scores: vec![],
        note: j.note.clone(),
    }
}

fn ingest(analysis: &mut Analysis, role: Role, samples: &[Sample]) {
    for s in samples {
        let one = [MetricSample {
            time: s.time,
            name: &s.name,
            value: s.value,
        }];
        // A reading the session already holds differently is kept as first read (a source may
        // revise the newest point of a growing window); an infinite value is no reading.
        if let Err(e) = analysis.ingest(
            role,
            Batch {
                metrics: &one,
                ..Batch::default()
            },
        ) {
            tracing::debug!(error = %e, "sample not ingested");
        }
    }
}

/// Takes one side's pushed telemetry into the session. A metric reading the session already
/// holds differently (a point for a step already judged) is kept as first read.
fn ingest_pushed(analysis: &mut Analysis, role: Role, d: crate::ingest::Drained) {
    let samples: Vec<MetricSample<'_>> = d
        .metrics
        .iter()
        .map(|(time, name, value)| MetricSample {
            time: *time,
            name,
            value: *value,
        })
        .collect();
    for one in samples.chunks(1) {
        if let Err(e) = analysis.ingest(
            role,
            Batch {
                metrics: one,
                ..Batch::default()
            },
        ) {
            tracing::debug!(error = %e, "pushed sample not ingested");
        }
    }
    if let Err(e) = analysis.ingest(
        role,
        Batch {
            metrics: &[],
            logs: d.logs,
            spans: d.spans,
        },
    ) {
        tracing::debug!(error = %e, "pushed records not ingested");
    }
}

fn data_counts(
    spec: &Spec,
    base: &Result<Vec<Sample>, String>,
    can: &Result<Vec<Sample>, String>,
    b_end: f64,
    c_end: f64,
) -> Vec<MetricDataRecord> {
    fn count(r: &Result<Vec<Sample>, String>, end: f64) -> BTreeMap<&str, u32> {
        let mut m: BTreeMap<&str, u32> = BTreeMap::new();
        if let Ok(v) = r {
            for s in v.iter().filter(|s| !s.value.is_nan() && s.time < end) {
                *m.entry(s.name.as_str()).or_default() += 1;
            }
        }
        m
    }
    let (b, c) = (count(base, b_end), count(can, c_end));
    spec.metrics
        .iter()
        .map(|m| MetricDataRecord {
            name: m.name.clone(),
            baseline_samples: b.get(m.name.as_str()).copied().unwrap_or(0),
            canary_samples: c.get(m.name.as_str()).copied().unwrap_or(0),
        })
        .collect()
}

/// Per metric of the spec, the readings of `fetched` in `[from, to)` (at most
/// [`MAX_SERIES_POINTS`], evenly thinned); metrics without one are left out.
fn new_series(
    spec: &Spec,
    side: &str,
    fetched: &Result<Vec<Sample>, String>,
    from: f64,
    to: f64,
) -> Vec<SeriesRecord> {
    let Ok(samples) = fetched else {
        return Vec::new();
    };
    spec.metrics
        .iter()
        .filter_map(|m| {
            let mut points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| {
                    s.name == m.name && s.time >= from && s.time < to && s.value.is_finite()
                })
                .map(|s| (s.time, s.value))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if points.len() > MAX_SERIES_POINTS {
                let n = points.len().div_ceil(MAX_SERIES_POINTS);
                points = points.into_iter().step_by(n).collect();
            }
            (!points.is_empty()).then(|| SeriesRecord {
                name: m.name.clone(),
                side: side.into(),
                points,
            })
        })
        .collect()
}

/// Feedback on metric findings changes how they are judged: a false positive only warns, a
/// critical one fails.
pub fn apply_feedback(judges: &mut crate::judge::JudgeConfig, feedback: &[Feedback]) {
    for f in feedback {
        let Some(name) = f.subject.strip_prefix("metric:") else {
            continue;
        };
        let Some(mut s) = judges.metrics.spec(name) else {
            continue;
        };
        s.critical = f.kind == "critical";
        judges.metrics.overrides.insert(name.to_owned(), Some(s));
    }
}

/// Says in each finding which feedback applied to it.
pub fn annotate(j: &mut JudgementRecord, feedback: &[Feedback]) {
    for f in j.evidence.iter_mut().chain(j.findings.iter_mut()) {
        if let Some(fb) = feedback.iter().find(|fb| fb.subject == f.key) {
            f.feedback = Some(format!(
                "{}: {} (until {})",
                fb.kind,
                fb.note,
                crate::telemetry::format_time(fb.expires_ms as f64 / 1000.0)
            ));
        }
    }
}

/// The plan of a stored analysis (for the intervals it holds).
pub fn plan_of(row: &AnalysisRow) -> Option<(Spec, Plan)> {
    let spec = Spec::parse(&row.spec_json).ok()?;
    let plan = spec.plan(row.created_ms as f64 / 1000.0).ok()?;
    Some((spec, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_series_keep_the_new_readings_and_are_bounded() {
        let spec = Spec::parse(
            "app: a\nprometheus: {url: \"http://127.0.0.1:9\"}\nbaseline: {labels: {v: \"1\"}}\n\
             canary: {labels: {v: \"2\"}}\nlifetime: 1h\n\
             metrics: [{name: m, query: \"m{${scope}}\", direction: increase}]\n",
        )
        .unwrap();
        // 1000 readings at 1 s, one NaN, one of another metric.
        let mut samples: Vec<Sample> = (0..1000)
            .map(|i| Sample {
                time: f64::from(i),
                name: "m".into(),
                value: if i == 5 { f64::NAN } else { f64::from(i) },
            })
            .collect();
        samples.push(Sample {
            time: 3.0,
            name: "other".into(),
            value: 1.0,
        });
        let fetched = Ok(samples);
        // [0, 10): ten readings less the NaN.
        let s = new_series(&spec, "canary", &fetched, 0.0, 10.0);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].name.as_str(), s[0].side.as_str()), ("m", "canary"));
        let times: Vec<f64> = s[0].points.iter().map(|p| p.0).collect();
        assert_eq!(times, [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]);
        // All 1000 (less the NaN): thinned to every 9th, 111 points.
        let s = new_series(&spec, "canary", &fetched, f64::NEG_INFINITY, 1e9);
        assert_eq!(s[0].points.len(), 111);
        assert!(s[0].points.len() <= MAX_SERIES_POINTS);
        // The 10th kept reading: 5 is missing, so it is 10.
        assert_eq!(s[0].points[1], (10.0, 10.0));
        // Nothing new, or a source error: nothing stored.
        assert!(new_series(&spec, "canary", &fetched, 2000.0, 3000.0).is_empty());
        assert!(new_series(&spec, "canary", &Err("down".into()), 0.0, 10.0).is_empty());
    }
}
