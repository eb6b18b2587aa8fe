//! `GET /openapi.json`: the API described in OpenAPI 3.1, with the
//! orchestrators and entity types this process has registered.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::Json;
use serde_json::{json, Value};

use crate::Api;

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": kind } })
}

fn reason_body() -> Value {
    json!({
        "required": false,
        "description": "Why: recorded in the instance's history.",
        "content": { "application/json": { "schema": {
            "type": "object", "properties": { "reason": { "type": "string" } }
        } } }
    })
}

fn any_body(description: &str) -> Value {
    json!({
        "required": false,
        "description": description,
        "content": { "application/json": { "schema": {} } }
    })
}

/// The document.
pub(crate) async fn document(
    State(api): State<Arc<Api>>,
    OriginalUri(uri): OriginalUri,
) -> Json<Value> {
    let base = match uri.path().strip_suffix("/openapi.json") {
        Some("") | None => "/".to_owned(),
        Some(base) => base.to_owned(),
    };
    let security = if api.token.is_some() {
        json!([{ "bearer": [] }])
    } else {
        json!([])
    };
    let id = path_param("id", "The instance's id.");
    let unauthorized = error("No bearer token, or a wrong one (when the API has one).");
    let not_found = error("No such instance.");
    let orchestrators: Vec<Value> = api
        .client
        .orchestrators()
        .into_iter()
        .map(|(name, version)| json!({ "name": name, "version": version }))
        .collect();
    let names: Vec<String> = api
        .client
        .orchestrators()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let entity_types = api.client.entity_types();
    Json(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "durable HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Start orchestrations and follow, steer and purge their instances; read and signal entities.",
            "x-orchestrators": orchestrators,
            "x-entity-types": entity_types,
        },
        "servers": [{ "url": base }],
        "security": security,
        "paths": {
            "/orchestrations/{name}": { "post": {
                "summary": "Start an instance of an orchestrator, the body as its input",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "description": "The orchestrator's stored name.", "schema": { "type": "string", "enum": names } },
                    query_param("id", "The instance's id (default: a new one).", "string"),
                    { "name": "if_exists", "in": "query", "required": false, "description": "When the id exists: fail (409, the default), use_existing, replace_finished.", "schema": { "type": "string", "enum": ["fail", "use_existing", "replace_finished"] } },
                ],
                "requestBody": any_body("The orchestrator's input, as JSON (empty: null)."),
                "responses": {
                    "202": { "description": "Started: `Location` is its status URL.", "headers": { "Location": { "schema": { "type": "string" } } },
                             "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Started" } } } },
                    "400": error("The body is not JSON, or does not decode into the input type (the message names what)."),
                    "401": unauthorized,
                    "404": error("No orchestrator of that name is registered."),
                    "409": error("The id exists."),
                    "413": error("The body is over the payload limit."),
                },
            } },
            "/instances": { "get": {
                "summary": "List instances, newest first, a page at a time",
                "parameters": [
                    query_param("status", "Comma-separated statuses: pending, running, suspended, stuck, completed, failed, terminated.", "string"),
                    query_param("orchestrator", "An orchestrator's stored name.", "string"),
                    query_param("prefix", "Ids that start with this.", "string"),
                    query_param("page_size", "1 to 10000 (default 100).", "integer"),
                    query_param("after", "The `next` token of the page before.", "string"),
                ],
                "responses": {
                    "200": ok("A page.", "Page"),
                    "400": error("A bad filter or token."),
                    "401": unauthorized,
                },
            } },
            "/instances/{id}": {
                "get": {
                    "summary": "An instance's status: 202 while it runs, 200 once it has finished",
                    "parameters": [id],
                    "responses": {
                        "200": ok("Finished: completed, failed or terminated, with its output or failure.", "Status"),
                        "202": ok("Not finished yet: pending, running, suspended or stuck.", "Status"),
                        "401": unauthorized,
                        "404": not_found,
                    },
                },
                "delete": {
                    "summary": "Purge a finished instance and its history",
                    "parameters": [id],
                    "responses": {
                        "200": { "description": "Purged." },
                        "401": unauthorized,
                        "404": not_found,
                        "409": error("It has not finished."),
                    },
                },
            },
            "/instances/{id}/history": { "get": {
                "summary": "A page of an instance's history, oldest first; each scheduling event names its source line (`site`)",
                "parameters": [id, query_param("from", "The first event's index (default 0).", "integer"), query_param("limit", "1 to 10000 (default 1000).", "integer")],
                "responses": {
                    "200": ok("The events, the total, and `next` (the index to ask from next, or null).", "HistoryPage"),
                    "401": unauthorized,
                    "404": not_found,
                },
            } },
            "/instances/{id}/waiting": { "get": {
                "summary": "Why it is not moving: what it waits on (events, with similarly named ones that arrived; timers; activities; children; entity calls; locks; a suspension; a park with both call sites), each with its source line",
                "parameters": [id],
                "responses": {
                    "200": { "description": "`waiting_on`: a list of objects, each with a `kind` (not_started, suspended, parked, newer_version, event, timer, activity, child, entity, lock), its fields and a sentence (`text`); empty once finished.",
                             "content": { "application/json": { "schema": { "type": "object" } } } },
                    "401": unauthorized,
                    "404": not_found,
                },
            } },
            "/instances/{id}/stream": { "get": {
                "summary": "Server-sent events: each new history event (`event: history`, `id:` its index), then `event: end` when the instance finishes; `Last-Event-ID` resumes",
                "parameters": [id, query_param("from", "The first event's index (default 0).", "integer")],
                "responses": {
                    "200": { "description": "An event stream.", "content": { "text/event-stream": {} } },
                    "401": unauthorized,
                    "404": not_found,
                },
            } },
            "/instances/{id}/events/{event}": { "post": {
                "summary": "Raise an event, the body as its data; an `Idempotency-Key` header delivers it at most once per key",
                "parameters": [id, path_param("event", "The event's name."),
                    { "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string" } }],
                "requestBody": any_body("The event's data, as JSON (empty: null)."),
                "responses": {
                    "202": { "description": "Queued for the instance." },
                    "400": error("The body is not JSON, or the name is not valid."),
                    "401": unauthorized,
                    "404": not_found,
                    "410": error("The instance has finished."),
                    "413": error("The body is over the payload limit."),
                },
            } },
            "/instances/{id}/terminate": { "post": {
                "summary": "Terminate an instance (and its children)",
                "parameters": [id], "requestBody": reason_body(),
                "responses": { "202": { "description": "Queued." }, "401": unauthorized, "404": not_found, "410": error("It has finished.") },
            } },
            "/instances/{id}/suspend": { "post": {
                "summary": "Suspend an instance: it runs no turn until resumed, and keeps what arrives",
                "parameters": [id], "requestBody": reason_body(),
                "responses": { "200": { "description": "Suspended." }, "401": unauthorized, "404": not_found, "409": error("Not in a state that can be suspended.") },
            } },
            "/instances/{id}/resume": { "post": {
                "summary": "Resume a suspended instance",
                "parameters": [id], "requestBody": reason_body(),
                "responses": { "200": { "description": "Resumed." }, "401": unauthorized, "404": not_found, "409": error("It is not suspended.") },
            } },
            "/entities/{entity}/{key}": { "get": {
                "summary": "An entity's state",
                "parameters": [
                    { "name": "entity", "in": "path", "required": true, "description": "The entity type's stored name.", "schema": { "type": "string", "enum": entity_types } },
                    path_param("key", "The entity's key."),
                ],
                "responses": { "200": ok("Its state.", "EntityState"), "401": unauthorized, "404": error("It has no state.") },
            } },
            "/entities/{entity}/{key}/{op}": { "post": {
                "summary": "Signal an operation of an entity, the body as its arguments (a JSON array of its parameters, or null for none)",
                "parameters": [
                    { "name": "entity", "in": "path", "required": true, "description": "The entity type's stored name.", "schema": { "type": "string", "enum": entity_types } },
                    path_param("key", "The entity's key."),
                    path_param("op", "The operation's name."),
                ],
                "requestBody": any_body("The arguments, as JSON."),
                "responses": { "202": { "description": "Queued." }, "400": error("Not JSON, or a bad key or name."), "401": unauthorized, "404": error("No entity type of that name is registered."), "413": error("Over the payload limit.") },
            } },
            "/counts": { "get": {
                "summary": "How many instances there are in each status (entities not counted)",
                "parameters": [query_param("orchestrator", "Only this orchestrator's instances.", "string")],
                "responses": {
                    "200": { "description": "`counts`: status to number (statuses with none left out), and `total`.",
                             "content": { "application/json": { "schema": { "type": "object" } } } },
                    "401": unauthorized,
                },
            } },
            "/metrics": { "get": {
                "summary": "Prometheus metrics: instances by status, queue depth, turns, activity attempts and failures, commit and activity latency histograms",
                "responses": {
                    "200": { "description": "Prometheus text format 0.0.4.", "content": { "text/plain": {} } },
                    "401": unauthorized,
                },
            } },
            "/ui/": { "get": { "summary": "The dashboard (served without a token: it asks for one and sends it with what it fetches)", "responses": { "200": { "description": "HTML." } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1." } } } },
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"], "properties": {
                    "error": { "type": "string", "description": "A stable code: bad_request, bad_payload, invalid_name, invalid_token, unauthorized, instance_not_found, instance_exists, instance_finished, invalid_state, unknown_orchestrator, unknown_entity, bad_operation, entity_not_found, payload_too_large, store_unavailable, shutting_down, no_route, internal." },
                    "message": { "type": "string", "description": "What went wrong and what to do." },
                } },
                "Urls": { "type": "object", "description": "Where to manage the instance.", "properties": {
                    "status": { "type": "string" }, "history": { "type": "string" }, "stream": { "type": "string" },
                    "raise_event": { "type": "string" }, "terminate": { "type": "string" }, "suspend": { "type": "string" },
                    "resume": { "type": "string" }, "purge": { "type": "string" },
                } },
                "Started": { "type": "object", "properties": { "id": { "type": "string" }, "urls": { "$ref": "#/components/schemas/Urls" } } },
                "Status": { "type": "object", "properties": {
                    "id": { "type": "string" },
                    "orchestrator": { "type": "string" },
                    "status": { "type": "string", "enum": ["pending", "running", "suspended", "stuck", "completed", "failed", "terminated"] },
                    "created_at": { "type": "string", "format": "date-time" },
                    "updated_at": { "type": "string", "format": "date-time" },
                    "history_len": { "type": "integer" },
                    "output": { "description": "The orchestrator's return value, once it returned." },
                    "failure": { "type": ["object", "null"], "properties": { "kind": { "type": "string" }, "message": { "type": "string" } } },
                    "terminated": { "type": ["string", "null"], "description": "The reason given when terminated." },
                    "custom_status": { "description": "What the orchestrator last set as its custom status." },
                    "urls": { "$ref": "#/components/schemas/Urls" },
                } },
                "Page": { "type": "object", "properties": {
                    "instances": { "type": "array", "items": { "$ref": "#/components/schemas/Status" } },
                    "next": { "type": ["string", "null"] },
                } },
                "HistoryRecord": { "type": "object", "properties": {
                    "index": { "type": "integer" }, "turn": { "type": "integer" },
                    "at": { "type": "integer", "description": "Microseconds since the Unix epoch." },
                    "event": { "type": "object", "description": "One key, the event's kind (Started, ActivityScheduled, ..), holding its fields." },
                } },
                "HistoryPage": { "type": "object", "properties": {
                    "id": { "type": "string" }, "total": { "type": "integer" },
                    "events": { "type": "array", "items": { "$ref": "#/components/schemas/HistoryRecord" } },
                    "next": { "type": ["integer", "null"] },
                } },
                "EntityState": { "type": "object", "properties": {
                    "entity": { "type": "string" }, "key": { "type": "string" }, "state": {},
                } },
            },
        },
    }))
}
