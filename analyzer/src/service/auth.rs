//! Bearer tokens with scopes (`vigil serve --tokens FILE`), checked in front of every gRPC method
//! and HTTP route on the shared port.
//!
//! The file holds one `<scope> <token>` a line (`#` starts a comment; several tokens may share a
//! scope). Scopes nest: `ingest` < `read` < `write` < `admin`. A request carries its token as
//! `authorization: Bearer <token>`, or — for tools that cannot send a header (Flagger webhooks,
//! Argo's `kayenta` provider, Kayenta's RemoteJudge) — as a `token` query parameter, which puts
//! a secret in the URL. Flagger's webhooks (`POST /flagger/…`) may instead carry it in the body,
//! as the hook's `metadata.token`: the Canary resource then holds the secret, not the URL. No
//! token reaches a log line: failures log the path and the reason only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Send telemetry only.
    Ingest,
    /// Get, list, watch, the stateless judge, the verdict and page routes.
    Read,
    /// Read, plus create, cancel, feedback.
    Write,
    /// Everything.
    Admin,
}

impl Scope {
    fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "ingest" => Scope::Ingest,
            "read" => Scope::Read,
            "write" => Scope::Write,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        })
    }
}

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A bad line (the token itself is never repeated in the message).
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No token at all.
    #[error("{0}: no tokens (one `<scope> <token>` a line; scopes ingest, read, write, admin)")]
    Empty(String),
}

/// The accepted tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Arc<Vec<(Scope, Vec<u8>)>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} tokens)", self.tokens.len())
    }
}

/// Compares without an early exit, so the time taken says nothing about how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl Tokens {
    /// Parses a tokens file's text; `path` is for messages.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokensError> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| TokensError::Line {
                path: path.into(),
                line: i + 1,
                message,
            };
            let mut parts = line.split_whitespace();
            let (Some(scope), Some(token), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("expected `<scope> <token>`".into()));
            };
            let scope = Scope::parse(scope).ok_or_else(|| {
                err(format!(
                    "unknown scope `{scope}` (ingest, read, write, admin)"
                ))
            })?;
            if token.len() < 8 {
                return Err(err("token shorter than 8 characters".into()));
            }
            tokens.push((scope, token.as_bytes().to_vec()));
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty(path.into()));
        }
        Ok(Tokens {
            tokens: Arc::new(tokens),
        })
    }

    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// The widest scope `token` holds, if it is known. Every token is compared.
    pub fn scope_of(&self, token: &[u8]) -> Option<Scope> {
        let mut best = None;
        for (s, t) in self.tokens.iter() {
            if same(t, token) {
                best = best.max(Some(*s));
            }
        }
        best
    }
}

/// The scope a request needs; `None`: open (health, `/metrics`).
pub fn required_scope(method: &axum::http::Method, path: &str) -> Option<Scope> {
    if path.starts_with("/grpc.health.v1.Health/") || path == "/metrics" || path == "/healthz" {
        return None;
    }
    // OTLP receivers (their own ports): sending telemetry is all `ingest` may do.
    if path.starts_with("/opentelemetry.proto.collector.")
        || matches!(path, "/v1/logs" | "/v1/traces" | "/v1/metrics")
    {
        return Some(Scope::Ingest);
    }
    if let Some(m) = path.strip_prefix("/vigil.v1.Analyses/") {
        return Some(match m {
            "CreateAnalysis" | "CancelAnalysis" | "RecordFeedback" | "EndInput" => Scope::Write,
            _ => Scope::Read,
        });
    }
    if path.starts_with("/vigil.v1.Judge/") || path.starts_with("/grpc.reflection.") {
        return Some(Scope::Read);
    }
    // HTTP faces: reading verdicts (and judging without storing: Kayenta's RemoteJudge) needs
    // read; anything that stores needs write — Flagger's webhooks too, since a hook carrying
    // `metadata.spec` creates the revision's analysis.
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD || path == "/judge" {
        return Some(Scope::Read);
    }
    Some(Scope::Write)
}

/// The request's token: the bearer header, else the `token` query parameter.
fn token_of(req: &Request<Body>) -> Option<Vec<u8>> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        let prefix = b"Bearer ";
        if v.len() > prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Some(v[prefix.len()..].trim_ascii().to_vec());
        }
        return None;
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|kv| {
        let v = kv.strip_prefix("token=")?;
        Some(percent_decode(v))
    })
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn is_grpc(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The refusal, as gRPC (status in the trailers-only response) or HTTP (401/403 JSON).
fn refuse(grpc: bool, unauthenticated: bool, message: String) -> Response<Body> {
    if grpc {
        let status = if unauthenticated {
            tonic::Status::unauthenticated(message)
        } else {
            tonic::Status::permission_denied(message)
        };
        return status.into_http::<Body>();
    }
    let code = if unauthenticated {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if unauthenticated {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"vigil\""),
        );
    }
    r
}

