//! `vigil serve --deployer-config` against the Kubernetes API test server (real HTTP API, kube's
//! client, the deployer's shipped Role bound to the service's user, so a call the Role does not
//! grant is a 403): a failing analysis rolls the canary back — the traffic invariant held over
//! the server's whole history, the outcome event once — also when the service is killed with
//! SIGKILL mid-rollback and restarted; `dry_run` changes nothing; a passing analysis is promoted
//! only with `promote: {mode: on}`.
//!
//! The analyses read a small Prometheus stand-in (as tests/service_flagger.rs: version v2 is 60 %
//! slower than v1, v3 the same) over a fixed window in the past, so each is judged at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/prometheus.rs"]
mod prometheus;
#[path = "common/serve.rs"]
mod serve;

use cluster::*;
use common::TempDir;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_analyzer::service::record::EventRecord;
use vigil_analyzer::service::store::Store;
use vigil_kube_testserver::Verb;

/// GetAnalysis's `action` once it is `done` (the mark follows the outcome event).
async fn done_action(addr: &str, id: &str) -> vigil_proto::v1::ActionState {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = vigil_proto::v1::analyses_client::AnalysesClient::new(ch);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = c
            .get_analysis(vigil_proto::v1::GetAnalysisRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        match a.action {
            Some(x) if x.state == "done" => return x,
            other => {
                assert!(Instant::now() < deadline, "{id}: action {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_rolls_the_canary_back_once_with_the_traffic_invariant_held() {
    let s = setup("rb-fail", (50, 50)).await;
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &[], &[]);
    serve.create_cli(&s.dir.0, "fail-1", &shop_spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "fail-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    // The verdict first, then the steps, then one outcome.
    assert_eq!(evs[0].0, "finished", "{evs:#?}");
    assert!(evs[0].1.starts_with("finished Fail"), "{evs:#?}");
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    let outcome = &evs.last().unwrap().1;
    assert_eq!(
        outcome, "rolled back: all traffic on deployment/shop-v001; deployment/shop-v002 removed",
        "{evs:#?}"
    );
    assert!(
        evs[1].1.starts_with("rollback started: verdict Fail"),
        "{evs:#?}"
    );
    for step in ["[pin baseline HPA]", "[move traffic]", "[remove canary]"] {
        assert!(
            evs.iter()
                .any(|(k, m)| k == "rollback_step" && m.starts_with(step)),
            "{step}: {evs:#?}"
        );
    }
    // How long from the verdict to the outcome (drain 0; the test server's pods turn ready at once).
    let at = |kind: &str| {
        let store = Store::open(&s.data()).unwrap();
        store
            .entries_since("fail-1", 0, 10_000)
            .unwrap()
            .into_iter()
            .find(|e| {
                serde_json::from_str::<EventRecord>(&e.payload_json).is_ok_and(|ev| ev.kind == kind)
            })
            .unwrap()
            .at_ms
    };
    eprintln!(
        "verdict to rolled back: {} ms",
        at("rollback") - at("finished")
    );
    // The cluster: all requests on the baseline, the canary gone, the invariant held on the way.
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_none());
    assert!(s.server.get("deployments", NS, "shop-v001").is_some());
    assert!(assert_invariant(&s.server) > 0, "traffic never moved");
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    // The page shows the action.
    let page = common::http(
        &serve.addr,
        "GET /analyses/fail-1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        page.body
            .contains("rolled back: all traffic on deployment/shop-v001"),
        "{}",
        page.body
    );
    // So does GetAnalysis: how it ended, its steps and the server groups it acted on.
    let action = done_action(&serve.addr, "fail-1").await;
    assert_eq!(
        (
            action.action.as_str(),
            action.outcome.as_str(),
            action.dry_run
        ),
        ("rollback", "succeeded", false),
        "{action:?}"
    );
    assert_eq!(&action.message, outcome);
    let steps: Vec<&str> = evs
        .iter()
        .filter(|(k, _)| k == "rollback_step")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(action.steps, steps, "{action:?}");
    assert!(action.target_json.contains("shop-v002"), "{action:?}");
    // A restart does not roll back again.
    serve.kill();
    s.server.clear_audit();
    let serve = s.serve(&config, &[], &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&events(&s.data(), "fail-1"), "rollback"), 1);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_rollback_the_service_resumes_it_and_never_runs_it_twice() {
    let s = setup("rb-kill", (50, 50)).await;
    // A 3 s drain after traffic moved: the kill lands in it.
    let config = deployer_config(&s.dir, 3);
    let serve = s.serve(&config, &[], &[]);
    serve.create_cli(&s.dir.0, "kill-1", &shop_spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "kill-1", Duration::from_secs(60), |e| {
        e.iter()
            .any(|(k, m)| k == "rollback_step" && m.starts_with("[move traffic]"))
    })
    .await;
    assert_eq!(count(&evs, "rollback"), 0, "{evs:#?}");
    serve.kill();
    // Killed while draining: traffic moved, the canary still there.
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    let restarted = Instant::now();
    let serve = s.serve(&config, &[], &[]);
    let evs = wait_events(&s.data(), "kill-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    eprintln!(
        "restart to resumed rollback done (3 s drain included): {} ms",
        restarted.elapsed().as_millis()
    );
    assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
    assert_eq!(count(&evs, "finished"), 1, "{evs:#?}");
    assert!(
        evs.iter().any(|(k, m)| k == "rollback_step" && m.starts_with("rollback resumed after a restart")),
        "{evs:#?}"
    );
    assert!(
        evs.iter()
            .any(|(_, m)| m.contains("resumed from the cluster's record")),
        "{evs:#?}"
    );
    assert!(
        evs.last()
            .unwrap()
            .1
            .starts_with("rolled back: all traffic on deployment/shop-v001"),
        "{evs:#?}"
    );
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_none());
    assert!(assert_invariant(&s.server) > 0);
    // The canary was deleted once, and the baseline never (the resumed run did not re-resolve
    // `app: shop` to the baseline as the newest group).
    let deletes: Vec<String> = writes(&s.server)
        .into_iter()
        .filter(|w| w.starts_with("delete deployments/"))
        .collect();
    assert_eq!(deletes, ["delete deployments/shop-v002"]);
    let action = done_action(&serve.addr, "kill-1").await;
    assert_eq!(action.outcome, "succeeded", "{action:?}");
    assert!(
        action
            .steps
            .iter()
            .any(|m| m.starts_with("rollback resumed after a restart")),
        "{action:?}"
    );
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    // A second restart: nothing more.
    serve.kill();
    let before = s.server.audit().len();
    let serve = s.serve(&config, &[], &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&events(&s.data(), "kill-1"), "rollback"), 1);
    assert!(s.server.audit()[before..]
        .iter()
        .all(|a| a.user != USER || !a.verb.is_write()));
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_plan_and_changes_nothing() {
    let s = setup("rb-dry", (50, 50)).await;
    let config = deployer_config(&s.dir, 0);
    let before = s.server.snapshot().objects;
    let serve = s.serve(&config, &[], &[]);
    serve.create_cli(
        &s.dir.0,
        "dry-1",
        &shop_spec(&s.prom, "v2", "rollback: {mode: dry_run, target: {namespace: shop, canary: shop-v002, baseline: shop-v001}}\n"),
    );
    let evs = wait_events(&s.data(), "dry-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    assert_eq!(
        evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["finished", "rollback"]
    );
    let plan = &evs[1].1;
    assert!(plan.starts_with("dry run (nothing changed): would roll deployment/shop-v002 back to deployment/shop-v001"), "{plan}");
    assert!(plan.contains("API calls it would make:"), "{plan}");
    assert!(plan.contains("httproutes/shop"), "{plan}");
    let action = done_action(&serve.addr, "dry-1").await;
    assert_eq!(
        (
            action.outcome.as_str(),
            action.dry_run,
            action.message.as_str()
        ),
        ("planned", true, plan.as_str()),
        "{action:?}"
    );
    assert!(action.steps.is_empty(), "{action:?}");
    // Reads only; the objects are as they were.
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert!(s
        .server
        .audit()
        .iter()
        .any(|a| a.user == USER && a.verb == Verb::Get));
    assert_eq!(s.server.snapshot().objects, before);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_promotes_with_promote_on_and_changes_nothing_without() {
    let s = setup("rb-pass", (80, 20)).await;
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &[], &[]);
    // Promote off: a Pass leaves the cluster alone (rollback on does not matter for a Pass).
    serve.create_cli(&s.dir.0, "pass-off", &shop_spec(&s.prom, "v3", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "pass-off", Duration::from_secs(60), |e| {
        count(e, "finished") > 0
    })
    .await;
    assert!(evs[0].1.starts_with("finished Pass"), "{evs:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&s.data(), "pass-off").len(), 1);
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert_eq!(share_on(&s.server, "shop-v002").await, 0.2);

    serve.create_cli(
        &s.dir.0,
        "pass-on",
        &shop_spec(
            &s.prom,
            "v3",
            &format!("{ROLLBACK_ON}promote: {{mode: on}}\n"),
        ),
    );
    let evs = wait_events(&s.data(), "pass-on", Duration::from_secs(60), |e| {
        count(e, "promote") > 0
    })
    .await;
    assert_eq!(count(&evs, "promote"), 1, "{evs:#?}");
    assert!(evs.iter().any(|(k, _)| k == "promote_step"), "{evs:#?}");
    assert_eq!(
        evs.last().unwrap().1,
        "promoted shop-v002: all traffic on it (previous: shop-v001; deleted: none)",
        "{evs:#?}"
    );
    assert_eq!(share_on(&s.server, "shop-v002").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_cut_short_by_a_crash_is_resumed_once_and_is_safe_to_repeat() {
    // The promotion has no drain to time a kill against, so the test leaves the store as a crash
    // after the deployer's calls and before the outcome leaves it: the action `started`, its
    // outcome event not written. The restarted service must run the promotion again (the
    // deployer's promote repeated on a cluster it already changed), report it once, and leave
    // all traffic on the promoted group.
    let s = setup("rb-promote", (80, 20)).await;
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &[], &[]);
    let spec = shop_spec(
        &s.prom,
        "v3",
        &format!("{ROLLBACK_ON}promote: {{mode: on}}\n"),
    );
    serve.create_cli(&s.dir.0, "promo-1", &spec);
    let evs = wait_events(&s.data(), "promo-1", Duration::from_secs(60), |e| {
        count(e, "promote") > 0
    })
    .await;
    assert_eq!(count(&evs, "promote"), 1, "{evs:#?}");
    assert_eq!(share_on(&s.server, "shop-v002").await, 1.0);
    serve.kill();
    {
        let c = rusqlite::Connection::open(s.data().join("vigil.db")).unwrap();
        let removed = c
            .execute(
                "DELETE FROM entries WHERE analysis_id = 'promo-1' AND kind = 'event' \
                 AND payload_json LIKE '{\"kind\":\"promote\"%'",
                [],
            )
            .unwrap();
        assert_eq!(removed, 1);
        let updated = c
            .execute(
                "UPDATE actions SET state = 'started' WHERE analysis_id = 'promo-1'",
                [],
            )
            .unwrap();
        assert_eq!(updated, 1);
    }
    let writes_before = writes(&s.server).len();
    let serve = s.serve(&config, &[], &[]);
    let evs = wait_events(&s.data(), "promo-1", Duration::from_secs(60), |e| {
        count(e, "promote") > 0
    })
    .await;
    assert_eq!(count(&evs, "promote"), 1, "{evs:#?}");
    assert!(
        evs.iter()
            .any(|(k, m)| k == "promote_step" && m.starts_with("promote resumed after a restart")),
        "{evs:#?}"
    );
    assert!(
        evs.last()
            .unwrap()
            .1
            .starts_with("promoted shop-v002: all traffic on it"),
        "{evs:#?}"
    );
    // Repeating it changed nothing that matters: the promoted group keeps all traffic, and both
    // groups still exist (this strategy deletes none; the repeat takes the traffic lock and
    // writes the route again with the same weights).
    assert_eq!(share_on(&s.server, "shop-v002").await, 1.0);
    assert!(s.server.get("deployments", NS, "shop-v002").is_some());
    assert!(s.server.get("deployments", NS, "shop-v001").is_some());
    assert_eq!(forbidden(&s.server), Vec::<String>::new());
    let repeated: Vec<String> = writes(&s.server).split_off(writes_before);
    assert!(
        repeated
            .iter()
            .all(|w| !w.starts_with("delete deployments/")),
        "{repeated:#?}"
    );
    // Another restart: done, nothing more.
    drop(serve);
    let after = writes(&s.server).len();
    let serve = s.serve(&config, &[], &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count(&events(&s.data(), "promo-1"), "promote"), 1);
    assert_eq!(writes(&s.server).len(), after);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_groups_of_an_argo_rollout_or_a_flagger_canary_are_refused() {
    let s = setup("rb-argo", (50, 50)).await;
    // The canary's Deployment is owned by an Argo Rollout. The test server has no Rollout
    // resource, and its garbage collector deletes an object whose owners' uids are all gone: the
    // reference borrows the uid of an object that stays (the route's).
    let uid = s.server.get("httproutes", NS, "shop").unwrap()["metadata"]["uid"].clone();
    s.server
        .patch(
            "deployments",
            NS,
            "shop-v002",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout", "name": "shop", "uid": uid}]}}),
        )
        .unwrap();
    s.server.clear_audit();
    let config = deployer_config(&s.dir, 0);
    let serve = s.serve(&config, &[], &[]);
    serve.create_cli(&s.dir.0, "argo-1", &shop_spec(&s.prom, "v2", ROLLBACK_ON));
    let evs = wait_events(&s.data(), "argo-1", Duration::from_secs(60), |e| {
        count(e, "rollback") > 0
    })
    .await;
    let m = &evs.last().unwrap().1;
    assert!(
        m.starts_with("rollback refused: deployment/shop-v002 belongs to the Argo Rollout `shop`"),
        "{m}"
    );
    assert_eq!(writes(&s.server), Vec::<String>::new());
    assert_eq!(done_action(&serve.addr, "argo-1").await.outcome, "refused");
    // Flagger's target: Flagger owns only `<target>-primary`, which it creates beside it.
    let mut primary = deployment("podinfo-primary", 1);
    primary["metadata"]["ownerReferences"] = json!([{"apiVersion": "flagger.app/v1beta1",
        "kind": "Canary", "name": "podinfo", "uid": uid}]);
    s.server.create(primary).unwrap();
    s.server.clear_audit();
    serve.create_cli(
        &s.dir.0,
        "flagger-target-1",
        &shop_spec(
            &s.prom,
            "v2",
            "rollback: {mode: on, target: {namespace: shop, canary: podinfo, baseline: shop-v001}}\n",
        ),
    );
    let evs = wait_events(
        &s.data(),
        "flagger-target-1",
        Duration::from_secs(60),
        |e| count(e, "rollback") > 0,
    )
    .await;
    let m = &evs.last().unwrap().1;
    assert!(
        m.starts_with(
            "rollback refused: deployment/podinfo is the target of the Flagger Canary `podinfo`"
        ),
        "{m}"
    );
    assert_eq!(writes(&s.server), Vec::<String>::new());
    drop(serve);
}

#[test]
fn a_bad_deployer_config_stops_the_start_with_the_field() {
    let dir = TempDir::new("rb-badcfg");
    let bad = dir.write(
        "deployer.yaml",
        "namespace: shop\ncluster: shop\ntraffic: {type: carrier_pigeon}\n",
    );
    let kubeconfig = dir.write("kubeconfig", "apiVersion: v1\nkind: Config\n");
    for (config, expected) in [
        (bad.as_str(), "--deployer-config: in "),
        (
            "/nonexistent/deployer.yaml",
            "--deployer-config: reading /nonexistent/deployer.yaml",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--otlp-grpc-listen",
                "off",
            ])
            .args(["--otlp-http-listen", "off", "--deployer-config", config])
            .args(["--kubeconfig", &kubeconfig])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    // The kubeconfig flag alone (no deployer config) is refused by the parser.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--kubeconfig", &kubeconfig])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--deployer-config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failing_analyses_of_one_app_roll_it_back_once() {
    let s = setup("rb-two", (50, 50)).await;
    let config = deployer_config(&s.dir, 1);
    let serve = s.serve(&config, &[], &[]);
    serve.create_cli(&s.dir.0, "two-a", &shop_spec(&s.prom, "v2", ROLLBACK_ON));
    serve.create_cli(&s.dir.0, "two-b", &shop_spec(&s.prom, "v2", ROLLBACK_ON));
    let mut outcomes = Vec::new();
    for id in ["two-a", "two-b"] {
        let evs = wait_events(&s.data(), id, Duration::from_secs(60), |e| {
            count(e, "rollback") > 0
        })
        .await;
        assert_eq!(count(&evs, "rollback"), 1, "{evs:#?}");
        outcomes.push(evs.last().unwrap().1.clone());
    }
    // Each analysis reports its outcome; the cluster saw one rollback: the second found the
    // canary gone and nothing recorded.
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "rolled back: all traffic on deployment/shop-v001; deployment/shop-v002 removed",
            "rolled back: deployment/shop-v002 is gone and no unfinished rollback is recorded on deployment/shop-v001",
        ]
    );
    let deletes: Vec<String> = writes(&s.server)
        .into_iter()
        .filter(|w| w.starts_with("delete deployments/"))
        .collect();
    assert_eq!(deletes, ["delete deployments/shop-v002"]);
    assert_eq!(share_on(&s.server, "shop-v001").await, 1.0);
    assert!(assert_invariant(&s.server) > 0);
    drop(serve);
}
