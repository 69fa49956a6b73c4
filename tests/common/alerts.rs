//! Notification receivers for the end-to-end tests, shared by tests/service_notify.rs and
//! tests/service_loop.rs: a Slack incoming-webhook receiver (axum; checks the Block Kit shape and
//! Slack's limits, answers 429 with `Retry-After` once), a webhook receiver that checks the HMAC
//! signature with its own HMAC-SHA256 (over `sha2`; service_notify.rs checks it against
//! RFC 4231), a small Prometheus HTTP API, and a real SMTP server (aiosmtpd, STARTTLS required,
//! AUTH). Included with `#[path = "common/alerts.rs"] mod alerts;` next to `mod common;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::TempDir;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

pub const SLACK_SECRET_PATH: &str = "T0001/B0001/SLACKPATHSECRET";
pub const HOOK_KEY: &str = "hook-key-5f1e";
pub const SMTP_USER: &str = "vigil";
pub const SMTP_PASSWORD: &str = "SMTPPWSECRET";

/// HMAC-SHA256 (RFC 2104) written out over `sha2`: the reference the service's signature (ring)
/// is checked against.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
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

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Default)]
pub struct Receivers {
    /// While false every HTTP receiver answers 503 (Slack's `rollup_error`-style outage).
    pub open: AtomicBool,
    /// Slack: accepted payloads.
    pub slack: Mutex<Vec<serde_json::Value>>,
    /// Slack: payloads that broke the contract (must stay empty).
    pub slack_bad: Mutex<Vec<String>>,
    /// Slack: requests that passed the checks (the first is answered 429).
    pub slack_429: AtomicUsize,
    /// Slack: when each request that passed the checks came.
    pub slack_times: Mutex<Vec<Instant>>,
    /// Requests refused while closed.
    pub refused: AtomicUsize,
    /// Webhook: (delivery key, body) of accepted, correctly signed requests.
    pub hooks: Mutex<Vec<(String, serde_json::Value)>>,
    /// Webhook: requests whose signature did not verify (must stay empty).
    pub hooks_bad: Mutex<Vec<String>>,
}

pub fn check_block_kit(v: &serde_json::Value) -> Result<(), String> {
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

pub async fn slack(State(r): State<Arc<Receivers>>, body: Bytes) -> axum::response::Response {
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

pub async fn hook(
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
pub async fn prometheus(body: Bytes) -> axum::response::Response {
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
pub fn serve_receivers(r: Arc<Receivers>) -> SocketAddr {
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

pub fn python() -> PathBuf {
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
pub fn pki(dir: &TempDir) -> String {
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

pub struct Smtp {
    child: Child,
    _stdin: ChildStdin,
    out: PathBuf,
}

impl Smtp {
    pub fn start(dir: &TempDir, port: u16) -> Smtp {
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

    pub fn mails(&self) -> Vec<serde_json::Value> {
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

/// RFC 3339 of a Unix second (days from civil), to keep the test free of date crates.
pub fn rfc3339(t: u64) -> String {
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

/// The environment `vigil serve` needs for the targets of [`notify_all`] (their secrets).
pub const NOTIFY_ENV: [(&str, &str); 2] = [
    ("VIGIL_TEST_SMTP_PW", SMTP_PASSWORD),
    ("VIGIL_TEST_HOOK_KEY", HOOK_KEY),
];

/// The `--notify-backoff-max` and `--public-url` flags the tests run the service with.
pub const NOTIFY_FLAGS: [&str; 4] = [
    "--notify-backoff-max",
    "1s",
    "--public-url",
    "https://vigil.example.com/",
];

/// A spec's `notify:` list (the items, two-space indented): Slack, email and webhook to the
/// receivers at `recv` and the SMTP server on `smtp_port`, in that order (targets 0, 1, 2). `on`
/// gives each one's `on:` list (`[started, fail]` …), `None` for the default.
pub fn notify_all(recv: SocketAddr, smtp_port: u16, ca: &str, on: [Option<&str>; 3]) -> String {
    let on = on.map(|o| o.map(|l| format!("    on: {l}\n")).unwrap_or_default());
    format!(
        "  - slack: {{webhook_url: 'http://{recv}/services/{SLACK_SECRET_PATH}'}}
{}  - email:
      to: [oncall@example.com]
      from: Vigil <vigil@example.com>
      smtp: {{host: 127.0.0.1, port: {smtp_port}, ca_file: '{ca}', username: {SMTP_USER}, password_env: VIGIL_TEST_SMTP_PW}}
{}  - webhook: {{url: 'http://{recv}/hook', secret_env: VIGIL_TEST_HOOK_KEY}}
{}",
        on[0], on[1], on[2]
    )
}
