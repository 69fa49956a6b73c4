//! The REST surface: path parsing, verbs, conventions (resourceVersion, generation, status and
//! scale subresources, propagation), watch streams, faults and the audit log.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::patch::{self, PatchType};
use crate::selector::{field_selector_matches, LabelSelector};
use crate::store::{self, labels_of, Key, Resource};
use crate::{lock, AuditEntry, FaultAction, Shared, State, Verb};

#[derive(Debug)]
pub(crate) struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    fn not_found(res: &Resource, name: &str) -> Self {
        let g = if res.group.is_empty() {
            String::new()
        } else {
            format!(".{}", res.group)
        };
        Self::new(
            404,
            "NotFound",
            format!("{}{g} \"{name}\" not found", res.plural),
        )
    }
    fn invalid(msg: impl Into<String>) -> Self {
        Self::new(422, "Invalid", msg)
    }
    fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        json_response(self.code, &body)
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn router(state: State) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// What a request path names.
struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("no route for {path}"),
            ))
        }
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("no route for {path}"),
            ))
        }
    };
    let res = store::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource {group}/{version}/{plural}"
                ),
            )
        })?;
    if name.is_some() && namespace.is_none() {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("{plural} are namespaced"),
        ));
    }
    match sub.as_deref() {
        None => {}
        Some("status") if res.status_subresource => {}
        Some("scale") if res.scale_subresource => {}
        Some(s) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{plural} has no subresource {s}"),
            ))
        }
    }
    Ok(Target {
        res,
        namespace,
        name,
        sub,
    })
}

