//! A `kill -9` during writes loses nothing that was acknowledged (issue 11, "The store").
//!
//! The test re-runs its own executable as a child process (the ignored test
//! `crash_writer_child`, selected with `--exact --ignored` and given its work through environment
//! variables). The child writes analyses, entry batches and feedback through the store as fast as
//! it can and prints an acknowledgement line *after* each call returned. The parent reads those
//! lines, sends SIGKILL at a chosen moment (`Child::kill` is SIGKILL on Unix), drains whatever
//! acknowledgements were already in the pipe, then checks the database with a raw SQLite
//! connection (integrity, foreign keys, gap-free sequence numbers, each analysis row agreeing
//! with its last entry) and that every acknowledged write is present. The rounds reuse one data
//! directory, so each child also starts by recovering the WAL its predecessor left behind.

#![cfg(unix)]
// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use vigil_analyzer::store::{Feedback, NewAnalysis, NewEntry, Store, DB_FILE};

const ENV_DIR: &str = "VIGIL_STORE_CRASH_DIR";
const ENV_ROUND: &str = "VIGIL_STORE_CRASH_ROUND";
/// Entries per analysis; the batch that reaches it also finishes the analysis.
const ENTRIES_PER_ANALYSIS: u64 = 12;

fn payload(id: &str, n: u64, state: &str) -> String {
    format!(r#"{{"id":"{id}","n":{n},"state":"{state}"}}"#)
}

/// The child: writes until killed (or, as a safety net, for 60 s).
#[test]
#[ignore = "child process of kill_9_loses_no_acknowledged_write, which runs it"]
fn crash_writer_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(ENV_DIR), std::env::var(ENV_ROUND)) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut ack = |line: String| {
        writeln!(out, "ACK {line}").unwrap();
        out.flush().unwrap();
    };
    ack("open".into());
    let start = Instant::now();
    let mut k: u64 = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let id = format!("r{round}-a{k}");
        store
            .create_analysis(&NewAnalysis {
                id: id.clone(),
                app: format!("app{}", k % 3),
                spec_json: format!(r#"{{"round":{round},"k":{k}}}"#),
                created_ms: k as i64,
            })
            .unwrap();
        ack(format!("create {id}"));
        let mut seq = 0u64;
        let mut batch_no = 0u64;
        while seq < ENTRIES_PER_ANALYSIS {
            let size = (1 + (k + batch_no) % 4).min(ENTRIES_PER_ANALYSIS - seq);
            let batch: Vec<NewEntry> = (seq + 1..=seq + size)
                .map(|n| {
                    let state = if n == ENTRIES_PER_ANALYSIS {
                        "succeeded"
                    } else {
                        "running"
                    };
                    NewEntry {
                        kind: if n % 3 == 0 { "judgement" } else { "event" }.into(),
                        payload_json: payload(&id, n, state),
                        state: Some(state.into()),
                        verdict: None,
                        score: Some(n as f64),
                        next_interval: Some(n as u32),
                        finished_ms: (n == ENTRIES_PER_ANALYSIS).then_some(n as i64),
                        at_ms: n as i64,
                    }
                })
                .collect();
            let last = store.append(&id, &batch).unwrap();
            assert_eq!(last, seq + size, "store numbered {id}'s batch unexpectedly");
            seq = last;
            batch_no += 1;
            ack(format!("append {id} {seq}"));
        }
        if k % 4 == 1 {
            let fid = store
                .add_feedback(&Feedback {
                    app: format!("app{}", k % 3),
                    subject: format!("{id}/subject"),
                    kind: "false_positive".into(),
                    note: String::new(),
                    created_ms: 0,
                    expires_ms: i64::MAX,
                })
                .unwrap();
            ack(format!("feedback {fid} {id}/subject"));
        }
        k += 1;
    }
}

/// Everything the children acknowledged, across rounds.
#[derive(Default)]
struct Acked {
    created: BTreeSet<String>,
    /// Highest acknowledged seq per analysis.
    seq: BTreeMap<String, u64>,
    /// feedback id → subject.
    feedback: BTreeMap<i64, String>,
    lines: usize,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("ACK ") else {
            return;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        match parts.as_slice() {
            ["open"] => return,
            ["create", id] => {
                self.created.insert(id.to_string());
            }
            ["append", id, seq] => {
                let seq: u64 = seq.parse().unwrap();
                let e = self.seq.entry(id.to_string()).or_default();
                assert!(seq > *e, "acknowledged seqs of {id} went backwards");
                *e = seq;
            }
            ["feedback", fid, subject] => {
                self.feedback
                    .insert(fid.parse().unwrap(), subject.to_string());
            }
            _ => panic!("unexpected acknowledgement {line:?}"),
        }
        self.lines += 1;
    }
}

fn temp_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store_crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

enum KillAt {
    /// This long after spawning, whatever the child is doing (start-up, migrations, WAL recovery).
    After(Duration),
    /// Right after the parent has read this many acknowledgements (not counting "open").
    Acks(usize),
}

