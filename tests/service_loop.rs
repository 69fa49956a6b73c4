//! The whole loop: `vigil serve` with the Kubernetes deployer against the Kubernetes API test
//! server (tests/common/cluster.rs: the shop, the shipped Role, the traffic invariant over the
//! server's history) and with all three notification channels to real receivers
//! (tests/common/alerts.rs: Slack checking Block Kit and answering 429 once, aiosmtpd with
//! STARTTLS and AUTH, a webhook receiver checking the HMAC against its own). A failing analysis
//! is judged Fail, rolled back with the invariant held, and each channel gets exactly one message
//! per event, the Fail before the rollback — also when the service is SIGKILLed between the
//! judgement and the delivery (mid-rollback, receivers down) and restarted. A healthy analysis is
//! judged Pass: no cluster write, no message, unless `on: [pass]` asks for one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

#[path = "common/alerts.rs"]
mod alerts;
#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/prometheus.rs"]
mod prometheus;
#[path = "common/serve.rs"]
mod serve;

use alerts::{notify_all, pki, serve_receivers, Receivers, Smtp, NOTIFY_ENV, NOTIFY_FLAGS};
use cluster::{
    assert_invariant, count, deployer_config, events, forbidden, setup, share_on, shop_spec,
    wait_events, writes, Setup, NS, ROLLBACK_ON,
};
use common::free_port;
use serve::wait_until;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_proto::v1 as pb;

/// The rollback's outcome when it completes (the deployer's wording).
const ROLLED_BACK: &str =
    "rolled back: all traffic on deployment/shop-v001; deployment/shop-v002 removed";

/// A runtime for the cluster side (the test server's tasks run on its workers), so the test
/// itself can block on the service's gRPC client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The shop's analysis of canary `version` (v2 fails, v3 passes) with rollback on and the three
/// channels (`on` per channel, `None` the default).
fn loop_spec(
    s: &Setup,
    version: &str,
    recv: SocketAddr,
    smtp_port: u16,
    ca: &str,
    on: [Option<&str>; 3],
) -> String {
    shop_spec(
        &s.prom,
        version,
        &format!(
            "{ROLLBACK_ON}notify:\n{}",
            notify_all(recv, smtp_port, ca, on)
        ),
    )
}

/// `(channel, event)` of each delivery row, sorted, and whether all are delivered.
fn deliveries(a: &pb::Analysis) -> (Vec<(String, String)>, bool) {
    let mut d: Vec<(String, String)> = a
        .deliveries
        .iter()
        .map(|d| (d.channel.clone(), d.event.clone()))
        .collect();
    d.sort();
    (d, a.deliveries.iter().all(|d| d.state == "delivered"))
}

/// What each channel received for analysis `id` failing and being rolled back: exactly two
/// messages, the Fail then the rollback, the latter saying it completed.
fn assert_fail_then_rollback(r: &Receivers, smtp: &Smtp, id: &str) {
    // Slack: Block Kit within limits (the receiver checked each), the Fail first.
    assert!(
        r.slack_bad.lock().unwrap().is_empty(),
        "{:?}",
        r.slack_bad.lock().unwrap()
    );
    let slack = r.slack.lock().unwrap().clone();
    assert_eq!(slack.len(), 2, "{slack:#?}");
    let title = |v: &serde_json::Value| v["text"].as_str().unwrap().to_owned();
    assert!(
        title(&slack[0]).starts_with("Vigil: shop Fail"),
        "{}",
        slack[0]
    );
    assert!(
        title(&slack[1]).starts_with("Vigil: shop rollback"),
        "{}",
        slack[1]
    );
    assert!(slack[1].to_string().contains(ROLLED_BACK), "{}", slack[1]);
    assert!(
        slack[1]
            .to_string()
            .contains(&format!("https://vigil.example.com/analyses/{id}")),
        "{}",
        slack[1]
    );

    // Email: two messages over STARTTLS after AUTH, in order, keyed per event.
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    for m in &mails {
        assert_eq!(m["tls"], true);
        assert_eq!(m["login"], alerts::SMTP_USER);
    }
    let (first, second) = (
        mails[0]["data"].as_str().unwrap(),
        mails[1]["data"].as_str().unwrap(),
    );
    assert!(
        first.contains(&format!("Message-ID: <{id}.final.1@vigil>")),
        "{first}"
    );
    assert!(first.contains("Subject: Vigil: shop Fail"), "{first}");
    assert!(
        second.contains(&format!("Message-ID: <{id}.rollback.1@vigil>")),
        "{second}"
    );
    assert!(second.contains("Subject: Vigil: shop rollback"), "{second}");
    // The text part (quoted-printable may fold it: compare without soft line breaks).
    let unfolded = second.replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains("rolled back: all traffic on"), "{second}");

    // Webhook: signed (the receiver verified each), keyed, in order.
    assert!(
        r.hooks_bad.lock().unwrap().is_empty(),
        "{:?}",
        r.hooks_bad.lock().unwrap()
    );
    let hooks = r.hooks.lock().unwrap().clone();
    let keys: Vec<&str> = hooks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [format!("{id}/final/2"), format!("{id}/rollback/2")],
        "{hooks:#?}"
    );
    assert_eq!(hooks[0].1["event"], "fail");
    assert_eq!(hooks[0].1["analysis"]["verdict"], "Fail");
    assert_eq!(hooks[1].1["event"], "rollback");
    assert_eq!(hooks[1].1["message"], ROLLED_BACK, "{}", hooks[1].1);
}

