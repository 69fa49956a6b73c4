//! Flagger's webhooks: `POST /flagger/rollout` (for `pre-rollout` and `rollout` hooks) and
//! `POST /flagger/rollback` (for the `rollback` hook).
//!
//! # How an analysis is tied to a Flagger canary
//!
//! Flagger POSTs `{"name", "namespace", "phase", "checksum", "metadata"}` (its
//! `CanaryWebhookPayload`; `metadata` is the hook's string map, omitted when empty). The
//! `checksum` changes with every revision of the canary's target, so one analysis per
//! (namespace, name, checksum) is the natural unit: its id is **derived** as
//! `flagger.<namespace>.<name>.<checksum>`. Dots separate the parts because a Kubernetes
//! namespace and Flagger's checksum never contain one, so the id cannot be read two ways (with
//! `-`, `a-b/c` and `a/b-c` would collide). A previous revision's analysis has another id and can
//! never answer for the next revision.
//!
//! The analysis spec travels **in the hook's metadata**, as `metadata.spec` (the same YAML or
//! JSON text `vigil analysis create` takes). Flagger sends the same metadata on every call, so the
//! first call of a revision creates the analysis and every later call finds it (creation is
//! idempotent on an identical spec). The Canary resource then holds the whole configuration, and
//! Vigil keeps no template state of its own. A hook without `metadata.spec` only looks the
//! analysis up; it never creates one. Editing `metadata.spec` while a revision is being analysed
//! makes the derived id meet a different spec: that is a conflict (409), not a silent choice of
//! either spec.
//!
//! Flagger cannot send headers, so the token may come as `metadata.token` (or `?token=`); see
//! [`super::auth`]. Other metadata keys are refused (400), so a typo such as `spce` is an error,
//! not an analysis that silently never exists. Unknown top-level fields are accepted: a newer
//! Flagger adding one must not halt every canary.
//!
//! # Statuses
//!
//! Flagger counts any status above 202 as a failed hook: a failed `rollout`/`pre-rollout` hook
//! halts advancement and counts toward the analysis threshold (then Flagger rolls back); a
//! *successful* `rollback` hook means "roll back now". So every answer that does not know the
//! analysis is healthy must be above 202 on `rollout`, and only a known failure may be 200 on
//! `rollback`. Verdict answers use 4xx, never 5xx: Flagger's HTTP client retries 5xx when the hook
//! has `retries`, and a verdict is not a transient error.
//!
//! | case | `/flagger/rollout` | `/flagger/rollback` |
//! |---|---|---|
//! | analysis running or pending, latest verdict not Fail (incl. no verdict yet) | 200 | 412 |
//! | analysis succeeded | 200 | 412 |
//! | analysis failed (final Fail or Marginal), or a running one's latest verdict is Fail | 412 | 200 |
//! | analysis ended inconclusive, in error, or cancelled | 412 | 412 |
//! | no analysis for (namespace, name, checksum) and no `metadata.spec` | 404 | 404 |
//! | `metadata.spec` differs from the spec the analysis was created with | 409 | 409 |
//! | malformed payload or spec | 400 naming the field | 400 naming the field |
//! | no token / unknown token / too small a scope | 401 / 401 / 403 | same |
//! | the store fails | 503 | 503 |
//!
//! Every answer carries a JSON body with `action` (`advance`, `halt`, `rollback`, `none`), the
//! analysis id and why; Flagger shows the body of a failed hook in its events.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::runner::{Core, ServiceError};

/// Flagger's `CanaryWebhookPayload` (flagger `pkg/apis/flagger/v1beta1/canary.go`).
#[derive(Debug, Deserialize)]
pub struct Payload {
    /// The Canary's name.
    pub name: String,
    /// The Canary's namespace.
    pub namespace: String,
    /// The canary's phase (`Progressing`, `Waiting`, …); informative only.
    pub phase: String,
    /// Hash of the target's spec and tracked configs: one per revision.
    pub checksum: String,
    /// The hook's metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

/// The keys Vigil reads from a hook's `metadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The analysis spec (YAML or JSON text): creates the revision's analysis if missing.
    #[serde(default)]
    pub spec: Option<String>,
    /// The bearer token, for a caller that cannot send a header (read by [`super::auth`]).
    #[serde(default)]
    pub token: Option<String>,
}

