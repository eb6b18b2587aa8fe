//! `GET /instances/{id}/stream`: an instance's history as server-sent
//! events, read frame by frame as a client reads them.

mod common;

use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode};
use common::{api, within, Api};
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An open event stream, read an event at a time.
struct Events {
    body: BodyDataStream,
    buffer: String,
}

impl Events {
    /// The next event; `None` once the server has ended the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                match parse(&block) {
                    Some(event) => return Some(event),
                    // A comment (a keep-alive): nothing to hand out.
                    None => continue,
                }
            }
            match within(self.body.next()).await {
                Some(Ok(bytes)) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8 events")),
                Some(Err(e)) => panic!("the stream broke: {e}"),
                None => {
                    assert!(
                        self.buffer.trim().is_empty(),
                        "a partial event at the end: {:?}",
                        self.buffer
                    );
                    return None;
                }
            }
        }
    }

    /// The events up to and including `end`, and checks that the stream
    /// closes after it.
    async fn until_end(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await.expect("the stream ends with `end`");
            let last = event.event.as_deref() == Some("end");
            events.push(event);
            if last {
                break;
            }
        }
        assert_eq!(self.next().await, None, "nothing after `end`");
        events
    }
}

/// An event's block of lines; `None` for a block of comments only.
fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        any = true;
        match field {
            "id" => id = Some(value),
            "event" => event = Some(value),
            "data" => data.push(value),
            other => panic!("an unknown field {other:?} in {block:?}"),
        }
    }
    any.then(|| SseEvent {
        id,
        event,
        data: data.join("\n"),
    })
}

/// Opens the stream at `uri` with `headers`; panics unless it is 200.
async fn open(api: &Api, uri: &str, headers: &[(&str, &str)]) -> Events {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = api
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .expect("the router is infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    Events {
        body: response.into_body().into_data_stream(),
        buffer: String::new(),
    }
}

/// The history events among `events`, checked to be `event: history`
/// with their index as `id:`; their records.
fn records(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event.as_deref() != Some("end"))
        .map(|e| {
            assert_eq!(e.event.as_deref(), Some("history"), "{e:?}");
            let record: Value = serde_json::from_str(&e.data).expect("a JSON record");
            assert_eq!(
                e.id.as_deref(),
                Some(record["index"].to_string().as_str()),
                "the SSE id is the history index: {e:?}"
            );
            record
        })
        .collect()
}