async fn handle(
    AxState(state): AxState<State>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let user = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("anonymous")
        .to_string();
    let target = match parse_path(&path) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) if watch => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        _ => {
            return ApiError::new(405, "MethodNotAllowed", format!("{method} {path}"))
                .into_response()
        }
    };
    let resource = match &target.sub {
        Some(s) => format!("{}/{s}", target.res.plural),
        None => target.res.plural.to_string(),
    };

    // Authorization comes first, as in the API server's handler chain: a user bound to a Role is
    // allowed only what its rules grant.
    let denied = {
        let s = lock(&state);
        s.roles.get(&user).is_some_and(|rules| {
            !rules.iter().any(|r| {
                r.allows(
                    target.res.group,
                    &resource,
                    verb.as_str(),
                    target.name.as_deref(),
                )
            })
        })
    };
    if denied {
        let g = if target.res.group.is_empty() {
            String::new()
        } else {
            format!(".{}", target.res.group)
        };
        let e = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{}{g} \"{}\" is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
                target.res.plural,
                target.name.as_deref().unwrap_or_default(),
                verb.as_str(),
                target.res.group,
                target.namespace.as_deref().unwrap_or_default()
            ),
        );
        audit(&state, verb, &method, &path, &target, &resource, &user, 403);
        return e.into_response();
    }

    // Faults are decided before anything is served, so a failed write leaves the store untouched.
    let mut delay = None;
    let mut drop_watch = None;
    let mut fail = None;
    {
        let mut s = lock(&state);
        for f in s.faults.iter_mut() {
            if !f.matches(verb, &resource, target.name.as_deref()) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if f.times == Some(0) {
                continue;
            }
            if let Some(t) = f.times.as_mut() {
                *t -= 1;
            }
            match f.action {
                FaultAction::Status(c) => fail = fail.or(Some(c)),
                FaultAction::Delay(d) => delay = Some(d),
                FaultAction::DropWatchAfter(n) => drop_watch = Some(n),
            }
        }
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let result = match fail {
        Some(code) => Err(ApiError::new(
            code,
            if code == 409 {
                "Conflict"
            } else {
                "InternalError"
            },
            format!("injected fault: {code} for {} {path}", verb.as_str()),
        )),
        None if verb == Verb::Watch => {
            let r = start_watch(&state, &target, &query, drop_watch);
            audit(&state, verb, &method, &path, &target, &resource, &user, 200);
            return match r {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            };
        }
        None => serve(&state, verb, &target, &query, &headers, &body, &user),
    };
    let code = match &result {
        Ok((c, _)) => *c,
        Err(e) => e.code,
    };
    audit(
        &state, verb, &method, &path, &target, &resource, &user, code,
    );
    match result {
        Ok((c, v)) => json_response(c, &v),
        Err(e) => e.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
fn audit(
    state: &State,
    verb: Verb,
    method: &Method,
    path: &str,
    target: &Target,
    resource: &str,
    user: &str,
    status: u16,
) {
    lock(state).audit.push(AuditEntry {
        verb,
        method: method.to_string(),
        path: path.to_string(),
        group: target.res.group.to_string(),
        resource: resource.to_string(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        user: user.to_string(),
        status,
    });
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))
}

fn serve(
    state: &State,
    verb: Verb,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    user: &str,
) -> Result<(u16, Value), ApiError> {
    let mut s = lock(state);
    let ns = t.namespace.as_deref();
    match verb {
        Verb::Get => {
            let (ns, name) = (
                ns.unwrap_or_default(),
                t.name.as_deref().unwrap_or_default(),
            );
            let obj = get_object(&s, t.res, ns, name)?;
            Ok((200, view(&obj, t.sub.as_deref())))
        }
        Verb::List => list(&s, t.res, ns, query),
        Verb::Create => {
            let ns = ns.ok_or_else(|| ApiError::bad_request("create needs a namespace"))?;
            let obj = create_object(&mut s, t.res, ns, parse_body(body)?, user)?;
            Ok((201, obj))
        }
        Verb::Update => {
            let (ns, name) = (
                ns.unwrap_or_default(),
                t.name.as_deref().unwrap_or_default(),
            );
            let obj = update_object(
                &mut s,
                t.res,
                ns,
                name,
                t.sub.as_deref(),
                parse_body(body)?,
                user,
            )?;
            Ok((200, view(&obj, t.sub.as_deref())))
        }
        Verb::Patch => {
            let (ns, name) = (
                ns.unwrap_or_default(),
                t.name.as_deref().unwrap_or_default(),
            );
            let ct = headers
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let kind = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("unsupported patch type {ct:?}"),
                )
            })?;
            if kind == PatchType::Strategic && t.res.custom {
                // Custom resources have no strategic-merge schema.
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {})",
                        t.res.plural
                    ),
                ));
            }
            let patch = parse_body(body)?;
            let actor = match query.get("fieldManager") {
                Some(m) => format!("{user} ({m})"),
                None => user.to_string(),
            };
            let obj = patch_object(
                &mut s,
                t.res,
                ns,
                name,
                t.sub.as_deref(),
                &patch,
                kind,
                &actor,
            )?;
            Ok((200, view(&obj, t.sub.as_deref())))
        }
        Verb::Delete => {
            let (ns, name) = (
                ns.unwrap_or_default(),
                t.name.as_deref().unwrap_or_default(),
            );
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                parse_body(body)?
            };
            let policy = opts["propagationPolicy"]
                .as_str()
                .or(query.get("propagationPolicy").map(String::as_str))
                .unwrap_or("Background")
                .to_string();
            let obj = delete_object(&mut s, t.res, ns, name, &policy, user)?;
            Ok((200, obj))
        }
        Verb::Watch => Err(ApiError::bad_request("watch is served separately")),
    }
}

fn get_object(s: &Shared, res: &'static Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
    s.store
        .get(&key(res, ns, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))
}

fn key(res: &'static Resource, ns: &str, name: &str) -> Key {
    Key {
        plural: res.plural,
        namespace: ns.to_string(),
        name: name.to_string(),
    }
}

/// The object as a subresource presents it.
fn view(obj: &Value, sub: Option<&str>) -> Value {
    match sub {
        Some("scale") => {
            let selector = obj["spec"]["selector"]["matchLabels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            json!({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {
                    "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
                    "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
                    "creationTimestamp": obj["metadata"]["creationTimestamp"],
                },
                "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
                "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
            })
        }
        _ => obj.clone(),
    }
}