/// The derived analysis id of a canary revision, or the field that makes one impossible.
pub fn analysis_id(p: &Payload) -> Result<String, (String, String)> {
    fn dns(field: &str, v: &str, dots: bool) -> Result<(), (String, String)> {
        let ok = !v.is_empty()
            && v.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || (dots && c == b'.')
            });
        if ok {
            Ok(())
        } else {
            Err((
                field.to_owned(),
                format!(
                    "`{v}` is not a Kubernetes {} (lower-case letters, digits, `-`{})",
                    if dots { "name" } else { "namespace" },
                    if dots { ", `.`" } else { "" }
                ),
            ))
        }
    }
    dns("namespace", &p.namespace, false)?;
    dns("name", &p.name, true)?;
    if p.checksum.is_empty() || !p.checksum.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err((
            "checksum".into(),
            format!(
                "`{}` is not a Flagger checksum (letters and digits)",
                p.checksum
            ),
        ));
    }
    let id = format!("flagger.{}.{}.{}", p.namespace, p.name, p.checksum);
    if !super::grpc::valid_id(&id) {
        return Err((
            "name".into(),
            format!("the analysis id `{id}` would be longer than 128 characters"),
        ));
    }
    Ok(id)
}

/// Which webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Rollout,
    Rollback,
}

/// The routes, over `core`.
pub fn router(core: Arc<Core>) -> axum::Router {
    axum::Router::new()
        .route(
            "/flagger/rollout",
            post(|s: State<Arc<Core>>, b: Bytes| answer(s, Hook::Rollout, b)),
        )
        .route(
            "/flagger/rollback",
            post(|s: State<Arc<Core>>, b: Bytes| answer(s, Hook::Rollback, b)),
        )
        .with_state(core)
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad(field: &str, message: &str) -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "action": "none", "field": field, "error": format!("{field}: {message}") }),
    )
}

/// Parses Flagger's payload; the error names the field (`metadata.spce`, `checksum`, …).
pub fn parse(body: &[u8]) -> Result<Payload, (String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, Payload>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing or unknown field in its message; the path is then its parent.
        let named = |marker: &str| {
            inner
                .split_once(marker)
                .and_then(|(_, rest)| rest.split('`').next())
                .map(str::to_owned)
        };
        let field = if let Some(f) = named("missing field `") {
            if path == "." {
                f
            } else {
                format!("{path}.{f}")
            }
        } else if let Some(f) = named("unknown field `") {
            if path == "." {
                f
            } else if path.ends_with(&f) {
                path
            } else {
                format!("{path}.{f}")
            }
        } else if path == "." || path.starts_with('?') {
            // Not JSON at all, or broken before any field could be named.
            "body".to_owned()
        } else {
            path
        };
        let inner = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
        (field, inner)
    })
}

