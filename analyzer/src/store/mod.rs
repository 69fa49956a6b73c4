//! The service's durable state: analyses (spec, lifecycle state, where to resume), every interim
//! judgement and event of each, and feedback — in an embedded SQLite database under `--data-dir`.
//!
//! This module is the only place that knows the backend: its API speaks in plain Rust types (no
//! SQLite type appears in it), so that PostgreSQL can take its place when several replicas must
//! share state. JSON payloads (`spec_json`, `payload_json`) are opaque strings here; the service
//! decides their shape.
//!
//! # Durability
//! Every write is one transaction and returns only after it committed. The database runs in WAL
//! mode with `synchronous = FULL` by default ([`Durability::Full`]): each commit fsyncs the
//! write-ahead log before it returns, so an acknowledged write survives a process crash (`kill -9`)
//! *and* an OS crash or power loss (given a disk that honours fsync). [`Durability::Normal`] skips
//! that fsync: still safe against a process crash, but a power loss may roll back the last
//! commits (never corrupting the file). `tests/store_crash.rs` kills a writer process with SIGKILL
//! mid-stream and checks that every acknowledged write is there.
//!
//! # Concurrency
//! [`Store`] is a cheap `Clone` (an `Arc`) and `Send + Sync`; its methods block, so async callers
//! run them in `tokio::task::spawn_blocking`. Writes go through one writer connection behind a
//! mutex — SQLite allows one writer at a time anyway, and taking the in-process mutex first means
//! the file lock is never contended inside one process. Reads use a small pool of separate
//! connections, which in WAL mode see the last committed state without waiting for the writer.
//! An in-memory store has a single connection for both.

mod actions;
mod error;
mod migrations;
mod page;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

pub use actions::ActionRow;
pub use error::{BackendError, IoError, StoreError};
pub use migrations::SCHEMA_VERSION;

use error::{sql, sql_op};

/// The database file inside the data directory.
pub const DB_FILE: &str = "vigil.db";

/// The states the store treats as not finished: [`Store::unfinished`] returns them and
/// [`Store::purge_finished_before`] never deletes them. Every other state is final.
pub const UNFINISHED_STATES: [&str; 2] = ["pending", "running"];

/// The state of a newly created analysis.
pub const INITIAL_STATE: &str = "pending";

/// How long a write waits for another process holding the database lock before it fails as busy.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept open for reuse; more are opened on demand and closed after use.
const MAX_IDLE_READERS: usize = 4;

/// `ListFilter::page_size` of 0 means this many (as in Google's AIP-158, which the gRPC API follows).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Larger page sizes are lowered to this.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// When a commit counts as durable (SQLite's `synchronous` setting in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit. An acknowledged write survives a
    /// process crash and a power loss or OS crash. Costs one fsync per write.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the WAL is fsynced only at checkpoints. An acknowledged write
    /// survives a process crash (the data is in the OS page cache), but a power loss or OS crash may
    /// roll back the most recent commits; the database stays consistent either way.
    Normal,
}

/// How to open a store on disk.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The `synchronous` level (default [`Durability::Full`]).
    pub durability: Durability,
    /// How long to wait for a lock held by another process (default [`DEFAULT_BUSY_TIMEOUT`]).
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// An analysis to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnalysis {
    /// Client-chosen or service-assigned id; the primary key.
    pub id: String,
    /// The application under analysis (listing filter, feedback scope).
    pub app: String,
    /// The spec as the service canonicalised it: creation is idempotent on byte-equal specs.
    pub spec_json: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// What [`Store::create_analysis`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// A new analysis, in state [`INITIAL_STATE`].
    Created(AnalysisRow),
    /// The id existed with a byte-identical spec: nothing was written; this is the stored row.
    Existing(AnalysisRow),
    /// The id existed with a different spec: nothing was written; this is the stored row.
    Conflict(AnalysisRow),
}

/// An analysis as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    /// The id.
    pub id: String,
    /// The application.
    pub app: String,
    /// The spec, byte for byte as created.
    pub spec_json: String,
    /// Lifecycle state; the service defines the set, the store only knows [`UNFINISHED_STATES`].
    pub state: String,
    /// The latest verdict, if any.
    pub verdict: Option<String>,
    /// The latest score, if any.
    pub score: Option<f64>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Time of the last change (the latest entry's `at_ms`, never earlier than before).
    pub updated_ms: i64,
    /// When the analysis finished, if it did.
    pub finished_ms: Option<i64>,
    /// Highest entry sequence number (0 = no entries).
    pub last_seq: u64,
    /// Where a restarted analysis resumes.
    pub next_interval: u32,
}