/// The cluster after a completed rollback: all requests on the baseline, the canary gone, the
/// invariant held over the whole history, nothing refused.
fn assert_rolled_back(rt: &tokio::runtime::Runtime, s: &Setup) {
    assert_eq!(rt.block_on(share_on(&s.server, "shop-v001")), 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_none());
    assert!(s.server.get("deployments", NS, "shop-v001").is_some());
    assert!(assert_invariant(&s.server) > 0, "traffic never moved");
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    let deletes: Vec<String> = writes(&s.server)
        .into_iter()
        .filter(|w| w.starts_with("delete deployments/"))
        .collect();
    assert_eq!(deletes, ["delete deployments/shop-v002"]);
}

const ALL_SIX: [(&str, &str); 6] = [
    ("email", "fail"),
    ("email", "rollback"),
    ("slack", "fail"),
    ("slack", "rollback"),
    ("webhook", "fail"),
    ("webhook", "rollback"),
];

fn all_six() -> Vec<(String, String)> {
    ALL_SIX
        .iter()
        .map(|(c, e)| ((*c).to_owned(), (*e).to_owned()))
        .collect()
}

#[test]
fn a_fail_is_rolled_back_and_each_channel_gets_the_fail_then_the_rollback_once() {
    let started = Instant::now();
    let rt = runtime();
    let s = rt.block_on(setup("loop-fail", (50, 50)));
    let r = Arc::new(Receivers::default());
    r.open.store(true, Ordering::SeqCst);
    let recv = serve_receivers(r.clone());
    let ca = pki(&s.dir);
    let smtp_port = free_port();
    let smtp = Smtp::start(&s.dir, smtp_port);
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &NOTIFY_FLAGS, &NOTIFY_ENV);

    serve.create(
        "loop-1",
        &loop_spec(&s, "v2", recv, smtp_port, &ca, [None; 3]),
    );
    let evs = rt.block_on(wait_events(
        &s.data(),
        "loop-1",
        Duration::from_secs(60),
        |e| count(e, "rollback") > 0,
    ));
    assert!(evs[0].1.starts_with("finished Fail"), "{evs:#?}");
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    assert_eq!(evs.last().unwrap().1, ROLLED_BACK, "{evs:#?}");
    assert_rolled_back(&rt, &s);

    wait_until("every delivery", Duration::from_secs(30), || {
        let (d, done) = deliveries(&serve.get("loop-1"));
        d == all_six() && done
    });
    // Time for a repeat to show up, if the worker were to send one.
    std::thread::sleep(Duration::from_secs(2));
    assert_fail_then_rollback(&r, &smtp, "loop-1");
    // Slack's 429 was honoured on the Fail; the rollback waited behind it rather than overtaking.
    let a = serve.get("loop-1");
    let slack_fail = a
        .deliveries
        .iter()
        .find(|d| d.channel == "slack" && d.event == "fail")
        .unwrap();
    assert_eq!(slack_fail.attempts, 2, "{slack_fail:?}");
    assert!(slack_fail.last_error.contains("429"), "{slack_fail:?}");
    assert_eq!(deliveries(&a).0, all_six(), "{:?}", a.deliveries);
    eprintln!("loop (fail): {} ms", started.elapsed().as_millis());
}

