//! The routes and their handlers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use durable::history::{HistoryRecord, RuntimeStatus};
use durable::{IfExists, InstanceStatus, StartOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::Api;
use durable::time::rfc3339;

type Shared = State<Arc<Api>>;

/// The reason recorded in history when a request gives none.
const DEFAULT_REASON: &str = "via the HTTP API";

/// The most history events one page holds.
const MAX_HISTORY_PAGE: usize = 10_000;

pub(crate) fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/orchestrations/{name}", post(start))
        .route("/instances", get(list))
        .route("/instances/{id}", get(status).delete(purge))
        .route("/instances/{id}/history", get(history))
        .route("/instances/{id}/waiting", get(waiting))
        .route("/instances/{id}/stream", get(crate::stream::stream))
        .route("/instances/{id}/events/{event}", post(raise))
        .route("/instances/{id}/terminate", post(terminate))
        .route("/instances/{id}/suspend", post(suspend))
        .route("/instances/{id}/resume", post(resume))
        .route("/entities/{entity}/{key}", get(entity_state))
        .route("/entities/{entity}/{key}/{op}", post(signal))
        .route("/counts", get(counts))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/openapi.json", get(crate::openapi::document))
        // On the API's routes only: the guard against other sites, then the
        // token. The dashboard's files below hold no data: a browser loads
        // them without a token, and what they fetch carries it.
        .route_layer(middleware::from_fn_with_state(Arc::clone(&api), auth))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&api), guard))
        .route("/ui", get(crate::ui::redirect))
        .route("/ui/", get(crate::ui::index))
        .route("/ui/{asset}", get(crate::ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(api)
}

/// The host part of a `Host` header or an origin's authority.
fn host_name(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses what a web page on another site could send through the
/// operator's browser: a request from another origin (a form posting to
/// the API), and, without a token, one addressed to any name but
/// localhost (DNS rebinding); and a body announced over the limit, before
/// reading it.
async fn guard(State(api): Shared, request: Request, next: Next) -> Response {
    let (host, origin, length) = {
        let header = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header(header::HOST),
            header(header::ORIGIN),
            header(header::CONTENT_LENGTH),
        )
    };
    if let Some(origin) = origin {
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        if host.as_deref() != Some(authority) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!("a request from {origin} is refused: the API answers its own origin only"),
            )
            .into_response();
        }
    }
    if api.token.is_none() {
        if let Some(host) = host.as_deref().filter(|h| !loopback(host_name(h))) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "a request addressed to `{host}` is refused: without a token the API answers \
                     only requests addressed to localhost; set ApiOptions::token to serve others"
                ),
            )
            .into_response();
        }
    }
    let announced = length.and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > api.max_body as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over the limit of {} bytes", api.max_body),
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route {}: see /openapi.json for the routes", uri.path()),
    )
}

async fn not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not served on {}: see /openapi.json for the routes",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Refuses a request without the bearer token, when one is set.
async fn auth(State(api): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110, 11.1).
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim_start())
            });
        let ok = given.is_some_and(|g| same(g.as_bytes(), token.as_bytes()));
        if !ok {
            let message = if given.is_some() {
                "the bearer token is wrong"
            } else {
                "this API needs `Authorization: Bearer <token>`"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares in time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request body as JSON text, at most `max_body` bytes; an empty body
/// is `null` (an orchestrator, event or operation without data).
pub(crate) async fn json_body(api: &Api, body: Body) -> Result<String, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, api.max_body)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is over the limit of {} bytes", api.max_body),
                )
            } else {
                ApiError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Ok("null".to_owned());
    }
    Ok(text)
}

/// The path the API is mounted under: the request's path less its last
/// `segments` segments (the route's own).
fn base(uri: &axum::http::Uri, segments: usize) -> String {
    let mut path = uri.path();
    for _ in 0..segments {
        path = path.rsplit_once('/').map_or("", |(head, _)| head);
    }
    path.to_owned()
}

/// A path segment with everything but unreserved characters escaped.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URLs that manage instance `id`, under `base`.
fn urls(base: &str, id: &str) -> Value {
    let at = format!("{base}/instances/{}", segment(id));
    json!({
        "status": at,
        "history": format!("{at}/history"),
        "stream": format!("{at}/stream"),
        "raise_event": format!("{at}/events/{{event}}"),
        "terminate": format!("{at}/terminate"),
        "suspend": format!("{at}/suspend"),
        "resume": format!("{at}/resume"),
        "purge": at,
    })
}