fn list(
    s: &Shared,
    res: &'static Resource,
    ns: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
    let mut items = Vec::new();
    for (k, v) in s.store.list(res.plural, ns) {
        if labels.matches(labels_of(&v))
            && field_selector_matches(&fields, &k.name, &k.namespace)
                .map_err(ApiError::bad_request)?
        {
            items.push(v);
        }
    }
    // Pagination: `limit` items per page, `continue` names where the next page starts and the
    // resourceVersion the list was taken at (a token from before a compaction has expired).
    let rv = s.store.resource_version();
    let (start, list_rv) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (offset, at) = token
                .split_once(':')
                .and_then(|(o, r)| Some((o.parse::<usize>().ok()?, r.parse::<u64>().ok()?)))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid continue token {token:?}"))
                })?;
            if at < s.compacted {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (offset, at)
        }
        None => (0, rv),
    };
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => usize::MAX,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let next = start.saturating_add(page.len());
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if next < total {
        metadata["continue"] = json!(format!("{next}:{list_rv}"));
        metadata["remainingItemCount"] = json!(total - next);
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
            "metadata": metadata,
            "items": page,
        }),
    ))
}

fn start_watch(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    drop_after: Option<usize>,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
    field_selector_matches(&fields, "", "").map_err(ApiError::bad_request)?;
    let since: u64 = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => 0,
        Some(rv) => rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
    };
    let compacted = lock(state).compacted;
    if since > 0 && since < compacted {
        // The history before `compacted` is gone: the API server answers a watch from there
        // with an ERROR event carrying a 410 Expired Status, and the client must re-list.
        let ev = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
            "message": format!("too old resource version: {since} ({compacted})")}});
        return Ok((
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from(line(&ev)),
        )
            .into_response());
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(300);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let res = t.res;
    let ns = t.namespace.clone();
    let matches = move |k: &Key, obj: &Value| {
        k.plural == res.plural
            && ns.as_deref().is_none_or(|n| n == k.namespace)
            && labels.matches(labels_of(obj))
            && field_selector_matches(&fields, &k.name, &k.namespace).unwrap_or(false)
    };

    let (initial, mut rx, mut last_rv) = {
        let s = lock(state);
        let rx = s.store.subscribe();
        let initial: Vec<Value> = if since == 0 {
            s.store
                .list(res.plural, None)
                .into_iter()
                .filter(|(k, v)| matches(k, v))
                .map(|(_, v)| json!({"type": "ADDED", "object": v}))
                .collect()
        } else {
            s.store
                .history()
                .iter()
                .filter(|c| c.resource_version > since && matches(&c.key, &c.object))
                .map(|c| json!({"type": c.change.watch_type(), "object": c.object}))
                .collect()
        };
        (initial, rx, s.store.resource_version())
    };

    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut sent = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let dropped = |sent: usize| drop_after.is_some_and(|n| sent >= n);
        for ev in initial {
            if dropped(sent) || tx.send(Ok(line(&ev))).await.is_err() {
                return;
            }
            sent += 1;
        }
        if bookmarks && !dropped(sent) {
            let bm = json!({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version(),
                "metadata": {"resourceVersion": last_rv.to_string()}}});
            if tx.send(Ok(line(&bm))).await.is_err() {
                return;
            }
        }
        loop {
            if dropped(sent) {
                return;
            }
            let change = tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(deadline) => return,
            };
            // A lagging watcher is closed, as the real server expires a slow watch; the client
            // re-lists.
            let Ok(c) = change else { return };
            if c.resource_version <= last_rv {
                continue;
            }
            last_rv = c.resource_version;
            if !matches(&c.key, &c.object) {
                continue;
            }
            let ev = json!({"type": c.change.watch_type(), "object": c.object});
            if tx.send(Ok(line(&ev))).await.is_err() {
                return;
            }
            sent += 1;
        }
    });
    let stream = futures_util::stream::unfold(out, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Checks what the real API server's validation would reject for the fields the deployer sets.
fn validate(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty()
        || name.len() > 253
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(ApiError::invalid(format!(
            "metadata.name: Invalid value: {name:?}"
        )));
    }
    match res.kind {
        "Deployment" | "ReplicaSet" => {
            let sel = store::string_map(&obj["spec"]["selector"]["matchLabels"]);
            let labels = store::string_map(&obj["spec"]["template"]["metadata"]["labels"]);
            if sel.is_empty() || sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                return Err(ApiError::invalid(
                    "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
                ));
            }
            if obj["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
                return Err(ApiError::invalid(
                    "spec.replicas: must be greater than or equal to 0",
                ));
            }
        }
        "HorizontalPodAutoscaler" => {
            let min = obj["spec"]["minReplicas"].as_i64().unwrap_or(1);
            let max = obj["spec"]["maxReplicas"].as_i64().unwrap_or(0);
            if min < 1 {
                return Err(ApiError::invalid(
                    "spec.minReplicas: must be greater than or equal to 1",
                ));
            }
            if max < min {
                return Err(ApiError::invalid(format!(
                    "spec.maxReplicas: Invalid value: {max}: must be greater than or equal to `minReplicas`"
                )));
            }
        }
        "HTTPRoute" => {
            for rule in obj["spec"]["rules"].as_array().into_iter().flatten() {
                for b in rule["backendRefs"].as_array().into_iter().flatten() {
                    if b["weight"]
                        .as_i64()
                        .is_some_and(|w| !(0..=1_000_000).contains(&w))
                    {
                        return Err(ApiError::invalid(
                            "spec.rules.backendRefs.weight: out of range",
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn create_object(
    s: &mut Shared,
    res: &'static Resource,
    ns: &str,
    mut obj: Value,
    actor: &str,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("object must be a JSON object"));
    }
    if let Some(k) = obj["kind"].as_str() {
        if k != res.kind {
            return Err(ApiError::bad_request(format!(
                "kind {k} does not match {}",
                res.kind
            )));
        }
    }
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    match obj["metadata"]["namespace"].as_str() {
        Some(n) if n != ns => {
            return Err(ApiError::bad_request(format!(
            "the namespace of the object ({n}) does not match the namespace on the request ({ns})"
        )))
        }
        _ => obj["metadata"]["namespace"] = json!(ns),
    }
    if obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                s.sim.pod_counter += 1;
                obj["metadata"]["name"] = json!(format!("{prefix}{:05x}", s.sim.pod_counter));
            }
            None => {
                return Err(ApiError::invalid(
                    "metadata.name: Required value: name or generateName is required",
                ))
            }
        }
    }
    validate(res, &obj)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let k = key(res, ns, &name);
    if s.store.get(&k).is_some() {
        return Err(ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.plural),
        ));
    }
    let uid = s.store.new_uid();
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("resourceVersion");
    if res.has_spec {
        meta.insert("generation".into(), json!(1));
    }
    if res.status_subresource && res.kind != "Service" {
        obj.as_object_mut().map(|o| o.remove("status"));
    }
    Ok(s.store.put(k, obj, actor))
}

