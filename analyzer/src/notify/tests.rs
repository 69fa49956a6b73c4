//! The `notify:` spec, its redaction, and which entries enqueue which rows (in-memory store).

use super::*;
use crate::service::spec::{Spec, SpecError};
use crate::store::{CreateOutcome, NewAnalysis, OutboxMark};

const BASE: &str = "app: checkout
baseline: {labels: {version: v1}}
canary: {labels: {version: v2}}
lifetime: 10m
";

fn parse(notify: &str) -> Result<Spec, SpecError> {
    Spec::parse(&format!("{BASE}notify:\n{notify}"))
}

fn err(notify: &str) -> String {
    parse(notify).unwrap_err().to_string()
}

#[test]
fn a_full_notify_list_parses_with_default_events() {
    let s = parse(
        "  - slack: {webhook_url: 'https://hooks.slack.test/T/B/x'}
  - email:
      to: [ops@example.com]
      from: vigil@example.com
      smtp: {host: smtp.example.com, username: u, password_env: SMTP_PW, ca_file: /ca.pem}
    on: [fail, pass, interim]
  - webhook: {url: 'https://example.com/hook', secret_file: /run/secret}
    on: [started, cancelled, rollback, promote, error, inconclusive, marginal]
",
    )
    .unwrap();
    let n = s.notify.unwrap();
    assert_eq!(n.len(), 3);
    assert_eq!(
        n[0].on,
        vec![
            Event::Fail,
            Event::Marginal,
            Event::Rollback,
            Event::Promote
        ]
    );
    assert_eq!(n[1].on, vec![Event::Fail, Event::Pass, Event::Interim]);
    let smtp = &n[1].email.as_ref().unwrap().smtp;
    assert_eq!((smtp.port, smtp.starttls), (587, true));
    assert_eq!(smtp.password(), Some(config::SecretRef::Env("SMTP_PW")));
    assert_eq!(n[2].channel(), "webhook");
}

#[test]
fn bad_notify_entries_are_refused_with_their_path() {
    let e = err("  - slack: {webhook_url: 'https://x.test/a'}\n    on: [fial]\n");
    assert!(
        e.starts_with("notify[0].on[0]") && e.contains("fial"),
        "{e}"
    );
    let e = err("  - slack: {webhook_url: 'https://x.test/a', channel: ops}\n");
    assert!(
        e.contains("notify[0].slack") && e.contains("channel"),
        "{e}"
    );
    let e = err("  - slack: {webhook_url: 'https://x.test/a'}\n    webhook: {url: 'https://y.test', secret: k}\n");
    assert!(
        e.starts_with("notify[0]:") && e.contains("exactly one"),
        "{e}"
    );
    let e = err("  - slack: {webhook_url: 'https://x.test/a', webhook_url_env: SLACK}\n");
    assert!(
        e.starts_with("notify[0].slack:") && e.contains("one of"),
        "{e}"
    );
    let e = err("  - slack: {}\n");
    assert!(e.starts_with("notify[0].slack:"), "{e}");
    // A malformed inline URL is refused without repeating it (it is a secret).
    let e = err("  - slack: {webhook_url: 'hooks.slack.test/T/B/secretpart'}\n");
    assert!(
        e.starts_with("notify[0].slack.webhook_url:") && !e.contains("secretpart"),
        "{e}"
    );
    let e = err("  - webhook: {url: 'https://y.test'}\n");
    assert!(
        e.starts_with("notify[0].webhook:") && e.contains("secret"),
        "{e}"
    );
    let e = err("  - email: {to: [], smtp: {host: h}}\n");
    assert!(e.starts_with("notify[0].email.to:"), "{e}");
    let e = err("  - email: {to: [not-an-address], smtp: {host: h}}\n");
    assert!(e.starts_with("notify[0].email.to[0]:"), "{e}");
    let e = err("  - email: {to: [a@b.c], smtp: {host: h, username: u}}\n");
    assert!(
        e.starts_with("notify[0].email.smtp:") && e.contains("password"),
        "{e}"
    );
    let e = err(
        "  - email: {to: [a@b.c], smtp: {host: h, username: u, password: p, starttls: false}}\n",
    );
    assert!(e.starts_with("notify[0].email.smtp.starttls:"), "{e}");
    let e = err("  - webhook: {url: 'https://y.test', secret: k}\n    on: []\n");
    assert!(e.starts_with("notify[0].on:"), "{e}");
    let e = err("  - webhook: {url: 'https://y.test', secret: k}\n    on: [fail, fail]\n");
    assert!(e.starts_with("notify[0].on[1]:"), "{e}");
}