/// Runs one child and kills it; returns how many acknowledgements it gave.
fn run_round(dir: &Path, round: usize, kill: KillAt, acked: &mut Acked) -> usize {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let before = acked.lines;
    let mut killed = false;
    if let KillAt::After(d) = kill {
        std::thread::sleep(d);
        child.kill().unwrap();
        killed = true;
    }
    // After the kill, keep reading to EOF: acknowledgements already in the pipe count too.
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        acked.record(&line);
        if let KillAt::Acks(n) = kill {
            if !killed && acked.lines - before >= n {
                child.kill().unwrap();
                killed = true;
            }
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "round {round}: the child must die by SIGKILL mid-stream, not exit on its own ({status})"
    );
    acked.lines - before
}

/// Checks the database with a raw connection (not through the store) and against the
/// acknowledgements; returns (analyses, entries) counted.
fn verify(dir: &Path, acked: &Acked) -> (usize, usize) {
    // A child killed before it even created the store's directory (a loaded machine can take
    // longer than the first kill's few milliseconds to get there) wrote nothing; that is only
    // right if it acknowledged nothing either.
    if !dir.join(DB_FILE).exists() {
        assert!(
            acked.created.is_empty() && acked.seq.is_empty() && acked.feedback.is_empty(),
            "writes were acknowledged but there is no database"
        );
        return (0, 0);
    }
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    let integrity: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(integrity, ["ok"]);
    // A child killed before it created the schema leaves an empty file: let the store migrate it
    // (as the next start would) before the tables are inspected.
    drop(Store::open(dir).unwrap());
    let fk_violations: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk_violations, 0);

    type Row = (String, String, i64, Option<i64>, Option<f64>, i64);
    let rows: Vec<Row> = c
        .prepare("SELECT id, state, last_seq, finished_ms, score, next_interval FROM analyses")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut total_entries = 0;
    let mut last_seq_of = BTreeMap::new();
    for (id, state, last_seq, finished_ms, score, next_interval) in &rows {
        let entries: Vec<(i64, String)> = c
            .prepare("SELECT seq, payload_json FROM entries WHERE analysis_id = ?1 ORDER BY seq")
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        total_entries += entries.len();
        // Gap-free 1..=last_seq, each entry the one the child wrote at that position.
        let seqs: Vec<i64> = entries.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=*last_seq).collect::<Vec<_>>(), "analysis {id}");
        for (seq, p) in &entries {
            let n = *seq as u64;
            let st = if n == ENTRIES_PER_ANALYSIS {
                "succeeded"
            } else {
                "running"
            };
            assert_eq!(p, &payload(id, n, st), "analysis {id} entry {seq}");
        }
        // The row changed in the same transaction as its entries.
        let expect_state = match *last_seq as u64 {
            0 => "pending",
            ENTRIES_PER_ANALYSIS => "succeeded",
            _ => "running",
        };
        assert_eq!(state, expect_state, "analysis {id} state");
        assert_eq!(*next_interval, *last_seq, "analysis {id} next_interval");
        assert_eq!(
            *score,
            (*last_seq > 0).then_some(*last_seq as f64),
            "analysis {id} score"
        );
        assert_eq!(
            finished_ms.is_some(),
            *last_seq as u64 == ENTRIES_PER_ANALYSIS,
            "analysis {id} finished_ms"
        );
        last_seq_of.insert(id.clone(), *last_seq as u64);
    }
    for id in &acked.created {
        assert!(
            last_seq_of.contains_key(id),
            "acknowledged create of {id} lost"
        );
    }
    for (id, seq) in &acked.seq {
        let stored = last_seq_of.get(id).copied().unwrap_or(0);
        assert!(
            stored >= *seq,
            "analysis {id}: seq {seq} was acknowledged, the store has {stored}"
        );
    }
    for (fid, subject) in &acked.feedback {
        let got: Option<String> = c
            .query_row("SELECT subject FROM feedback WHERE id = ?1", [fid], |r| {
                r.get(0)
            })
            .ok();
        assert_eq!(
            got.as_deref(),
            Some(subject.as_str()),
            "acknowledged feedback {fid}"
        );
    }
    drop(c);
    // And the store itself opens and agrees.
    let s = Store::open(dir).unwrap();
    s.check_consistency().unwrap();
    for (id, seq) in &acked.seq {
        assert!(s.get(id).unwrap().unwrap().last_seq >= *seq);
    }
    (rows.len(), total_entries)
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = temp_dir();
    let mut acked = Acked::default();
    let plan = [
        // Kill during the very first start-up (directory creation, WAL switch, migrations).
        KillAt::After(Duration::from_millis(5)),
        KillAt::After(Duration::from_millis(60)),
        KillAt::Acks(1),
        KillAt::Acks(7),
        KillAt::Acks(41),
        KillAt::Acks(150),
        KillAt::Acks(333),
    ];
    for (round, kill) in plan.into_iter().enumerate() {
        let n = run_round(&dir, round, kill, &mut acked);
        let (analyses, entries) = verify(&dir, &acked);
        let acked_entries: u64 = acked.seq.values().sum();
        eprintln!(
            "round {round}: {n} acknowledgements read; so far the store holds {analyses} analyses and \
             {entries} entries, every acknowledged one among them ({} entries of {} analyses \
             acknowledged; {} committed but not acknowledged before the kill)",
            acked_entries,
            acked.seq.len(),
            entries as u64 - acked_entries
        );
    }
    // The plan must actually have exercised writes, not only start-ups.
    assert!(
        acked.seq.len() > 30,
        "{} analyses appended",
        acked.seq.len()
    );
    assert!(!acked.feedback.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