fn check_version(
    current: &Value,
    incoming: &Value,
    res: &Resource,
    name: &str,
) -> Result<(), ApiError> {
    match incoming["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != current["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    res.plural
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Stores `incoming` as the new state of an existing object, keeping what the caller may not
/// change (identity, status outside the status subresource) and bumping the generation on spec
/// changes.
fn commit_update(
    s: &mut Shared,
    res: &'static Resource,
    current: &Value,
    mut incoming: Value,
    sub: Option<&str>,
    actor: &str,
) -> Result<Value, ApiError> {
    let ns = current["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = current["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut next = match sub {
        Some("status") => {
            let mut n = current.clone();
            n["status"] = incoming["status"].take();
            n
        }
        Some("scale") => {
            let replicas = incoming["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::invalid("spec.replicas: Required value"))?;
            let mut n = current.clone();
            n["spec"]["replicas"] = json!(replicas);
            n
        }
        _ => {
            if !incoming.is_object() {
                return Err(ApiError::bad_request("object must be a JSON object"));
            }
            incoming["kind"] = json!(res.kind);
            incoming["apiVersion"] = json!(res.api_version());
            if res.status_subresource {
                incoming["status"] = current["status"].clone();
                if incoming["status"].is_null() {
                    incoming.as_object_mut().map(|o| o.remove("status"));
                }
            }
            incoming
        }
    };
    if next["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(ApiError::bad_request(
            "metadata.name does not match the request path",
        ));
    }
    for f in [
        "uid",
        "creationTimestamp",
        "namespace",
        "generation",
        "deletionTimestamp",
    ] {
        let v = current["metadata"][f].clone();
        match v {
            Value::Null => {
                next["metadata"].as_object_mut().map(|m| m.remove(f));
            }
            v => next["metadata"][f] = v,
        }
    }
    if matches!(res.kind, "Deployment" | "ReplicaSet")
        && next["spec"]["selector"] != current["spec"]["selector"]
    {
        return Err(ApiError::invalid(
            "spec.selector: Invalid value: field is immutable",
        ));
    }
    validate(res, &next)?;
    if res.has_spec && next["spec"] != current["spec"] {
        let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
        next["metadata"]["generation"] = json!(g + 1);
    }
    let mut cmp = next.clone();
    cmp["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if &cmp == current {
        // A no-op write does not bump the resourceVersion, as on the real server.
        return Ok(current.clone());
    }
    Ok(s.store.put(key(res, &ns, &name), next, actor))
}

fn update_object(
    s: &mut Shared,
    res: &'static Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    body: Value,
    actor: &str,
) -> Result<Value, ApiError> {
    let current = get_object(s, res, ns, name)?;
    check_version(&current, &body, res, name)?;
    commit_update(s, res, &current, body, sub, actor)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn patch_object(
    s: &mut Shared,
    res: &'static Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    patch: &Value,
    kind: PatchType,
    actor: &str,
) -> Result<Value, ApiError> {
    let current = match get_object(s, res, ns, name) {
        Ok(c) => c,
        Err(e) if e.code == 404 && kind == PatchType::Apply && sub.is_none() => {
            let mut obj = patch.clone();
            obj["metadata"]["name"] = json!(name);
            return create_object(s, res, ns, obj, actor);
        }
        Err(e) => return Err(e),
    };
    let base = view(&current, sub);
    let patched = patch::apply(&base, patch, kind).map_err(ApiError::invalid)?;
    if kind != PatchType::Json {
        check_version(&current, patch, res, name)?;
    } else {
        check_version(&base, &patched, res, name)?;
    }
    commit_update(s, res, &current, patched, sub, actor)
}

pub(crate) fn delete_object(
    s: &mut Shared,
    res: &'static Resource,
    ns: &str,
    name: &str,
    policy: &str,
    actor: &str,
) -> Result<Value, ApiError> {
    let k = key(res, ns, name);
    let obj = s
        .store
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match policy {
        "Orphan" => {
            for (dk, mut dep) in owned_by(s, ns, &uid) {
                if let Some(refs) = dep["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid.as_str());
                }
                s.store.put(dk, dep, "controller/garbage-collector");
            }
        }
        "Background" => {}
        "Foreground" => {
            // The owner stays, marked for deletion with the `foregroundDeletion` finalizer,
            // until the garbage collector has deleted its dependents.
            let mut marked = obj.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            let fins = marked["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == "foregroundDeletion") {
                let mut fins = fins;
                fins.push(json!("foregroundDeletion"));
                marked["metadata"]["finalizers"] = json!(fins);
            }
            return Ok(s.store.put(k, marked, actor));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
            )))
        }
    }
    if obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
    {
        // Finalizers hold the object, marked, until their controllers remove them.
        let mut marked = obj.clone();
        if marked["metadata"]["deletionTimestamp"].is_null() {
            marked["metadata"]["deletionTimestamp"] = json!(now());
            return Ok(s.store.put(k, marked, actor));
        }
        return Ok(obj);
    }
    // Background: the object goes now; the garbage collector deletes its dependents after.
    let removed = s.store.remove(&k, actor).unwrap_or(obj);
    if res.plural == "pods" {
        let id = (ns.to_string(), name.to_string());
        s.sim.pod_ready_at.remove(&id);
        s.sim.pod_ready_since.remove(&id);
    }
    Ok(removed)
}