/// The check, as an axum middleware: `None` tokens means authentication is off (loopback only;
/// `vigil serve` refuses anything else).
pub async fn check(
    axum::extract::State(tokens): axum::extract::State<Option<Tokens>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let Some(tokens) = tokens else {
        return next.run(req).await;
    };
    let Some(need) = required_scope(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let grpc = is_grpc(&req);
    let path = req.uri().path().to_owned();
    let mut token = token_of(&req);
    let mut req = req;
    if token.is_none() && path.starts_with("/flagger/") && req.method() == axum::http::Method::POST
    {
        // Flagger cannot send headers: read the body once for `metadata.token`, then hand the
        // same bytes on to the route.
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, super::MAX_REQUEST_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                let mut r = Response::new(Body::from(
                    serde_json::json!({ "error": format!("body: unreadable or larger than {} bytes", super::MAX_REQUEST_BYTES) }).to_string(),
                ));
                *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return r;
            }
        };
        token = super::flagger::token_in_body(&bytes);
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let Some(token) = token else {
        tracing::info!(%path, "refused: no token");
        return refuse(
            grpc,
            true,
            "missing token: send `authorization: Bearer <token>` (or `?token=` where a header cannot be sent; `metadata.token` in a Flagger webhook)".into(),
        );
    };
    match tokens.scope_of(&token) {
        None => {
            tracing::info!(%path, "refused: unknown token");
            refuse(grpc, true, "unknown token".into())
        }
        Some(have) if have < need => {
            tracing::info!(%path, %have, %need, "refused: scope too small");
            refuse(
                grpc,
                false,
                format!("{path} needs scope `{need}`; the token has `{have}`"),
            )
        }
        Some(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn the_tokens_file() {
        let t = Tokens::parse(
            "# ops\nread  reader-token-1\nwrite writer-token-1 # the CD pipeline\n\nadmin admin-token-1\nread writer-token-1\n",
            "t",
        )
        .unwrap();
        assert_eq!(t.scope_of(b"reader-token-1"), Some(Scope::Read));
        // A token listed twice holds its widest scope.
        assert_eq!(t.scope_of(b"writer-token-1"), Some(Scope::Write));
        assert_eq!(t.scope_of(b"reader-token-"), None);
        assert_eq!(t.scope_of(b"reader-token-12"), None);
        let e = Tokens::parse("read\n", "f").unwrap_err().to_string();
        assert_eq!(e, "f:1: expected `<scope> <token>`");
        let e = Tokens::parse("\nroot supersecret1\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f:2: unknown scope `root`") && !e.contains("supersecret1"),
            "{e}"
        );
        assert!(Tokens::parse("# none\n", "f").is_err());
    }

    #[test]
    fn scopes_per_route() {
        let p = |m: Method, path: &str| required_scope(&m, path);
        assert_eq!(p(Method::POST, "/grpc.health.v1.Health/Check"), None);
        assert_eq!(p(Method::GET, "/metrics"), None);
        assert_eq!(
            p(Method::POST, "/vigil.v1.Analyses/CreateAnalysis"),
            Some(Scope::Write)
        );
        assert_eq!(
            p(Method::POST, "/vigil.v1.Analyses/WatchAnalysis"),
            Some(Scope::Read)
        );
        assert_eq!(p(Method::POST, "/vigil.v1.Judge/Judge"), Some(Scope::Read));
        assert_eq!(p(Method::POST, "/judge"), Some(Scope::Read));
        assert_eq!(p(Method::POST, "/canary/cfg"), Some(Scope::Write));
        assert_eq!(p(Method::GET, "/v1/analyses/x/verdict"), Some(Scope::Read));
        // A Flagger hook may create the revision's analysis.
        assert_eq!(p(Method::POST, "/flagger/rollout"), Some(Scope::Write));
        assert_eq!(p(Method::POST, "/flagger/rollback"), Some(Scope::Write));
        assert!(Scope::Ingest < Scope::Read && Scope::Write < Scope::Admin);
    }

    #[test]
    fn token_from_header_or_query() {
        let req = |uri: &str, auth: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(
            token_of(&req("/x", Some("Bearer abc"))),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            token_of(&req("/x", Some("bearer abc"))),
            Some(b"abc".to_vec())
        );
        assert_eq!(token_of(&req("/x", Some("Basic abc"))), None);
        assert_eq!(
            token_of(&req("/x?a=1&token=a%2Bb", None)),
            Some(b"a+b".to_vec())
        );
        assert_eq!(token_of(&req("/x?tokenx=1", None)), None);
    }
}
