//! Notifications end to end: `vigil serve` as a real process, a fake-free set of receivers — a
//! Slack incoming-webhook receiver (axum, checks the Block Kit shape and Slack's limits, answers
//! 429 with `Retry-After` once), a real SMTP server (aiosmtpd, STARTTLS required, AUTH) and a
//! webhook receiver that checks the HMAC signature with its own HMAC-SHA256 (over `sha2`, checked
//! first against RFC 4231) — and a small Prometheus HTTP API answering the analyses' queries
//! (all in tests/common/alerts.rs). Exactly one message per event per channel, also across a
//! SIGKILL between the judgement and the delivery; a Pass with the default `on:` sends nothing.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

#[path = "common/alerts.rs"]
mod alerts;
mod common;
#[path = "common/serve.rs"]
mod serve;

use alerts::{
    hex, hmac_sha256, notify_all, pki, rfc3339, serve_receivers, Receivers, Smtp, HOOK_KEY,
    NOTIFY_ENV, NOTIFY_FLAGS, SMTP_PASSWORD, SMTP_USER,
};
use common::{free_port, TempDir};
use serve::{wait_until, Serve};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use vigil_proto::v1 as pb;

/// `vigil serve` with the receivers' secrets and a short notification backoff.
fn start(data: &Path) -> Serve {
    Serve::start(data, &NOTIFY_FLAGS, &NOTIFY_ENV)
}

/// The three channels, the webhook also on `started`.
fn targets(recv: SocketAddr, smtp_port: u16, ca: &str) -> String {
    notify_all(
        recv,
        smtp_port,
        ca,
        [None, None, Some("[started, fail, marginal]")],
    )
}

#[test]
fn our_reference_hmac_matches_rfc_4231() {
    // Test case 2.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6 (a key longer than the block).
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// A spec over a window that ended about an hour ago (judged at once); its canary reads high
/// when `canary` is `bad`.
fn spec(app: &str, recv: SocketAddr, canary: &str, notify: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now / 60) * 60 - 3600;
    format!(
        "app: {app}
prometheus: {{url: 'http://{recv}'}}
baseline: {{labels: {{version: base}}}}
canary: {{labels: {{version: {canary}}}}}
start: '{}'
interval: 1m
lifetime: 2m
step: 2s
metrics:
  - name: errors
    query: 'sum(errors{{${{scope}}}})'
    direction: increase
    kind: gauge
notify:
{notify}",
        rfc3339(start)
    )
}