/// The garbage collector: deletes (in the background) objects whose every owner is gone, and
/// finishes foreground deletions — dependents first, then the owner's `foregroundDeletion`
/// finalizer is removed, and an object marked for deletion with no finalizer left goes.
pub(crate) fn garbage_collect(s: &mut Shared) {
    let mut all: Vec<(Key, Value)> = Vec::new();
    for r in store::RESOURCES {
        all.extend(s.store.list(r.plural, None));
    }
    let uids: std::collections::HashSet<(String, String)> = all
        .iter()
        .filter_map(|(k, v)| {
            v["metadata"]["uid"]
                .as_str()
                .map(|u| (k.namespace.clone(), u.to_string()))
        })
        .collect();
    for (k, v) in &all {
        let refs = v["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !refs.is_empty()
            && refs.iter().all(|r| {
                !uids.contains(&(
                    k.namespace.clone(),
                    r["uid"].as_str().unwrap_or_default().to_string(),
                ))
            })
        {
            if let Some(res) = store::resource(k.plural) {
                let _ = delete_object(
                    s,
                    res,
                    &k.namespace,
                    &k.name,
                    "Background",
                    "controller/garbage-collector",
                );
            }
        }
    }
    for (k, v) in &all {
        if v["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let fins: Vec<Value> = v["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let uid = v["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut next = v.clone();
        if fins.iter().any(|f| f == "foregroundDeletion") {
            let deps = owned_by(s, &k.namespace, &uid);
            if !deps.is_empty() {
                for (dk, _) in deps {
                    if let Some(res) = store::resource(dk.plural) {
                        let _ = delete_object(
                            s,
                            res,
                            &dk.namespace,
                            &dk.name,
                            "Foreground",
                            "controller/garbage-collector",
                        );
                    }
                }
                continue;
            }
            let rest: Vec<Value> = fins
                .into_iter()
                .filter(|f| f != "foregroundDeletion")
                .collect();
            next["metadata"]["finalizers"] = json!(rest);
        }
        if next["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
        {
            if s.store.remove(k, "controller/garbage-collector").is_some() && k.plural == "pods" {
                let id = (k.namespace.clone(), k.name.clone());
                s.sim.pod_ready_at.remove(&id);
                s.sim.pod_ready_since.remove(&id);
            }
        } else if &next != v {
            s.store.put(k.clone(), next, "controller/garbage-collector");
        }
    }
}

fn owned_by(s: &Shared, ns: &str, uid: &str) -> Vec<(Key, Value)> {
    let mut out = Vec::new();
    for r in store::RESOURCES {
        for (k, v) in s.store.list(r.plural, Some(ns)) {
            if v["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|o| o["uid"] == uid))
            {
                out.push((k, v));
            }
        }
    }
    out
}

/// Helpers the controllers share with the API: a controller writes through the same conventions.
pub(crate) fn controller_update(
    s: &mut Shared,
    plural: &str,
    next: Value,
    sub: Option<&str>,
    actor: &str,
) {
    let Some(res) = store::resource(plural) else {
        return;
    };
    let ns = next["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = next["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Ok(current) = get_object(s, res, &ns, &name) else {
        return;
    };
    if let Err(e) = commit_update(s, res, &current, next, sub, actor) {
        tracing::warn!(error = %e.message, %plural, %name, "simulated controller write rejected");
    }
}

pub(crate) fn controller_delete(s: &mut Shared, plural: &str, ns: &str, name: &str, actor: &str) {
    if let Some(res) = store::resource(plural) {
        let _ = delete_object(s, res, ns, name, "Background", actor);
    }
}

pub(crate) fn owner_ref(obj: &Value) -> Value {
    json!({
        "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}