#[test]
fn a_sigkill_between_judgement_and_delivery_still_rolls_back_and_notifies_once() {
    let started = Instant::now();
    let rt = runtime();
    let s = rt.block_on(setup("loop-kill", (50, 50)));
    // Closed: Slack and the webhook answer 5xx; nothing listens on the SMTP port yet.
    let r = Arc::new(Receivers::default());
    let recv = serve_receivers(r.clone());
    let ca = pki(&s.dir);
    let smtp_port = free_port();
    // A 3 s drain after traffic moved: the kill lands in it, so the rollback is unfinished too.
    let config = deployer_config(&s.dir, 3);
    let serve = s.serve(&config, &NOTIFY_FLAGS, &NOTIFY_ENV);
    serve.create(
        "loop-k",
        &loop_spec(&s, "v2", recv, smtp_port, &ca, [None; 3]),
    );
    let evs = rt.block_on(wait_events(
        &s.data(),
        "loop-k",
        Duration::from_secs(60),
        |e| {
            e.iter()
                .any(|(k, m)| k == "rollback_step" && m.starts_with("[move traffic]"))
        },
    ));
    assert!(evs[0].1.starts_with("finished Fail"), "{evs:#?}");
    assert_eq!(count(&evs, "rollback"), 0, "{evs:#?}");
    // The Fail is stored and enqueued on every channel, and refused there so far.
    wait_until(
        "a refused attempt of the Fail on each channel",
        Duration::from_secs(10),
        || {
            let a = serve.get("loop-k");
            a.deliveries.len() == 3
                && a.deliveries
                    .iter()
                    .all(|d| d.event == "fail" && d.state == "pending" && d.attempts >= 1)
        },
    );
    serve.kill();
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    assert!(r.slack.lock().unwrap().is_empty() && r.hooks.lock().unwrap().is_empty());

    let smtp = Smtp::start(&s.dir, smtp_port);
    r.open.store(true, Ordering::SeqCst);
    let serve = s.serve(&config, &NOTIFY_FLAGS, &NOTIFY_ENV);
    let evs = rt.block_on(wait_events(
        &s.data(),
        "loop-k",
        Duration::from_secs(60),
        |e| count(e, "rollback") > 0,
    ));
    assert_eq!(count(&evs, "finished"), 1, "{evs:#?}");
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    assert!(
        evs.iter()
            .any(|(k, m)| k == "rollback_step" && m.starts_with("rollback resumed after a restart")),
        "{evs:#?}"
    );
    assert_eq!(evs.last().unwrap().1, ROLLED_BACK, "{evs:#?}");
    assert_rolled_back(&rt, &s);
    wait_until(
        "every delivery after the restart",
        Duration::from_secs(30),
        || {
            let (d, done) = deliveries(&serve.get("loop-k"));
            d == all_six() && done
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_fail_then_rollback(&r, &smtp, "loop-k");
    assert!(r.refused.load(Ordering::SeqCst) >= 2);

    // A second restart: no cluster write, no message, no second rollback.
    serve.kill();
    s.server.clear_audit();
    let serve = s.serve(&config, &NOTIFY_FLAGS, &NOTIFY_ENV);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&events(&s.data(), "loop-k"), "rollback"), 1);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert_eq!(r.slack.lock().unwrap().len(), 2);
    assert_eq!(r.hooks.lock().unwrap().len(), 2);
    assert_eq!(smtp.mails().len(), 2);
    drop(serve);
    eprintln!("loop (kill): {} ms", started.elapsed().as_millis());
}

#[test]
fn a_pass_changes_nothing_and_sends_nothing_unless_pass_is_asked() {
    let started = Instant::now();
    let rt = runtime();
    let s = rt.block_on(setup("loop-pass", (80, 20)));
    let r = Arc::new(Receivers::default());
    r.open.store(true, Ordering::SeqCst);
    let recv = serve_receivers(r.clone());
    let ca = pki(&s.dir);
    let smtp_port = free_port();
    let smtp = Smtp::start(&s.dir, smtp_port);
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &NOTIFY_FLAGS, &NOTIFY_ENV);

    // The default `on:` (fail, marginal, rollback, promote): a Pass sends nothing.
    serve.create(
        "pass-1",
        &loop_spec(&s, "v3", recv, smtp_port, &ca, [None; 3]),
    );
    wait_until("pass-1 to finish", Duration::from_secs(30), || {
        serve.finished("pass-1")
    });
    assert_eq!(serve.get("pass-1").verdict, pb::Verdict::Pass as i32);

    // `on: [pass]` on every channel: one pass message each.
    serve.create(
        "pass-2",
        &loop_spec(&s, "v3", recv, smtp_port, &ca, [Some("[pass]"); 3]),
    );
    wait_until("pass-2's deliveries", Duration::from_secs(30), || {
        let (d, done) = deliveries(&serve.get("pass-2"));
        d == [
            ("email".to_owned(), "pass".to_owned()),
            ("slack".to_owned(), "pass".to_owned()),
            ("webhook".to_owned(), "pass".to_owned()),
        ] && done
    });
    assert_eq!(serve.get("pass-2").verdict, pb::Verdict::Pass as i32);
    std::thread::sleep(Duration::from_secs(1));

    // pass-1: no action, no delivery row, no cluster write.
    let evs = events(&s.data(), "pass-1");
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert!(evs[0].1.starts_with("finished Pass"), "{evs:#?}");
    assert!(serve.get("pass-1").deliveries.is_empty());
    assert_eq!(count(&events(&s.data(), "pass-2"), "rollback"), 0);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert_eq!(rt.block_on(share_on(&s.server, "shop-v002")), 0.2);

    // What arrived is pass-2's Pass, once per channel.
    assert!(r.slack_bad.lock().unwrap().is_empty());
    let slack = r.slack.lock().unwrap().clone();
    assert_eq!(slack.len(), 1, "{slack:#?}");
    assert!(
        slack[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Vigil: shop Pass"),
        "{}",
        slack[0]
    );
    assert!(slack[0].to_string().contains("analyses/pass-2"));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(mails[0]["data"]
        .as_str()
        .unwrap()
        .contains("Message-ID: <pass-2.final.1@vigil>"));
    assert!(r.hooks_bad.lock().unwrap().is_empty());
    let hooks = r.hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0].0, "pass-2/final/2");
    assert_eq!(hooks[0].1["event"], "pass");
    drop(serve);
    eprintln!("loop (pass): {} ms", started.elapsed().as_millis());
}
