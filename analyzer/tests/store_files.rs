//! The store on disk: migrating a database written at schema v1, refusing a newer one, refusing a
//! foreign SQLite file, data surviving a reopen, and concurrent use through clones from threads.
//! The database is inspected with a separate raw SQLite connection, not through the store.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::Connection;
use vigil_analyzer::store::{
    CreateOutcome, Feedback, ListFilter, NewAnalysis, NewEntry, Store, StoreError, DB_FILE,
    SCHEMA_VERSION,
};

/// A fresh directory under Cargo's per-target temporary directory (a real disk, not tmpfs).
fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "store_files-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Schema v1 exactly as the first release created it (a frozen copy: the test must fail if
/// migration 1 is ever edited instead of a new migration being added).
const V1_SCHEMA: &str = "
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
CREATE INDEX analyses_by_created ON analyses (created_ms DESC, id DESC);
CREATE INDEX analyses_by_app_created ON analyses (app, created_ms DESC, id DESC);
CREATE INDEX analyses_unfinished ON analyses (created_ms) WHERE state IN ('pending', 'running');
CREATE TABLE entries (
    analysis_id  TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    kind         TEXT    NOT NULL,
    payload_json TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (analysis_id, seq)
) STRICT, WITHOUT ROWID;
PRAGMA application_id = 1447512396;
PRAGMA user_version = 1;
INSERT INTO analyses VALUES
    ('old-1', 'checkout', '{\"app\":\"checkout\"}', 'running', 'Pass', 88.5, 1000, 3000, NULL, 2, 3);
INSERT INTO entries VALUES
    ('old-1', 1, 'judgement', '{\"i\":1}', 2000),
    ('old-1', 2, 'judgement', '{\"i\":2}', 3000);
";