#[test]
fn inline_secrets_are_redacted_and_references_kept() {
    let s = parse(
        "  - slack: {webhook_url: 'https://hooks.slack.test/T/B/SLACKSECRET'}
  - email: {to: [a@b.c], smtp: {host: h, username: u, password: PWSECRET}}
  - webhook: {url: 'https://u:URLPW@example.com/hook?token=QSECRET', secret: HMACSECRET}
  - webhook: {url: 'https://example.com/h2', secret_env: HOOK_KEY}
",
    )
    .unwrap();
    let stored = s.to_json();
    // The store holds inline secrets (it must, to send) …
    assert!(stored.contains("SLACKSECRET") && stored.contains("HMACSECRET"));
    let shown = config::redact_spec_json(&stored);
    for secret in ["SLACKSECRET", "PWSECRET", "HMACSECRET", "URLPW", "QSECRET"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("HOOK_KEY") && shown.contains(config::REDACTED));
    // … and what is shown is still a spec of the same shape.
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["notify"][1]["email"]["smtp"]["username"], "u");
}

#[test]
fn secrets_resolve_from_env_and_file_and_name_only_the_source() {
    let dir = std::env::temp_dir().join(format!("vigil-notify-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("k");
    std::fs::write(&f, "  filesecret\n").unwrap();
    let p = f.to_str().unwrap();
    assert_eq!(config::SecretRef::File(p).resolve().unwrap(), "filesecret");
    let e = config::SecretRef::Env("VIGIL_TEST_SURELY_UNSET_VAR")
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(e.contains("VIGIL_TEST_SURELY_UNSET_VAR"), "{e}");
    std::fs::write(&f, "\n").unwrap();
    assert!(config::SecretRef::File(p).resolve().is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn entry(kind: &str, payload: serde_json::Value, state: Option<&str>) -> NewEntry {
    NewEntry {
        kind: kind.into(),
        payload_json: payload.to_string(),
        state: state.map(str::to_owned),
        verdict: None,
        score: None,
        next_interval: None,
        finished_ms: None,
        at_ms: 1_000,
    }
}

fn judgement(k: u32, verdict: &str) -> NewEntry {
    entry(
        "judgement",
        serde_json::json!({"interval": k, "judgement": {"verdict": verdict}}),
        Some("running"),
    )
}

fn event(kind: &str, verdict: Option<&str>, state: &str) -> NewEntry {
    entry(
        "event",
        serde_json::json!({"kind": kind, "message": format!("{kind} happened"), "state": state, "verdict": verdict}),
        Some(state),
    )
}

#[test]
fn events_map_entries_and_interim_only_on_a_change() {
    let mut last = None;
    let got = events_of(
        &[
            event("created", None, "pending"),
            judgement(1, "Pass"),
            judgement(2, "Pass"),
            judgement(3, "Fail"),
            event("extended", None, "running"),
            event("finished", Some("Fail"), "failed"),
            event("rollback", None, "failed"),
        ],
        &mut last,
    );
    let names: Vec<(Event, &str)> = got.iter().map(|(e, k, _)| (*e, k.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (Event::Started, "started"),
            (Event::Interim, "interim-1"),
            (Event::Interim, "interim-3"),
            (Event::Fail, "final"),
            (Event::Rollback, "rollback"),
        ]
    );
    assert_eq!(got[2].2, "interval 3: Pass → Fail");
    assert_eq!(last.as_deref(), Some("Fail"));
}

fn store_with(spec_notify: &str) -> (Store, String) {
    let spec = parse(spec_notify).unwrap();
    let s = Store::open_in_memory().unwrap();
    let out = s
        .create_analysis(&NewAnalysis {
            id: "a1".into(),
            app: "checkout".into(),
            spec_json: spec.to_json(),
            created_ms: 1,
        })
        .unwrap();
    assert!(matches!(out, CreateOutcome::Created(_)));
    (s, "a1".into())
}

#[test]
fn rows_follow_each_targets_events_and_a_repeat_enqueues_nothing() {
    let (s, id) = store_with(
        "  - slack: {webhook_url: 'https://x.test/a'}
  - webhook: {url: 'https://y.test', secret: k}
    on: [started, pass, fail]
",
    );
    let n = Notifier::new();
    let append = |entries: &[NewEntry]| {
        let rows = n.outbox_rows(&s, &id, entries).unwrap();
        s.append_with_outbox(&id, entries, &rows).unwrap();
        rows
    };
    let rows = append(&[event("created", None, "pending")]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, "a1/started/1");
    assert!(append(&[judgement(1, "Fail")]).is_empty());
    let fin = [event("finished", Some("Fail"), "failed")];
    let rows = append(&fin);
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["a1/final/0", "a1/final/1"]);
    // A resumed analysis appending its final event again: rows computed, none stored twice.
    append(&fin);
    let stored = s.outbox_of(&id).unwrap();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored
        .iter()
        .all(|r| r.state == "pending" && r.attempts == 0));
    // A Pass with the default `on:` sends nothing to the Slack target.
    let (s2, id2) = store_with("  - slack: {webhook_url: 'https://x.test/a'}\n");
    let rows = Notifier::new()
        .outbox_rows(&s2, &id2, &[event("finished", Some("Pass"), "succeeded")])
        .unwrap();
    assert!(rows.is_empty());
    // An action (the actions helper's `rollback` / `promote` events, appended after `finished`
    // with the final state) is in the default `on:`.
    let n2 = Notifier::new();
    for (kind, key) in [("rollback", "a1/rollback/0"), ("promote", "a1/promote/0")] {
        let rows = n2
            .outbox_rows(&s2, &id2, &[event(kind, None, "succeeded")])
            .unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec![key]);
        assert_eq!(rows[0].event, kind);
    }
}

#[test]
fn outbox_rows_are_due_marked_and_only_pending_ones_change() {
    let (s, id) = store_with("  - webhook: {url: 'https://y.test', secret: k}\n    on: [fail]\n");
    let fin = [event("finished", Some("Fail"), "failed")];
    let rows = Notifier::new().outbox_rows(&s, &id, &fin).unwrap();
    s.append_with_outbox(&id, &fin, &rows).unwrap();
    let (due, next) = s.outbox_due(1_000, 10).unwrap();
    assert_eq!((due.len(), next), (1, None));
    let key = due[0].key.clone();
    assert!(s
        .outbox_mark(
            &key,
            1_001,
            &OutboxMark::Retry {
                next_ms: 5_000,
                error: "HTTP 503".into()
            }
        )
        .unwrap());
    let (due, next) = s.outbox_due(1_002, 10).unwrap();
    assert_eq!((due.len(), next), (0, Some(5_000)));
    let (due, _) = s.outbox_due(5_000, 10).unwrap();
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].last_error.as_deref(), Some("HTTP 503"));
    assert!(s.outbox_mark(&key, 5_001, &OutboxMark::Delivered).unwrap());
    // A second mark of a delivered row changes nothing (the worker never sends it again).
    assert!(!s.outbox_mark(&key, 5_002, &OutboxMark::Delivered).unwrap());
    let r = &s.outbox_of(&id).unwrap()[0];
    assert_eq!(
        (r.state.as_str(), r.attempts, r.done_ms),
        ("delivered", 2, Some(5_001))
    );
    assert_eq!(s.outbox_due(10_000, 10).unwrap().0.len(), 0);
}