impl AnalysisRow {
    /// True when the state is final (not one of [`UNFINISHED_STATES`]).
    pub fn is_finished(&self) -> bool {
        !UNFINISHED_STATES.contains(&self.state.as_str())
    }
}

/// One interim judgement or event, appended together with the state change it causes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// `"judgement"` or `"event"` (opaque to the store, must not be empty).
    pub kind: String,
    /// The entry's content.
    pub payload_json: String,
    /// New lifecycle state, or `None` to keep it.
    pub state: Option<String>,
    /// New verdict, or `None` to keep it.
    pub verdict: Option<String>,
    /// New score (finite), or `None` to keep it.
    pub score: Option<f64>,
    /// New resume point, or `None` to keep it.
    pub next_interval: Option<u32>,
    /// Finish time, or `None` to keep it.
    pub finished_ms: Option<i64>,
    /// When it happened, Unix ms.
    pub at_ms: i64,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the analysis: 1, 2, 3 … without gaps.
    pub seq: u64,
    /// As appended.
    pub kind: String,
    /// As appended.
    pub payload_json: String,
    /// As appended.
    pub at_ms: i64,
}

/// A message to send, enqueued in the transaction of the entry that causes it (the outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbox {
    /// Idempotency key, unique over the store: a second row with the same key is dropped.
    pub key: String,
    /// Which target of the spec's list (0-based).
    pub target: u32,
    /// `slack`, `email`, `webhook` (opaque here).
    pub channel: String,
    /// The event (`fail`, `rollback` …; opaque here).
    pub event: String,
    /// What happened, one line.
    pub message: String,
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Idempotency key.
    pub key: String,
    /// The analysis.
    pub analysis_id: String,
    /// Target index.
    pub target: u32,
    /// Channel.
    pub channel: String,
    /// Event.
    pub event: String,
    /// What happened.
    pub message: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    /// Send attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (pending rows), Unix ms.
    pub next_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Enqueued at, Unix ms.
    pub created_ms: i64,
    /// Delivered or given up at, Unix ms.
    pub done_ms: Option<i64>,
}

/// The outcome of one send attempt, recorded by [`Store::outbox_mark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxMark {
    /// The receiver accepted it.
    Delivered,
    /// Try again at `next_ms` (Unix ms), after this error.
    Retry {
        /// When.
        next_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Never again.
    Failed {
        /// Why.
        error: String,
    },
}

const OUTBOX_COLUMNS: &str = "key, analysis_id, target, channel, event, message, state, attempts, \
                              next_ms, last_error, created_ms, done_ms";

/// Which analyses [`Store::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this app (`None` = all).
    pub app: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<String>,
    /// Rows per page: 0 means [`DEFAULT_PAGE_SIZE`], above [`MAX_PAGE_SIZE`] means that.
    pub page_size: u32,
    /// The previous page's next-page token, with the same `app` and `states`.
    pub page_token: Option<String>,
}

/// A finding marked by a person for an app, honoured by later judgements until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The application.
    pub app: String,
    /// What the feedback is about (a metric, a log template …), as the service names it.
    pub subject: String,
    /// `"false_positive"` or `"critical"` (opaque to the store, must not be empty).
    pub kind: String,
    /// Free text.
    pub note: String,
    /// When it was recorded, Unix ms.
    pub created_ms: i64,
    /// First instant at which it no longer applies, Unix ms (must be after `created_ms`).
    pub expires_ms: i64,
}

/// The service's store. See the module documentation.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// `None` for an in-memory store: reads use the writer connection.
    readers: Option<Readers>,
    /// The database file (`None` in memory), for messages and new read connections.
    path: Option<PathBuf>,
    busy_timeout: Duration,
}

