//! Versioned schema migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version` (a field of the database header, written in
//! the same transaction as the schema change, so a crash leaves either the old schema with the old
//! number or the new schema with the new number — never a half-applied migration). Migrations are
//! applied in order, each in its own `BEGIN IMMEDIATE` transaction that re-reads the version first,
//! so two processes opening the same file cannot both apply one.
//!
//! Rules for adding one: append to [`MIGRATIONS`], never edit or reorder a released entry (a
//! database in the field has already run it). A change that needs a table rebuild must follow
//! SQLite's 12-step procedure (<https://www.sqlite.org/lang_altertable.html#otheralter>);
//! foreign keys are enforced on every connection, and `PRAGMA foreign_keys` cannot be switched off
//! inside the migration's transaction, so such a migration must be written to keep them valid.

use rusqlite::{Connection, TransactionBehavior};

use super::error::{sql, sql_op, StoreError};

/// `PRAGMA application_id` of a Vigil store ("VGIL"), so that pointing `--data-dir` at some other
/// SQLite file is a clear error rather than a migration run over someone else's tables.
pub(crate) const APPLICATION_ID: i64 = 0x5647_494C;

/// One schema step: the version it produces and the SQL that gets there from the version before.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
///
/// v1: analyses and their entries (interim judgements and events), the core of a resumable
/// analysis. v2: feedback (false positives and critical findings per app, with an expiry).
/// v3: actions (the rollback or promotion a final verdict ordered, and how far it got). v4: the
/// notification outbox (one row per message to send, written with the entry that causes it).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "analyses and entries",
        sql: "
CREATE TABLE analyses (
    id            TEXT    NOT NULL PRIMARY KEY,
    app           TEXT    NOT NULL,
    spec_json     TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    verdict       TEXT,
    score         REAL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    finished_ms   INTEGER,
    last_seq      INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    next_interval INTEGER NOT NULL DEFAULT 0 CHECK (next_interval >= 0)
) STRICT;
-- list: newest first, optionally per app; (created_ms, id) is also the page token's position.
CREATE INDEX analyses_by_created ON analyses (created_ms DESC, id DESC);
CREATE INDEX analyses_by_app_created ON analyses (app, created_ms DESC, id DESC);
-- unfinished: resume after a restart.
CREATE INDEX analyses_unfinished ON analyses (created_ms) WHERE state IN ('pending', 'running');
CREATE TABLE entries (
    analysis_id  TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    kind         TEXT    NOT NULL,
    payload_json TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (analysis_id, seq)
) STRICT, WITHOUT ROWID;
",
    },
    Migration {
        version: 2,
        name: "feedback",
        sql: "
CREATE TABLE feedback (
    id         INTEGER NOT NULL PRIMARY KEY,
    app        TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    note       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX feedback_by_app_expiry ON feedback (app, expires_ms);
",
    },
    Migration {
        version: 3,
        name: "actions",
        sql: "
-- The rollback or promotion an analysis's verdict ordered: written before the deployer is
-- called, so that a restart resumes an unfinished action and never starts a finished one again.
CREATE TABLE actions (
    analysis_id TEXT    NOT NULL PRIMARY KEY REFERENCES analyses (id) ON DELETE CASCADE,
    action      TEXT    NOT NULL,
    dry_run     INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    state       TEXT    NOT NULL CHECK (state IN ('ordered', 'started', 'done')),
    -- The server groups as resolved when it started (JSON): a resumed action acts on the same
    -- ones even if the newest server group of the app has changed (been deleted) since.
    target_json TEXT,
    ordered_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX actions_open ON actions (ordered_ms) WHERE state <> 'done';
",
    },
    Migration {
        version: 4,
        name: "notification outbox",
        // `key` is the idempotency key `<analysis>/<event>/<target>`: a resumed analysis that
        // appends the same event again cannot enqueue a second message (INSERT … DO NOTHING).
        sql: "
CREATE TABLE outbox (
    key          TEXT    NOT NULL PRIMARY KEY,
    analysis_id  TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    target       INTEGER NOT NULL CHECK (target >= 0),
    channel      TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_ms      INTEGER NOT NULL,
    last_error   TEXT,
    created_ms   INTEGER NOT NULL,
    done_ms      INTEGER
) STRICT;
CREATE INDEX outbox_due ON outbox (next_ms) WHERE state = 'pending';
CREATE INDEX outbox_by_analysis ON outbox (analysis_id, created_ms);
",
    },
    Migration {
        version: 5,
        name: "action outcome",
        // How a `done` action ended, for GetAnalysis. NULL: not done, or done before this column
        // existed, or marked done after a crash that fell between its outcome event and the mark
        // (the event, with its message, is still there).
        sql: "
ALTER TABLE actions ADD COLUMN outcome TEXT
    CHECK (outcome IN ('succeeded', 'failed', 'refused', 'planned'));
",
    },
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(crate) fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql_op("read the schema version"))
}