async fn answer(State(core): State<Arc<Core>>, hook: Hook, body: Bytes) -> Response {
    let p = match parse(&body) {
        Ok(p) => p,
        Err((field, message)) => return bad(&field, &message),
    };
    let id = match analysis_id(&p) {
        Ok(id) => id,
        Err((field, message)) => return bad(&field, &message),
    };
    let row = if let Some(spec) = &p.metadata.spec {
        match core.create(&id, spec).await {
            Ok((row, created)) => {
                if created {
                    tracing::info!(analysis = %id, phase = %p.phase, "flagger: analysis created for a new revision");
                }
                row
            }
            Err(ServiceError::Invalid(m)) => {
                let m = m.strip_prefix("spec: ").unwrap_or(&m);
                return bad("metadata.spec", m);
            }
            Err(ServiceError::Conflict(_)) => {
                return reply(
                    StatusCode::CONFLICT,
                    serde_json::json!({
                        "action": "none", "analysis": id,
                        "error": format!("metadata.spec: analysis `{id}` exists with a different spec; \
                            the revision keeps the spec it started with (revert the edit, or roll out a new revision)"),
                    }),
                );
            }
            Err(e) => return unavailable(&id, &e),
        }
    } else {
        let key = id.clone();
        match core.with_store(move |s| s.get(&key)).await {
            Ok(Some(row)) => row,
            Ok(None) => {
                return reply(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({
                        "action": if hook == Hook::Rollout { "halt" } else { "none" },
                        "analysis": id,
                        "error": format!("no analysis `{id}` for canary {}/{} at checksum {}, and no \
                            metadata.spec to create it", p.namespace, p.name, p.checksum),
                    }),
                );
            }
            Err(e) => return unavailable(&id, &e),
        }
    };
    let finished = super::record::is_final_state(&row.state);
    let failing = row.state == "failed" || row.verdict.as_deref() == Some("Fail");
    let healthy = !failing && (!finished || row.state == "succeeded");
    let (code, action, reason) = match hook {
        Hook::Rollout if healthy => (StatusCode::OK, "advance", "the analysis is not failing"),
        Hook::Rollout if failing => (
            StatusCode::PRECONDITION_FAILED,
            "halt",
            "the analysis failed",
        ),
        Hook::Rollout => (
            StatusCode::PRECONDITION_FAILED,
            "halt",
            "the analysis ended without a pass (inconclusive, error or cancelled)",
        ),
        Hook::Rollback if failing => (StatusCode::OK, "rollback", "the analysis failed"),
        Hook::Rollback => (
            StatusCode::PRECONDITION_FAILED,
            "none",
            "no failure to roll back for",
        ),
    };
    reply(
        code,
        serde_json::json!({
            "action": action,
            "reason": reason,
            "analysis": row.id,
            "state": row.state,
            "verdict": row.verdict.as_deref().unwrap_or("Unknown"),
            "final": finished,
            "score": row.score,
        }),
    )
}

fn unavailable(id: &str, e: &ServiceError) -> Response {
    tracing::error!(analysis = %id, error = %e, "flagger webhook");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "action": "none", "analysis": id, "error": e.to_string() }),
    )
}

/// `metadata.token` of a Flagger payload, if the body is JSON and carries one: the token of
/// [`super::auth`] for callers that cannot send a header.
pub fn token_in_body(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        metadata: BTreeMap<String, serde_json::Value>,
    }
    let o: Outer = serde_json::from_slice(body).ok()?;
    Some(o.metadata.get("token")?.as_str()?.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_errors_name_the_field() {
        let f = |b: &str| parse(b.as_bytes()).unwrap_err().0;
        assert_eq!(
            f(r#"{"name":"podinfo","namespace":"test","phase":"Progressing"}"#),
            "checksum"
        );
        assert_eq!(
            f(r#"{"name":5,"namespace":"test","phase":"Progressing","checksum":"a"}"#),
            "name"
        );
        assert_eq!(
            f(r#"{"name":"p","namespace":"t","phase":"P","checksum":"a","metadata":{"spce":"x"}}"#),
            "metadata.spce"
        );
        assert_eq!(
            f(r#"{"name":"p","namespace":"t","phase":"P","checksum":"a","metadata":{"spec":1}}"#),
            "metadata.spec"
        );
        assert_eq!(f("not json"), "body");
        assert_eq!(f("{not json"), "body");
        // A field a newer Flagger might add is not an error.
        let p = parse(
            br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"85d557f47b","type":"rollout"}"#,
        )
        .unwrap();
        assert_eq!(analysis_id(&p).unwrap(), "flagger.test.podinfo.85d557f47b");
    }

    #[test]
    fn derived_ids_cannot_collide() {
        let id = |ns: &str, name: &str| {
            analysis_id(&Payload {
                name: name.into(),
                namespace: ns.into(),
                phase: "Progressing".into(),
                checksum: "abc".into(),
                metadata: Metadata::default(),
            })
        };
        assert_ne!(id("a-b", "c"), id("a", "b-c"));
        assert_eq!(id("a.b", "c").unwrap_err().0, "namespace");
        assert_eq!(id("a", "B").unwrap_err().0, "name");
        assert_eq!(id("a", &"x".repeat(130)).unwrap_err().0, "name");
    }

    #[test]
    fn the_token_in_the_metadata() {
        assert_eq!(
            token_in_body(br#"{"name":"p","metadata":{"token":"s3cret-token"}}"#),
            Some(b"s3cret-token".to_vec())
        );
        assert_eq!(token_in_body(br#"{"name":"p"}"#), None);
        assert_eq!(token_in_body(b"garbage"), None);
    }
}