struct Readers {
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

const ANALYSIS_COLUMNS: &str =
    "id, app, spec_json, state, verdict, score, created_ms, updated_ms, \
                                finished_ms, last_seq, next_interval";

/// A poisoned mutex only means another thread panicked while holding it; the connection itself is
/// still sound (an open transaction is rolled back when its guard drops), so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with [`StoreOptions::default`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`: creates the directory, switches the database
    /// to WAL, sets the durability level, busy timeout and foreign keys, and runs pending migrations.
    pub fn open_with(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| {
            StoreError::Io(IoError {
                op: "create the data directory",
                path: dir.to_path_buf(),
                source,
            })
        })?;
        let path = dir.join(DB_FILE);
        let shown = path.display().to_string();
        let mut writer =
            Connection::open(&path).map_err(sql(|| format!("open the store {shown}")))?;
        configure(&writer, opts.busy_timeout, &shown)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(sql(|| format!("switch {shown} to WAL")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Migration(format!(
                "{shown}: SQLite refused WAL mode (journal_mode is {mode:?}); the file system may \
                 not support shared memory"
            )));
        }
        let sync = match opts.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        writer
            .pragma_update(None, "synchronous", sync)
            .map_err(sql(|| format!("set synchronous on {shown}")))?;
        migrations::migrate(&mut writer, SCHEMA_VERSION, &shown)?;
        tracing::debug!(path = %shown, ?opts.durability, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Some(Readers {
                    idle: Mutex::new(Vec::new()),
                }),
                path: Some(path),
                busy_timeout: opts.busy_timeout,
            }),
        })
    }

    /// A private in-memory store (tests, `vigil serve` without `--data-dir`): nothing survives the
    /// process.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(sql_op("open an in-memory store"))?;
        configure(&conn, DEFAULT_BUSY_TIMEOUT, ":memory:")?;
        migrations::migrate(&mut conn, SCHEMA_VERSION, ":memory:")?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                readers: None,
                path: None,
                busy_timeout: DEFAULT_BUSY_TIMEOUT,
            }),
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The schema version of the open database (equal to [`SCHEMA_VERSION`] after a successful
    /// open).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(migrations::current_version)
    }

    /// Creates an analysis in state [`INITIAL_STATE`], or reports the existing one with this id:
    /// [`CreateOutcome::Existing`] when its spec is byte-identical, [`CreateOutcome::Conflict`]
    /// otherwise. Idempotent, so a client may retry a create whose answer it lost.
    pub fn create_analysis(&self, a: &NewAnalysis) -> Result<CreateOutcome, StoreError> {
        non_empty("id", &a.id)?;
        non_empty("app", &a.app)?;
        self.write(|c| {
            let op = || format!("create analysis {:?}", a.id);
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO analyses (id, app, spec_json, state, created_ms, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        a.id,
                        a.app,
                        a.spec_json,
                        INITIAL_STATE,
                        a.created_ms
                    ])
                })
                .map_err(sql(op))?;
            let row = select_analysis(&tx, &a.id)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "analysis {:?} vanished inside its create transaction",
                    a.id
                ))
            })?;
            tx.commit().map_err(sql(op))?;
            Ok(if inserted == 1 {
                CreateOutcome::Created(row)
            } else if row.spec_json == a.spec_json {
                CreateOutcome::Existing(row)
            } else {
                CreateOutcome::Conflict(row)
            })
        })
    }

    /// The analysis with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<AnalysisRow>, StoreError> {
        self.read(|c| select_analysis(c, id))
    }

    /// One page of analyses, newest first (by `created_ms`, then id), and the token of the next
    /// page (`None` on the last page). See [`ListFilter`] for paging rules.
    pub fn list(&self, f: &ListFilter) -> Result<(Vec<AnalysisRow>, Option<String>), StoreError> {
        let size = match f.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let fp = page::fingerprint(f.app.as_deref(), &f.states);
        let after = f
            .page_token
            .as_deref()
            .map(|t| page::decode(t, fp))
            .transpose()?;
        let mut sql_text = format!("SELECT {ANALYSIS_COLUMNS} FROM analyses WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(app) = &f.app {
            sql_text.push_str(" AND app = ?");
            args.push(Value::Text(app.clone()));
        }
        if !f.states.is_empty() {
            let marks = vec!["?"; f.states.len()].join(", ");
            sql_text.push_str(&format!(" AND state IN ({marks})"));
            args.extend(f.states.iter().map(|s| Value::Text(s.clone())));
        }
        if let Some(pos) = &after {
            sql_text.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
            args.push(Value::Integer(pos.created_ms));
            args.push(Value::Integer(pos.created_ms));
            args.push(Value::Text(pos.id.clone()));
        }
        sql_text.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
        args.push(Value::Integer(i64::from(size) + 1));
        let mut rows = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&sql_text)
                .map_err(sql_op("list analyses"))?;
            let mut q = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(sql_op("list analyses"))?;
            let mut out = Vec::new();
            while let Some(r) = q.next().map_err(sql_op("list analyses"))? {
                out.push(read_analysis(r)?);
            }
            Ok(out)
        })?;
        let next = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last().map(|last| {
                page::encode(
                    &page::Position {
                        created_ms: last.created_ms,
                        id: last.id.clone(),
                    },
                    fp,
                )
            })
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Appends entries to an analysis and applies the state changes they carry, in ONE
    /// transaction: either all entries and the new state are stored, or none. Entries get the
    /// sequence numbers after the analysis's `last_seq`, in order; where several entries set the
    /// same field the last one wins; `updated_ms` becomes the latest `at_ms` (never moving back).
    /// Returns the last sequence number (the current one when `entries` is empty).
    ///
    /// The store does not police the lifecycle (appending to a finished analysis, or moving it
    /// back to `running`, is the service's call); it only guarantees atomicity and numbering.
    pub fn append(&self, id: &str, entries: &[NewEntry]) -> Result<u64, StoreError> {
        self.append_with_outbox(id, entries, &[])
    }

    /// [`Store::append`] that also enqueues `outbox` rows in the same transaction: a message is
    /// stored if and only if the entry that causes it is. A row whose key exists is dropped (an
    /// event appended again after a restart enqueues nothing new).
    pub fn append_with_outbox(
        &self,
        id: &str,
        entries: &[NewEntry],
        outbox: &[NewOutbox],
    ) -> Result<u64, StoreError> {
        for o in outbox {
            non_empty("outbox key", &o.key)?;
            non_empty("outbox channel", &o.channel)?;
            non_empty("outbox event", &o.event)?;
        }
        for (i, e) in entries.iter().enumerate() {
            if e.kind.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "entries[{i}].kind for analysis {id:?}: must not be empty"
                )));
            }
            if let Some(s) = e.score {
                if !s.is_finite() {
                    return Err(StoreError::Invalid(format!(
                        "entries[{i}].score for analysis {id:?}: {s} is not a finite number"
                    )));
                }
            }
            if let Some(s) = &e.state {
                non_empty("state", s)?;
            }
        }
        self.write(|c| {
            let op = || format!("append to analysis {id:?}");
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let head: Option<(i64, i64)> = tx
                .prepare_cached("SELECT last_seq, updated_ms FROM analyses WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                        .optional()
                })
                .map_err(|e| column_error(e, "analyses", id, "last_seq/updated_ms"))?;
            let Some((last_seq, mut updated_ms)) = head else {
                return Err(StoreError::NotFound(id.to_string()));
            };
            if last_seq < 0 {
                return Err(StoreError::Corrupt(format!(
                    "analyses row {id:?}: last_seq is {last_seq}"
                )));
            }
            if entries.is_empty() {
                return Ok(last_seq as u64);
            }
            let mut seq = last_seq;
            let (mut state, mut verdict, mut score, mut next_interval, mut finished_ms) =
                (None, None, None, None, None);
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO entries (analysis_id, seq, kind, payload_json, at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(sql(op))?;
                for e in entries {
                    seq = seq.checked_add(1).ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "append to analysis {id:?}: sequence number overflow"
                        ))
                    })?;
                    ins.execute(params![id, seq, e.kind, e.payload_json, e.at_ms])
                        .map_err(sql(|| format!("append entry {seq} to analysis {id:?}")))?;
                    state = e.state.as_deref().or(state);
                    verdict = e.verdict.as_deref().or(verdict);
                    score = e.score.or(score);
                    next_interval = e.next_interval.or(next_interval);
                    finished_ms = e.finished_ms.or(finished_ms);
                    updated_ms = updated_ms.max(e.at_ms);
                }
            }
            tx.prepare_cached(
                "UPDATE analyses SET last_seq = ?2, updated_ms = ?3, \
                 state = coalesce(?4, state), verdict = coalesce(?5, verdict), \
                 score = coalesce(?6, score), next_interval = coalesce(?7, next_interval), \
                 finished_ms = coalesce(?8, finished_ms) WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    seq,
                    updated_ms,
                    state,
                    verdict,
                    score,
                    next_interval,
                    finished_ms
                ])
            })
            .map_err(sql(op))?;
            if !outbox.is_empty() {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO outbox (key, analysis_id, target, channel, event, message, \
                         state, next_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', \
                         ?7, ?7) ON CONFLICT (key) DO NOTHING",
                    )
                    .map_err(sql(op))?;
                for o in outbox {
                    ins.execute(params![
                        o.key, id, o.target, o.channel, o.event, o.message, updated_ms
                    ])
                    .map_err(sql(|| format!("enqueue {:?} for analysis {id:?}", o.key)))?;
                }
            }
            tx.commit().map_err(sql(op))?;
            Ok(seq as u64)
        })
    }

    /// Up to `limit` entries of an analysis with `seq > after_seq`, in order (a watcher that
    /// reconnects with the last seq it saw misses nothing). [`StoreError::NotFound`] for an unknown
    /// id; `limit` must be at least 1.
    pub fn entries_since(
        &self,
        id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid(format!(
                "limit for the entries of analysis {id:?}: must be at least 1"
            )));
        }
        // Past i64::MAX nothing can follow; clamp rather than fail on a client's huge cursor.
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        self.read(|c| {
            let op = || format!("read the entries of analysis {id:?}");
            // One read transaction: the existence check and the entries see the same snapshot.
            let tx = c.unchecked_transaction().map_err(sql(op))?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM analyses WHERE id = ?1")
                .and_then(|mut s| s.exists([id]))
                .map_err(sql(op))?;
            if !exists {
                return Err(StoreError::NotFound(id.to_string()));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, kind, payload_json, at_ms FROM entries \
                     WHERE analysis_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql(op))?;
            let mut q = stmt.query(params![id, after, limit]).map_err(sql(op))?;
            let mut out = Vec::new();
            while let Some(r) = q.next().map_err(sql(op))? {
                let seq: i64 = r
                    .get(0)
                    .map_err(|e| column_error(e, "entries", id, "seq"))?;
                let key = format!("{id}#{seq}");
                let seq = u64::try_from(seq).map_err(|_| {
                    StoreError::Corrupt(format!("entries row {key:?}: seq is negative"))
                })?;
                out.push(Entry {
                    seq,
                    kind: r
                        .get(1)
                        .map_err(|e| column_error(e, "entries", &key, "kind"))?,
                    payload_json: r
                        .get(2)
                        .map_err(|e| column_error(e, "entries", &key, "payload_json"))?,
                    at_ms: r
                        .get(3)
                        .map_err(|e| column_error(e, "entries", &key, "at_ms"))?,
                });
            }
            Ok(out)
        })
    }

    /// Pending outbox rows due at `now_ms` (oldest due first, at most `limit`), and when the
    /// next not-yet-due one is due. A row waits while an older row of the same analysis and
    /// target is pending: each target gets an analysis' messages in the order of their events
    /// (a Fail held back by a 429's `Retry-After` or a backoff is not overtaken by the rollback
    /// that followed it). A row given up (`failed`) holds nothing back.
    pub fn outbox_due(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<(Vec<OutboxRow>, Option<i64>), StoreError> {
        self.read(|c| {
            let op = "read the due outbox rows";
            let tx = c.unchecked_transaction().map_err(sql_op(op))?;
            let rows = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {OUTBOX_COLUMNS} FROM outbox AS o WHERE state = 'pending' \
                         AND next_ms <= ?1 AND NOT EXISTS (SELECT 1 FROM outbox AS p \
                         WHERE p.analysis_id = o.analysis_id AND p.target = o.target \
                         AND p.state = 'pending' AND (p.created_ms < o.created_ms \
                         OR (p.created_ms = o.created_ms AND p.rowid < o.rowid))) \
                         ORDER BY next_ms, created_ms, key LIMIT ?2"
                    ))
                    .map_err(sql_op(op))?;
                let mut q = stmt.query(params![now_ms, limit]).map_err(sql_op(op))?;
                let mut out = Vec::new();
                while let Some(r) = q.next().map_err(sql_op(op))? {
                    out.push(read_outbox(r)?);
                }
                out
            };
            let next: Option<i64> = tx
                .prepare_cached(
                    "SELECT min(next_ms) FROM outbox WHERE state = 'pending' AND next_ms > ?1",
                )
                .and_then(|mut s| s.query_row([now_ms], |r| r.get(0)))
                .map_err(sql_op(op))?;
            Ok((rows, next))
        })
    }

    /// Records an attempt on outbox row `key` at `now_ms`: attempts + 1 and the outcome. Only a
    /// pending row changes; returns whether one did.
    pub fn outbox_mark(
        &self,
        key: &str,
        now_ms: i64,
        mark: &OutboxMark,
    ) -> Result<bool, StoreError> {
        let (state, next, error) = match mark {
            OutboxMark::Delivered => ("delivered", None, None),
            OutboxMark::Retry { next_ms, error } => ("pending", Some(*next_ms), Some(error)),
            OutboxMark::Failed { error } => ("failed", None, Some(error)),
        };
        let done = (state != "pending").then_some(now_ms);
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE outbox SET state = ?2, attempts = attempts + 1, \
                     next_ms = coalesce(?3, next_ms), last_error = coalesce(?4, last_error), \
                     done_ms = ?5 WHERE key = ?1 AND state = 'pending'",
                )
                .and_then(|mut s| s.execute(params![key, state, next, error, done]))
                .map_err(sql(|| format!("mark outbox row {key:?}")))?;
            Ok(n == 1)
        })
    }

    /// Every outbox row of an analysis, in the order they were enqueued.
    pub fn outbox_of(&self, id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|c| {
            let op = || format!("read the outbox of analysis {id:?}");
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE analysis_id = ?1 \
                     ORDER BY created_ms, key"
                ))
                .map_err(sql(op))?;
            let mut q = stmt.query([id]).map_err(sql(op))?;
            let mut out = Vec::new();
            while let Some(r) = q.next().map_err(sql(op))? {
                out.push(read_outbox(r)?);
            }
            Ok(out)
        })
    }

    /// Every analysis in an unfinished state ([`UNFINISHED_STATES`]), oldest first: what to resume
    /// after a restart.
    pub fn unfinished(&self) -> Result<Vec<AnalysisRow>, StoreError> {
        self.read(|c| {
            let op = "list unfinished analyses";
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {ANALYSIS_COLUMNS} FROM analyses \
                     WHERE state IN ('pending', 'running') ORDER BY created_ms, id"
                ))
                .map_err(sql_op(op))?;
            let mut q = stmt.query([]).map_err(sql_op(op))?;
            let mut out = Vec::new();
            while let Some(r) = q.next().map_err(sql_op(op))? {
                out.push(read_analysis(r)?);
            }
            Ok(out)
        })
    }

    /// Records feedback; returns its id (increasing).
    pub fn add_feedback(&self, f: &Feedback) -> Result<i64, StoreError> {
        non_empty("feedback app", &f.app)?;
        non_empty("feedback subject", &f.subject)?;
        non_empty("feedback kind", &f.kind)?;
        if f.expires_ms <= f.created_ms {
            return Err(StoreError::Invalid(format!(
                "feedback expires_ms: {} is not after created_ms {} (feedback for app {:?}, \
                 subject {:?})",
                f.expires_ms, f.created_ms, f.app, f.subject
            )));
        }
        self.write(|c| {
            let op = || format!("add feedback for app {:?}", f.app);
            c.prepare_cached(
                "INSERT INTO feedback (app, subject, kind, note, created_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    f.app,
                    f.subject,
                    f.kind,
                    f.note,
                    f.created_ms,
                    f.expires_ms
                ])
            })
            .map_err(sql(op))?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The app's feedback that still applies at `now_ms` (`expires_ms > now_ms`: feedback expires at
    /// its `expires_ms` exactly), oldest first.
    pub fn feedback_for(&self, app: &str, now_ms: i64) -> Result<Vec<Feedback>, StoreError> {
        self.read(|c| {
            let op = || format!("read feedback for app {app:?}");
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, app, subject, kind, note, created_ms, expires_ms FROM feedback \
                     WHERE app = ?1 AND expires_ms > ?2 ORDER BY created_ms, id",
                )
                .map_err(sql(op))?;
            let mut q = stmt.query(params![app, now_ms]).map_err(sql(op))?;
            let mut out = Vec::new();
            while let Some(r) = q.next().map_err(sql(op))? {
                let key = match r.get::<_, i64>(0) {
                    Ok(n) => n.to_string(),
                    Err(_) => "?".to_string(),
                };
                let col = |i: usize, name: &str| -> Result<Value, StoreError> {
                    r.get::<_, Value>(i)
                        .map_err(|e| column_error(e, "feedback", &key, name))
                };
                out.push(Feedback {
                    app: text(col(1, "app")?, "feedback", &key, "app")?,
                    subject: text(col(2, "subject")?, "feedback", &key, "subject")?,
                    kind: text(col(3, "kind")?, "feedback", &key, "kind")?,
                    note: text(col(4, "note")?, "feedback", &key, "note")?,
                    created_ms: integer(col(5, "created_ms")?, "feedback", &key, "created_ms")?,
                    expires_ms: integer(col(6, "expires_ms")?, "feedback", &key, "expires_ms")?,
                });
            }
            Ok(out)
        })
    }

    /// Retention: deletes every finished analysis (state not in [`UNFINISHED_STATES`]) that
    /// finished before `cutoff_ms` — by `finished_ms`, or `updated_ms` when it has none — with all
    /// its entries, in one transaction. Returns how many analyses were deleted.
    pub fn purge_finished_before(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.write(|c| {
            let op = || format!("purge analyses finished before {cutoff_ms}");
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            // Entries go by ON DELETE CASCADE.
            let n = tx
                .execute(
                    "DELETE FROM analyses WHERE state NOT IN ('pending', 'running') \
                     AND coalesce(finished_ms, updated_ms) < ?1",
                    [cutoff_ms],
                )
                .map_err(sql(op))?;
            tx.commit().map_err(sql(op))?;
            if n > 0 {
                tracing::info!(deleted = n, cutoff_ms, "store retention purge");
            }
            Ok(n)
        })
    }

    /// Deletes feedback that expired at or before `now_ms`. Returns how many rows went.
    pub fn purge_expired_feedback(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM feedback WHERE expires_ms <= ?1", [now_ms])
                .map_err(sql(|| format!("purge feedback expired by {now_ms}")))
        })
    }

    /// Checks the database: SQLite's `integrity_check` and `foreign_key_check`, and that every
    /// analysis's entries are numbered 1..=last_seq without gaps. Meant for start-up diagnostics
    /// and tests; it reads every row.
    pub fn check_consistency(&self) -> Result<(), StoreError> {
        self.read(|c| {
            let op = "check the store's consistency";
            let mut problems = Vec::new();
            let mut stmt = c.prepare("PRAGMA integrity_check").map_err(sql_op(op))?;
            let mut q = stmt.query([]).map_err(sql_op(op))?;
            while let Some(r) = q.next().map_err(sql_op(op))? {
                let line: String = r.get(0).map_err(sql_op(op))?;
                if line != "ok" {
                    problems.push(line);
                }
            }
            let mut stmt = c.prepare("PRAGMA foreign_key_check").map_err(sql_op(op))?;
            let mut q = stmt.query([]).map_err(sql_op(op))?;
            while let Some(r) = q.next().map_err(sql_op(op))? {
                let table: String = r.get(0).map_err(sql_op(op))?;
                problems.push(format!("{table}: a row violates a foreign key"));
            }
            let mut stmt = c
                .prepare(
                    "SELECT a.id, a.last_seq, count(e.seq), coalesce(min(e.seq), 0), \
                     coalesce(max(e.seq), 0) FROM analyses a \
                     LEFT JOIN entries e ON e.analysis_id = a.id GROUP BY a.id",
                )
                .map_err(sql_op(op))?;
            let mut q = stmt.query([]).map_err(sql_op(op))?;
            while let Some(r) = q.next().map_err(sql_op(op))? {
                let (id, last, n, lo, hi): (String, i64, i64, i64, i64) = (
                    r.get(0).map_err(sql_op(op))?,
                    r.get(1).map_err(sql_op(op))?,
                    r.get(2).map_err(sql_op(op))?,
                    r.get(3).map_err(sql_op(op))?,
                    r.get(4).map_err(sql_op(op))?,
                );
                let contiguous = n == last && hi == last && (n == 0 || lo == 1);
                if !contiguous {
                    problems.push(format!(
                        "analysis {id:?}: last_seq {last} but {n} entries numbered {lo}..={hi}"
                    ));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(StoreError::Corrupt(problems.join("; ")))
            }
        })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.inner.writer);
        f(&mut conn)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (Some(readers), Some(path)) = (&self.inner.readers, &self.inner.path) else {
            return f(&lock(&self.inner.writer));
        };
        let pooled = lock(&readers.idle).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(path, self.inner.busy_timeout)?,
        };
        let out = f(&conn);
        let mut idle = lock(&readers.idle);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