/// An instance's status as JSON, with its management URLs.
pub(crate) fn status_json(s: &InstanceStatus, base: &str) -> Value {
    json!({
        "id": s.id,
        "orchestrator": s.name,
        "status": s.runtime_status,
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
        "history_len": s.history_len,
        "output": s.output,
        "failure": s.failure,
        "terminated": s.terminated,
        "custom_status": s.custom_status,
        "urls": urls(base, &s.id),
    })
}

#[derive(Debug, Deserialize)]
struct StartParams {
    id: Option<String>,
    if_exists: Option<String>,
}

/// `POST /orchestrations/{name}`: starts an instance on the body as input.
async fn start(
    State(api): Shared,
    Path(name): Path<String>,
    Query(params): Query<StartParams>,
    OriginalUri(uri): OriginalUri,
    body: Body,
) -> Result<Response, ApiError> {
    let input = json_body(&api, body).await?;
    let mut options = StartOptions::new();
    if let Some(id) = params.id {
        options = options.id(id);
    }
    options = options.if_exists(match params.if_exists.as_deref() {
        None | Some("fail") => IfExists::Fail,
        Some("use_existing") => IfExists::UseExisting,
        Some("replace_finished") => IfExists::ReplaceFinished,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "if_exists `{other}`: use fail, use_existing or replace_finished"
            )))
        }
    });
    let id = api.client.start_json(&name, &input, options).await?;
    let base = base(&uri, 2);
    let location = format!("{base}/instances/{}", segment(&id));
    let body = json!({ "id": id, "urls": urls(&base, &id) });
    Ok(accepted(&location, body))
}

/// `202 Accepted` pointing at `location`.
fn accepted(location: &str, body: Value) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `GET /instances/{id}`: `202` while it runs, `200` once it has finished.
async fn status(
    State(api): Shared,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let s = api.client.status(&id).await?;
    let base = base(&uri, 2);
    let body = status_json(&s, &base);
    if s.runtime_status.is_finished() {
        Ok((StatusCode::OK, Json(body)).into_response())
    } else {
        Ok(accepted(uri.path(), body))
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    orchestrator: Option<String>,
    prefix: Option<String>,
    page_size: Option<usize>,
    after: Option<String>,
}

/// `GET /instances`: a page of instances, newest first.
async fn list(
    State(api): Shared,
    Query(params): Query<ListParams>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let mut query = durable::Query::new();
    if let Some(statuses) = &params.status {
        let mut parsed = Vec::new();
        for s in statuses.split(',').filter(|s| !s.is_empty()) {
            let status: RuntimeStatus = s.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "status `{s}`: use pending, running, suspended, stuck, completed, failed or terminated"
                ))
            })?;
            parsed.push(status);
        }
        query = query.statuses(parsed);
    }
    if let Some(o) = params.orchestrator {
        query = query.orchestrator(o);
    }
    if let Some(p) = params.prefix {
        query = query.id_prefix(p);
    }
    if let Some(n) = params.page_size {
        if n == 0 || n > 10_000 {
            return Err(ApiError::bad_request(
                "page_size: from 1 to 10000".to_owned(),
            ));
        }
        query = query.page_size(n);
    }
    if let Some(after) = params.after {
        query = query.after(after);
    }
    let page = api.client.list(&query).await?;
    let base = base(&uri, 1);
    let instances: Vec<Value> = page
        .instances
        .iter()
        .map(|s| status_json(s, &base))
        .collect();
    Ok(Json(json!({ "instances": instances, "next": page.next })))
}

#[derive(Debug, Deserialize)]
struct CountParams {
    orchestrator: Option<String>,
}

/// `GET /counts`: how many instances there are in each status.
async fn counts(
    State(api): Shared,
    Query(params): Query<CountParams>,
) -> Result<Json<Value>, ApiError> {
    let counts = api.client.counts(params.orchestrator.as_deref()).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut by_status = serde_json::Map::new();
    for (status, n) in counts {
        if let Value::String(s) = json!(status) {
            by_status.insert(s, json!(n));
        }
    }
    Ok(Json(json!({ "counts": by_status, "total": total })))
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    from: Option<u64>,
    limit: Option<usize>,
}

