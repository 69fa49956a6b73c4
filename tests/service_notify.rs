//! Notifications end to end: `vigil serve` as a real process, a fake-free set of receivers — a
//! Slack incoming-webhook receiver (axum, checks the Block Kit shape and Slack's limits, answers
//! 429 with `Retry-After` once), a real SMTP server (aiosmtpd, STARTTLS required, AUTH) and a
//! webhook receiver that checks the HMAC signature with its own HMAC-SHA256 (over `sha2`, checked
//! first against RFC 4231) — and a small Prometheus HTTP API answering the analyses' queries.
//! Exactly one message per event per channel, also across a SIGKILL between the judgement and the
//! delivery; a Pass with the default `on:` sends nothing.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use common::TempDir;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use vigil_proto::v1 as pb;

const SLACK_SECRET_PATH: &str = "T0001/B0001/SLACKPATHSECRET";
const HOOK_KEY: &str = "hook-key-5f1e";
const SMTP_USER: &str = "vigil";
const SMTP_PASSWORD: &str = "SMTPPWSECRET";

// ---------------------------------------------------------------- an HMAC of our own

/// HMAC-SHA256 (RFC 2104) written out over `sha2`: the reference the service's signature (ring)
/// is checked against.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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

// ---------------------------------------------------------------- receivers

#[derive(Default)]
struct Receivers {
    /// While false every HTTP receiver answers 503 (Slack's `rollup_error`-style outage).
    open: AtomicBool,
    /// Slack: accepted payloads.
    slack: Mutex<Vec<serde_json::Value>>,
    /// Slack: payloads that broke the contract (must stay empty).
    slack_bad: Mutex<Vec<String>>,
    /// Slack: requests that passed the checks (the first is answered 429).
    slack_429: AtomicUsize,
    /// Slack: when each request that passed the checks came.
    slack_times: Mutex<Vec<Instant>>,
    /// Requests refused while closed.
    refused: AtomicUsize,
    /// Webhook: (delivery key, body) of accepted, correctly signed requests.
    hooks: Mutex<Vec<(String, serde_json::Value)>>,
    /// Webhook: requests whose signature did not verify (must stay empty).
    hooks_bad: Mutex<Vec<String>>,
}

fn check_block_kit(v: &serde_json::Value) -> Result<(), String> {
    let text = v["text"].as_str().ok_or("no fallback text")?;
    if text.is_empty() {
        return Err("empty text".into());
    }
    let blocks = v["blocks"].as_array().ok_or("no blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err("header text must be plain_text".into());
                }
                let t = b["text"]["text"].as_str().ok_or("header without text")?;
                if t.chars().count() > 150 {
                    return Err(format!("header of {} chars", t.chars().count()));
                }
            }
            Some("section") => {
                let has_text = b.get("text").is_some();
                if let Some(t) = b.get("text") {
                    let s = t["text"].as_str().ok_or("section text not a string")?;
                    if s.chars().count() > 3000 || s.is_empty() {
                        return Err(format!("section text of {} chars", s.chars().count()));
                    }
                    if !matches!(t["type"].as_str(), Some("mrkdwn" | "plain_text")) {
                        return Err("section text type".into());
                    }
                }
                match b.get("fields") {
                    Some(f) => {
                        let f = f.as_array().ok_or("fields not an array")?;
                        if f.is_empty() || f.len() > 10 {
                            return Err(format!("{} fields", f.len()));
                        }
                        for x in f {
                            let s = x["text"].as_str().ok_or("field text")?;
                            if s.chars().count() > 2000 {
                                return Err("field over 2000 chars".into());
                            }
                        }
                    }
                    None if !has_text => return Err("section without text or fields".into()),
                    None => {}
                }
            }
            other => return Err(format!("unexpected block type {other:?}")),
        }
    }
    Ok(())
}