/// Settings every connection needs (they are per connection in SQLite).
fn configure(c: &Connection, busy: Duration, shown: &str) -> Result<(), StoreError> {
    c.busy_timeout(busy)
        .map_err(sql(|| format!("set the busy timeout on {shown}")))?;
    c.pragma_update(None, "foreign_keys", true)
        .map_err(sql(|| format!("enable foreign keys on {shown}")))?;
    let on: bool = c
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .map_err(sql(|| format!("read foreign_keys on {shown}")))?;
    if !on {
        return Err(StoreError::Migration(format!(
            "{shown}: this SQLite build cannot enforce foreign keys"
        )));
    }
    Ok(())
}

fn open_reader(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(|| format!("open a read connection to {shown}")))?;
    configure(&c, busy, &shown)?;
    // A read connection must never write: the single-writer design depends on it.
    c.pragma_update(None, "query_only", true).map_err(sql(|| {
        format!("make a read connection to {shown} query-only")
    }))?;
    Ok(c)
}

fn non_empty(field: &str, v: &str) -> Result<(), StoreError> {
    if v.is_empty() {
        return Err(StoreError::Invalid(format!("{field}: must not be empty")));
    }
    Ok(())
}

fn select_analysis(c: &Connection, id: &str) -> Result<Option<AnalysisRow>, StoreError> {
    let op = || format!("read analysis {id:?}");
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {ANALYSIS_COLUMNS} FROM analyses WHERE id = ?1"
        ))
        .map_err(sql(op))?;
    let mut q = stmt.query([id]).map_err(sql(op))?;
    match q.next().map_err(sql(op))? {
        Some(r) => read_analysis(r).map(Some),
        None => Ok(None),
    }
}