#[test]
fn a_fail_reaches_every_channel_once_and_a_pass_sends_nothing() {
    let r = Arc::new(Receivers::default());
    r.open.store(true, Ordering::SeqCst);
    let recv = serve_receivers(r.clone());
    let dir = TempDir::new("notify");
    let ca = pki(&dir);
    let smtp_port = free_port();
    let smtp = Smtp::start(&dir, smtp_port);
    let server = start(&dir.0.join("data"));

    server.create(
        "bad-1",
        &spec("checkout", recv, "bad", &targets(recv, smtp_port, &ca)),
    );
    wait_until("bad-1 to finish", Duration::from_secs(60), || {
        server.finished("bad-1")
    });
    let a = server.get("bad-1");
    assert_eq!(a.verdict, pb::Verdict::Fail as i32, "{a:?}");
    wait_until("every delivery", Duration::from_secs(60), || {
        let a = server.get("bad-1");
        a.deliveries.len() == 4 && a.deliveries.iter().all(|d| d.state == "delivered")
    });
    // Time for a repeat to show up, if the worker were to send one.
    std::thread::sleep(Duration::from_secs(3));

    // Slack: one message (after one 429), within Block Kit's limits, saying what happened.
    assert!(
        r.slack_bad.lock().unwrap().is_empty(),
        "{:?}",
        r.slack_bad.lock().unwrap()
    );
    let slack = r.slack.lock().unwrap().clone();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(r.slack_429.load(Ordering::SeqCst), 2);
    let times = r.slack_times.lock().unwrap().clone();
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(1950),
        "Retry-After: 2 not honoured: {gap:?}"
    );
    let s = slack[0].to_string();
    assert!(s.contains("checkout") && s.contains("Fail"), "{s}");
    assert!(s.contains("errors"), "the finding is named: {s}");
    assert!(
        s.contains("https://vigil.example.com/analyses/bad-1"),
        "the link: {s}"
    );

    // Email: one multipart text + HTML message, over STARTTLS, after AUTH.
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["login"], SMTP_USER);
    assert_eq!(m["rcpt_tos"], serde_json::json!(["oncall@example.com"]));
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("text/plain") && data.contains("text/html"),
        "{data}"
    );
    assert!(data.contains("Message-ID: <bad-1.final.1@vigil>"), "{data}");

    // Webhook: started and the Fail, each once, signed, keyed.
    assert!(
        r.hooks_bad.lock().unwrap().is_empty(),
        "{:?}",
        r.hooks_bad.lock().unwrap()
    );
    let hooks = r.hooks.lock().unwrap().clone();
    let keys: Vec<&str> = hooks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["bad-1/started/2", "bad-1/final/2"], "{hooks:?}");
    let fail = &hooks[1].1;
    assert_eq!(fail["event"], "fail");
    assert_eq!(fail["analysis"]["verdict"], "Fail");
    assert!(!fail["findings"].as_array().unwrap().is_empty(), "{fail}");
    assert!(fail["findings"].as_array().unwrap().len() <= 3);

    // GetAnalysis: the delivery state, and no secret in the spec it echoes.
    let a = server.get("bad-1");
    for d in &a.deliveries {
        eprintln!(
            "{} {}: delivered {} ms after the analysis finished, {} attempts",
            d.channel,
            d.event,
            d.done_ms.unwrap() - a.finished_ms.unwrap(),
            d.attempts
        );
    }
    let slack_row = a.deliveries.iter().find(|d| d.channel == "slack").unwrap();
    assert_eq!((slack_row.event.as_str(), slack_row.attempts), ("fail", 2));
    assert!(slack_row.last_error.contains("429"), "{slack_row:?}");
    assert!(!a.spec_json.contains("SLACKPATHSECRET"), "{}", a.spec_json);
    assert!(a.spec_json.contains("VIGIL_TEST_HOOK_KEY"));
    // The analysis page lists the same deliveries (Slack's after its 429), and no secret.
    let html = server.http_get("/analyses/bad-1");
    assert!(html.starts_with("HTTP/1.1 200"), "{html}");
    let table = &html[html
        .find("<h2>Notifications</h2>")
        .expect("a notifications table")..];
    assert_eq!(
        table.matches("<td>delivered</td>").count(),
        a.deliveries.len(),
        "{table}"
    );
    assert!(
        table.contains("<td>slack</td><td>fail</td><td>delivered</td><td>2</td>"),
        "{table}"
    );
    assert!(!html.contains("SLACKPATHSECRET"));
    // And so does `vigil analysis get`, as text and as JSON.
    let text = server.cli(&["get", "bad-1"]);
    assert!(text.contains("notifications:"), "{text}");
    assert!(
        text.contains("  slack fail delivered, 2 attempts (") && text.contains("429"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&server.cli(&["get", "bad-1", "--json"])).unwrap();
    let rows = json["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), a.deliveries.len(), "{json}");
    assert!(
        rows.iter()
            .any(|d| d["channel"] == "slack" && d["attempts"] == 2 && d["state"] == "delivered"),
        "{json}"
    );
    assert!(!text.contains("SLACKPATHSECRET"));

    // A Pass with the default `on:` sends nothing (Slack and email), the webhook only `started`.
    server.create(
        "good-1",
        &spec("checkout", recv, "good", &targets(recv, smtp_port, &ca)),
    );
    wait_until("good-1 to finish", Duration::from_secs(60), || {
        server.finished("good-1")
    });
    assert_eq!(server.get("good-1").verdict, pb::Verdict::Pass as i32);
    wait_until("good-1's started", Duration::from_secs(30), || {
        r.hooks.lock().unwrap().len() == 3
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(r.slack.lock().unwrap().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    assert_eq!(r.hooks.lock().unwrap()[2].0, "good-1/started/2");
    assert_eq!(r.hooks.lock().unwrap().len(), 3);
    let g = server.get("good-1");
    assert_eq!(g.deliveries.len(), 1, "{:?}", g.deliveries);

    // /metrics: per channel.
    let m = server.metrics();
    for line in [
        "vigil_notifications_delivered_total{channel=\"slack\"} 1",
        "vigil_notifications_delivered_total{channel=\"email\"} 1",
        "vigil_notifications_delivered_total{channel=\"webhook\"} 3",
        "vigil_notifications_retried_total{channel=\"slack\"} 1",
        "vigil_notifications_failed_total{channel=\"slack\"} 0",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    // The server's log never shows a secret.
    let log = std::fs::read_to_string(dir.0.join("data.log")).unwrap_or_default();
    for secret in ["SLACKPATHSECRET", SMTP_PASSWORD, HOOK_KEY] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn a_sigkill_between_judgement_and_delivery_still_delivers_exactly_once() {
    let r = Arc::new(Receivers::default());
    let recv = serve_receivers(r.clone());
    let dir = TempDir::new("notify-kill");
    let ca = pki(&dir);
    // Nothing listens on the SMTP port yet: connection refused until after the restart.
    let smtp_port = free_port();
    let data = dir.0.join("data");
    let server = start(&data);
    server.create(
        "kill-1",
        &spec("payments", recv, "bad", &targets(recv, smtp_port, &ca)),
    );
    wait_until("kill-1 to finish", Duration::from_secs(60), || {
        server.finished("kill-1")
    });
    // The judgement is stored and its messages are enqueued but refused so far. The webhook's
    // Fail waits behind its `started` (a target gets an analysis' messages in order).
    wait_until(
        "a refused attempt on each channel",
        Duration::from_secs(30),
        || {
            let a = server.get("kill-1");
            a.deliveries.len() == 4
                && a.deliveries
                    .iter()
                    .all(|d| d.key == "kill-1/final/2" || d.attempts >= 1)
        },
    );
    let before = server.get("kill-1");
    assert!(
        before.deliveries.iter().all(|d| d.state == "pending"),
        "{:?}",
        before.deliveries
    );
    let hook_fail = before
        .deliveries
        .iter()
        .find(|d| d.key == "kill-1/final/2")
        .unwrap();
    assert_eq!(hook_fail.attempts, 0, "{hook_fail:?}");
    server.kill();
    assert!(r.slack.lock().unwrap().is_empty() && r.hooks.lock().unwrap().is_empty());

    let smtp = Smtp::start(&dir, smtp_port);
    r.open.store(true, Ordering::SeqCst);
    let server = start(&data);
    wait_until(
        "every delivery after the restart",
        Duration::from_secs(60),
        || {
            let a = server.get("kill-1");
            a.deliveries.iter().all(|d| d.state == "delivered")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(r.slack.lock().unwrap().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    let keys: Vec<String> = r
        .hooks
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(keys, vec!["kill-1/started/2", "kill-1/final/2"]);
    assert!(r.slack_bad.lock().unwrap().is_empty() && r.hooks_bad.lock().unwrap().is_empty());
    // Refused while closed: Slack's Fail and the webhook's `started` (its Fail waited behind).
    assert!(r.refused.load(Ordering::SeqCst) >= 2);
}
