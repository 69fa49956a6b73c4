//! One delivery attempt per channel, classified: delivered, retry (with the receiver's
//! `Retry-After` when it gave one), or a permanent failure. Error texts never carry a secret: a
//! request error is shown without its URL (Slack's URL is the secret), and a secret that cannot be
//! read is named by its variable or file.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::config::{Email, Slack, Target, Webhook};
use super::content::Message;

/// How long one HTTP attempt or SMTP session may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes of a receiver's error body kept in `last_error`.
const ERROR_BODY_MAX: usize = 200;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Try again (after `after` when the receiver said so).
    Retry {
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
        /// Why.
        error: String,
    },
    /// Never again (a 4xx other than 429, an SMTP 5xx, a configuration that cannot work).
    Permanent(String),
}

fn retry(error: impl Into<String>) -> Outcome {
    Outcome::Retry {
        after: None,
        error: error.into(),
    }
}

/// HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`, as lowercase hex: the value of
/// `X-Vigil-Signature` after `sha256=`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex(ctx.sign().as_ref())
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(D[usize::from(x >> 4)]));
        s.push(char::from(D[usize::from(x & 15)]));
    }
    s
}

/// Sends messages; one per service (it holds the HTTP connection pool).
#[derive(Debug, Clone)]
pub struct Sender {
    http: reqwest::Client,
}

fn request_error(e: reqwest::Error) -> String {
    // Without the URL: Slack's webhook URL is the secret.
    let e = e.without_url();
    let mut m = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        if !m.is_empty() {
            m.push_str(": ");
        }
        m.push_str(&s.to_string());
        src = s.source();
    }
    m
}

fn body_snippet(b: &str) -> String {
    super::content::truncate(b.trim(), ERROR_BODY_MAX)
}

/// `Retry-After` in either form RFC 9110 allows: delay-seconds, or an HTTP-date (then the wait
/// is from now, and a date already past means "now"). Capped at an hour.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    retry_after_value(v, std::time::SystemTime::now())
}

fn retry_after_value(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let wait = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

fn classify(status: reqwest::StatusCode, after: Option<Duration>, body: &str) -> Outcome {
    let error = format!("HTTP {}: {}", status.as_u16(), body_snippet(body));
    // 429 (rate limit) and 5xx are passing; every other answer will not change by itself.
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry { after, error }
    } else {
        Outcome::Permanent(error)
    }
}

impl Sender {
    /// A sender (needs the process's rustls provider installed for https receivers).
    pub fn new() -> Result<Sender, String> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect would re-send the signed body elsewhere: a receiver must answer itself.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", request_error(e)))?;
        Ok(Sender { http })
    }

    /// One attempt to deliver `msg` to `target`.
    pub async fn send(&self, target: &Target, msg: &Message) -> Outcome {
        if let Some(s) = &target.slack {
            self.slack(s, msg).await
        } else if let Some(e) = &target.email {
            email(e, msg).await
        } else if let Some(w) = &target.webhook {
            self.webhook(w, msg).await
        } else {
            Outcome::Permanent("target names no channel".into())
        }
    }

    async fn slack(&self, s: &Slack, msg: &Message) -> Outcome {
        let Some(url) = s.url() else {
            return Outcome::Permanent("no webhook URL".into());
        };
        let url = match url.resolve() {
            Ok(u) => u,
            Err(e) => return retry(e.to_string()),
        };
        let r = match self.http.post(url).json(&msg.slack()).send().await {
            Ok(r) => r,
            Err(e) => return retry(request_error(e)),
        };
        let status = r.status();
        let after = retry_after(r.headers());
        let body = r.text().await.unwrap_or_default();
        // Slack's success is 200 with the body `ok`, nothing else.
        if status == reqwest::StatusCode::OK {
            if body.trim() == "ok" {
                return Outcome::Delivered;
            }
            return Outcome::Permanent(format!("HTTP 200 without `ok`: {}", body_snippet(&body)));
        }
        classify(status, after, &body)
    }

    async fn webhook(&self, w: &Webhook, msg: &Message) -> Outcome {
        let Some(secret) = w.secret() else {
            return Outcome::Permanent("no secret".into());
        };
        let secret = match secret.resolve() {
            Ok(s) => s,
            Err(e) => return retry(e.to_string()),
        };
        let body = match serde_json::to_vec(&msg.webhook()) {
            Ok(b) => b,
            Err(e) => return Outcome::Permanent(format!("cannot encode the body: {e}")),
        };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = signature(secret.as_bytes(), ts, &body);
        let r = self
            .http
            .post(&w.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Vigil-Timestamp", ts.to_string())
            .header("X-Vigil-Signature", format!("sha256={sig}"))
            .header("X-Vigil-Delivery", msg.key.as_str())
            .body(body)
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => return retry(request_error(e)),
        };
        let status = r.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let after = retry_after(r.headers());
        let body = r.text().await.unwrap_or_default();
        classify(status, after, &body)
    }
}