async fn slack(State(r): State<Arc<Receivers>>, body: Bytes) -> axum::response::Response {
    if !r.open.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error").into_response();
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            r.slack_bad.lock().unwrap().push(e.to_string());
            return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
        }
    };
    if let Err(e) = check_block_kit(&v) {
        r.slack_bad.lock().unwrap().push(format!("{e}: {v}"));
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    }
    r.slack_times.lock().unwrap().push(Instant::now());
    // Rate limited once, as Slack does beyond about one message per second. Retry-After is longer
    // than the service's whole backoff here (--notify-backoff-max 1s), so an early retry shows.
    if r.slack_429.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "rate_limited",
        )
            .into_response();
    }
    r.slack.lock().unwrap().push(v);
    (StatusCode::OK, "ok").into_response()
}

async fn hook(
    State(r): State<Arc<Receivers>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if !r.open.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "closed").into_response();
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (ts, sig, key) = (
        h("x-vigil-timestamp"),
        h("x-vigil-signature"),
        h("x-vigil-delivery"),
    );
    let mut signed = ts.clone().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(&body);
    let want = format!("sha256={}", hex(&hmac_sha256(HOOK_KEY.as_bytes(), &signed)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = ts.parse::<u64>().is_ok_and(|t| t.abs_diff(now) < 300);
    if sig != want || !fresh || key.is_empty() {
        r.hooks_bad
            .lock()
            .unwrap()
            .push(format!("ts {ts} sig {sig} key {key}"));
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    r.hooks
        .lock()
        .unwrap()
        .push((key, serde_json::from_slice(&body).unwrap()));
    (StatusCode::OK, "").into_response()
}

/// The Prometheus range-query API over made-up data: the baseline reads about 1.0; a canary
/// selected by `version="bad"` reads about 5.0, any other the same as the baseline.
async fn prometheus(body: Bytes) -> axum::response::Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let field = |name: &str| -> f64 {
        text.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (start, end, step) = (field("start"), field("end"), field("step"));
    let bad = text.contains("%22bad%22") || text.contains("\"bad\"");
    let mut values = Vec::new();
    let mut t = start;
    let mut i = 0u64;
    while t <= end + 1e-9 {
        // Deterministic noise, so both sides vary.
        let noise = ((i * 7919) % 23) as f64 / 100.0;
        let v = if bad { 5.0 + noise } else { 1.0 + noise };
        values.push(serde_json::json!([t, format!("{v}")]));
        t += step;
        i += 1;
    }
    let body = serde_json::json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves the receivers and the Prometheus API on one loopback port, on its own runtime thread.
fn serve_receivers(r: Arc<Receivers>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/services/{*rest}", axum::routing::post(slack))
                .route("/hook", axum::routing::post(hook))
                .route("/api/v1/query_range", axum::routing::post(prometheus))
                .with_state(r);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

// ---------------------------------------------------------------- SMTP (aiosmtpd)

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run .ci/run (it installs aiosmtpd), or \
         `python3 -m venv .venv && .venv/bin/pip install aiosmtpd==1.4.*`, or set VIGIL_TEST_PYTHON",
        venv.display()
    );
    venv
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 (`smtp.pem`, `smtp.key`).
fn pki(dir: &TempDir) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "vigil notify test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "smtp");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let k = KeyPair::generate().unwrap();
    dir.write("smtp.pem", &leaf.signed_by(&k, &ca).unwrap().pem());
    dir.write("smtp.key", &k.serialize_pem());
    dir.write("ca.pem", &ca.pem())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Smtp {
    child: Child,
    _stdin: ChildStdin,
    out: PathBuf,
}

impl Smtp {
    fn start(dir: &TempDir, port: u16) -> Smtp {
        let out = dir.0.join("mail.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtp_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.0.join("smtp.pem"))
            .arg(dir.0.join("smtp.key"))
            .args([SMTP_USER, SMTP_PASSWORD])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        Smtp {
            child,
            _stdin: stdin,
            out,
        }
    }

    fn mails(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- vigil serve

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args([
                "--otlp-grpc-listen",
                "off",
                "--otlp-http-listen",
                "off",
                "--notify-backoff-max",
                "1s",
                "--public-url",
                "https://vigil.example.com/",
            ])
            .env("VIGIL_TEST_SMTP_PW", SMTP_PASSWORD)
            .env("VIGIL_TEST_HOOK_KEY", HOOK_KEY)
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
        let log = data.with_extension("log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(log).unwrap();
            for l in lines.map_while(Result::ok) {
                let _ = writeln!(f, "{l}");
            }
        });
        Server { child, addr }
    }

    fn kill9(mut self) {
        // Child::kill is SIGKILL on Unix: no chance to flush or mark anything.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn client(
        &self,
    ) -> (
        tokio::runtime::Runtime,
        pb::analyses_client::AnalysesClient<tonic::transport::Channel>,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://{}", self.addr);
        let c = rt.block_on(async {
            let ch = tonic::transport::Channel::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            pb::analyses_client::AnalysesClient::new(ch)
        });
        (rt, c)
    }

    fn create(&self, id: &str, spec: &str) {
        let (rt, mut c) = self.client();
        rt.block_on(c.create_analysis(pb::CreateAnalysisRequest {
            id: id.into(),
            spec: spec.into(),
        }))
        .unwrap();
    }

    fn get(&self, id: &str) -> pb::Analysis {
        let (rt, mut c) = self.client();
        rt.block_on(c.get_analysis(pb::GetAnalysisRequest { id: id.into() }))
            .unwrap()
            .into_inner()
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RFC 3339 of a Unix second (days from civil), to keep the test free of date crates.
fn rfc3339(t: u64) -> String {
    let days = (t / 86400) as i64;
    let rem = t % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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

fn notify_all(recv: SocketAddr, smtp_port: u16, ca: &str) -> String {
    format!(
        "  - slack: {{webhook_url: 'http://{recv}/services/{SLACK_SECRET_PATH}'}}
  - email:
      to: [oncall@example.com]
      from: Vigil <vigil@example.com>
      smtp: {{host: 127.0.0.1, port: {smtp_port}, ca_file: '{ca}', username: {SMTP_USER}, password_env: VIGIL_TEST_SMTP_PW}}
  - webhook: {{url: 'http://{recv}/hook', secret_env: VIGIL_TEST_HOOK_KEY}}
    on: [started, fail, marginal]
"
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finished(server: &Server, id: &str) -> bool {
    // States 4.. are final (succeeded, failed, inconclusive, error, cancelled).
    let a = server.get(id);
    a.finished_ms.is_some()
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
    let server = Server::start(&dir.0.join("data"));

    server.create(
        "bad-1",
        &spec("checkout", recv, "bad", &notify_all(recv, smtp_port, &ca)),
    );
    wait_until("bad-1 to finish", Duration::from_secs(60), || {
        finished(&server, "bad-1")
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

    // A Pass with the default `on:` sends nothing (Slack and email), the webhook only `started`.
    server.create(
        "good-1",
        &spec("checkout", recv, "good", &notify_all(recv, smtp_port, &ca)),
    );
    wait_until("good-1 to finish", Duration::from_secs(60), || {
        finished(&server, "good-1")
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
    let server = Server::start(&data);
    server.create(
        "kill-1",
        &spec("payments", recv, "bad", &notify_all(recv, smtp_port, &ca)),
    );
    wait_until("kill-1 to finish", Duration::from_secs(60), || {
        finished(&server, "kill-1")
    });
    // The judgement is stored and its messages are enqueued but refused so far.
    wait_until(
        "a refused attempt on each HTTP channel",
        Duration::from_secs(30),
        || {
            let a = server.get("kill-1");
            a.deliveries.len() == 4 && a.deliveries.iter().all(|d| d.attempts >= 1)
        },
    );
    let before = server.get("kill-1");
    assert!(
        before.deliveries.iter().all(|d| d.state == "pending"),
        "{:?}",
        before.deliveries
    );
    server.kill9();
    assert!(r.slack.lock().unwrap().is_empty() && r.hooks.lock().unwrap().is_empty());

    let smtp = Smtp::start(&dir, smtp_port);
    r.open.store(true, Ordering::SeqCst);
    let server = Server::start(&data);
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
    assert!(r.refused.load(Ordering::SeqCst) >= 3);
}