/// Reads an `analyses` row in [`ANALYSIS_COLUMNS`] order, naming the row and column of anything
/// that does not fit the schema instead of panicking or defaulting.
fn read_analysis(r: &Row<'_>) -> Result<AnalysisRow, StoreError> {
    const T: &str = "analyses";
    let id = text(
        r.get(0).map_err(|e| column_error(e, T, "?", "id"))?,
        T,
        "?",
        "id",
    )?;
    let col = |i: usize, name: &str| -> Result<Value, StoreError> {
        r.get::<_, Value>(i)
            .map_err(|e| column_error(e, T, &id, name))
    };
    let last_seq = integer(col(9, "last_seq")?, T, &id, "last_seq")?;
    let next_interval = integer(col(10, "next_interval")?, T, &id, "next_interval")?;
    Ok(AnalysisRow {
        app: text(col(1, "app")?, T, &id, "app")?,
        spec_json: text(col(2, "spec_json")?, T, &id, "spec_json")?,
        state: text(col(3, "state")?, T, &id, "state")?,
        verdict: opt(col(4, "verdict")?, T, &id, "verdict", text)?,
        score: opt(col(5, "score")?, T, &id, "score", real)?,
        created_ms: integer(col(6, "created_ms")?, T, &id, "created_ms")?,
        updated_ms: integer(col(7, "updated_ms")?, T, &id, "updated_ms")?,
        finished_ms: opt(col(8, "finished_ms")?, T, &id, "finished_ms", integer)?,
        last_seq: u64::try_from(last_seq)
            .map_err(|_| StoreError::Corrupt(format!("{T} row {id:?}: last_seq is {last_seq}")))?,
        next_interval: u32::try_from(next_interval).map_err(|_| {
            StoreError::Corrupt(format!(
                "{T} row {id:?}: next_interval {next_interval} is out of range"
            ))
        })?,
        id,
    })
}