fn raw_version(dir: &std::path::Path) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn table_names(dir: &std::path::Path) -> Vec<String> {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut s = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_v1_database_is_migrated_and_keeps_its_data() {
    let dir = temp_dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    Connection::open(dir.join(DB_FILE))
        .unwrap()
        .execute_batch(V1_SCHEMA)
        .unwrap();
    assert_eq!(table_names(&dir), ["analyses", "entries"]);

    let s = Store::open(&dir).unwrap();
    assert_eq!(s.schema_version().unwrap(), 5);
    assert_eq!(SCHEMA_VERSION, 5);
    let row = s.get("old-1").unwrap().unwrap();
    assert_eq!(
        (
            row.state.as_str(),
            row.verdict.as_deref(),
            row.score,
            row.last_seq,
            row.next_interval
        ),
        ("running", Some("Pass"), Some(88.5), 2, 3)
    );
    let entries = s.entries_since("old-1", 0, 10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].payload_json, r#"{"i":2}"#);
    // The resumed analysis continues its numbering.
    assert_eq!(
        s.append(
            "old-1",
            &[NewEntry {
                kind: "judgement".into(),
                payload_json: r#"{"i":3}"#.into(),
                state: None,
                verdict: None,
                score: None,
                next_interval: Some(4),
                finished_ms: None,
                at_ms: 4000,
            }]
        )
        .unwrap(),
        3
    );
    // v2 brought the feedback table.
    s.add_feedback(&Feedback {
        app: "checkout".into(),
        subject: "metric:errors".into(),
        kind: "critical".into(),
        note: String::new(),
        created_ms: 0,
        expires_ms: 10,
    })
    .unwrap();
    drop(s);
    assert_eq!(raw_version(&dir), 5);
    // v3 brought the actions table, v4 the notification outbox, v5 the actions' outcome column.
    assert_eq!(
        table_names(&dir),
        ["actions", "analyses", "entries", "feedback", "outbox"]
    );
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let outcome_column: i64 = c
        .query_row(
            "SELECT count(*) FROM pragma_table_info('actions') WHERE name = 'outcome'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome_column, 1);
    let ok: String = c
        .pragma_query_value(None, "integrity_check", |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = temp_dir("future");
    drop(Store::open(&dir).unwrap());
    let future = SCHEMA_VERSION + 1;
    Connection::open(dir.join(DB_FILE))
        .unwrap()
        .pragma_update(None, "user_version", future)
        .unwrap();
    let e = Store::open(&dir).unwrap_err();
    match &e {
        StoreError::SchemaTooNew { found, known, path } => {
            assert_eq!((*found, *known), (6, 5));
            assert!(path.ends_with(DB_FILE), "{path}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("schema version 6, newer than version 5"),
        "{e}"
    );
    assert_eq!(raw_version(&dir), future);
}

#[test]
fn a_foreign_sqlite_file_is_refused() {
    let dir = temp_dir("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    Connection::open(dir.join(DB_FILE))
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::Migration(_)), "{e:?}");
    assert!(e.to_string().contains("Vigil did not create"), "{e}");
    assert_eq!(table_names(&dir), ["notes"]);
    assert_eq!(raw_version(&dir), 0);
}

#[test]
fn an_unusable_data_dir_is_an_io_error_naming_it() {
    let dir = temp_dir("notadir");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("create the data directory {}", dir.display())),
        "{e}"
    );
}

#[test]
fn data_survives_reopen_and_migrations_do_not_rerun() {
    let dir = temp_dir("reopen");
    let s = Store::open(&dir).unwrap();
    let a = NewAnalysis {
        id: "r1".into(),
        app: "x".into(),
        spec_json: "{}".into(),
        created_ms: 5,
    };
    assert!(matches!(
        s.create_analysis(&a).unwrap(),
        CreateOutcome::Created(_)
    ));
    drop(s);
    let s = Store::open(&dir).unwrap();
    assert!(matches!(
        s.create_analysis(&a).unwrap(),
        CreateOutcome::Existing(_)
    ));
    assert_eq!(s.path(), Some(dir.join(DB_FILE).as_path()));
    s.check_consistency().unwrap();
}

#[test]
fn clones_append_and_read_concurrently_from_threads() {
    let dir = temp_dir("threads");
    let s = Store::open(&dir).unwrap();
    s.create_analysis(&NewAnalysis {
        id: "shared".into(),
        app: "x".into(),
        spec_json: "{}".into(),
        created_ms: 0,
    })
    .unwrap();
    const WRITERS: usize = 4;
    const EACH: usize = 40;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        handles.push(std::thread::spawn(move || {
            let mut acks = Vec::new();
            for i in 0..EACH {
                let seq = s
                    .append(
                        "shared",
                        &[NewEntry {
                            kind: "event".into(),
                            payload_json: format!("{w}:{i}"),
                            state: Some("running".into()),
                            verdict: None,
                            score: None,
                            next_interval: None,
                            finished_ms: None,
                            at_ms: i as i64,
                        }],
                    )
                    .unwrap();
                acks.push((seq, format!("{w}:{i}")));
            }
            acks
        }));
    }
    for _ in 0..2 {
        let s = s.clone();
        handles.push(std::thread::spawn(move || {
            // Readers see a growing, gap-free prefix while writers run.
            let mut last = 0;
            for _ in 0..50 {
                let got = s.entries_since("shared", 0, 10_000).unwrap();
                assert!(got.len() >= last);
                for (k, e) in got.iter().enumerate() {
                    assert_eq!(e.seq, k as u64 + 1);
                }
                last = got.len();
                s.list(&ListFilter::default()).unwrap();
            }
            Vec::new()
        }));
    }
    let mut acks: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acks.sort();
    let seqs: Vec<u64> = acks.iter().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>());
    let stored = s.entries_since("shared", 0, 10_000).unwrap();
    for ((seq, payload), e) in acks.iter().zip(&stored) {
        assert_eq!((*seq, payload.as_str()), (e.seq, e.payload_json.as_str()));
    }
    assert_eq!(
        s.get("shared").unwrap().unwrap().last_seq,
        (WRITERS * EACH) as u64
    );
    s.check_consistency().unwrap();
}
