//! The payload limit: a value over it is refused with a clear error before
//! anything is committed, wherever it comes from.

mod common;

use common::{db, within};
use durable::{activity, orchestrator, ActivityError, Context, Error, FailureKind, Runtime};

#[activity]
async fn blow_up(n: usize) -> String {
    "x".repeat(n)
}

#[orchestrator]
async fn asks_for(ctx: Context, n: usize) -> Result<usize, String> {
    match ctx.call(blow_up, n).await {
        Ok(s) => Ok(s.len()),
        Err(ActivityError::Aborted(reason)) => Err(reason),
        Err(other) => Err(format!("unexpected: {other:?}")),
    }
}

#[orchestrator]
async fn sends(ctx: Context, n: usize) -> usize {
    ctx.call(blow_up, 0).await.unwrap_or_default();
    // An input over the limit fails the instance, nothing is scheduled.
    let big = "y".repeat(n);
    ctx.call(echo, big)
        .await
        .map(|s| s.len())
        .unwrap_or_default()
}

#[activity]
async fn echo(s: String) -> String {
    s
}

async fn runtime(db: &common::Db) -> Runtime {
    Runtime::builder()
        .sqlite(&db.path)
        .max_payload(1_000)
        .activity(blow_up)
        .activity(echo)
        .orchestrator(asks_for)
        .orchestrator(sends)
        .orchestrator(echo_input)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_value_over_the_limit_is_refused_and_nothing_is_written() {
    let db = db();
    let rt = runtime(&db).await;
    let client = rt.client();
    client
        .start_with_id(echo_input, "big", "small".to_owned())
        .await
        .expect("a small input starts");
    let err = client
        .raise_event("big", "data", "z".repeat(5_000))
        .await
        .unwrap_err();
    let Error::PayloadTooLarge { size, limit, .. } = err else {
        panic!("expected PayloadTooLarge, got {err}");
    };
    assert_eq!((size, limit), (5_002, 1_000));
    let err = client
        .start_with_id(echo_input, "too-big", "w".repeat(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    assert!(
        matches!(
            client.status("too-big").await,
            Err(Error::InstanceNotFound { .. })
        ),
        "nothing was written"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn echo_input(_ctx: Context, s: String) -> String {
    s
}

#[tokio::test]
async fn an_activity_output_over_the_limit_fails_the_attempt_with_the_reason() {
    let db = db();
    let rt = runtime(&db).await;
    let h = rt.client().start(asks_for, 5_000).await.unwrap();
    let reason = within(h.result()).await.unwrap().unwrap_err();
    assert!(reason.contains("payload limit"), "{reason}");
    let ok = rt.client().start(asks_for, 10).await.unwrap();
    assert_eq!(within(ok.result()).await.unwrap(), Ok(10));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_orchestrator_input_to_an_activity_over_the_limit_fails_the_instance() {
    let db = db();
    let rt = runtime(&db).await;
    let h = rt.client().start(sends, 5_000).await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(failure.message.contains("`echo`"), "{}", failure.message);
    let history = rt.client().history(h.id()).await.unwrap();
    assert!(
        !history.iter().any(|r| matches!(&r.event, durable::history::Event::ActivityScheduled { name, .. } if name == "echo")),
        "the oversized call was never scheduled"
    );
    rt.shutdown().await.unwrap();
}