/// Reads an `outbox` row in [`OUTBOX_COLUMNS`] order.
fn read_outbox(r: &Row<'_>) -> Result<OutboxRow, StoreError> {
    const T: &str = "outbox";
    let key = text(
        r.get(0).map_err(|e| column_error(e, T, "?", "key"))?,
        T,
        "?",
        "key",
    )?;
    let col = |i: usize, name: &str| -> Result<Value, StoreError> {
        r.get::<_, Value>(i)
            .map_err(|e| column_error(e, T, &key, name))
    };
    let target = integer(col(2, "target")?, T, &key, "target")?;
    let attempts = integer(col(7, "attempts")?, T, &key, "attempts")?;
    Ok(OutboxRow {
        analysis_id: text(col(1, "analysis_id")?, T, &key, "analysis_id")?,
        target: u32::try_from(target)
            .map_err(|_| StoreError::Corrupt(format!("{T} row {key:?}: target is {target}")))?,
        channel: text(col(3, "channel")?, T, &key, "channel")?,
        event: text(col(4, "event")?, T, &key, "event")?,
        message: text(col(5, "message")?, T, &key, "message")?,
        state: text(col(6, "state")?, T, &key, "state")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("{T} row {key:?}: attempts is {attempts}")))?,
        next_ms: integer(col(8, "next_ms")?, T, &key, "next_ms")?,
        last_error: opt(col(9, "last_error")?, T, &key, "last_error", text)?,
        created_ms: integer(col(10, "created_ms")?, T, &key, "created_ms")?,
        done_ms: opt(col(11, "done_ms")?, T, &key, "done_ms", integer)?,
        key,
    })
}

