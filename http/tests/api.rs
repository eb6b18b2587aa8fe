//! The HTTP API driven in-process: every route, its status codes and its
//! answers to bad input, against a real runtime on a temp SQLite file.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::{api, api_with, escape, until, ORCHESTRATORS};
use durable_http::{router, ApiOptions};
use serde_json::{json, Value};

// ---- POST /orchestrations/{name} and GET /instances/{id} -------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_answers_202_with_location_and_urls_and_the_instance_exists_at_once() {
    let api = api().await;
    let reply = api
        .post(
            "/orchestrations/price_order",
            r#"{"customer": "Ada", "quantity": 3}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.text("id").to_owned();
    assert!(!id.is_empty());
    let at = format!("/instances/{}", escape(&id));
    assert_eq!(reply.header("location"), at);
    assert_eq!(reply.header("retry-after"), "1");
    let urls = &reply.body["urls"];
    assert_eq!(urls["status"], at);
    assert_eq!(urls["history"], format!("{at}/history"));
    assert_eq!(urls["stream"], format!("{at}/stream"));
    assert_eq!(urls["raise_event"], format!("{at}/events/{{event}}"));
    assert_eq!(urls["terminate"], format!("{at}/terminate"));
    assert_eq!(urls["suspend"], format!("{at}/suspend"));
    assert_eq!(urls["resume"], format!("{at}/resume"));
    assert_eq!(urls["purge"], at);

    // The status URL answers at once: the instance was created before 202.
    let now = api.get(reply.header("location")).await;
    assert!(
        now.status == StatusCode::OK || now.status == StatusCode::ACCEPTED,
        "{:?} {}",
        now.status,
        now.body
    );
    assert_eq!(now.body["id"], id.as_str());
    assert_eq!(now.body["orchestrator"], "price_order");
    assert_eq!(now.body["urls"], *urls);

    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["output"], "Ada pays 750");
    assert!(done.body["failure"].is_null(), "{}", done.body);
    assert!(
        done.body["history_len"].as_u64().unwrap() >= 4,
        "{}",
        done.body
    );
    for field in ["created_at", "updated_at"] {
        let t = done.text(field);
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{field} is RFC 3339: {t}"
        );
    }
    assert!(
        done.headers.get("location").is_none(),
        "a finished instance points nowhere else"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_an_id_is_refused_when_the_id_is_taken_unless_use_existing() {
    let api = api().await;
    let first = api.start("wait_for_go", "?id=order-1", "").await;
    assert_eq!(first, "order-1");

    let again = api.post("/orchestrations/wait_for_go?id=order-1", "").await;
    again.assert_error(StatusCode::CONFLICT, "instance_exists");
    let again = api
        .post("/orchestrations/wait_for_go?id=order-1&if_exists=fail", "")
        .await;
    again.assert_error(StatusCode::CONFLICT, "instance_exists");

    let same = api
        .post(
            "/orchestrations/wait_for_go?id=order-1&if_exists=use_existing",
            "",
        )
        .await;
    assert_eq!(same.status, StatusCode::ACCEPTED, "{}", same.body);
    assert_eq!(same.body["id"], "order-1");
    assert_eq!(same.header("location"), "/instances/order-1");

    // replace_finished refuses a running instance, and replaces a finished one.
    let running = api
        .post(
            "/orchestrations/wait_for_go?id=order-1&if_exists=replace_finished",
            "",
        )
        .await;
    running.assert_error(StatusCode::CONFLICT, "instance_exists");
    let raised = api.post("/instances/order-1/events/go", r#""first""#).await;
    assert_eq!(raised.status, StatusCode::ACCEPTED, "{}", raised.body);
    assert_eq!(api.finished("order-1").await.body["output"], "first");
    let replaced = api
        .post(
            "/orchestrations/wait_for_go?id=order-1&if_exists=replace_finished",
            "",
        )
        .await;
    assert_eq!(replaced.status, StatusCode::ACCEPTED, "{}", replaced.body);
    let fresh = api.get("/instances/order-1").await;
    assert_eq!(
        fresh.status,
        StatusCode::ACCEPTED,
        "a new run: {}",
        fresh.body
    );
    assert!(fresh.body["output"].is_null(), "{}", fresh.body);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_bad_input_is_refused_with_a_message_that_says_what() {
    let api = api().await;

    let policy = api
        .post("/orchestrations/noop?if_exists=sometimes", "")
        .await;
    policy.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        policy.text("message").contains("use_existing"),
        "it lists what is valid: {}",
        policy.body
    );

    let malformed = api
        .post("/orchestrations/price_order", r#"{"customer": "Ada", "#)
        .await;
    malformed.assert_error(StatusCode::BAD_REQUEST, "bad_payload");

    let missing = api
        .post("/orchestrations/price_order", r#"{"customer": "Ada"}"#)
        .await;
    missing.assert_error(StatusCode::BAD_REQUEST, "bad_payload");
    assert!(
        missing.text("message").contains("quantity"),
        "the message names the missing field: {}",
        missing.body
    );

    let wrong_type = api
        .post(
            "/orchestrations/price_order",
            r#"{"customer": "Ada", "quantity": "many"}"#,
        )
        .await;
    wrong_type.assert_error(StatusCode::BAD_REQUEST, "bad_payload");
    assert!(
        wrong_type.text("message").contains("many"),
        "the message shows the bad value: {}",
        wrong_type.body
    );
    assert!(
        wrong_type.text("message").contains("at `quantity`"),
        "the message names the field: {}",
        wrong_type.body
    );

    let no_input = api.post("/orchestrations/price_order", "").await;
    no_input.assert_error(StatusCode::BAD_REQUEST, "bad_payload");

    let not_utf8 = api
        .send(
            axum::http::Request::post("/orchestrations/noop")
                .body(axum::body::Body::from(vec![0xff, 0xfe]))
                .unwrap(),
        )
        .await;
    not_utf8.assert_error(StatusCode::BAD_REQUEST, "bad_request");

    let unknown = api.post("/orchestrations/no_such_thing", "null").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "unknown_orchestrator");
    assert!(
        unknown.text("message").contains("no_such_thing"),
        "{}",
        unknown.body
    );

    let empty_id = api.post("/orchestrations/noop?id=", "").await;
    empty_id.assert_error(StatusCode::BAD_REQUEST, "invalid_name");

    // Nothing of those was created.
    let all = api.get("/instances").await;
    assert_eq!(all.body["instances"], json!([]), "{}", all.body);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_starts_an_orchestrator_that_takes_no_input() {
    let api = api().await;
    let id = api.start("noop", "", "").await;
    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["output"], "nothing to do");
    // Whitespace is no body either, and `null` is the same input.
    let id = api.start("noop", "", "  \n").await;
    assert_eq!(api.finished(&id).await.body["status"], "completed");
    let id = api.start("noop", "", "null").await;
    assert_eq!(api.finished(&id).await.body["status"], "completed");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_runtime_payload_limit_is_413() {
    let api = api_with(|b| b.max_payload(256), ApiOptions::default()).await;
    let big = json!({ "customer": "x".repeat(1_000), "quantity": 1 }).to_string();
    let reply = api.post("/orchestrations/price_order", &big).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // An event's data is a body too.
    let id = api.start("wait_for_go", "", "").await;
    let event = api
        .post(
            &format!("/instances/{id}/events/go"),
            &json!("y".repeat(1_000)).to_string(),
        )
        .await;
    event.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // A body under the limit still starts.
    let small = api
        .post(
            "/orchestrations/price_order",
            r#"{"customer": "Bo", "quantity": 1}"#,
        )
        .await;
    assert_eq!(small.status, StatusCode::ACCEPTED, "{}", small.body);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_limits_bodies_below_the_payload_limit_and_the_payload_limit_still_holds() {
    let mut options = ApiOptions::default();
    options.max_body = Some(64);
    let api = api_with(|b| b, options).await;
    let body = json!({ "customer": "x".repeat(100), "quantity": 1 }).to_string();
    let reply = api.post("/orchestrations/price_order", &body).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let ok = api
        .post(
            "/orchestrations/price_order",
            r#"{"customer": "Bo", "quantity": 1}"#,
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    api.stop().await;

    // A body the API reads whole is still refused over the runtime's limit.
    let mut options = ApiOptions::default();
    options.max_body = Some(100_000);
    let api = api_with(|b| b.max_payload(256), options).await;
    let body = json!({ "customer": "x".repeat(1_000), "quantity": 1 }).to_string();
    let reply = api.post("/orchestrations/price_order", &body).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_with_reserved_characters_round_trips_through_its_urls() {
    let api = api().await;
    let id = "tenant/7 order?#1";
    let reply = api
        .post(&format!("/orchestrations/noop?id={}", escape(id)), "")
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["id"], id);
    let location = reply.header("location").to_owned();
    assert_eq!(location, format!("/instances/{}", escape(id)));
    let done = until("the instance to finish", || async {
        let r = api.get(&location).await;
        (r.status == StatusCode::OK).then_some(r)
    })
    .await;
    assert_eq!(done.body["id"], id);
    let history = api
        .get(done.body["urls"]["history"].as_str().unwrap())
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["id"], id);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_202_while_running_and_200_with_the_output_once_completed() {
    let api = api().await;
    let id = api.start("wait_for_go", "", "").await;
    let running = api.reaches(&id, "running").await;
    assert_eq!(running.status, StatusCode::ACCEPTED, "{}", running.body);
    assert_eq!(
        running.header("location"),
        format!("/instances/{id}"),
        "202 points at where to look again"
    );
    assert_eq!(running.header("retry-after"), "1");
    assert!(running.body["output"].is_null(), "{}", running.body);

    let raised = api
        .post(&format!("/instances/{id}/events/go"), r#""ship it""#)
        .await;
    assert_eq!(raised.status, StatusCode::ACCEPTED, "{}", raised.body);
    assert_eq!(raised.body, json!({ "id": id, "event": "go" }));
    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["output"], "ship it");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_instance_reports_how_it_failed() {
    let api = api().await;
    // The orchestrator returns the activity's `Err` as its own.
    let id = api.start("refused", "", r#""card declined""#).await;
    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    // Its return value is the `Err`; nothing failed outside the code.
    assert_eq!(done.body["output"], json!({ "Err": "card declined" }));
    assert!(done.body["failure"].is_null(), "{}", done.body);
    let failed = api.event_of(&id, "ActivityFailed").await;
    assert!(
        failed.to_string().contains("card declined"),
        "the activity's failure is in the history: {failed}"
    );
    // The orchestrator panics.
    let id = api.start("crash", "", "").await;
    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["failure"]["kind"], "Panic", "{}", done.body);
    assert!(
        done.body["failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the crash orchestrator gave up")),
        "{}",
        done.body
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instance_is_404_on_every_route() {
    let api = api().await;
    for (method, uri) in [
        (Method::GET, "/instances/nope"),
        (Method::DELETE, "/instances/nope"),
        (Method::GET, "/instances/nope/history"),
        (Method::GET, "/instances/nope/stream"),
        (Method::POST, "/instances/nope/events/go"),
        (Method::POST, "/instances/nope/terminate"),
        (Method::POST, "/instances/nope/suspend"),
        (Method::POST, "/instances/nope/resume"),
    ] {
        let reply = api.request(method.clone(), uri, "", &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(
            reply.body["error"], "instance_not_found",
            "{method} {uri}: {}",
            reply.body
        );
    }
    api.stop().await;
}

// ---- GET /instances/{id}/history --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_pages_with_from_limit_and_next() {
    let api = api().await;
    let id = api
        .start("price_order", "", r#"{"customer": "Ada", "quantity": 2}"#)
        .await;
    let done = api.finished(&id).await;
    let total = done.body["history_len"].as_u64().unwrap();

    let whole = api.get(&format!("/instances/{id}/history")).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    assert_eq!(whole.body["id"], id.as_str());
    assert_eq!(whole.body["total"], total);
    assert!(whole.body["next"].is_null(), "{}", whole.body);
    let events = whole.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len() as u64, total);
    let indexes: Vec<u64> = events
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..total).collect::<Vec<_>>());
    assert!(events[0]["event"].get("Started").is_some(), "{}", events[0]);
    assert!(events
        .last()
        .is_some_and(|e| e["event"].get("Completed").is_some()));
    let scheduled = events
        .iter()
        .find_map(|e| e["event"].get("ActivityScheduled"))
        .expect("an ActivityScheduled event");
    assert_eq!(scheduled["name"], "price");
    assert_eq!(scheduled["input"], 2);
    assert!(
        scheduled["site"]
            .as_str()
            .is_some_and(|s| s.contains("common/mod.rs")),
        "the source line of the call: {scheduled}"
    );

    // Two at a time, following `next`, gives the same events.
    let mut paged = Vec::new();
    let mut from = Some(0);
    let mut pages = 0;
    while let Some(at) = from {
        let page = api
            .get(&format!("/instances/{id}/history?from={at}&limit=2"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["total"], total);
        let got = page.body["events"].as_array().unwrap();
        assert!(got.len() <= 2);
        paged.extend(got.iter().cloned());
        from = page.body["next"].as_u64();
        if let Some(next) = from {
            assert_eq!(next, at + 2);
        }
        pages += 1;
    }
    assert_eq!(paged, events);
    assert_eq!(pages, total.div_ceil(2));

    let past = api
        .get(&format!("/instances/{id}/history?from={}", total + 5))
        .await;
    assert_eq!(past.status, StatusCode::OK, "{}", past.body);
    assert_eq!(past.body["events"], json!([]));
    assert!(past.body["next"].is_null());
    assert_eq!(past.body["total"], total, "the total, not where it asked");

    let most = api
        .get(&format!("/instances/{id}/history?limit=10000"))
        .await;
    assert_eq!(most.status, StatusCode::OK, "{}", most.body);
    for limit in ["0", "10001"] {
        let bad = api
            .get(&format!("/instances/{id}/history?limit={limit}"))
            .await;
        bad.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    api.stop().await;
}

/// The API promises `{"error", "message"}` on every failure; a query or
/// path axum's extractors refuse came back as axum's plain-text rejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_or_path_that_does_not_parse_is_a_json_400() {
    let api = api().await;
    let id = api.start("noop", "", "").await;
    for uri in [
        format!("/instances/{id}/history?limit=many"),
        format!("/instances/{id}/history?from=-1"),
        "/instances?page_size=lots".to_owned(),
        "/instances/%FF".to_owned(),
    ] {
        let reply = api.get(&uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(
            reply.body["error"], "bad_request",
            "{uri}: every failure is a JSON error, got {}",
            reply.body
        );
    }
    api.stop().await;
}

// ---- POST /instances/{id}/events/{event} --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_delivers_an_event_once() {
    let api = api().await;
    let id = api.start("collect", "?id=basket", "2").await;
    let uri = "/instances/basket/events/item";
    for _ in 0..2 {
        let reply = api
            .request(
                Method::POST,
                uri,
                r#""apple""#,
                &[("idempotency-key", "k1")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let reply = api
        .request(Method::POST, uri, r#""pear""#, &[("Idempotency-Key", "k2")])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let done = api.finished(&id).await;
    // Delivered twice, `apple` would have been taken twice.
    assert_eq!(done.body["output"], json!(["apple", "pear"]));
    let history = api.get("/instances/basket/history").await;
    let raised = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].get("EventRaised").is_some())
        .count();
    assert_eq!(raised, 2, "{}", history.body);

    let empty_key = api
        .request(Method::POST, uri, "null", &[("idempotency-key", "")])
        .await;
    assert_eq!(
        empty_key.status,
        StatusCode::BAD_REQUEST,
        "{}",
        empty_key.body
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_refused_when_finished_or_malformed() {
    let api = api().await;
    let id = api.start("wait_for_go", "", "").await;
    let bad = api
        .post(&format!("/instances/{id}/events/go"), "{not json")
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let raised = api
        .post(&format!("/instances/{id}/events/go"), r#""now""#)
        .await;
    assert_eq!(raised.status, StatusCode::ACCEPTED, "{}", raised.body);
    api.finished(&id).await;
    let late = api
        .post(&format!("/instances/{id}/events/go"), r#""again""#)
        .await;
    late.assert_error(StatusCode::GONE, "instance_finished");
    api.stop().await;
}

// ---- terminate, suspend, resume ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_record_their_reasons_and_refuse_the_wrong_state() {
    let api = api().await;
    let id = api.start("wait_for_go", "", "").await;
    api.reaches(&id, "running").await;

    let suspended = api
        .post(
            &format!("/instances/{id}/suspend"),
            r#"{"reason": "maintenance window"}"#,
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(suspended.body["reason"], "maintenance window");
    let status = api.get(&format!("/instances/{id}")).await;
    assert_eq!(status.status, StatusCode::ACCEPTED);
    assert_eq!(status.body["status"], "suspended");
    let event = api.event_of(&id, "Suspended").await;
    assert_eq!(event["reason"], "maintenance window");

    let twice = api.post(&format!("/instances/{id}/suspend"), "").await;
    twice.assert_error(StatusCode::CONFLICT, "invalid_state");

    for bad in ["{\"reason\": 5}", "not json", "\"just text\""] {
        let reply = api.post(&format!("/instances/{id}/resume"), bad).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(
        api.get(&format!("/instances/{id}")).await.body["status"],
        "suspended",
        "a refused resume changes nothing"
    );

    // No body: the default reason.
    let resumed = api.post(&format!("/instances/{id}/resume"), "").await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["status"], "running");
    let event = api.event_of(&id, "Resumed").await;
    assert_eq!(event["reason"], "via the HTTP API");

    let again = api.post(&format!("/instances/{id}/resume"), "").await;
    again.assert_error(StatusCode::CONFLICT, "invalid_state");

    // It goes on once resumed.
    let raised = api
        .post(&format!("/instances/{id}/events/go"), r#""resumed""#)
        .await;
    assert_eq!(raised.status, StatusCode::ACCEPTED);
    assert_eq!(api.finished(&id).await.body["output"], "resumed");

    let finished = api.post(&format!("/instances/{id}/suspend"), "").await;
    finished.assert_error(StatusCode::CONFLICT, "invalid_state");
    let finished = api.post(&format!("/instances/{id}/resume"), "").await;
    finished.assert_error(StatusCode::CONFLICT, "invalid_state");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_an_instance_with_its_reason_and_refuses_a_finished_one() {
    let api = api().await;
    let id = api.start("wait_for_go", "", "").await;
    api.reaches(&id, "running").await;
    let bad = api
        .post(&format!("/instances/{id}/terminate"), "{\"reason\": [1]}")
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let reply = api
        .post(
            &format!("/instances/{id}/terminate"),
            r#"{"reason": "customer cancelled"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["reason"], "customer cancelled");
    let done = api.finished(&id).await;
    assert_eq!(done.body["status"], "terminated");
    assert_eq!(done.body["terminated"], "customer cancelled");
    let event = api.event_of(&id, "Terminated").await;
    assert_eq!(event["reason"], "customer cancelled");

    let again = api.post(&format!("/instances/{id}/terminate"), "").await;
    again.assert_error(StatusCode::GONE, "instance_finished");

    // No body, or a body without a reason: the default reason.
    for body in ["", "{}"] {
        let id = api.start("wait_for_go", "", "").await;
        let reply = api.post(&format!("/instances/{id}/terminate"), body).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let done = api.finished(&id).await;
        assert_eq!(done.body["terminated"], "via the HTTP API");
        let event = api.event_of(&id, "Terminated").await;
        assert_eq!(event["reason"], "via the HTTP API");
    }
    api.stop().await;
}

// ---- DELETE /instances/{id} ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_a_finished_instance_and_refuses_a_running_one() {
    let api = api().await;
    let running = api.start("wait_for_go", "", "").await;
    let refused = api.delete(&format!("/instances/{running}")).await;
    refused.assert_error(StatusCode::CONFLICT, "invalid_state");
    assert_eq!(
        api.get(&format!("/instances/{running}")).await.status,
        StatusCode::ACCEPTED,
        "still there"
    );

    let id = api.start("noop", "", "").await;
    api.finished(&id).await;
    let purged = api.delete(&format!("/instances/{id}")).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    assert_eq!(purged.body, json!({ "id": id, "purged": true }));
    api.get(&format!("/instances/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    api.get(&format!("/instances/{id}/history"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    api.delete(&format!("/instances/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    api.stop().await;
}

// ---- GET /instances --------------------------------------------------------------

fn ids(page: &Value) -> Vec<String> {
    page["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_status_orchestrator_and_prefix_and_pages_with_next() {
    let api = api().await;
    let mut done = BTreeSet::new();
    for i in 0..5 {
        done.insert(api.start("noop", &format!("?id=batch-{i}"), "").await);
    }
    let waiting: BTreeSet<String> = [
        api.start("wait_for_go", "?id=wait-0", "").await,
        api.start("wait_for_go", "?id=wait-1", "").await,
    ]
    .into();
    for id in &done {
        api.finished(id).await;
    }
    // An entity is no instance to list.
    let signal = api.post("/entities/Tally/k/add", "[1]").await;
    assert_eq!(signal.status, StatusCode::ACCEPTED);

    let all = api.get("/instances").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let listed: BTreeSet<String> = ids(&all.body).into_iter().collect();
    assert_eq!(listed, &done | &waiting);
    assert!(all.body["next"].is_null());
    let first = &all.body["instances"][0];
    assert_eq!(
        first["urls"]["status"],
        format!("/instances/{}", first["id"].as_str().unwrap())
    );

    let completed = api.get("/instances?status=completed").await;
    assert_eq!(
        ids(&completed.body).into_iter().collect::<BTreeSet<_>>(),
        done
    );
    let by_name = api.get("/instances?orchestrator=wait_for_go").await;
    assert_eq!(
        ids(&by_name.body).into_iter().collect::<BTreeSet<_>>(),
        waiting
    );
    let live = api
        .get("/instances?status=pending,running&orchestrator=wait_for_go")
        .await;
    assert_eq!(
        ids(&live.body).into_iter().collect::<BTreeSet<_>>(),
        waiting
    );
    let none = api
        .get("/instances?status=failed,terminated,suspended")
        .await;
    assert_eq!(none.body["instances"], json!([]));
    let prefixed = api.get("/instances?prefix=wait-").await;
    assert_eq!(
        ids(&prefixed.body).into_iter().collect::<BTreeSet<_>>(),
        waiting
    );

    // Two at a time through everything, newest first, each once.
    let mut seen = Vec::new();
    let mut uri = "/instances?page_size=2".to_owned();
    let mut pages = 0;
    loop {
        let page = api.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let got = ids(&page.body);
        assert!(got.len() <= 2);
        seen.extend(got);
        pages += 1;
        match page.body["next"].as_str() {
            Some(next) => uri = format!("/instances?page_size=2&after={}", escape(next)),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(
        seen.iter().cloned().collect::<BTreeSet<_>>(),
        &done | &waiting
    );
    let all_order = ids(&all.body);
    assert_eq!(seen, all_order, "pages follow the one list's order");

    // Filters hold across pages.
    let page = api.get("/instances?prefix=batch-&page_size=3").await;
    assert_eq!(ids(&page.body).len(), 3);
    let next = page.body["next"].as_str().expect("a next page").to_owned();
    let rest = api
        .get(&format!(
            "/instances?prefix=batch-&page_size=3&after={}",
            escape(&next)
        ))
        .await;
    assert_eq!(ids(&rest.body).len(), 2);
    assert!(rest.body["next"].is_null());

    api.get("/instances?status=sleeping")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    api.get("/instances?after=not-a-token")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_token");
    api.get("/instances?after=soon%3Abatch-1")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_token");
    api.get("/instances?page_size=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    api.get("/instances?page_size=10001")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    api.stop().await;
}

// ---- entities ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_the_entity_and_its_state_shows_it() {
    let api = api().await;
    api.get("/entities/Tally/visits")
        .await
        .assert_error(StatusCode::NOT_FOUND, "entity_not_found");

    let reply = api.post("/entities/Tally/visits/add", "[5]").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({ "entity": "Tally", "key": "visits", "op": "add" })
    );
    let state = until("the first signal to be applied", || async {
        let r = api.get("/entities/Tally/visits").await;
        (r.status == StatusCode::OK).then_some(r)
    })
    .await;
    assert_eq!(
        state.body,
        json!({ "entity": "Tally", "key": "visits", "state": { "count": 1, "total": 5 } })
    );

    let reply = api.post("/entities/Tally/visits/add", "[7]").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    until("the second signal to be applied", || async {
        let r = api.get("/entities/Tally/visits").await;
        (r.body["state"] == json!({ "count": 2, "total": 12 })).then_some(())
    })
    .await;

    // An operation without arguments takes an empty body.
    let reply = api.post("/entities/Tally/visits/reset", "").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    until("the reset to be applied", || async {
        let r = api.get("/entities/Tally/visits").await;
        (r.body["state"] == json!({ "count": 0, "total": 0 })).then_some(())
    })
    .await;

    // An entity keeps no history: nothing to page through.
    let history = api.get("/instances/@Tally@visits/history?limit=1").await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["events"], json!([]));
    assert_eq!(history.body["total"], 0);
    assert!(history.body["next"].is_null(), "{}", history.body);

    // Another key is another entity.
    api.get("/entities/Tally/other")
        .await
        .assert_error(StatusCode::NOT_FOUND, "entity_not_found");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_to_an_unknown_entity_type_or_with_bad_arguments_is_refused() {
    let api = api().await;
    api.post("/entities/Nothing/k/add", "[1]")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_entity");
    api.get("/entities/Nothing/k")
        .await
        .assert_error(StatusCode::NOT_FOUND, "entity_not_found");
    api.post("/entities/Tally/k/add", "[1,")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_payload");
    // An operation the type does not have, or arguments that do not fit
    // it, are refused before anything is queued: the entity goes on.
    api.post("/entities/Tally/k/nope", "[1]")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_operation");
    api.post("/entities/Tally/k/add", r#"["one"]"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_operation");
    api.post("/entities/Tally/k/add", "[1, 2]")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_operation");
    // No arguments: an empty body, `null` or `[]`.
    for none in ["", "null", "[]"] {
        let reply = api.post("/entities/Tally/k/reset", none).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{none}: {}", reply.body);
    }
    let reply = api.post("/entities/Tally/k/add", "[4]").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    until("the good signal to be applied", || async {
        let r = api.get("/entities/Tally/k").await;
        (r.body["state"] == json!({ "count": 1, "total": 4 })).then_some(())
    })
    .await;
    api.stop().await;
}

// ---- why it waits --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_names_the_event_and_a_misspelt_one_that_arrived() {
    let api = api().await;
    let id = api.start("wait_for_go", "", "").await;
    let reply = api
        .post(
            &format!("/instances/{}/events/Go", escape(&id)),
            r#""early""#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    api.event_of(&id, "EventRaised").await;
    let reply = api
        .get(&format!("/instances/{}/waiting", escape(&id)))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let waits = reply.body["waiting_on"].as_array().expect("a list").clone();
    assert_eq!(waits.len(), 1, "{}", reply.body);
    assert_eq!(waits[0]["kind"], "event");
    assert_eq!(waits[0]["name"], "go");
    assert_eq!(waits[0]["similar"], json!(["Go"]));
    assert!(
        waits[0]["text"].as_str().unwrap().contains("`Go`"),
        "{}",
        reply.body
    );

    api.post(&format!("/instances/{}/events/go", escape(&id)), r#""now""#)
        .await;
    api.finished(&id).await;
    let reply = api
        .get(&format!("/instances/{}/waiting", escape(&id)))
        .await;
    assert_eq!(reply.body["waiting_on"], json!([]), "nothing once finished");
    api.get("/instances/nobody/waiting")
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    api.stop().await;
}

// ---- openapi, routes, auth, mounting --------------------------------------------------

const PATHS: [&str; 15] = [
    "/orchestrations/{name}",
    "/counts",
    "/metrics",
    "/ui/",
    "/instances",
    "/instances/{id}",
    "/instances/{id}/history",
    "/instances/{id}/waiting",
    "/instances/{id}/stream",
    "/instances/{id}/events/{event}",
    "/instances/{id}/terminate",
    "/instances/{id}/suspend",
    "/instances/{id}/resume",
    "/entities/{entity}/{key}",
    "/entities/{entity}/{key}/{op}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_the_registered_names() {
    let api = api().await;
    let doc = api.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.header("content-type").starts_with("application/json"),
        "{:?}",
        doc.headers
    );
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in PATHS.iter().chain(&["/openapi.json"]) {
        assert!(paths.contains_key(*path), "{path} is documented");
    }
    assert_eq!(paths.len(), PATHS.len() + 1, "no route it does not serve");
    let names: Vec<&str> = doc.body["info"]["x-orchestrators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ORCHESTRATORS);
    let start = &paths["/orchestrations/{name}"]["post"];
    assert_eq!(
        start["parameters"][0]["schema"]["enum"],
        json!(ORCHESTRATORS)
    );
    assert_eq!(doc.body["info"]["x-entity-types"], json!(["Tally"]));
    // Every $ref points at a schema it defines.
    let text = doc.body.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc.body["components"]["schemas"].get(name).is_some(),
            "{name} is defined"
        );
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_a_json_404() {
    let api = api().await;
    for uri in ["/nope", "/instances/a/b/c/d", "/"] {
        let reply = api.get(uri).await;
        reply.assert_error(StatusCode::NOT_FOUND, "no_route");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_on_every_route_when_set() {
    let api = api_with(|b| b, ApiOptions::with_token("s3cret")).await;
    let none = api.get("/instances").await;
    none.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(none.header("www-authenticate"), "Bearer");
    for header in ["Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "s3cret"] {
        let wrong = api
            .request(Method::GET, "/instances", "", &[("authorization", header)])
            .await;
        wrong.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(wrong.header("www-authenticate"), "Bearer");
    }
    // Nothing is done without it.
    let start = api.post("/orchestrations/noop?id=sneaky", "").await;
    assert_eq!(start.status, StatusCode::UNAUTHORIZED);
    assert!(matches!(
        api.client.status("sneaky").await,
        Err(durable::Error::InstanceNotFound { .. })
    ));
    for uri in ["/openapi.json", "/metrics", "/counts", "/entities/Tally/k"] {
        assert_eq!(api.get(uri).await.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // A path that is no route is a 404 either way: it holds nothing.
    assert_eq!(api.get("/nope").await.status, StatusCode::NOT_FOUND);

    let auth = [("authorization", "Bearer s3cret")];
    let list = api.request(Method::GET, "/instances", "", &auth).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let start = api
        .request(Method::POST, "/orchestrations/noop", "", &auth)
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.body);
    let doc = api.request(Method::GET, "/openapi.json", "", &auth).await;
    assert_eq!(doc.status, StatusCode::OK);
    let unknown = api.request(Method::GET, "/nope", "", &auth).await;
    unknown.assert_error(StatusCode::NOT_FOUND, "no_route");
    api.stop().await;
}

/// RFC 9110 section 11.1: the authentication scheme is case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_without_regard_to_case() {
    let api = api_with(|b| b, ApiOptions::with_token("s3cret")).await;
    for header in ["bearer s3cret", "BEARER s3cret"] {
        let reply = api
            .request(Method::GET, "/instances", "", &[("authorization", header)])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{header}: {}", reply.body);
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_under_a_prefix_the_urls_it_hands_out_keep_the_prefix() {
    let mut api = api().await;
    api.app = Router::new().nest("/api", router(api.client.clone(), ApiOptions::default()));

    let reply = api.post("/api/orchestrations/wait_for_go", "").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.text("id").to_owned();
    let at = format!("/api/instances/{id}");
    assert_eq!(reply.header("location"), at);
    for (name, url) in reply.body["urls"].as_object().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(&at),
            "{name}: {url} is under /api"
        );
    }
    let status = api.get(&at).await;
    assert_eq!(status.body["urls"], reply.body["urls"]);
    assert!(
        status.header("location").is_empty() || status.header("location") == at,
        "{}",
        status.header("location")
    );
    let list = api.get("/api/instances").await;
    assert_eq!(list.body["instances"][0]["urls"]["status"], at);
    let doc = api.get("/api/openapi.json").await;
    assert_eq!(doc.body["servers"][0]["url"], "/api");
    api.get("/api/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "no_route");
    let history = api.get(&format!("{at}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_per_status_and_the_dashboard_files_without_a_token() {
    let secured = api_with(|b| b, ApiOptions::with_token("s3cret")).await;
    // The dashboard's files hold no data: a browser loads them without a
    // token, and what they fetch needs one.
    for file in ["/ui/", "/ui/app.js", "/ui/app.css"] {
        let reply = secured.get(file).await;
        assert_eq!(reply.status, StatusCode::OK, "{file}");
    }
    secured
        .get("/ui/secrets.json")
        .await
        .assert_error(StatusCode::NOT_FOUND, "no_route");
    secured
        .get("/counts")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    secured.stop().await;

    let api = api().await;
    let waiting = api.start("wait_for_go", "", "").await;
    let done = api.start("noop", "", "").await;
    api.finished(&done).await;
    api.reaches(&waiting, "running").await;
    let reply = api.get("/counts").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({ "counts": { "completed": 1, "running": 1 }, "total": 2 })
    );
    let reply = api.get("/counts?orchestrator=noop").await;
    assert_eq!(
        reply.body,
        json!({ "counts": { "completed": 1 }, "total": 1 })
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text() {
    let api = api().await;
    let priced = api
        .start("price_order", "", r#"{"customer": "Ada", "quantity": 4}"#)
        .await;
    let refused = api.start("refused", "", r#""out of stock""#).await;
    api.finished(&priced).await;
    api.finished(&refused).await;
    let waiting = api.start("wait_for_go", "", "").await;
    api.reaches(&waiting, "running").await;

    let reply = api.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        reply.headers
    );
    let text = reply.body.as_str().expect("text").to_owned();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(value("durable_instances{status=\"completed\"}"), 1.0);
    assert_eq!(value("durable_instances{status=\"failed\"}"), 1.0);
    assert_eq!(value("durable_instances{status=\"running\"}"), 1.0);
    assert_eq!(
        value("durable_instances{status=\"stuck\"}"),
        0.0,
        "zero, not absent"
    );
    assert!(value("durable_turns_total") >= 5.0, "{text}");
    assert_eq!(
        value("durable_activity_attempts_total{activity=\"price\"}"),
        1.0
    );
    assert_eq!(
        value("durable_activity_failures_total{activity=\"price\"}"),
        0.0
    );
    assert_eq!(
        value("durable_activity_failures_total{activity=\"refuse\"}"),
        1.0
    );
    assert_eq!(
        value("durable_activity_seconds_bucket{activity=\"price\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        value("durable_activity_seconds_count{activity=\"price\"}"),
        1.0
    );
    let commits = value("durable_turn_commit_seconds_count");
    assert!(commits >= 1.0, "{text}");
    assert_eq!(
        value("durable_turn_commit_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    assert_eq!(value("durable_queue_tasks"), 0.0);
    assert!(text.contains("# TYPE durable_turn_commit_seconds histogram"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_or_entity_named_ui_is_not_served_without_the_token() {
    let api = api_with(|b| b, ApiOptions::with_token("s3cret")).await;
    let bearer = [("authorization", "Bearer s3cret")];
    let reply = api
        .request(Method::POST, "/orchestrations/noop?id=ui", "", &bearer)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    for uri in [
        "/instances/ui",
        "/instances/ui/history",
        "/instances/ui/waiting",
        "/instances/ui/stream",
        "/entities/ui/x",
        "/entities/Tally/ui",
    ] {
        api.get(uri)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_other_sites_are_refused() {
    let api = api().await;
    // A page elsewhere posting through the operator's browser.
    let forged = api
        .request(
            Method::POST,
            "/orchestrations/noop?id=forged",
            "",
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
                ("content-type", "text/plain"),
            ],
        )
        .await;
    forged.assert_error(StatusCode::FORBIDDEN, "cross_origin");
    api.get("/instances/forged")
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    // The dashboard's own requests carry its origin.
    let own = api
        .request(
            Method::POST,
            "/orchestrations/noop?id=own",
            "",
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
        )
        .await;
    assert_eq!(own.status, StatusCode::ACCEPTED, "{}", own.body);
    // DNS rebinding: a page's name resolved to loopback.
    let rebound = api
        .request(
            Method::GET,
            "/instances",
            "",
            &[("host", "evil.example:8080")],
        )
        .await;
    rebound.assert_error(StatusCode::FORBIDDEN, "forbidden_host");
    for host in ["localhost:8080", "127.0.0.1", "[::1]:8080"] {
        let reply = api
            .request(Method::GET, "/instances", "", &[("host", host)])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    // A body announced over the limit is refused before it is read.
    let huge = api
        .request(
            Method::POST,
            "/orchestrations/noop",
            "",
            &[("content-length", "100000000000")],
        )
        .await;
    huge.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    api.stop().await;

    // With a token, any name may be served (the token is what a page
    // elsewhere cannot send).
    let api = api_with(|b| b, ApiOptions::with_token("s3cret")).await;
    let reply = api
        .request(
            Method::GET,
            "/instances",
            "",
            &[
                ("host", "durable.internal:8080"),
                ("authorization", "Bearer s3cret"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    api.stop().await;
}