/// Brings the database to `target` (at most [`SCHEMA_VERSION`]). `path` is for messages only.
///
/// Refuses, without writing anything, a database whose version is above [`SCHEMA_VERSION`]
/// ([`StoreError::SchemaTooNew`]) and a database that is not a Vigil store.
pub(crate) fn migrate(conn: &mut Connection, target: i64, path: &str) -> Result<(), StoreError> {
    let found = current_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Migration(format!(
            "{path}: negative schema version {found}; not a Vigil store"
        )));
    }
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(sql_op("read the application id"))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::Migration(format!(
            "{path}: SQLite application_id is {app_id:#x}, not Vigil's {APPLICATION_ID:#x}; \
             this file belongs to another program"
        )));
    }
    if found == 0 {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(sql_op("inspect an unversioned database"))?;
        if tables > 0 {
            return Err(StoreError::Migration(format!(
                "{path}: the database has {tables} schema objects but no Vigil schema version; \
                 refusing to migrate a database Vigil did not create"
            )));
        }
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(|| format!("begin migration to v{}", m.version)))?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let now = current_version(&tx)?;
        if now >= m.version {
            continue;
        }
        if now != m.version - 1 {
            return Err(StoreError::Migration(format!(
                "{path}: at version {now}, cannot apply migration v{} ({})",
                m.version, m.name
            )));
        }
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Migration(format!(
                "{path}: migration v{} ({}) failed: {e}",
                m.version, m.name
            ))
        })?;
        if m.version == 1 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(sql_op("set the application id"))?;
        }
        tx.pragma_update(None, "user_version", m.version)
            .map_err(sql(|| format!("record schema version {}", m.version)))?;
        tx.commit()
            .map_err(sql(|| format!("commit migration to v{}", m.version)))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            path,
            "store schema migrated"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
    }

    #[test]
    fn migrates_step_by_step_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, 1, "mem").unwrap();
        assert_eq!(current_version(&c).unwrap(), 1);
        let has_feedback: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'feedback'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_feedback, 0);
        migrate(&mut c, SCHEMA_VERSION, "mem").unwrap();
        migrate(&mut c, SCHEMA_VERSION, "mem").unwrap();
        assert_eq!(current_version(&c).unwrap(), SCHEMA_VERSION);
        let id: i64 = c
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(id, 0x5647_494C);
    }

    #[test]
    fn refuses_future_version_without_writing() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        let e = migrate(&mut c, SCHEMA_VERSION, "x.db").unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
            "{e}"
        );
        assert_eq!(current_version(&c).unwrap(), 99);
    }

    #[test]
    fn refuses_foreign_databases() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x)").unwrap();
        let e = migrate(&mut c, SCHEMA_VERSION, "x.db").unwrap_err();
        assert!(e.to_string().contains("did not create"), "{e}");

        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "application_id", 42).unwrap();
        let e = migrate(&mut c, SCHEMA_VERSION, "x.db").unwrap_err();
        assert!(e.to_string().contains("another program"), "{e}");
    }
}