async fn history(api: &Api, id: &str) -> Vec<Value> {
    let reply = api.get(&format!("/instances/{id}/history")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_each_history_event_as_it_comes_then_end() {
    let api = api().await;
    let id = api.start("collect", "?id=live", "1").await;
    let mut events = open(&api, "/instances/live/stream", &[]).await;

    // The instance waits: what it recorded so far comes, starting at 0.
    let first = events.next().await.expect("the first event");
    assert_eq!(first.id.as_deref(), Some("0"), "{first:?}");
    assert_eq!(first.event.as_deref(), Some("history"));
    let record: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(record["event"]["Started"]["name"], "collect");

    // Then what happens after the stream was opened.
    let raised = api.post("/instances/live/events/item", r#""late""#).await;
    assert_eq!(raised.status, StatusCode::ACCEPTED);
    let mut all = vec![first];
    all.extend(events.until_end().await);
    let end = all.last().unwrap();
    assert!(end.data.contains("completed"), "{end:?}");

    let streamed = records(&all);
    assert_eq!(
        streamed,
        history(&api, &id).await,
        "the whole history, once"
    );
    assert!(
        streamed
            .iter()
            .any(|r| r["event"]["EventRaised"]["data"] == "late"),
        "{streamed:?}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_of_a_terminated_instance_ends_with_its_status() {
    let api = api().await;
    api.start("wait_for_go", "?id=doomed", "").await;
    let mut events = open(&api, "/instances/doomed/stream", &[]).await;
    let first = events.next().await.expect("the first event");
    assert_eq!(first.id.as_deref(), Some("0"));
    let reply = api
        .post("/instances/doomed/terminate", r#"{"reason": "enough"}"#)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let rest = events.until_end().await;
    assert!(rest.last().unwrap().data.contains("terminated"), "{rest:?}");
    let streamed = records(&rest);
    let terminated = streamed
        .iter()
        .find_map(|r| r["event"].get("Terminated"))
        .expect("the Terminated event is streamed");
    assert_eq!(terminated["reason"], "enough");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_the_last_event_seen() {
    let api = api().await;
    let id = api
        .start("price_order", "", r#"{"customer": "Ada", "quantity": 1}"#)
        .await;
    api.finished(&id).await;
    let whole = history(&api, &id).await;
    assert!(whole.len() >= 4, "{whole:?}");

    let mut events = open(&api, &format!("/instances/{id}/stream"), &[]).await;
    let all = events.until_end().await;
    assert_eq!(records(&all), whole);

    let mut events = open(
        &api,
        &format!("/instances/{id}/stream"),
        &[("last-event-id", "1")],
    )
    .await;
    let resumed = events.until_end().await;
    assert_eq!(resumed[0].id.as_deref(), Some("2"), "{resumed:?}");
    assert_eq!(records(&resumed), whole[2..]);

    // `from` starts there, and Last-Event-ID, a reconnection, wins over it.
    let mut events = open(&api, &format!("/instances/{id}/stream?from=3"), &[]).await;
    assert_eq!(records(&events.until_end().await), whole[3..]);
    let mut events = open(
        &api,
        &format!("/instances/{id}/stream?from=0"),
        &[("Last-Event-ID", "2")],
    )
    .await;
    assert_eq!(records(&events.until_end().await), whole[3..]);

    // Having seen the last event, only `end` comes.
    let last = (whole.len() - 1).to_string();
    let mut events = open(
        &api,
        &format!("/instances/{id}/stream"),
        &[("last-event-id", last.as_str())],
    )
    .await;
    let rest = events.until_end().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event.as_deref(), Some("end"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_an_unknown_instance_or_with_a_bad_last_event_id_is_refused() {
    let api = api().await;
    api.get("/instances/nope/stream")
        .await
        .assert_error(StatusCode::NOT_FOUND, "instance_not_found");
    let id = api.start("noop", "", "").await;
    for bad in ["abc", "-1", "1.5"] {
        api.request(
            axum::http::Method::GET,
            &format!("/instances/{id}/stream"),
            "",
            &[("last-event-id", bad)],
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    api.stop().await;
}

/// `Last-Event-ID: 18446744073709551615` made the handler add 1 to
/// `u64::MAX`: a panic in a debug build instead of an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_at_the_top_of_the_range_is_answered_not_a_panic() {
    let api = api().await;
    let id = api.start("noop", "", "").await;
    api.finished(&id).await;
    let request = Request::get(format!("/instances/{id}/stream"))
        .header("last-event-id", u64::MAX.to_string())
        .body(Body::empty())
        .unwrap();
    let app = api.app.clone();
    let answered = tokio::spawn(async move {
        let response = app.oneshot(request).await.expect("infallible");
        response.status()
    })
    .await;
    let status = answered.expect("the handler answers instead of panicking");
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::OK,
        "{status}"
    );
    api.stop().await;
}

/// Waits for `go`, then continues as new with `n + 1`, until 2.
#[durable::orchestrator]
async fn hops(ctx: durable::Context, n: u32) -> u32 {
    if n >= 2 {
        return n;
    }
    let _: () = ctx.wait_event("go").await;
    ctx.continue_as_new(n + 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continue_as_new_restarts_the_stream_at_the_new_executions_first_event() {
    let api = common::api_with(
        |b| b.orchestrator(hops),
        durable_http::ApiOptions::default(),
    )
    .await;
    let id = api.start("hops", "?id=hops-1", "0").await;
    let mut events = open(&api, "/instances/hops-1/stream", &[]).await;
    let first = within(events.next()).await.expect("the first event");
    assert_eq!(first.id.as_deref(), Some("0"), "{first:?}");
    // Two executions pass while the stream looks elsewhere: the last one
    // is already as long as what was sent.
    for _ in 0..2 {
        let reply = api
            .post(&format!("/instances/{id}/events/go"), "null")
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let rest = events.until_end().await;
    let last_restart = rest
        .iter()
        .rposition(|e| e.event.as_deref() == Some("restarted"))
        .unwrap_or_else(|| panic!("no `restarted` event: {rest:?}"));
    let after: Vec<Value> = records(&rest[last_restart + 1..]);
    assert_eq!(after[0]["index"], 0, "{after:?}");
    assert_eq!(after[0]["event"]["Started"]["input"], 2, "{after:?}");
    assert!(
        after.last().unwrap()["event"]["Completed"].is_object(),
        "{after:?}"
    );
    api.stop().await;
}

/// A reconnection that names the execution it followed learns of a
/// continue-as-new since, even when the new execution is already longer
/// than where it resumes; without it, a resume past the end of an instance
/// that never continued as new is no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_naming_its_execution_sees_a_continue_as_new_in_between() {
    let api = common::api_with(
        |b| b.orchestrator(hops),
        durable_http::ApiOptions::default(),
    )
    .await;
    let id = api.start("hops", "?id=hops-2", "1").await;
    api.event_of(&id, "Started").await;
    let first = history(&api, &id).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let reply = api
        .post(&format!("/instances/{id}/events/go"), "null")
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    api.finished(&id).await;
    let now = history(&api, &id).await;
    let execution = now[0]["event"]["Started"]["first_seq"]
        .as_u64()
        .expect("a later execution's first sequence number");
    assert!(now.len() >= 2, "{now:?}");
    // Seen: event 0 of execution 0. The new execution is longer.
    let mut events = open(
        &api,
        &format!("/instances/{id}/stream?execution=0"),
        &[("last-event-id", "0")],
    )
    .await;
    let all = events.until_end().await;
    assert_eq!(all[0].event.as_deref(), Some("restarted"), "{all:?}");
    assert_eq!(records(&all[1..]), now);
    // Following the execution it is in: a plain resume.
    let mut events = open(
        &api,
        &format!("/instances/{id}/stream?execution={execution}"),
        &[("last-event-id", "0")],
    )
    .await;
    assert_eq!(records(&events.until_end().await), now[1..]);

    // An instance that never continued as new, resumed past its end: no
    // restart, only its end.
    let done = api
        .start("price_order", "", r#"{"customer": "Ada", "quantity": 1}"#)
        .await;
    api.finished(&done).await;
    let mut events = open(&api, &format!("/instances/{done}/stream?from=100"), &[]).await;
    let rest = events.until_end().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event.as_deref(), Some("end"));
    api.stop().await;
}