/// `GET /instances/{id}/history`: a page of its history, oldest first.
async fn history(
    State(api): Shared,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(1_000);
    if limit == 0 || limit > MAX_HISTORY_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: from 1 to {MAX_HISTORY_PAGE}"
        )));
    }
    // The page alone is read; the total is the instance row's count, read
    // first, so a page that grew meanwhile counts itself.
    let status = api.client.status(&id).await?;
    // An entity counts its turns but keeps no history.
    let total = if durable::history::is_entity_name(&status.name) {
        0
    } else {
        status.history_len
    };
    let from = params.from.unwrap_or(0);
    let page: Vec<HistoryRecord> = api.client.history_page(&id, from, limit).await?;
    let total = match page.last() {
        Some(last) => total.max(last.index + 1),
        None => total,
    };
    let end = from.saturating_add(limit as u64);
    let next = (end < total).then_some(end);
    Ok(Json(json!({
        "id": id,
        "total": total,
        "events": page,
        "next": next,
    })))
}

/// `GET /instances/{id}/waiting`: what it waits on, and why it is not
/// moving (see `Client::waiting_on`).
async fn waiting(State(api): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let blockers = api.client.waiting_on(&id).await?;
    Ok(Json(json!({ "id": id, "waiting_on": blockers })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

/// The reason a mutating request gives in its JSON body, if any.
async fn reason(api: &Api, body: Body) -> Result<String, ApiError> {
    let text = json_body(api, body).await?;
    let given: Option<Reason> = serde_json::from_str(&text).map_err(|e| {
        ApiError::bad_request(format!(
            "the body: {e} (send {{\"reason\": \"..\"}} or nothing)"
        ))
    })?;
    Ok(given
        .and_then(|r| r.reason)
        .unwrap_or_else(|| DEFAULT_REASON.to_owned()))
}

/// `POST /instances/{id}/events/{event}`: raises an event with the body as
/// its data; with an `Idempotency-Key` header, at most once per key.
async fn raise(
    State(api): Shared,
    Path((id, event)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let data = json_body(&api, body).await?;
    let data: Box<serde_json::value::RawValue> = serde_json::from_str(&data)
        .map_err(|e| ApiError::bad_request(format!("the event's data is not JSON: {e}")))?;
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key is not text"))
        })
        .transpose()?;
    match key {
        Some(key) => {
            api.client
                .raise_event_with_key(&id, &event, key, &*data)
                .await?;
        }
        None => api.client.raise_event(&id, &event, &*data).await?,
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "event": event })),
    )
        .into_response())
}

/// `POST /instances/{id}/terminate`, with `{"reason": ..}`.
async fn terminate(
    State(api): Shared,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let reason = reason(&api, body).await?;
    api.client.terminate(&id, &reason).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "reason": reason })),
    )
        .into_response())
}

/// `POST /instances/{id}/suspend`, with `{"reason": ..}`.
async fn suspend(
    State(api): Shared,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(&api, body).await?;
    api.client.suspend(&id, &reason).await?;
    Ok(Json(
        json!({ "id": id, "status": "suspended", "reason": reason }),
    ))
}

/// `POST /instances/{id}/resume`, with `{"reason": ..}`.
async fn resume(
    State(api): Shared,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(&api, body).await?;
    api.client.resume(&id, &reason).await?;
    Ok(Json(
        json!({ "id": id, "status": "running", "reason": reason }),
    ))
}

/// `DELETE /instances/{id}`: purges a finished instance.
async fn purge(State(api): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.client.purge(&id).await?;
    // The history that would record it is gone: the log keeps it.
    tracing::info!(target: "durable_http", id = ?id, "purged through the HTTP API");
    Ok(Json(json!({ "id": id, "purged": true })))
}

/// `GET /entities/{entity}/{key}`: its state, `404` when it has none.
async fn entity_state(
    State(api): Shared,
    Path((entity, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    match api.client.entity_state_json(&entity, &key).await? {
        Some(state) => Ok(Json(
            json!({ "entity": entity, "key": key, "state": state }),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "entity_not_found",
            format!("entity `{entity}` `{key}` has no state"),
        )),
    }
}

/// `POST /entities/{entity}/{key}/{op}`: signals an operation with the
/// body as its arguments.
async fn signal(
    State(api): Shared,
    Path((entity, key, op)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let args = json_body(&api, body).await?;
    api.client.signal_json(&entity, &key, &op, &args).await?;
    // An entity keeps no history: the log records the signal.
    tracing::info!(
        target: "durable_http",
        entity = ?entity,
        key = ?key,
        op = ?op,
        "signalled through the HTTP API"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "entity": entity, "key": key, "op": op })),
    )
        .into_response())
}
