//! Unit tests of every store method on an in-memory store (the file-backed paths, migrations of
//! an old file and the crash test are in `analyzer/tests/store_*.rs`).

use super::*;

fn store() -> Store {
    Store::open_in_memory().unwrap()
}

fn new(id: &str, app: &str, created_ms: i64) -> NewAnalysis {
    NewAnalysis {
        id: id.into(),
        app: app.into(),
        spec_json: format!(r#"{{"app":"{app}"}}"#),
        created_ms,
    }
}

fn ev(payload: &str, at_ms: i64) -> NewEntry {
    NewEntry {
        kind: "event".into(),
        payload_json: payload.into(),
        state: None,
        verdict: None,
        score: None,
        next_interval: None,
        finished_ms: None,
        at_ms,
    }
}

fn created(s: &Store, a: &NewAnalysis) -> AnalysisRow {
    match s.create_analysis(a).unwrap() {
        CreateOutcome::Created(r) => r,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn raw(s: &Store) -> MutexGuard<'_, Connection> {
    lock(&s.inner.writer)
}

fn ids(rows: &[AnalysisRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn store_is_clone_send_sync() {
    fn assert<T: Clone + Send + Sync + 'static>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    assert::<Store>();
    error::<StoreError>();
}

#[test]
fn in_memory_store_is_at_the_current_schema() {
    let s = store();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 5);
    assert_eq!(s.path(), None);
}

#[test]
fn create_then_get_returns_the_initial_row() {
    let s = store();
    let row = created(&s, &new("a1", "checkout", 1_000));
    let expected = AnalysisRow {
        id: "a1".into(),
        app: "checkout".into(),
        spec_json: r#"{"app":"checkout"}"#.into(),
        state: "pending".into(),
        verdict: None,
        score: None,
        created_ms: 1_000,
        updated_ms: 1_000,
        finished_ms: None,
        last_seq: 0,
        next_interval: 0,
    };
    assert_eq!(row, expected);
    assert_eq!(s.get("a1").unwrap(), Some(expected));
}

#[test]
fn create_is_idempotent_on_the_same_spec_and_conflicts_on_another() {
    let s = store();
    let a = new("a1", "checkout", 1_000);
    created(&s, &a);
    s.append("a1", &[ev("{}", 2_000)]).unwrap();
    // A retry (even with a later timestamp) returns the stored row, unchanged.
    let retry = NewAnalysis {
        created_ms: 9_999,
        ..a.clone()
    };
    match s.create_analysis(&retry).unwrap() {
        CreateOutcome::Existing(r) => {
            assert_eq!(r.created_ms, 1_000);
            assert_eq!(r.last_seq, 1);
        }
        other => panic!("expected Existing, got {other:?}"),
    }
    let other = NewAnalysis {
        spec_json: r#"{"app":"checkout","interval":"60s"}"#.into(),
        ..a.clone()
    };
    match s.create_analysis(&other).unwrap() {
        CreateOutcome::Conflict(r) => assert_eq!(r.spec_json, a.spec_json),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Neither wrote anything.
    assert_eq!(s.get("a1").unwrap().unwrap().spec_json, a.spec_json);
    let (rows, _) = s.list(&ListFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn create_rejects_empty_id_and_app() {
    let s = store();
    let e = s.create_analysis(&new("", "x", 1)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Invalid(m) if m.starts_with("id:")),
        "{e}"
    );
    let e = s.create_analysis(&new("x", "", 1)).unwrap_err();
    assert_eq!(e.to_string(), "invalid app: must not be empty");
}

#[test]
fn get_unknown_is_none() {
    assert_eq!(store().get("nope").unwrap(), None);
}

#[test]
fn append_numbers_entries_consecutively_across_calls() {
    let s = store();
    created(&s, &new("a", "x", 0));
    created(&s, &new("b", "x", 0));
    assert_eq!(
        s.append("a", &[ev("1", 10), ev("2", 11), ev("3", 12)])
            .unwrap(),
        3
    );
    // Numbering is per analysis.
    assert_eq!(s.append("b", &[ev("b1", 10)]).unwrap(), 1);
    assert_eq!(s.append("a", &[ev("4", 13)]).unwrap(), 4);
    let got = s.entries_since("a", 0, 100).unwrap();
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    let payloads: Vec<&str> = got.iter().map(|e| e.payload_json.as_str()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(payloads, ["1", "2", "3", "4"]);
    assert_eq!(got[3].at_ms, 13);
    assert_eq!(got[3].kind, "event");
    assert_eq!(s.get("a").unwrap().unwrap().last_seq, 4);
    s.check_consistency().unwrap();
}

#[test]
fn append_applies_state_changes_last_one_winning() {
    let s = store();
    created(&s, &new("a", "x", 100));
    let judgement = NewEntry {
        kind: "judgement".into(),
        payload_json: "{}".into(),
        state: Some("running".into()),
        verdict: Some("Pass".into()),
        score: Some(97.5),
        next_interval: Some(1),
        finished_ms: None,
        at_ms: 200,
    };
    let fail = NewEntry {
        state: Some("failed".into()),
        verdict: Some("Fail".into()),
        score: Some(12.0),
        next_interval: Some(2),
        finished_ms: Some(300),
        at_ms: 300,
        ..judgement.clone()
    };
    // An event without changes after the judgement keeps what the judgement set.
    let last = s
        .append("a", &[judgement, fail, ev("closing event", 250)])
        .unwrap();
    assert_eq!(last, 3);
    let r = s.get("a").unwrap().unwrap();
    assert_eq!(r.state, "failed");
    assert_eq!(r.verdict.as_deref(), Some("Fail"));
    assert_eq!(r.score, Some(12.0));
    assert_eq!(r.next_interval, 2);
    assert_eq!(r.finished_ms, Some(300));
    // updated_ms is the latest at_ms (300), not the last entry's (250).
    assert_eq!(r.updated_ms, 300);
    // A later event with an earlier time does not move updated_ms back, nor clear anything.
    s.append("a", &[ev("late", 50)]).unwrap();
    let r2 = s.get("a").unwrap().unwrap();
    assert_eq!(r2.updated_ms, 300);
    assert_eq!(r2.verdict.as_deref(), Some("Fail"));
    assert_eq!(r2.last_seq, 4);
}

#[test]
fn append_to_unknown_id_is_not_found() {
    let s = store();
    let e = s.append("ghost", &[ev("{}", 1)]).unwrap_err();
    assert!(
        matches!(&e, StoreError::NotFound(id) if id == "ghost"),
        "{e}"
    );
    assert_eq!(e.to_string(), r#"no analysis with id "ghost""#);
    // Also with nothing to append.
    assert!(matches!(
        s.append("ghost", &[]),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn append_nothing_returns_the_current_seq() {
    let s = store();
    created(&s, &new("a", "x", 0));
    assert_eq!(s.append("a", &[]).unwrap(), 0);
    s.append("a", &[ev("1", 1), ev("2", 2)]).unwrap();
    assert_eq!(s.append("a", &[]).unwrap(), 2);
}

#[test]
fn append_rejects_bad_entries_before_writing() {
    let s = store();
    created(&s, &new("a", "x", 0));
    let nan = NewEntry {
        score: Some(f64::NAN),
        ..ev("{}", 1)
    };
    let e = s.append("a", &[ev("{}", 1), nan]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"invalid entries[1].score for analysis "a""#),
        "{e}"
    );
    let empty_kind = NewEntry {
        kind: String::new(),
        ..ev("{}", 1)
    };
    let e = s.append("a", &[empty_kind]).unwrap_err();
    assert!(e.to_string().contains("entries[0].kind"), "{e}");
    assert_eq!(s.get("a").unwrap().unwrap().last_seq, 0);
    assert!(s.entries_since("a", 0, 10).unwrap().is_empty());
}

#[test]
fn append_is_all_or_nothing() {
    let s = store();
    created(&s, &new("a", "x", 0));
    s.append("a", &[ev("first", 1)]).unwrap();
    // Make the database itself refuse the second entry of a batch.
    raw(&s)
        .execute_batch(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON entries WHEN NEW.payload_json = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END;",
        )
        .unwrap();
    let changing = NewEntry {
        state: Some("running".into()),
        next_interval: Some(5),
        ..ev("ok", 2)
    };
    let e = s.append("a", &[changing, ev("boom", 3)]).unwrap_err();
    assert!(matches!(e, StoreError::Sqlite(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(r#"append entry 3 to analysis "a": "#),
        "{e}"
    );
    let r = s.get("a").unwrap().unwrap();
    assert_eq!(
        (r.last_seq, r.state.as_str(), r.next_interval),
        (1, "pending", 0)
    );
    assert_eq!(s.entries_since("a", 0, 10).unwrap().len(), 1);
    // The store is usable afterwards and numbering continues without a gap.
    assert_eq!(s.append("a", &[ev("ok", 4)]).unwrap(), 2);
    s.check_consistency().unwrap();
}

#[test]
fn entries_since_pages_and_edges() {
    let s = store();
    created(&s, &new("a", "x", 0));
    created(&s, &new("empty", "x", 0));
    let batch: Vec<NewEntry> = (1..=5).map(|i| ev(&i.to_string(), i)).collect();
    s.append("a", &batch).unwrap();
    let seqs = |after, limit| -> Vec<u64> {
        s.entries_since("a", after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 2), [1, 2]);
    assert_eq!(seqs(2, 2), [3, 4]);
    assert_eq!(seqs(4, 2), [5]);
    assert_eq!(seqs(5, 2), Vec::<u64>::new());
    assert_eq!(seqs(u64::MAX, 10), Vec::<u64>::new());
    assert!(s.entries_since("empty", 0, 10).unwrap().is_empty());
    assert!(matches!(
        s.entries_since("ghost", 0, 10),
        Err(StoreError::NotFound(id)) if id == "ghost"
    ));
    let e = s.entries_since("a", 0, 0).unwrap_err();
    assert!(e.to_string().starts_with("invalid limit"), "{e}");
}

#[test]
fn list_is_newest_first_with_id_breaking_ties() {
    let s = store();
    for (id, t) in [("b", 10), ("a", 10), ("c", 5), ("d", 20)] {
        created(&s, &new(id, "x", t));
    }
    let (rows, next) = s.list(&ListFilter::default()).unwrap();
    assert_eq!(ids(&rows), ["d", "b", "a", "c"]);
    assert_eq!(next, None);
}

#[test]
fn list_empty_store_is_one_empty_page() {
    let (rows, next) = store().list(&ListFilter::default()).unwrap();
    assert!(rows.is_empty());
    assert_eq!(next, None);
}

#[test]
fn list_pages_through_everything_once() {
    let s = store();
    // Ties on created_ms straddle page boundaries.
    for i in 0..7 {
        created(&s, &new(&format!("id{i}"), "x", (i / 3) as i64));
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let (rows, next) = s
            .list(&ListFilter {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .unwrap();
        pages += 1;
        assert!(rows.len() <= 2);
        seen.extend(rows.into_iter().map(|r| r.id));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, ["id6", "id5", "id4", "id3", "id2", "id1", "id0"]);
}

#[test]
fn list_exact_multiple_has_no_trailing_empty_page() {
    let s = store();
    for i in 0..4 {
        created(&s, &new(&format!("id{i}"), "x", i));
    }
    let f = ListFilter {
        page_size: 2,
        ..Default::default()
    };
    let (p1, t1) = s.list(&f).unwrap();
    assert_eq!(ids(&p1), ["id3", "id2"]);
    let (p2, t2) = s
        .list(&ListFilter {
            page_token: t1,
            ..f.clone()
        })
        .unwrap();
    assert_eq!(ids(&p2), ["id1", "id0"]);
    assert_eq!(t2, None);
}

#[test]
fn list_pages_are_stable_while_new_analyses_arrive() {
    let s = store();
    for i in 0..4 {
        created(&s, &new(&format!("id{i}"), "x", i));
    }
    let f = ListFilter {
        page_size: 2,
        ..Default::default()
    };
    let (_, t1) = s.list(&f).unwrap();
    created(&s, &new("newest", "x", 100));
    let (p2, _) = s
        .list(&ListFilter {
            page_token: t1,
            ..f
        })
        .unwrap();
    assert_eq!(ids(&p2), ["id1", "id0"]);
}

#[test]
fn list_filters_by_app_and_states() {
    let s = store();
    created(&s, &new("c1", "checkout", 1));
    created(&s, &new("c2", "checkout", 2));
    created(&s, &new("c3", "checkout", 3));
    created(&s, &new("p1", "payments", 4));
    let running = NewEntry {
        state: Some("running".into()),
        ..ev("{}", 5)
    };
    let failed = NewEntry {
        state: Some("failed".into()),
        ..ev("{}", 5)
    };
    s.append("c2", std::slice::from_ref(&running)).unwrap();
    s.append("c3", &[failed]).unwrap();
    s.append("p1", &[running]).unwrap();
    let list = |app: Option<&str>, states: &[&str]| {
        let (rows, _) = s
            .list(&ListFilter {
                app: app.map(String::from),
                states: states.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap();
        ids(&rows).iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(list(Some("checkout"), &[]), ["c3", "c2", "c1"]);
    assert_eq!(list(None, &["running"]), ["p1", "c2"]);
    assert_eq!(
        list(Some("checkout"), &["running", "pending"]),
        ["c2", "c1"]
    );
    assert_eq!(list(Some("checkout"), &["cancelled"]), Vec::<String>::new());
    assert_eq!(list(Some("nobody"), &[]), Vec::<String>::new());
}

#[test]
fn list_page_size_zero_means_default_and_large_is_capped() {
    let s = store();
    for i in 0..(MAX_PAGE_SIZE as i64 + 1) {
        created(&s, &new(&format!("id{i:05}"), "x", i));
    }
    let (rows, next) = s.list(&ListFilter::default()).unwrap();
    assert_eq!(rows.len(), 50);
    assert!(next.is_some());
    let (rows, next) = s
        .list(&ListFilter {
            page_size: u32::MAX,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1000);
    let (rest, last) = s
        .list(&ListFilter {
            page_size: u32::MAX,
            page_token: next,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&rest), ["id00000"]);
    assert_eq!(last, None);
}

#[test]
fn list_rejects_garbage_and_foreign_tokens() {
    let s = store();
    for i in 0..3 {
        created(&s, &new(&format!("id{i}"), "x", i));
    }
    let e = s
        .list(&ListFilter {
            page_token: Some("not-a-token".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(r#"invalid page_token "not-a-token": not a token issued"#),
        "{e}"
    );
    let (_, token) = s
        .list(&ListFilter {
            page_size: 1,
            app: Some("x".into()),
            ..Default::default()
        })
        .unwrap();
    let e = s
        .list(&ListFilter {
            page_size: 1,
            page_token: token,
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("different filter"), "{e}");
}

#[test]
fn unfinished_returns_pending_and_running_oldest_first() {
    let s = store();
    created(&s, &new("late-pending", "x", 30));
    created(&s, &new("running", "x", 20));
    created(&s, &new("done", "x", 10));
    created(&s, &new("early-pending", "x", 5));
    s.append(
        "running",
        &[NewEntry {
            state: Some("running".into()),
            next_interval: Some(7),
            ..ev("{}", 40)
        }],
    )
    .unwrap();
    s.append(
        "done",
        &[NewEntry {
            state: Some("succeeded".into()),
            finished_ms: Some(40),
            ..ev("{}", 40)
        }],
    )
    .unwrap();
    let rows = s.unfinished().unwrap();
    assert_eq!(ids(&rows), ["early-pending", "running", "late-pending"]);
    assert!(rows.iter().all(|r| !r.is_finished()));
    assert!(s.get("done").unwrap().unwrap().is_finished());
    assert_eq!(rows[1].next_interval, 7);
    assert!(store().unfinished().unwrap().is_empty());
}

fn fb(app: &str, subject: &str, created_ms: i64, expires_ms: i64) -> Feedback {
    Feedback {
        app: app.into(),
        subject: subject.into(),
        kind: "false_positive".into(),
        note: "known noisy".into(),
        created_ms,
        expires_ms,
    }
}

#[test]
fn feedback_expires_exactly_at_expires_ms() {
    let s = store();
    let f = fb("checkout", "metric:latency_p99", 1_000, 2_000);
    let id1 = s.add_feedback(&f).unwrap();
    let id2 = s
        .add_feedback(&fb("checkout", "log:42", 1_500, 5_000))
        .unwrap();
    assert!(id2 > id1);
    s.add_feedback(&fb("payments", "metric:x", 0, 9_000))
        .unwrap();
    assert_eq!(s.feedback_for("checkout", 1_999).unwrap()[0], f);
    let subjects = |now| -> Vec<String> {
        s.feedback_for("checkout", now)
            .unwrap()
            .into_iter()
            .map(|f| f.subject)
            .collect()
    };
    assert_eq!(subjects(1_999), ["metric:latency_p99", "log:42"]);
    assert_eq!(subjects(2_000), ["log:42"]);
    assert_eq!(subjects(4_999), ["log:42"]);
    assert_eq!(subjects(5_000), Vec::<String>::new());
    assert!(s.feedback_for("nobody", 0).unwrap().is_empty());
    // Purging at 2_000 removes exactly the one that expired at 2_000.
    assert_eq!(s.purge_expired_feedback(2_000).unwrap(), 1);
    assert_eq!(s.purge_expired_feedback(2_000).unwrap(), 0);
    assert_eq!(subjects(0), ["log:42"]);
}

#[test]
fn feedback_rejects_bad_input() {
    let s = store();
    let e = s.add_feedback(&fb("x", "s", 10, 10)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid feedback expires_ms: 10 is not after created_ms 10"),
        "{e}"
    );
    let e = s.add_feedback(&fb("", "s", 1, 10)).unwrap_err();
    assert_eq!(e.to_string(), "invalid feedback app: must not be empty");
    let e = s.add_feedback(&fb("x", "", 1, 10)).unwrap_err();
    assert_eq!(e.to_string(), "invalid feedback subject: must not be empty");
}

fn finish(s: &Store, id: &str, state: &str, finished_ms: Option<i64>, at_ms: i64) {
    s.append(
        id,
        &[NewEntry {
            state: Some(state.into()),
            finished_ms,
            ..ev("{}", at_ms)
        }],
    )
    .unwrap();
}

#[test]
fn purge_deletes_old_finished_analyses_with_their_entries_only() {
    let s = store();
    for id in [
        "old-done",
        "at-cutoff",
        "new-done",
        "old-running",
        "old-nofinish",
    ] {
        created(&s, &new(id, "x", 0));
    }
    finish(&s, "old-done", "succeeded", Some(99), 99);
    finish(&s, "at-cutoff", "failed", Some(100), 100);
    finish(&s, "new-done", "cancelled", Some(500), 500);
    finish(&s, "old-running", "running", None, 10);
    // Final state but no finished_ms: updated_ms (50) decides.
    finish(&s, "old-nofinish", "error", None, 50);
    assert_eq!(s.purge_finished_before(100).unwrap(), 2);
    let (rows, _) = s.list(&ListFilter::default()).unwrap();
    let mut left: Vec<&str> = ids(&rows);
    left.sort_unstable();
    assert_eq!(left, ["at-cutoff", "new-done", "old-running"]);
    assert_eq!(s.get("old-done").unwrap(), None);
    let orphans: i64 = raw(&s)
        .query_row(
            "SELECT count(*) FROM entries WHERE analysis_id IN ('old-done', 'old-nofinish')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(s.purge_finished_before(100).unwrap(), 0);
    // Running analyses survive any cutoff.
    assert_eq!(s.purge_finished_before(i64::MAX).unwrap(), 2);
    assert_eq!(ids(&s.unfinished().unwrap()), ["old-running"]);
    s.check_consistency().unwrap();
}

#[test]
fn corrupt_rows_are_errors_naming_the_row() {
    let s = store();
    created(&s, &new("bad-seq", "x", 0));
    created(&s, &new("bad-interval", "x", 1));
    raw(&s)
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE analyses SET last_seq = -3 WHERE id = 'bad-seq';
             UPDATE analyses SET next_interval = 1099511627776 WHERE id = 'bad-interval';
             PRAGMA ignore_check_constraints = OFF;",
        )
        .unwrap();
    let e = s.get("bad-seq").unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"corrupt store row: analyses row "bad-seq": last_seq is -3"#
    );
    let e = s.get("bad-interval").unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"analyses row "bad-interval": next_interval"#),
        "{e}"
    );
    // A listing that meets the row fails rather than skipping it silently.
    assert!(matches!(
        s.list(&ListFilter::default()),
        Err(StoreError::Corrupt(_))
    ));
    let e = s.append("bad-seq", &[ev("{}", 1)]).unwrap_err();
    assert!(e.to_string().contains("bad-seq"), "{e}");
}

#[test]
fn consistency_check_reports_a_gap_in_entries() {
    let s = store();
    created(&s, &new("a", "x", 0));
    s.append("a", &[ev("1", 1), ev("2", 2), ev("3", 3)])
        .unwrap();
    s.check_consistency().unwrap();
    raw(&s)
        .execute(
            "DELETE FROM entries WHERE analysis_id = 'a' AND seq = 2",
            [],
        )
        .unwrap();
    let e = s.check_consistency().unwrap_err().to_string();
    assert!(
        e.contains(r#"analysis "a": last_seq 3 but 2 entries numbered 1..=3"#),
        "{e}"
    );
}

#[test]
fn foreign_keys_are_enforced() {
    let s = store();
    let e = raw(&s)
        .execute(
            "INSERT INTO entries (analysis_id, seq, kind, payload_json, at_ms) \
             VALUES ('ghost', 1, 'event', '{}', 0)",
            [],
        )
        .unwrap_err();
    assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
}
