//! Flagger's webhooks against a real `vigil serve` process, with the exact bodies Flagger POSTs
//! (`CanaryWebhookPayload` of flagger v1.44, `pkg/controller/webhook.go`: `Content-Type:
//! application/json`, fields in Go's struct order, `metadata` the hook's string map). Flagger
//! itself cannot run here (no Kubernetes); this replays the HTTP sequence its scheduler makes for
//! a Canary whose `pre-rollout` and `rollout` hooks point at `/flagger/rollout` and whose
//! `rollback` hook points at `/flagger/rollback`: a pre-rollout call, then per iteration the
//! rollback check and the rollout hook, for one revision that fails and the next that passes.
//!
//! The analyses read a small Prometheus stand-in (answers `/api/v1/query_range` from a formula:
//! version v2 is 60 % worse than v1, v3 the same as v1) over a window in the past, so each is
//! judged at once.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use common::TempDir;
use prometheus::fake_prometheus;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Server {
    fn start(tokens: &str) -> Server {
        let dir = TempDir::new("flagger");
        let f = dir.0.join("tokens");
        std::fs::write(&f, tokens).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.0.join("data"))
            .arg("--tokens")
            .arg(f)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("vigil: serving on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: vigil\r\nuser-agent: Go-http-client/1.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = r.split_once("\r\n\r\n").unwrap().1.to_owned();
    (code, body)
}

/// The body Flagger sends: `{"name","namespace","phase","checksum","metadata"}` in that order,
/// `metadata` omitted when empty, its keys sorted (Go marshals maps sorted).
fn payload(phase: &str, checksum: &str, metadata: &[(&str, &str)]) -> String {
    let mut body = format!(
        r#"{{"name":"podinfo","namespace":"test","phase":"{phase}","checksum":"{checksum}""#
    );
    if !metadata.is_empty() {
        let mut m = metadata.to_vec();
        m.sort();
        let fields: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::json!(k), serde_json::json!(v)))
            .collect();
        body.push_str(&format!(r#","metadata":{{{}}}"#, fields.join(",")));
    }
    body.push('}');
    body
}

/// An analysis spec over a window wholly in the past (judged at once), the canary being `version`.
/// The window is fixed, not relative to now: the stand-in's readings are a hash of their time, and
/// the judge flags about 3 % of 5-minute windows of pure noise (a trend, dispersion or location
/// test under 0.01 in one of five interval looks), so a window that moved with the clock failed
/// the healthy revision one run in 30.
fn spec(prometheus: &str, version: &str) -> String {
    format!(
        "app: podinfo\nprometheus: {{url: \"http://{prometheus}\"}}\n\
         baseline: {{labels: {{app: podinfo, version: v1}}}}\n\
         canary: {{labels: {{app: podinfo, version: {version}}}}}\n\
         metrics:\n  - {{name: latency_ms, query: \"avg(latency_ms{{${{scope}}}})\", direction: increase}}\n\
         start: \"2026-01-05T12:00:00Z\"\ninterval: 1m\nstep: 10s\nlifetime: 5m\n"
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls the Argo verdict route until the analysis is final; its state.
fn wait_final(server: &Server, id: &str) -> String {
    for _ in 0..300 {
        let (code, body) = http(
            &server.addr,
            "GET",
            &format!("/v1/analyses/{id}/verdict?token=flagger-token-1"),
            "",
        );
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        if v["final"] == true {
            return v["state"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{id} did not finish");
}

const TOKENS: &str = "write flagger-token-1\nread reader-token-1\n";

#[test]
fn a_failing_revision_halts_and_rolls_back_and_the_next_revision_is_judged_on_its_own() {
    let prom = fake_prometheus();
    let server = Server::start(TOKENS);
    let bad_spec = spec(&prom, "v2");
    let good_spec = spec(&prom, "v3");
    let with_spec = |s: &str| -> Vec<(&'static str, String)> {
        vec![("spec", s.to_owned()), ("token", "flagger-token-1".into())]
    };
    let post = |path: &str, checksum: &str, m: &[(&'static str, String)]| {
        let m: Vec<(&str, &str)> = m.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(
            &server.addr,
            "POST",
            path,
            &payload("Progressing", checksum, &m),
        )
    };
    let token_only: Vec<(&str, String)> = vec![("token", "flagger-token-1".to_owned())];

    // Revision 1 (checksum 85d557f47b), whose canary is 60 % slower. The pre-rollout hook
    // creates its analysis: nothing judged yet, not failing → 200.
    let (code, body) = post("/flagger/rollout", "85d557f47b", &with_spec(&bad_spec));
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["action"], "advance");
    assert_eq!(v["analysis"], "flagger.test.podinfo.85d557f47b");
    assert_eq!(
        wait_final(&server, "flagger.test.podinfo.85d557f47b"),
        "failed"
    );
    // The next iteration: the rollback hook says roll back now (200), the rollout hook halts
    // (412, above Flagger's 202).
    let (code, body) = post("/flagger/rollback", "85d557f47b", &token_only);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["action"], "rollback");
    assert_eq!(json(&body)["verdict"], "Fail");
    let (code, body) = post("/flagger/rollout", "85d557f47b", &with_spec(&bad_spec));
    assert_eq!(code, 412, "{body}");
    assert_eq!(json(&body)["action"], "halt");

    // Revision 2 (checksum 6b8f9d7c4a): revision 1's Fail does not answer for it. Before its
    // analysis exists, neither hook may pass silently: rollout 404 halts, rollback 404 does
    // not roll back.
    let (code, body) = post("/flagger/rollback", "6b8f9d7c4a", &token_only);
    assert_eq!(code, 404, "{body}");
    assert_eq!(json(&body)["action"], "none");
    let (code, body) = post("/flagger/rollout", "6b8f9d7c4a", &token_only);
    assert_eq!(code, 404, "{body}");
    assert_eq!(json(&body)["action"], "halt");
    // Its pre-rollout hook creates it; a healthy canary passes.
    let (code, body) = post("/flagger/rollout", "6b8f9d7c4a", &with_spec(&good_spec));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["analysis"], "flagger.test.podinfo.6b8f9d7c4a");
    assert_eq!(
        wait_final(&server, "flagger.test.podinfo.6b8f9d7c4a"),
        "succeeded"
    );
    let (code, body) = post("/flagger/rollout", "6b8f9d7c4a", &with_spec(&good_spec));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["verdict"], "Pass");
    let (code, body) = post("/flagger/rollback", "6b8f9d7c4a", &token_only);
    assert_eq!(code, 412, "{body}");
    assert_eq!(json(&body)["action"], "none");
    // And revision 1 still answers Fail for itself.
    let (code, _) = post("/flagger/rollback", "85d557f47b", &token_only);
    assert_eq!(code, 200);
    // Editing the spec in the Canary mid-revision is a conflict, not a silent choice.
    let edited = good_spec.replace("lifetime: 5m", "lifetime: 4m");
    let (code, body) = post("/flagger/rollout", "6b8f9d7c4a", &with_spec(&edited));
    assert_eq!(code, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("metadata.spec: analysis `flagger.test.podinfo.6b8f9d7c4a` exists with a different spec"),
        "{body}"
    );
}

#[test]
fn bad_payloads_name_the_field_and_tokens_come_from_the_metadata() {
    let server = Server::start(TOKENS);
    let post = |path: &str, body: &str| http(&server.addr, "POST", path, body);
    let error = |body: &str| json(body)["error"].as_str().unwrap().to_owned();

    // Tokens: none → 401, unknown → 401, a read token → 403 (a hook may create an analysis:
    // write), the token as `metadata.token`, as `?token=` or as a header.
    let unknown = payload("Progressing", "abc123", &[]);
    let (code, body) = post("/flagger/rollout", &unknown);
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(
        "/flagger/rollout",
        &payload("Progressing", "abc123", &[("token", "not-a-token-1")]),
    );
    assert_eq!(code, 401);
    let (code, body) = post(
        "/flagger/rollback",
        &payload("Progressing", "abc123", &[("token", "reader-token-1")]),
    );
    assert_eq!(code, 403, "{body}");
    assert!(error(&body).contains("needs scope `write`"), "{body}");
    let (code, body) = post(
        "/flagger/rollout",
        &payload("Progressing", "abc123", &[("token", "flagger-token-1")]),
    );
    assert_eq!(code, 404, "authorised, no such analysis: {body}");
    let (code, _) = post("/flagger/rollout?token=flagger-token-1", &unknown);
    assert_eq!(code, 404);

    // Malformed payloads: 400 naming the field (the token in the query, so the body is judged
    // by the route itself).
    let bad = |body: &str| {
        let (code, b) = post("/flagger/rollout?token=flagger-token-1", body);
        assert_eq!(code, 400, "{b}");
        json(&b)["field"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        bad(r#"{"name":"podinfo","namespace":"test","phase":"Progressing"}"#),
        "checksum"
    );
    assert_eq!(
        bad(r#"{"name":7,"namespace":"test","phase":"Progressing","checksum":"abc"}"#),
        "name"
    );
    assert_eq!(
        bad(&payload("Progressing", "abc", &[("spce", "app: x")])),
        "metadata.spce"
    );
    assert_eq!(bad("{not json"), "body");
    assert_eq!(bad(&payload("Progressing", "abc-1", &[])), "checksum");
    // A spec that does not parse: the field inside it is named too.
    let (code, body) = post(
        "/flagger/rollout?token=flagger-token-1",
        &payload(
            "Progressing",
            "abc",
            &[("spec", "app: podinfo\nbaseline: {labels: {a: b}}\n")],
        ),
    );
    assert_eq!(code, 400, "{body}");
    let e = error(&body);
    assert!(e.starts_with("metadata.spec: "), "{e}");
    assert!(e.contains("canary"), "{e}");
    // No token ever reaches a response.
    assert!(!body.contains("flagger-token-1"));
}