/// The `Message-ID` of an email: the idempotency key, so a mail client can drop a repeat.
pub fn message_id(key: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@vigil>")
}

async fn email(e: &Email, msg: &Message) -> Outcome {
    let from: Mailbox = match e
        .from
        .as_deref()
        .unwrap_or("Vigil <vigil@localhost>")
        .parse()
    {
        Ok(m) => m,
        Err(err) => return Outcome::Permanent(format!("from: {err}")),
    };
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(msg.title())
        .message_id(Some(message_id(&msg.key)));
    for to in &e.to {
        match to.parse::<Mailbox>() {
            Ok(m) => b = b.to(m),
            Err(err) => return Outcome::Permanent(format!("to {to}: {err}")),
        }
    }
    let mail = match b.multipart(MultiPart::alternative_plain_html(msg.text(), msg.html())) {
        Ok(m) => m,
        Err(err) => return Outcome::Permanent(format!("cannot build the email: {err}")),
    };
    let s = &e.smtp;
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .timeout(Some(ATTEMPT_TIMEOUT));
    if s.starttls {
        let mut tls = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = match std::fs::read(ca) {
                Ok(p) => p,
                Err(err) => return retry(format!("cannot read ca_file {ca}: {err}")),
            };
            match Certificate::from_pem(&pem) {
                Ok(c) => tls = tls.add_root_certificate(c),
                Err(err) => return Outcome::Permanent(format!("ca_file {ca}: {err}")),
            }
        }
        match tls.build_rustls() {
            Ok(p) => t = t.tls(Tls::Required(p)),
            Err(err) => return Outcome::Permanent(format!("TLS setup: {err}")),
        }
    }
    if let (Some(user), Some(pw)) = (&s.username, s.password()) {
        match pw.resolve() {
            Ok(pw) => t = t.credentials(Credentials::new(user.clone(), pw)),
            Err(err) => return retry(err.to_string()),
        }
    }
    match t.build().send(mail).await {
        Ok(_) => Outcome::Delivered,
        // An SMTP 5xx (a refused recipient, failed AUTH) will not change by itself.
        Err(err) if err.is_permanent() => Outcome::Permanent(format!("SMTP: {err}")),
        Err(err) => retry(format!("SMTP: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 §10.2.3 allows both forms; the date is RFC 9110's own example, 1994-11-06
    /// 08:49:37 GMT = Unix 784111777.
    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        use std::time::UNIX_EPOCH;
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 120);
        assert_eq!(retry_after_value("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        // A date already past: retry now.
        let later = UNIX_EPOCH + Duration::from_secs(784_111_777 + 5);
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_value("86400", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after_value("soon", now), None);
        assert_eq!(retry_after_value("-5", now), None);
    }

    /// RFC 4231, test case 2 ("Jefe", "what do ya want for nothing?"): the reference is the RFC's
    /// published value, not this code. The signature covers "timestamp.body", so the vector is
    /// split as timestamp-less input by checking the raw HMAC through `ring` directly and then
    /// our framing against a hand-built message.
    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Framing: "<ts>.<body>" — the same HMAC over the concatenated bytes.
        let framed = ring::hmac::sign(&key, b"17.{}");
        assert_eq!(signature(b"Jefe", 17, b"{}"), hex(framed.as_ref()));
    }

    #[test]
    fn classification_follows_slack_contract() {
        let s = reqwest::StatusCode::from_u16;
        assert!(matches!(
            classify(s(429).unwrap(), Some(Duration::from_secs(3)), "rate_limited"),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(s(500).unwrap(), None, "rollup_error"),
            Outcome::Retry { .. }
        ));
        for code in [400, 403, 404, 410] {
            assert!(matches!(
                classify(s(code).unwrap(), None, "x"),
                Outcome::Permanent(_)
            ));
        }
    }

    #[tokio::test]
    async fn a_failed_request_never_shows_the_url() {
        crate::service::tls::install_provider();
        // A port nothing listens on: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t: Target = serde_json::from_value(serde_json::json!({
            "slack": {"webhook_url": format!("http://127.0.0.1:{port}/services/T/B/TOPSECRET")}
        }))
        .unwrap();
        let msg = Message {
            key: "a/final/0".into(),
            analysis_id: "a".into(),
            app: "app".into(),
            event: "fail".into(),
            headline: "finished Fail".into(),
            state: "failed".into(),
            verdict: Some("Fail".into()),
            score: Some(10.0),
            findings: vec![],
            action: None,
            link: "http://x/analyses/a".into(),
        };
        match Sender::new().unwrap().send(&t, &msg).await {
            Outcome::Retry { error, .. } => {
                assert!(!error.contains("TOPSECRET"), "{error}");
                assert!(!error.is_empty());
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn message_ids_are_valid_and_distinct() {
        assert_eq!(message_id("a-1/final/0"), "<a-1.final.0@vigil>");
        assert_ne!(message_id("a/final/0"), message_id("a/final/1"));
    }
}