#[test]
fn a_failed_append_enqueues_nothing() {
    let (s, id) = store_with("  - webhook: {url: 'https://y.test', secret: k}\n    on: [fail]\n");
    let fin = [event("finished", Some("Fail"), "failed")];
    let rows = Notifier::new().outbox_rows(&s, &id, &fin).unwrap();
    // An entry the store refuses (empty kind) rolls the whole append back, outbox included.
    let mut bad = fin.to_vec();
    bad.push(entry("", serde_json::json!({}), None));
    assert!(s.append_with_outbox(&id, &bad, &rows).is_err());
    assert!(s.outbox_of(&id).unwrap().is_empty());
    // Deleting the analysis (retention) takes its rows with it.
    s.append_with_outbox(&id, &fin, &rows).unwrap();
    assert_eq!(s.outbox_of(&id).unwrap().len(), 1);
    assert_eq!(s.purge_finished_before(i64::MAX).unwrap(), 1);
    assert!(s.outbox_of(&id).unwrap().is_empty());
    s.check_consistency().unwrap();
}

#[test]
fn a_later_message_waits_for_an_earlier_one_to_the_same_target_only() {
    let (s, id) = store_with(
        "  - webhook: {url: 'https://y.test/0', secret: k}\n    on: [fail, rollback]\n  \
         - webhook: {url: 'https://y.test/1', secret: k}\n    on: [fail, rollback]\n",
    );
    let n = Notifier::new();
    let fin = [event("finished", Some("Fail"), "failed")];
    s.append_with_outbox(&id, &fin, &n.outbox_rows(&s, &id, &fin).unwrap())
        .unwrap();
    let keys = |now: i64| -> Vec<String> {
        let mut k: Vec<String> = s
            .outbox_due(now, 10)
            .unwrap()
            .0
            .into_iter()
            .map(|r| r.key)
            .collect();
        k.sort();
        k
    };
    // Target 0's Fail is held back (a 429's Retry-After) when the rollback is enqueued.
    let retry = OutboxMark::Retry {
        next_ms: 5_000,
        error: "HTTP 429".into(),
    };
    assert!(s.outbox_mark("a1/final/0", 1_001, &retry).unwrap());
    let rb = [event("rollback", None, "failed")];
    s.append_with_outbox(&id, &rb, &n.outbox_rows(&s, &id, &rb).unwrap())
        .unwrap();
    // Each target's rollback waits behind its own Fail: only target 1's Fail is due.
    assert_eq!(keys(2_000), ["a1/final/1"]);
    assert_eq!(s.outbox_due(2_000, 10).unwrap().1, Some(5_000));
    assert!(s
        .outbox_mark("a1/final/1", 2_001, &OutboxMark::Delivered)
        .unwrap());
    assert_eq!(keys(2_002), ["a1/rollback/1"]);
    // Once target 0's Fail is due again, it goes first; given up, it holds nothing back.
    assert_eq!(keys(5_000), ["a1/final/0", "a1/rollback/1"]);
    let failed = OutboxMark::Failed {
        error: "gave up".into(),
    };
    assert!(s.outbox_mark("a1/final/0", 5_001, &failed).unwrap());
    assert_eq!(keys(5_002), ["a1/rollback/0", "a1/rollback/1"]);
}