fn column_error(e: rusqlite::Error, table: &str, key: &str, column: &str) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::InvalidColumnIndex(..) => {
            StoreError::Corrupt(format!("{table} row {key:?}: column {column}: {e}"))
        }
        other => sql(|| format!("read column {column} of {table} row {key:?}"))(other),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

fn text(v: Value, table: &str, key: &str, column: &str) -> Result<String, StoreError> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(StoreError::Corrupt(format!(
            "{table} row {key:?}: column {column} holds {} where text belongs",
            describe(&other)
        ))),
    }
}

fn integer(v: Value, table: &str, key: &str, column: &str) -> Result<i64, StoreError> {
    match v {
        Value::Integer(n) => Ok(n),
        other => Err(StoreError::Corrupt(format!(
            "{table} row {key:?}: column {column} holds {} where an integer belongs",
            describe(&other)
        ))),
    }
}

fn real(v: Value, table: &str, key: &str, column: &str) -> Result<f64, StoreError> {
    match v {
        Value::Real(x) => Ok(x),
        // A REAL column may hand back an integral value as an integer.
        Value::Integer(n) => Ok(n as f64),
        other => Err(StoreError::Corrupt(format!(
            "{table} row {key:?}: column {column} holds {} where a number belongs",
            describe(&other)
        ))),
    }
}

fn opt<T>(
    v: Value,
    table: &str,
    key: &str,
    column: &str,
    f: fn(Value, &str, &str, &str) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    match v {
        Value::Null => Ok(None),
        v => f(v, table, key, column).map(Some),
    }
}

#[cfg(test)]
mod tests;
